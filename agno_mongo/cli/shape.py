"""Stored sessions and runs as plain values: transcripts, run headers, table rows. Pure, no I/O.

One shaping for every reader: ``agno-mongo sessions show`` prints it, ``--json`` emits it, the
dashboard serves it (``/api/sessions/{id}`` answers exactly ``sessions show --json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def content_text(content: object) -> str:
    """Message or run content as text: strings as they are, content parts joined, the rest as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        if parts:
            return "\n".join(parts)
    return json.dumps(content, default=str, ensure_ascii=False)


def run_input(run: Mapping[str, Any]) -> str:
    """What the user asked in a run (``input.input_content``)."""
    given = run.get("input")
    return content_text(given.get("input_content") if isinstance(given, Mapping) else given)


def run_component(run: Mapping[str, Any]) -> tuple[str, str | None]:
    """(kind, id) of who ran it: the agent, else the team, else the workflow."""
    for kind in ("agent", "team", "workflow"):
        if run.get(f"{kind}_id"):
            return kind, str(run[f"{kind}_id"])
    return "agent", None


def run_metrics(run: Mapping[str, Any]) -> dict[str, Any]:
    """Token counts and timing of a run (zeros and ``None`` where agno recorded nothing)."""
    metrics = run.get("metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}

    def number(key: str) -> int:
        value = metrics.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    duration = metrics.get("duration")
    first_token = metrics.get("time_to_first_token")
    return {
        "input_tokens": number("input_tokens"),
        "output_tokens": number("output_tokens"),
        "total_tokens": number("total_tokens"),
        "duration": float(duration) if isinstance(duration, int | float) else None,
        "time_to_first_token": float(first_token) if isinstance(first_token, int | float) else None,
    }


def run_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's header facts: ids, status, model, tokens, timing, question and answer."""
    kind, component_id = run_component(run)
    return {
        "run_id": run.get("run_id"),
        "parent_run_id": run.get("parent_run_id"),
        "kind": kind,
        "component_id": component_id,
        "status": run.get("status"),
        "model": run.get("model"),
        "model_provider": run.get("model_provider"),
        **run_metrics(run),
        "created_at": run.get("created_at"),
        "input": run_input(run),
        "content": content_text(run.get("content")),
    }


def tool_call_parts(call: object) -> dict[str, Any] | None:
    """An OpenAI-style tool call as ``{id, name, arguments}`` with JSON-string arguments."""
    if not isinstance(call, Mapping):
        return None
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    name = function.get("name") or call.get("name")
    if not name:
        return None
    arguments = function.get("arguments", call.get("arguments"))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments or {}, default=str, ensure_ascii=False)
    return {"id": call.get("id"), "name": str(name), "arguments": arguments}


def run_messages(run: Mapping[str, Any], *, history: bool = False) -> list[dict[str, Any]]:
    """A run's own messages as plain dicts (role, content, tool calls); replayed history left out.

    A run saved without messages still reads as a question and an answer.
    """
    out: list[dict[str, Any]] = []
    for message in run.get("messages") or []:
        if not isinstance(message, Mapping) or (message.get("from_history") and not history):
            continue
        role = {"developer": "system", "model": "assistant"}.get(str(message.get("role")), str(message.get("role")))
        calls = [parts for call in message.get("tool_calls") or [] if (parts := tool_call_parts(call))]
        out.append(
            {
                "role": role,
                "content": content_text(message.get("content")),
                "tool_calls": calls,
                "tool_call_id": message.get("tool_call_id"),
                "tool_name": message.get("tool_name"),
            }
        )
    if out:
        return out
    fallback: list[dict[str, Any]] = []
    if run_input(run):
        fallback.append({"role": "user", "content": run_input(run), "tool_calls": [], "tool_call_id": None})
    if run.get("content") is not None:
        fallback.append({"role": "assistant", "content": content_text(run.get("content")), "tool_calls": []})
    return fallback


def transcript(session: Mapping[str, Any]) -> dict[str, Any]:
    """A session as a transcript: its row's facts, then each run's header and messages, oldest first."""
    runs = [run for run in session.get("runs") or [] if isinstance(run, Mapping)]
    return {**session_row(session), "runs": [{**run_summary(run), "messages": run_messages(run)} for run in runs]}


def session_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One session as a listing row (``get_sessions`` with ``deserialize=False``, or a raw document)."""
    session_data = row.get("session_data")
    return {
        "session_id": row.get("session_id") or row.get("_id"),
        "name": session_data.get("session_name") if isinstance(session_data, Mapping) else None,
        "session_type": row.get("session_type"),
        "component_id": row.get("agent_id") or row.get("team_id") or row.get("workflow_id"),
        "user_id": row.get("user_id"),
        "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at"),
    }
