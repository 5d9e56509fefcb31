"""``export few-shot``: stored runs as OpenAI chat fine-tuning JSONL, streamed one page of sessions at a time.

Pages are read by keyset (``created_at``, ``_id`` greater than the last one seen), never with a
growing ``skip``: every page costs the same, and sessions created meanwhile land on later pages
instead of shifting the pages still to come. Each page is one ``find`` plus, when some of its
sessions moved old runs to overflow documents, one read of those chunks (the same
:func:`~agno_mongo.ops.sessions.attach_overflow_plan` step ``get_sessions`` uses).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from rich.progress import Progress

from agno_mongo import drivers
from agno_mongo.cli.common import Filters
from agno_mongo.cli.shape import run_messages
from agno_mongo.contract.checks import check_int, check_optional_id, check_owner, check_session_type, check_str
from agno_mongo.contract.sessions import session_out
from agno_mongo.db import MongoDb
from agno_mongo.ops import sessions as ops
from agno_mongo.ops.command import Command, Plan

Key = tuple[Any, Any]
"""(``created_at``, ``_id``) of the last session read: the next page starts after it."""


def chat_message(message: Mapping[str, Any], *, tools: bool) -> dict[str, Any] | None:
    """One message in OpenAI's chat fine-tuning shape; ``None`` to leave it out."""
    role = message["role"]
    text = message.get("content") or ""
    if role == "system":
        return {"role": role, "content": text} if text else None
    if role == "user":
        return {"role": role, "content": text}
    if role == "assistant":
        calls = (message.get("tool_calls") or []) if tools else []
        if not calls:
            return {"role": "assistant", "content": text} if text else None
        out: dict[str, Any] = {"role": "assistant", "content": text or None}
        out["tool_calls"] = [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
            for call in calls
        ]
        return out
    if role == "tool" and tools and message.get("tool_call_id"):
        return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": text}
    return None


def tool_calls_answered(messages: list[dict[str, Any]]) -> bool:
    """Every tool call has an id and a tool reply after it, and every reply answers an earlier call."""
    pending: set[str] = set()
    for message in messages:
        for call in message.get("tool_calls") or []:
            if not call.get("id"):
                return False
            pending.add(call["id"])
        if message["role"] == "tool":
            if message["tool_call_id"] not in pending:
                return False
            pending.discard(message["tool_call_id"])
    return not pending


def few_shot_example(
    run: Mapping[str, Any], *, tools: bool = True, history: bool = False
) -> tuple[dict[str, Any] | None, str | None]:
    """A run as one fine-tuning example ``{"messages": [...]}``, or ``(None, why it was skipped)``.

    Tool calls and tool replies stay unless ``tools`` is false; a run whose calls and replies do not
    pair up is exported without them rather than as an example the fine-tuning API would reject.
    """
    own = run_messages(run, history=history)
    messages = [out for message in own if (out := chat_message(message, tools=tools))]
    if tools and not tool_calls_answered(messages):
        messages = [out for message in own if (out := chat_message(message, tools=False))]
    if not any(message["role"] == "user" for message in messages):
        return None, "no user message"
    last = messages[-1]
    if last["role"] != "assistant" or not last.get("content") or last.get("tool_calls"):
        return None, "no final answer"
    return {"messages": messages}, None


def session_query(filters: Filters) -> dict[str, Any]:
    """The ``get_sessions`` filter for ``filters``, checked the same way (bad input names the field)."""
    kind, component_id = filters.component()
    return ops.session_list_filter(
        session_type=check_session_type(kind),
        user_id=check_owner("user_id", filters.user),
        component_id=check_optional_id("component_id", component_id),
        session_name=None if filters.name is None else check_str("session_name", filters.name),
        start_timestamp=check_int("start_timestamp", filters.since),
        end_timestamp=check_int("end_timestamp", filters.until),
    )


def after(key: Key | None) -> dict[str, Any]:
    """Sessions after ``key`` in (``created_at``, ``_id``) order."""
    if key is None:
        return {}
    created, session_id = key
    return {"$or": [{"created_at": {"$gt": created}}, {"created_at": created, "_id": {"$gt": session_id}}]}


def page_plan(query: dict[str, Any], key: Key | None, limit: int) -> Plan[tuple[list[dict[str, Any]], Key | None]]:
    """One keyset page of whole sessions, oldest first, overflowed runs put back; and the page's last key
    (``None`` when the page was short: it was the last one)."""
    keyset = after(key)
    documents: list[dict[str, Any]] = yield Command(
        ops.SESSIONS,
        "find",
        {
            "filter": {"$and": [query, keyset]} if keyset else query,
            "sort": [("created_at", 1), ("_id", 1)],
            "limit": limit,
            "projection": ops.INTERNAL,
        },
    )
    last = (documents[-1].get("created_at"), documents[-1]["_id"]) if len(documents) == limit else None
    whole: list[dict[str, Any]] = yield from ops.attach_overflow_plan(documents)
    return whole, last


def count_plan(query: dict[str, Any]) -> Plan[int]:
    """How many sessions match (only asked for when a progress bar is drawn)."""
    total: int = yield Command(ops.SESSIONS, "count_documents", {"filter": query})
    return total


def iter_sessions(
    db: MongoDb, filters: Filters, page_size: int, on_total: Callable[[int], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Every matching session with all its runs (agno's dict shape), oldest first, one page in memory."""
    query = session_query(filters)
    kind = filters.component()[0]
    if on_total is not None:
        on_total(drivers.run_sync(db, count_plan(query)))
    key: Key | None = None
    while True:
        documents, key = drivers.run_sync(db, page_plan(query, key, page_size))
        for document in documents:
            yield session_out(document, kind, False)
        if key is None:
            return


@dataclass
class ExportStats:
    """What an export did."""

    sessions: int = 0
    runs: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def export_few_shot(
    db: MongoDb,
    filters: Filters,
    out: IO[str],
    *,
    tools: bool = True,
    history: bool = False,
    completed_only: bool = False,
    page_size: int = 100,
    max_examples: int | None = None,
    progress: Progress | None = None,
) -> ExportStats:
    """Write one JSON line per exported run; memory stays at one page of sessions."""
    stats = ExportStats()
    task = progress.add_task("exporting", total=None, note="") if progress is not None else None

    def set_total(total: int) -> None:
        if progress is not None and task is not None:
            progress.update(task, total=total)

    counted = progress is not None and not progress.disable
    for session in iter_sessions(db, filters, page_size, set_total if counted else None):
        stats.sessions += 1
        for run in session.get("runs") or []:
            stats.runs += 1
            if completed_only and run.get("status") != "COMPLETED":
                stats.skip("not completed")
                continue
            example, reason = few_shot_example(run, tools=tools, history=history)
            if example is None:
                stats.skip(reason or "unusable")
                continue
            out.write(json.dumps(example, ensure_ascii=False, default=str) + "\n")
            stats.written += 1
            if max_examples is not None and stats.written >= max_examples:
                return stats
        if progress is not None and task is not None:
            progress.update(task, advance=1, note=f"{stats.written} examples")
    return stats
