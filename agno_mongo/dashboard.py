"""A local dashboard over stored sessions: a searchable table, transcripts, runs and tokens per day.

``agno-mongo dashboard`` serves it; ``build_app(db)`` returns the FastAPI app for tests. It reads
through the public ``MongoDb`` API only (``get_sessions``, ``get_session``, ``calculate_metrics``,
``get_metrics``), and binds
to 127.0.0.1: it is a tool for the person at this machine, with no authentication.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from agno_mongo.db import MongoDb

PAGE_SIZE = 25
SessionPage = tuple[list[dict[str, Any]], int]
"""What agno's ``get_sessions``/``get_runs`` return with ``deserialize=False``: rows and a total."""


def _day(timestamp: object) -> str | None:
    if isinstance(timestamp, int | float):
        return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()
    return None


def _tokens(run: dict[str, Any]) -> int:
    metrics = run.get("metrics") or {}
    return int(metrics.get("total_tokens") or 0) if isinstance(metrics, dict) else 0


def session_rows(db: MongoDb, query: str | None, user_id: str | None, page: int) -> dict[str, Any]:
    """One page of sessions for the table, newest first, with total count."""
    rows, total = cast(
        SessionPage,
        db.get_sessions(
            session_name=query or None,
            user_id=user_id or None,
            limit=PAGE_SIZE,
            page=page,
            sort_by="updated_at",
            sort_order="desc",
            deserialize=False,
            include_runs=False,
        ),
    )
    return {
        "total": total,
        "page": page,
        "page_size": PAGE_SIZE,
        "sessions": [
            {
                "session_id": row["session_id"],
                "name": (row.get("session_data") or {}).get("session_name"),
                "type": row.get("session_type"),
                "component": row.get("agent_id") or row.get("team_id") or row.get("workflow_id"),
                "user_id": row.get("user_id"),
                "updated_at": row.get("updated_at"),
            }
            for row in rows
        ],
    }


def transcript(db: MongoDb, session_id: str) -> dict[str, Any] | None:
    """A session's runs as a transcript: input, answer, status, model, tokens, timing."""
    session = cast(dict[str, Any] | None, db.get_session(session_id, deserialize=False))
    if session is None:
        return None
    turns = []
    for run in session.get("runs") or []:
        run_input = run.get("input") or {}
        question = run_input.get("input_content") if isinstance(run_input, dict) else run_input
        metrics = run.get("metrics") or {}
        turns.append(
            {
                "run_id": run.get("run_id"),
                "input": question,
                "content": run.get("content"),
                "status": run.get("status"),
                "model": run.get("model"),
                "tokens": _tokens(run),
                "duration": metrics.get("duration") if isinstance(metrics, dict) else None,
                "created_at": run.get("created_at"),
                "member": run.get("parent_run_id") is not None,
            }
        )
    name = (session.get("session_data") or {}).get("session_name")
    return {"session_id": session_id, "name": name, "user_id": session.get("user_id"), "turns": turns}


def daily_stats(db: MongoDb) -> list[dict[str, Any]]:
    """Runs and tokens per day, oldest first, from agno's daily metrics (by session creation day).

    ``calculate_metrics`` first brings them up to date: one aggregation covering the days not yet
    computed plus today, so the chart costs the same with a thousand runs as with millions.
    """
    db.calculate_metrics()
    records, _ = db.get_metrics()
    out = []
    for record in sorted(records, key=lambda r: str(r.get("date"))):
        runs = sum(int(record.get(f"{kind}_runs_count") or 0) for kind in ("agent", "team", "workflow"))
        token_metrics = record.get("token_metrics") or {}
        if runs:
            out.append(
                {"day": str(record["date"]), "runs": runs, "tokens": int(token_metrics.get("total_tokens") or 0)}
            )
    return out


def build_app(db: MongoDb) -> Any:
    """The dashboard as a FastAPI app (FastAPI comes with the ``os`` extra)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="agno-mongo dashboard")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.get("/api/sessions")
    def sessions(q: str | None = None, user: str | None = None, page: int = 1) -> dict[str, Any]:
        return session_rows(db, q, user, max(page, 1))

    @app.get("/api/sessions/{session_id}")
    def session(session_id: str) -> dict[str, Any]:
        found = transcript(db, session_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such session")
        return found

    @app.get("/api/stats")
    def stats() -> list[dict[str, Any]]:
        return daily_stats(db)

    return app


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agno-mongo dashboard</title>
<style>
 body{font:14px system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
 header{background:#13aa52;color:#fff;padding:10px 18px;font-size:18px;font-weight:600}
 main{display:grid;grid-template-columns:minmax(420px,1fr) 1.2fr;gap:16px;padding:16px}
 section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px}
 h2{font-size:15px;margin:0 0 8px} input{width:100%;padding:6px 8px;box-sizing:border-box;margin-bottom:8px}
 table{width:100%;border-collapse:collapse} td,th{padding:5px 6px;border-bottom:1px solid #eef0f3;text-align:left}
 tbody tr{cursor:pointer} tbody tr:hover{background:#eef8f1} .muted{color:#6b7280;font-size:12px}
 .turn{border-left:3px solid #13aa52;padding:4px 10px;margin:8px 0} .q{font-weight:600} .charts{grid-column:1/3}
 .bar{fill:#13aa52} .tok{fill:#3b82f6} svg text{font-size:10px;fill:#374151}
</style></head><body>
<header>agno-mongo · sessions</header>
<main>
 <section><h2>Sessions <span id="total" class="muted"></span></h2>
  <input id="search" placeholder="Search by session name" autocomplete="off">
  <table><thead><tr><th>Session</th><th>Name</th><th>User</th><th>Updated</th></tr></thead>
  <tbody id="rows"></tbody></table></section>
 <section><h2 id="title">Transcript</h2><div id="transcript" class="muted">Pick a session.</div></section>
 <section class="charts"><h2>Runs and tokens per day</h2><div id="charts"></div></section>
</main>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const when = t => t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) : "";
async function loadSessions() {
  const q = document.getElementById("search").value;
  const data = await (await fetch("/api/sessions?q=" + encodeURIComponent(q))).json();
  document.getElementById("total").textContent = "(" + data.total + ")";
  document.getElementById("rows").innerHTML = data.sessions.map(s =>
    `<tr data-id="${esc(s.session_id)}"><td>${esc(s.session_id)}</td><td>${esc(s.name)}</td>` +
    `<td>${esc(s.user_id)}</td><td class="muted">${when(s.updated_at)}</td></tr>`).join("");
  document.querySelectorAll("#rows tr").forEach(tr => tr.onclick = () => show(tr.dataset.id));
}
async function show(id) {
  const s = await (await fetch("/api/sessions/" + encodeURIComponent(id))).json();
  document.getElementById("title").textContent = "Transcript · " + (s.name || s.session_id);
  document.getElementById("transcript").innerHTML = s.turns.map(t =>
    `<div class="turn"><div class="q">${esc(t.input)}</div><div>${esc(t.content)}</div>` +
    `<div class="muted">${esc(t.status)} · ${esc(t.model)} · ${t.tokens} tokens` +
    `${t.duration ? " · " + t.duration.toFixed(2) + " s" : ""} · ${when(t.created_at)}</div></div>`).join("")
    || "No runs yet.";
}
function bars(rows, key, cls, label) {
  const w = 46, h = 120, max = Math.max(1, ...rows.map(r => r[key]));
  const body = rows.map((r, i) => {
    const bh = Math.round((r[key] / max) * (h - 30));
    return `<rect class="${cls}" x="${i * w + 8}" y="${h - 18 - bh}" width="${w - 16}" height="${bh}"></rect>` +
      `<text x="${i * w + 8}" y="${h - 4}">${r.day.slice(5)}</text>` +
      `<text x="${i * w + 8}" y="${h - 22 - bh}">${r[key]}</text>`;
  }).join("");
  return `<div class="muted">${label}</div><svg class="${key}" width="${Math.max(200, rows.length * w + 16)}" ` +
    `height="${h}">${body}</svg>`;
}
async function loadStats() {
  const rows = await (await fetch("/api/stats")).json();
  const charts = bars(rows, "runs", "bar", "runs") + bars(rows, "tokens", "tok", "tokens");
  document.getElementById("charts").innerHTML = charts;
}
document.getElementById("search").oninput = loadSessions;
loadSessions(); loadStats();
</script></body></html>
"""
