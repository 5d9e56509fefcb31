"""``tail``: print runs as they land, from a change stream where the server has them, else by polling.

Polling is bounded: each poll is one aggregation over the sessions written since the previous
poll (``updated_at`` at or after it, less a little slack for clocks and whole seconds), returning
only their latest runs' headers. A quiet database costs a poll that matches nothing, however many
runs it holds.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, cast

import typer
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.text import Text

from agno_mongo import drivers
from agno_mongo.cli.common import Filters, fmt_time
from agno_mongo.cli.shape import run_summary
from agno_mongo.cli.views import STATUS_STYLES, shorten, stdout_console
from agno_mongo.contract.checks import check_optional_id, check_owner
from agno_mongo.db import MongoDb
from agno_mongo.ops import sessions as session_ops
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import scope_filter

POLL_WINDOW = 100
"""Runs the first read takes (newest first), and the latest runs each poll reads per written session."""
POLL_SLACK_SECONDS = 2
"""A poll also re-reads sessions written this long before the previous poll began (clocks, whole seconds)."""
HEADER_FIELDS = (
    "run_id",
    "parent_run_id",
    "status",
    "agent_id",
    "team_id",
    "workflow_id",
    "model",
    "model_provider",
    "metrics",
    "created_at",
    "input",
    "content",
)

_RUN_SLOT = re.compile(r"^runs\.\d+$")


def runs_from_change(event: Mapping[str, Any], since: float = 0) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(session id, owner, run) for each run a change event on the sessions collection wrote.

    ``$push`` and positional ``$set`` arrive as ``runs.N`` fields; a session's first run arrives
    with the inserted document. A whole ``runs`` array in an update comes from ``$pull`` (old runs
    moving to overflow, a run deleted): of those, only runs created at ``since`` or later count.
    Owner comes from the run itself (agno records ``user_id`` on it).
    """
    session_id = str((event.get("documentKey") or {}).get("_id"))
    operation = event.get("operationType")
    runs: list[Any] = []
    if operation in {"insert", "replace"}:
        runs = list((event.get("fullDocument") or {}).get("runs") or [])
    elif operation == "update":
        updated = (event.get("updateDescription") or {}).get("updatedFields") or {}
        for key, value in updated.items():
            if key == "runs" and isinstance(value, list):
                runs.extend(run for run in value if isinstance(run, dict) and (run.get("created_at") or 0) >= since)
            elif _RUN_SLOT.match(key):
                runs.append(value)
    return [
        (session_id, run.get("user_id"), run) for run in runs if isinstance(run, dict) and run.get("run_id") is not None
    ]


def tail_event(session_id: str, user_id: str | None, run: Mapping[str, Any]) -> dict[str, Any]:
    """One line of ``tail`` output, as a dict."""
    summary = run_summary(run)
    return {
        "session_id": session_id,
        "user_id": user_id,
        **{key: summary[key] for key in ("run_id", "status", "kind", "component_id", "model", "total_tokens")},
        "duration": summary["duration"],
        "created_at": summary["created_at"],
        "input": summary["input"],
        "content": summary["content"],
    }


def matches(event: Mapping[str, Any], filters: Filters, session: str | None) -> bool:
    """Whether a tailed run passes the command's filters (change events are not filtered by the server)."""
    kind, component_id = filters.component()
    if session is not None and event["session_id"] != session:
        return False
    if filters.user is not None and event["user_id"] != filters.user:
        return False
    return component_id is None or (event["kind"] == kind and event["component_id"] == component_id)


class Seen:
    """Last status printed per run id (bounded), so a run prints when new and when its status changes."""

    def __init__(self, size: int = 10_000) -> None:
        self._status: OrderedDict[str, object] = OrderedDict()
        self._size = size

    def knows(self, run_id: object) -> bool:
        return str(run_id) in self._status

    def fresh(self, event: Mapping[str, Any]) -> bool:
        key = str(event["run_id"])
        if key in self._status and self._status[key] == event["status"]:
            return False
        self._status[key] = event["status"]
        self._status.move_to_end(key)
        while len(self._status) > self._size:
            self._status.popitem(last=False)
        return True


def runs_page(db: MongoDb, **kwargs: Any) -> tuple[list[dict[str, Any]], int | None]:
    """``get_runs`` as rows (``run_data`` holds the run) with the total."""
    return cast(tuple[list[dict[str, Any]], int | None], db.get_runs(deserialize=False, **kwargs))


def latest_runs(db: MongoDb, filters: Filters, session: str | None, count: int) -> list[dict[str, Any]]:
    """The ``count`` newest runs as tail events, oldest first."""
    if count <= 0:
        return []
    rows, _ = runs_page(
        db, session_id=session, **filters.run_kwargs(), limit=count, page=1, sort_by="created_at", sort_order="desc"
    )
    return [tail_event(row["session_id"], row.get("user_id"), row["run_data"]) for row in reversed(rows)]


def print_tail_event(event: Mapping[str, Any], json_mode: bool) -> None:
    """One run, one line."""
    if json_mode:
        typer.echo(json.dumps(event, default=str, ensure_ascii=False))
        return
    who = event["component_id"] or "-"
    line = Text()
    line.append(fmt_time(event["created_at"])[5:] or "--:--:--", style="dim")
    line.append(f"  {str(event['status'] or '?'):<9}", style=STATUS_STYLES.get(str(event["status"]), ""))
    line.append(f"  {who}", style="cyan")
    line.append(f"  {event['user_id'] or '-'}  {event['session_id']}  {event['total_tokens']} tok")
    line.append(f"  “{shorten(event['input'], 60)}”", style="bold")
    line.append(f" → “{shorten(event['content'], 80)}”")
    console = stdout_console()
    if console.is_terminal:
        console.print(line, no_wrap=True, overflow="ellipsis")
    else:  # a pipe or file gets whole lines
        console.print(line, soft_wrap=True)
    sys.stdout.flush()


def poll_plan(filters: Filters, session: str | None, since: int, per_session: int) -> Plan[list[dict[str, Any]]]:
    """Tail events for the latest ``per_session`` runs of every session written at ``since`` or later."""
    owner = scope_filter(check_owner("user_id", filters.user))
    match: dict[str, Any] = {"updated_at": {"$gte": since}, **owner}
    if check_optional_id("session_id", session) is not None:
        match["_id"] = session
    latest = {"$slice": [{"$ifNull": ["$runs", []]}, -per_session]}
    header = {name: f"$$run.{name}" for name in HEADER_FIELDS}
    documents: list[dict[str, Any]] = yield Command(
        session_ops.SESSIONS,
        "aggregate",
        {
            "pipeline": [
                {"$match": match},
                {"$project": {"user_id": 1, "runs": {"$map": {"input": latest, "as": "run", "in": header}}}},
            ]
        },
    )
    return [
        tail_event(str(document["_id"]), document.get("user_id"), run)
        for document in documents
        for run in document.get("runs") or []
        if isinstance(run, dict) and run.get("run_id") is not None
    ]


def follow(
    db: MongoDb,
    filters: Filters,
    session: str | None,
    *,
    deadline: float | None,
    interval: float,
    poll: bool,
    seen: Seen,
    emit: Callable[[Mapping[str, Any]], None],
    initial: int,
) -> str:
    """Print new runs until ``deadline``: from a change stream where the server has them, else by polling.

    The stream is opened (or the polling clock started) before the latest runs are printed, so
    nothing lands in between unseen. A polled run prints if it was created since the start, or if
    it is one already seen whose status changed. Returns the mode used ("change stream" or "polling").
    """
    started = time.time()
    stream = None
    if not poll:
        try:
            stream = db.database[db.session_table_name].watch(
                [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}],
                max_await_time_ms=max(1, int(interval * 1000)),
            )
        except PyMongoError as error:
            reason = getattr(error, "details", None) or {}
            note = reason.get("errmsg") if isinstance(reason, Mapping) else None
            message = f"change streams unavailable ({note or error}); polling every {interval:g} s"
            Console(stderr=True, soft_wrap=True).print(Text(message, style="dim"))
    recent = latest_runs(db, filters, session, max(initial, POLL_WINDOW))
    for position, event in enumerate(recent):
        if seen.fresh(event) and position >= len(recent) - initial:
            emit(event)
    polled_from = started
    try:
        while deadline is None or time.monotonic() < deadline:
            if stream is not None:
                change = stream.try_next()
                if change is None:
                    continue
                for session_id, user_id, run in runs_from_change(change, since=started):
                    event = tail_event(session_id, user_id, run)
                    if matches(event, filters, session) and seen.fresh(event):
                        emit(event)
                continue
            remaining = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(0.0, remaining))
            since, polled_from = int(polled_from) - POLL_SLACK_SECONDS, time.time()
            events = drivers.run_sync(db, poll_plan(filters, session, since, POLL_WINDOW))
            for event in sorted(events, key=lambda item: (item["created_at"] or 0, str(item["run_id"]))):
                new = isinstance(event["created_at"], int | float) and event["created_at"] >= int(started)
                if (new or seen.knows(event["run_id"])) and matches(event, filters, session) and seen.fresh(event):
                    emit(event)
    finally:
        if stream is not None:
            stream.close()
    return "change stream" if stream is not None else "polling"
