"""A local dashboard over stored sessions: a searchable table, transcripts, runs and tokens per day.

``agno-mongo dashboard`` serves it; ``build_app(db)`` returns the FastAPI app for tests. It binds to
127.0.0.1: it is a tool for the person at this machine, with no authentication.

Looking never writes: every GET reads (``get_session``, ``get_metrics``, one search ``find``), on a
view of the store that creates no indexes. The daily chart shows agno's stored metrics records;
the page's Refresh button POSTs ``/api/stats/refresh``, which runs ``calculate_metrics`` (a write).
A transcript has its own address, ``/?session=<id>``, to open or share directly.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from agno_mongo import drivers
from agno_mongo.cli.shape import session_row, transcript
from agno_mongo.db import MongoDb
from agno_mongo.ops import sessions as session_ops
from agno_mongo.ops.command import Plan
from agno_mongo.ops.common import page_of_plan, scope_filter
from agno_mongo.ops.metrics import daily_totals

PAGE_SIZE = 25
SEARCHED = ("session_data.session_name", "_id", "user_id")
"""What the search box matches (case-insensitive, anywhere in the text): names, session ids, user ids."""
LISTED = {"runs": False, "spilled": False, **session_ops.INTERNAL}


def search_filter(query: str | None, user_id: str | None) -> dict[str, Any]:
    """Sessions whose name, id or owner contains ``query``; only ``user_id``'s when given."""
    match: dict[str, Any] = scope_filter(user_id or None)
    if query:
        pattern = {"$regex": re.escape(query), "$options": "i"}
        match["$or"] = [{field: pattern} for field in SEARCHED]
    return match


def search_plan(query: str | None, user_id: str | None, page: int) -> Plan[dict[str, Any]]:
    """One page of matching sessions, last updated first (the ``updated_id`` order), and the total."""
    documents, total = yield from page_of_plan(
        session_ops.SESSIONS,
        search_filter(query, user_id),
        [("updated_at", -1), ("_id", -1)],
        PAGE_SIZE,
        (page - 1) * PAGE_SIZE,
        LISTED,
        count=True,
    )
    return {"total": total, "page": page, "page_size": PAGE_SIZE, "sessions": [session_row(d) for d in documents]}


def session_rows(db: MongoDb, query: str | None, user_id: str | None, page: int) -> dict[str, Any]:
    """One page of sessions for the table, newest first, with the total count."""
    return drivers.run_sync(db, search_plan(query, user_id, max(page, 1)))


def session_transcript(db: MongoDb, session_id: str) -> dict[str, Any] | None:
    """A session as ``agno-mongo sessions show --json`` prints it (:func:`agno_mongo.cli.shape.transcript`)."""
    session = db.get_session(session_id, deserialize=False)
    return transcript(session) if isinstance(session, dict) else None


def daily_stats(db: MongoDb) -> list[dict[str, Any]]:
    """Runs and tokens per day with runs, oldest first, from agno's stored daily metrics (read only)."""
    records, _ = db.get_metrics()
    days = daily_totals(records)
    return [{"day": day, "runs": t["runs"], "tokens": t["tokens"]} for day, t in sorted(days.items()) if t["runs"]]


def read_only(db: MongoDb) -> MongoDb:
    """The same store and client, creating no indexes on first use: a GET must never write."""
    reader = copy.copy(db)
    reader.create_indexes_on_first_use = False
    return reader


def build_app(db: MongoDb) -> Any:
    """The dashboard as a FastAPI app (FastAPI comes with the ``os`` extra)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="agno-mongo dashboard")
    reader = read_only(db)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.get("/api/sessions")
    def sessions(q: str | None = None, user: str | None = None, page: int = 1) -> dict[str, Any]:
        return session_rows(reader, q, user, page)

    @app.get("/api/sessions/{session_id}")
    def session(session_id: str) -> dict[str, Any]:
        found = session_transcript(reader, session_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such session")
        return found

    @app.get("/api/stats")
    def stats() -> list[dict[str, Any]]:
        return daily_stats(reader)

    @app.post("/api/stats/refresh")
    def refresh() -> list[dict[str, Any]]:
        """Recalculate agno's daily metrics (``calculate_metrics``: a write), then answer as GET does."""
        db.calculate_metrics()
        return daily_stats(reader)

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
  <input id="search" placeholder="Search by name, session id or user id" autocomplete="off">
  <table><thead><tr><th>Session</th><th>Name</th><th>User</th><th>Updated</th></tr></thead>
  <tbody id="rows"></tbody></table></section>
 <section><h2><span id="title">Transcript</span> <a id="permalink" class="muted" hidden>link</a></h2>
  <div id="transcript" class="muted">Pick a session.</div></section>
 <section class="charts"><h2>Runs and tokens per day <button id="refresh" type="button">Refresh</button>
  <span class="muted">(agno's stored daily metrics, by session creation day)</span></h2>
  <div id="charts"></div></section>
</main>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const link = id => "?session=" + encodeURIComponent(id);
const when = t => t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) : "";
async function loadSessions() {
  const q = document.getElementById("search").value;
  const data = await (await fetch("/api/sessions?q=" + encodeURIComponent(q))).json();
  document.getElementById("total").textContent = "(" + data.total + ")";
  document.getElementById("rows").innerHTML = data.sessions.map(s =>
    `<tr data-id="${esc(s.session_id)}"><td><a href="${link(s.session_id)}">${esc(s.session_id)}</a></td>` +
    `<td>${esc(s.name)}</td>` +
    `<td>${esc(s.user_id)}</td><td class="muted">${when(s.updated_at)}</td></tr>`).join("");
  document.querySelectorAll("#rows tr").forEach(tr => tr.onclick = event => {
    event.preventDefault(); history.pushState(null, "", link(tr.dataset.id)); show(tr.dataset.id);
  });
}
async function show(id) {
  const answer = await fetch("/api/sessions/" + encodeURIComponent(id));
  const permalink = document.getElementById("permalink");
  if (!answer.ok) {
    document.getElementById("title").textContent = "Transcript";
    document.getElementById("transcript").textContent = "No session " + id + ".";
    permalink.hidden = true;
    return;
  }
  const s = await answer.json();
  document.getElementById("title").textContent = "Transcript · " + (s.name || s.session_id);
  permalink.href = link(s.session_id); permalink.hidden = false;
  document.getElementById("transcript").innerHTML = s.runs.map(t =>
    `<div class="turn"><div class="q">${esc(t.input)}</div><div>${esc(t.content)}</div>` +
    `<div class="muted">${esc(t.status)} · ${esc(t.model)} · ${t.total_tokens} tokens` +
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
function drawStats(rows) {
  document.getElementById("charts").innerHTML = rows.length
    ? bars(rows, "runs", "bar", "runs") + bars(rows, "tokens", "tok", "tokens")
    : '<div class="muted">No stored daily metrics yet: press Refresh to calculate them.</div>';
}
async function loadStats() { drawStats(await (await fetch("/api/stats")).json()); }
async function refreshStats() { drawStats(await (await fetch("/api/stats/refresh", {method: "POST"})).json()); }
function fromAddress() {
  const id = new URLSearchParams(location.search).get("session");
  if (id) show(id);
}
document.getElementById("search").oninput = loadSessions;
document.getElementById("refresh").onclick = refreshStats;
window.onpopstate = fromAddress;
loadSessions(); loadStats(); fromAddress();
</script></body></html>
"""
