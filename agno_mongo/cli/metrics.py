"""``metrics``: runs, sessions, users and tokens per day and per agent, over a window of days.

From the runs (default): one aggregation reads only the sessions written in the window
(``updated_at`` at or after its first second, ``created_at`` at or before its last) and, of those,
only the runs created in it, projected to the few fields counted; runs moved to overflow documents
come back with their sessions (:func:`~agno_mongo.ops.sessions.attach_overflow_plan`). Nothing outside
the window travels, however many runs the database holds.

From the records (``--from-records``): agno's stored daily metrics (``get_metrics``), shaped by
:func:`agno_mongo.ops.metrics.daily_totals`, the same function the dashboard uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.table import Table
from rich.text import Text

from agno_mongo import drivers
from agno_mongo.cli.common import Filters, day_of
from agno_mongo.cli.shape import run_component, run_metrics
from agno_mongo.cli.views import bar, sparkline, stdout_console
from agno_mongo.contract.checks import check_optional_id, check_owner
from agno_mongo.db import MongoDb
from agno_mongo.ops import sessions as session_ops
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import scope_filter
from agno_mongo.ops.metrics import DAY_TOTAL_KEYS, daily_totals

RUN_FIELDS = ("run_id", "created_at", "agent_id", "team_id", "workflow_id", "metrics")


@dataclass
class Tally:
    """Runs, distinct sessions, distinct users and tokens of one bucket (a day, an agent)."""

    runs: int = 0
    tokens: int = 0
    sessions: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def add(self, session_id: str, user_id: str | None, run: Mapping[str, Any]) -> None:
        self.runs += 1
        self.tokens += run_metrics(run)["total_tokens"]
        self.sessions.add(session_id)
        if user_id is not None:
            self.users.add(str(user_id))

    def as_dict(self) -> dict[str, int]:
        return {"runs": self.runs, "sessions": len(self.sessions), "users": len(self.users), "tokens": self.tokens}


def days_between(first: date, last: date) -> list[str]:
    """Every ISO day from ``first`` through ``last``."""
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]


def in_window(start: int, end: int, filters: Filters, run: str = "$$run") -> dict[str, Any]:
    """Server-side: the run was created in ``[start, end]`` by the one component asked for, if any."""
    created = {"$ifNull": [f"{run}.created_at", None]}
    conditions: list[Any] = [{"$gte": [created, start]}, {"$lte": [created, end]}]
    kind, component_id = filters.component()
    if component_id is not None:
        conditions.append({"$eq": [f"{run}.{kind}_id", component_id]})
    return {"$and": conditions}


def kept(run: Mapping[str, Any], start: int, end: int, filters: Filters) -> bool:
    """Python twin of :func:`in_window`, for runs read back from overflow documents."""
    created = run.get("created_at")
    if not isinstance(created, int | float) or not start <= created <= end:
        return False
    kind, component_id = filters.component()
    return component_id is None or run.get(f"{kind}_id") == component_id


def window_plan(filters: Filters, start: int, end: int) -> Plan[list[dict[str, Any]]]:
    """The sessions written in ``[start, end]`` with only their runs created then (and the owner).

    A session holding a run created at ``t`` was last written at ``t`` or later, so
    ``updated_at >= start`` keeps every session that can hold one; ``created_at <= end`` drops those
    begun after the window.
    """
    match: dict[str, Any] = {"updated_at": {"$gte": start}, "created_at": {"$lte": end}}
    match.update(scope_filter(check_owner("user_id", filters.user)))
    check_optional_id("component_id", filters.component()[1])
    runs = {"$filter": {"input": {"$ifNull": ["$runs", []]}, "as": "run", "cond": in_window(start, end, filters)}}
    fields = {name: f"$$run.{name}" for name in RUN_FIELDS}
    documents: list[dict[str, Any]] = yield Command(
        session_ops.SESSIONS,
        "aggregate",
        {
            "pipeline": [
                {"$match": match},
                {
                    "$project": {
                        "session_id": 1,
                        "user_id": 1,
                        "spilled": 1,
                        "runs": {"$map": {"input": runs, "as": "run", "in": fields}},
                    }
                },
            ]
        },
    )
    if any(document.get("spilled") for document in documents):
        documents = yield from session_ops.attach_overflow_plan(documents)
    for document in documents:
        document["runs"] = [run for run in document.get("runs") or [] if kept(run, start, end, filters)]
    return documents


def metrics_from_runs(db: MongoDb, filters: Filters, first: date, last: date) -> dict[str, Any]:
    """Per day and per agent totals from the runs created from ``first`` through ``last`` (UTC days)."""
    start = int(datetime.combine(first, datetime.min.time(), tzinfo=UTC).timestamp())
    end = int(datetime.combine(last, datetime.max.time(), tzinfo=UTC).timestamp())
    per_day: dict[str, Tally] = {day: Tally() for day in days_between(first, last)}
    per_agent: dict[tuple[str, str | None], Tally] = {}
    total = Tally()
    for document in drivers.run_sync(db, window_plan(filters, start, end)):
        session_id, user_id = str(document["_id"]), document.get("user_id")
        for run in document["runs"]:
            for tally in (
                per_day.setdefault(day_of(run["created_at"]) or "", Tally()),
                per_agent.setdefault(run_component(run), Tally()),
                total,
            ):
                tally.add(session_id, user_id, run)
    return {
        "source": "runs",
        "since": first.isoformat(),
        "until": last.isoformat(),
        "days": [{"day": day, **tally.as_dict()} for day, tally in sorted(per_day.items())],
        "agents": [
            {"kind": kind, "component_id": component_id, **tally.as_dict()}
            for (kind, component_id), tally in sorted(per_agent.items(), key=lambda item: -item[1].runs)
        ],
        "totals": total.as_dict(),
    }


def metrics_from_records(db: MongoDb, user: str | None, first: date, last: date, refresh: bool) -> dict[str, Any]:
    """Per day totals from agno's stored daily metrics (``get_metrics``), recalculated first if asked.

    Stored records count sessions on the day they were created and users per owner bucket; they
    have no per-agent split.
    """
    if refresh:
        db.calculate_metrics()
    records, _ = db.get_metrics(starting_date=first, ending_date=last, user_id=user)
    per_day = {day: dict.fromkeys(DAY_TOTAL_KEYS, 0) for day in days_between(first, last)}
    per_day.update(daily_totals(records))
    days = [{"day": day, **values} for day, values in sorted(per_day.items())]
    totals: dict[str, int | None] = {key: sum(values[key] for values in per_day.values()) for key in DAY_TOTAL_KEYS}
    totals["users"] = None  # records count users per day; their sum is not a number of distinct users
    return {
        "source": "records",
        "since": first.isoformat(),
        "until": last.isoformat(),
        "records": len(records),
        "days": days,
        "agents": [],
        "totals": totals,
    }


def window(since: int | None, until: int | None, now: float) -> tuple[date, date]:
    """The days asked for: ``--until`` (default today), ``--since`` (default 29 days before it)."""
    last = datetime.fromtimestamp(until if until is not None else now, UTC).date()
    first = datetime.fromtimestamp(since, UTC).date() if since is not None else last - timedelta(29)
    return first, last


def print_metrics(report: Mapping[str, Any]) -> None:
    """Per-day table with a bar per day, sparklines, and the per-agent table."""
    console = stdout_console()
    days = report["days"]
    top = max((day["runs"] for day in days), default=0)
    source = "stored daily records" if report["source"] == "records" else "runs"
    table = Table(title=f"Per day, {report['since']} to {report['until']} (UTC, from {source})", title_justify="left")
    for column in ("day", "runs", "sessions", "users", "tokens"):
        table.add_column(column, justify="left" if column == "day" else "right")
    table.add_column("runs chart")
    for day in days:
        table.add_row(
            day["day"],
            str(day["runs"]),
            str(day["sessions"]),
            str(day["users"]),
            f"{day['tokens']:,}",
            Text(bar(day["runs"], top, 30), style="green"),
        )
    totals = report["totals"]
    table.add_section()
    users = "-" if totals["users"] is None else str(totals["users"])
    table.add_row("total", str(totals["runs"]), str(totals["sessions"]), users, f"{totals['tokens']:,}")
    console.print(table)
    console.print(Text("runs   ", style="dim") + Text(sparkline(day["runs"] for day in days), style="green"))
    console.print(Text("tokens ", style="dim") + Text(sparkline(day["tokens"] for day in days), style="blue"))
    if report["source"] == "records":
        console.print(Text(f"{report['records']} stored records; per-agent totals need the runs scan", style="dim"))
        return
    agents = report["agents"]
    most = max((agent["runs"] for agent in agents), default=0)
    per_agent = Table(title="Per agent / team / workflow", title_justify="left")
    for column in ("kind", "id", "runs", "sessions", "users", "tokens"):
        per_agent.add_column(column, justify="left" if column in {"kind", "id"} else "right")
    per_agent.add_column("runs chart")
    for agent in agents:
        per_agent.add_row(
            agent["kind"],
            agent["component_id"] or "-",
            str(agent["runs"]),
            str(agent["sessions"]),
            str(agent["users"]),
            f"{agent['tokens']:,}",
            Text(bar(agent["runs"], most, 20), style="cyan"),
        )
    console.print(per_agent)
