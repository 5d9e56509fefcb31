"""``agno-mongo``: inspect, export and check agno sessions stored in MongoDB from a terminal.

Every command reads through the public :class:`~agno_mongo.MongoDb` API (``get_sessions``,
``get_session``, ``get_runs``, ``get_metrics``, ``rename_session``), so it sees exactly what an agent
would, with the same filters and ownership rules. Only ``doctor`` (server facts, indexes, document
sizes) and ``tail``'s change stream talk to the server directly: no storage method answers those.

Every command takes ``--url`` (or ``MONGODB_URL``), ``--db`` and ``--json``. Long work streams page by
page (``export few-shot`` holds one page of sessions at a time, whatever the total) and shows a
progress bar on a terminal.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn, cast

import typer
from pymongo import MongoClient
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from agno_mongo.db import DRIVER_INFO, TTL_INDEX_NAME, MongoDb
from agno_mongo.domains import INDEXES
from agno_mongo.errors import InvalidInputError

app = typer.Typer(
    name="agno-mongo",
    help="Inspect, export and check agno sessions stored in MongoDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sessions_app = typer.Typer(help="List, read and rename sessions.", no_args_is_help=True)
export_app = typer.Typer(help="Export stored runs.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.add_typer(export_app, name="export")

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's document size limit (``maxBsonObjectSize``)."""
SERVER_TIMEOUT_MS = 10_000
"""How long a command waits for a server before the CLI says it cannot reach it."""

# --- options every command shares ----------------------------------------------------------------

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="MONGODB_URL", show_envvar=True, help="MongoDB connection string."),
]
DbOption = Annotated[str, typer.Option("--db", help="Database name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
AgentOption = Annotated[str | None, typer.Option("--agent", help="Only this agent id.")]
TeamOption = Annotated[str | None, typer.Option("--team", help="Only this team id.")]
WorkflowOption = Annotated[str | None, typer.Option("--workflow", help="Only this workflow id.")]
UserOption = Annotated[str | None, typer.Option("--user", help="Only this user's sessions.")]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="From this time: YYYY-MM-DD, ISO datetime, epoch seconds, or 7d / 12h ago (UTC)."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Up to this time, inclusive (a bare date means the whole day).")
]
NameOption = Annotated[str | None, typer.Option("--name", help="Session name contains this (case-insensitive).")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error on stderr and stop with ``code``."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def first_reason(error: Exception) -> str:
    """A server selection error without PyMongo's timeout and topology details."""
    return re.split(r" \(configured timeouts|, Timeout: ", str(error))[0]


@contextmanager
def open_store(url: str | None, db_name: str) -> Iterator[MongoDb]:
    """A ``MongoDb`` on its own client, closed afterwards; server and input errors become clean messages."""
    if not url:
        fail("no MongoDB URL: pass --url mongodb://HOST:PORT or set MONGODB_URL", code=2)
    options: dict[str, Any] = {"driver": DRIVER_INFO, "appname": "agno-mongo-cli"}
    if "serverselectiontimeoutms" not in url.lower():
        options["serverSelectionTimeoutMS"] = SERVER_TIMEOUT_MS
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(url, **options)
    except PyMongoError as error:  # a malformed URL (InvalidURI, ConfigurationError)
        fail(f"bad MongoDB URL {redact(url)}: {error}", code=2)
    try:
        # One ping first: the storage methods retry an unreachable server several times over.
        client.admin.command("ping")
        yield MongoDb(db_client=client, db_name=db_name)
    except ServerSelectionTimeoutError as error:
        fail(f"cannot reach MongoDB at {redact(url)}: {first_reason(error)}")
    except InvalidInputError as error:
        fail(str(error), code=2)
    except PyMongoError as error:
        fail(f"MongoDB error: {error}")
    finally:
        client.close()


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def stdout_console() -> Console:
    """A console on the current stdout (``CliRunner`` swaps it), never interpreting stored text as markup."""
    return Console(highlight=False, soft_wrap=False)


def progress_bar(json_mode: bool) -> Progress:
    """A progress bar on stderr, only drawn on a terminal and never in ``--json`` mode."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_mode or not console.is_terminal,
    )


# --- times and filters ---------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str | None, option: str, *, end: bool = False, now: float | None = None) -> int | None:
    """Epoch seconds from a CLI time; a bare date is its first second (``end``: its last), UTC."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    relative = _RELATIVE.match(text)
    if relative:
        return int((time.time() if now is None else now) - int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)])
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, datetime.max.time() if end else datetime.min.time(), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date, datetime, epoch or 7d/12h", param_hint=option) from None
    return int(moment.timestamp())


def fmt_time(timestamp: object) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` UTC; blank for anything else."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return ""


def day_of(timestamp: object) -> str | None:
    """The UTC day of epoch seconds, ISO formatted."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        return datetime.fromtimestamp(timestamp, UTC).date().isoformat()
    return None


Page = tuple[list[dict[str, Any]], int | None]
"""What ``get_sessions``/``get_runs`` return with ``deserialize=False``: rows and a total."""


def sessions_page(db: MongoDb, **kwargs: Any) -> Page:
    """``get_sessions`` as plain dicts with the total."""
    return cast(Page, db.get_sessions(deserialize=False, **kwargs))


def runs_page(db: MongoDb, **kwargs: Any) -> Page:
    """``get_runs`` as rows (``run_data`` holds the run) with the total."""
    return cast(Page, db.get_runs(deserialize=False, **kwargs))


def session_dict(db: MongoDb, session_id: str, user_id: str | None) -> dict[str, Any] | None:
    """``get_session`` as a plain dict, runs included (those moved to overflow documents too)."""
    return cast(dict[str, Any] | None, db.get_session(session_id, user_id=user_id, deserialize=False))


@dataclass(frozen=True)
class Filters:
    """The session filters the listing and export commands share, as ``get_sessions`` arguments."""

    agent: str | None = None
    team: str | None = None
    workflow: str | None = None
    user: str | None = None
    since: int | None = None
    until: int | None = None
    name: str | None = None

    @classmethod
    def from_options(
        cls,
        agent: str | None,
        team: str | None,
        workflow: str | None,
        user: str | None,
        since: str | None,
        until: str | None,
        name: str | None = None,
    ) -> Filters:
        """Check the options: one component at most, readable times."""
        if sum(value is not None for value in (agent, team, workflow)) > 1:
            raise typer.BadParameter("give at most one of --agent, --team, --workflow")
        return cls(
            agent=agent,
            team=team,
            workflow=workflow,
            user=user,
            since=parse_time(since, "--since"),
            until=parse_time(until, "--until", end=True),
            name=name,
        )

    def component(self) -> tuple[str | None, str | None]:
        """(session type, component id) of the one component filter given, if any."""
        for kind, value in (("agent", self.agent), ("team", self.team), ("workflow", self.workflow)):
            if value is not None:
                return kind, value
        return None, None

    def session_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``MongoDb.get_sessions``."""
        kind, component_id = self.component()
        return {
            "session_type": kind,
            "component_id": component_id,
            "user_id": self.user,
            "session_name": self.name,
            "start_timestamp": self.since,
            "end_timestamp": self.until,
        }

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``MongoDb.get_runs`` (it filters on owner and component only)."""
        return {"user_id": self.user, "agent_id": self.agent, "team_id": self.team, "workflow_id": self.workflow}


# --- reading runs -------------------------------------------------------------------------------


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
    """A session as a transcript: its facts, then each run's header and messages, oldest first."""
    session_data = session.get("session_data")
    runs = [run for run in session.get("runs") or [] if isinstance(run, Mapping)]
    return {
        "session_id": session.get("session_id"),
        "name": session_data.get("session_name") if isinstance(session_data, Mapping) else None,
        "session_type": session.get("session_type"),
        "component_id": session.get("agent_id") or session.get("team_id") or session.get("workflow_id"),
        "user_id": session.get("user_id"),
        "created_at": session.get("created_at"),
        "updated_at": session.get("updated_at"),
        "runs": [{**run_summary(run), "messages": run_messages(run)} for run in runs],
    }


# --- few-shot export ----------------------------------------------------------------------------


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


def iter_sessions(
    db: MongoDb, filters: Filters, page_size: int, on_total: Callable[[int | None], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Every matching session with its runs, oldest first, one ``get_sessions`` page in memory at a time.

    Sessions are read in creation order, so sessions created meanwhile land on later pages instead
    of shifting the pages still to come. Runs that moved to overflow chunks come with their session.
    """
    page = 1
    while True:
        rows, total = sessions_page(
            db,
            **filters.session_kwargs(),
            limit=page_size,
            page=page,
            sort_by="created_at",
            sort_order="asc",
            include_runs=True,
        )
        if page == 1 and on_total is not None:
            on_total(total)
        yield from rows
        if len(rows) < page_size:
            return
        page += 1


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

    def set_total(total: int | None) -> None:
        if progress is not None and task is not None:
            progress.update(task, total=total)

    for session in iter_sessions(db, filters, page_size, set_total):
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


# --- metrics ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Runs, distinct sessions, distinct users and tokens of one bucket (a day, an agent)."""

    runs: int = 0
    tokens: int = 0
    sessions: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def add(self, row: Mapping[str, Any]) -> None:
        self.runs += 1
        self.tokens += run_metrics(row.get("run_data") or {})["total_tokens"]
        self.sessions.add(str(row.get("session_id")))
        if row.get("user_id") is not None:
            self.users.add(str(row["user_id"]))

    def as_dict(self) -> dict[str, int]:
        return {"runs": self.runs, "sessions": len(self.sessions), "users": len(self.users), "tokens": self.tokens}


def days_between(first: date, last: date) -> list[str]:
    """Every ISO day from ``first`` through ``last``."""
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]


def metrics_from_runs(
    db: MongoDb, filters: Filters, first: date, last: date, *, page_size: int = 1000, progress: Progress | None = None
) -> dict[str, Any]:
    """Per day and per agent totals from the runs themselves, newest first, stopping at ``first``.

    ``get_runs`` includes runs moved to overflow documents. Runs saved while the scan pages shift
    it by one place each; the previous page's ids catch those repeats without keeping every id.
    """
    start = int(datetime.combine(first, datetime.min.time(), tzinfo=UTC).timestamp())
    end = int(datetime.combine(last, datetime.max.time(), tzinfo=UTC).timestamp())
    per_day: dict[str, Tally] = {day: Tally() for day in days_between(first, last)}
    per_agent: dict[tuple[str, str | None], Tally] = {}
    total = Tally()
    previous: set[str] = set()
    task = progress.add_task("reading runs", total=None, note="") if progress is not None else None
    page = 1
    while True:
        rows, count = runs_page(
            db, **filters.run_kwargs(), limit=page_size, page=page, sort_by="created_at", sort_order="desc"
        )
        if progress is not None and task is not None and page == 1:
            progress.update(task, total=count)
        current: set[str] = set()
        reached_start = False
        for row in rows:
            run_id = str(row.get("run_id"))
            current.add(run_id)
            created = row.get("created_at")
            if run_id in previous or not isinstance(created, int | float):
                continue
            if created < start:
                reached_start = True
                break
            if created > end:
                continue
            per_day.setdefault(day_of(created) or "", Tally()).add(row)
            per_agent.setdefault(run_component(row["run_data"]), Tally()).add(row)
            total.add(row)
        if progress is not None and task is not None:
            progress.update(task, advance=len(rows), note=f"{total.runs} in range")
        if reached_start or len(rows) < page_size:
            break
        previous = current
        page += 1
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
    per_day_keys = ("runs", "sessions", "users", "tokens")
    per_day = {day: dict.fromkeys(per_day_keys, 0) for day in days_between(first, last)}
    for record in records:
        bucket = per_day.setdefault(str(record.get("date")), dict.fromkeys(per_day_keys, 0))
        for kind in ("agent", "team", "workflow"):
            bucket["runs"] += int(record.get(f"{kind}_runs_count") or 0)
            bucket["sessions"] += int(record.get(f"{kind}_sessions_count") or 0)
        bucket["users"] += int(record.get("users_count") or 0)
        tokens = record.get("token_metrics")
        bucket["tokens"] += int((tokens or {}).get("total_tokens") or 0) if isinstance(tokens, Mapping) else 0
    days = [{"day": day, **values} for day, values in sorted(per_day.items())]
    totals: dict[str, int | None] = {key: sum(values[key] for values in per_day.values()) for key in per_day_keys}
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


_EIGHTHS = " ▏▎▍▌▋▊▉"
_SPARKS = "▁▂▃▄▅▆▇█"


def bar(value: float, maximum: float, width: int = 30) -> str:
    """A horizontal bar of ``value`` out of ``maximum`` in eighths of a character."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / maximum * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def sparkline(values: Iterable[float]) -> str:
    """One character per value, ``▁`` to ``█`` scaled to the largest; ``·`` for zero."""
    items = list(values)
    top = max(items, default=0)
    if top <= 0:
        return "·" * len(items)
    return "".join("·" if v <= 0 else _SPARKS[min(7, int(v / top * 7.999))] for v in items)


# --- tail ---------------------------------------------------------------------------------------

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


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class Seen:
    """Last status printed per run id (bounded), so a run prints when new and when its status changes."""

    def __init__(self, size: int = 10_000) -> None:
        self._status: OrderedDict[str, object] = OrderedDict()
        self._size = size

    def fresh(self, event: Mapping[str, Any]) -> bool:
        key = str(event["run_id"])
        if key in self._status and self._status[key] == event["status"]:
            return False
        self._status[key] = event["status"]
        self._status.move_to_end(key)
        while len(self._status) > self._size:
            self._status.popitem(last=False)
        return True


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


POLL_WINDOW = 100
"""Runs each poll reads (newest first): more than this many landing between two polls are not all shown."""
STATUS_STYLES = {"COMPLETED": "green", "RUNNING": "yellow", "PENDING": "yellow", "ERROR": "red", "CANCELLED": "red"}


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

    The stream is opened before the latest runs are printed, so nothing lands in between unseen.
    Returns the mode used ("change stream" or "polling").
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
            for event in latest_runs(db, filters, session, POLL_WINDOW):
                if seen.fresh(event):
                    emit(event)
    finally:
        if stream is not None:
            stream.close()
    return "change stream" if stream is not None else "polling"


# --- doctor -------------------------------------------------------------------------------------

WIRE_VERSIONS = {25: "8.0", 21: "7.0", 17: "6.0", 13: "5.0", 9: "4.4", 8: "4.2"}


def server_report(client: MongoClient[dict[str, Any]]) -> dict[str, Any]:
    """Version and topology from ``hello`` (and ``buildInfo`` where the server has it)."""
    started = time.perf_counter()
    client.admin.command("ping")
    latency_ms = (time.perf_counter() - started) * 1000
    hello = client.admin.command("hello")
    try:
        build = client.admin.command("buildInfo")
    except PyMongoError:
        build = {}
    wire = hello.get("maxWireVersion")
    version = build.get("version") or hello.get("version")
    if not version and isinstance(wire, int):
        family = next((name for number, name in sorted(WIRE_VERSIONS.items(), reverse=True) if wire >= number), None)
        version = f"{family}+ (wire version {wire})" if family else f"unknown (wire version {wire})"
    if hello.get("msg") == "isdbgrid":
        topology = "sharded cluster (mongos)"
    elif hello.get("setName"):
        topology = f"replica set {hello['setName']} ({len(hello.get('hosts') or [])} members)"
    else:
        topology = "standalone"
    distributed = topology != "standalone"
    return {
        "version": version or "unknown",
        "wire_version": wire,
        "topology": topology,
        "primary": hello.get("primary"),
        "embedded": "mongoeco" in {build.get("gitVersion"), hello.get("gitVersion")},
        "change_streams": distributed,
        "transactions": distributed,
        "max_bson_object_size": int(hello.get("maxBsonObjectSize") or MAX_DOCUMENT_BYTES),
        "ping_ms": round(latency_ms, 2),
    }


def plain_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """An index key spec with numeric directions as ints (servers answer 1 or 1.0)."""
    return {name: int(value) if isinstance(value, int | float) else value for name, value in key.items()}


def index_report(db: MongoDb) -> list[dict[str, Any]]:
    """Per collection role: expected indexes (``agno_mongo.domains.INDEXES``) against those present."""
    existing = set(db.database.list_collection_names())
    report = []
    for role, models in INDEXES.items():
        name = db.collection_names[role]
        present: dict[str, dict[str, Any]] = {}
        ttl_seconds = None
        if name in existing:
            for index in db.database[name].list_indexes():
                present[index["name"]] = plain_key(index["key"])
                if role == "sessions" and index["name"] == TTL_INDEX_NAME:
                    ttl_seconds = index.get("expireAfterSeconds")
        indexes = []
        for model in models:
            spec = model.document
            key = plain_key(spec["key"])
            if name not in existing:
                status = "no collection yet"
            elif spec["name"] not in present:
                status = "missing"
            elif present[spec["name"]] != key:
                status = "different keys"
            else:
                status = "ok"
            indexes.append({"name": spec["name"], "key": key, "status": status})
        expected = {model.document["name"] for model in models}
        if role == "sessions":
            expected.add(TTL_INDEX_NAME)  # optional (session_ttl_seconds): reported as session_ttl_seconds
        entry = {
            "role": role,
            "collection": name,
            "exists": name in existing,
            "documents": db.database[name].estimated_document_count() if name in existing else 0,
            "indexes": indexes,
            "extra": sorted(index for index in present if index not in expected and index != "_id_"),
        }
        if role == "sessions":
            entry["session_ttl_seconds"] = int(ttl_seconds) if isinstance(ttl_seconds, int | float) else None
        report.append(entry)
    return report


def largest_sessions(db: MongoDb, top: int, limit_bytes: int) -> list[dict[str, Any]]:
    """The ``top`` largest session documents by BSON size (``$bsonSize``) and their share of the limit.

    This reads every session document on the server: run it off-peak on a large collection.
    """
    documents = db.database[db.session_table_name].aggregate(
        [
            {
                "$project": {
                    "user_id": 1,
                    "runs": {"$size": {"$ifNull": ["$runs", []]}},
                    "overflow": {"$size": {"$ifNull": ["$spilled", []]}},
                    "size": {"$bsonSize": "$$ROOT"},
                }
            },
            {"$sort": {"size": -1}},
            {"$limit": top},
        ]
    )
    return [
        {
            "session_id": document["_id"],
            "user_id": document.get("user_id"),
            "runs": document.get("runs", 0),
            "overflow_documents": document.get("overflow", 0),
            "bytes": int(document["size"]),
            "percent_of_limit": round(100 * int(document["size"]) / limit_bytes, 2),
        }
        for document in documents
    ]


def doctor_problems(report: Mapping[str, Any]) -> list[str]:
    """What needs attention: indexes missing on existing collections, sessions near the size limit."""
    problems = []
    for collection in report["collections"]:
        for index in collection["indexes"]:
            if index["status"] in {"missing", "different keys"}:
                problems.append(f"{collection['collection']}: index {index['name']} {index['status']}")
    for session in report["largest_sessions"] or []:
        if session["percent_of_limit"] >= 90:
            problems.append(f"session {session['session_id']} is at {session['percent_of_limit']}% of the size limit")
    return problems


# --- commands -----------------------------------------------------------------------------------


@sessions_app.command("list")
def sessions_list(
    url: UrlOption = None,
    db: DbOption = "agno",
    json_out: JsonOption = False,
    agent: AgentOption = None,
    team: TeamOption = None,
    workflow: WorkflowOption = None,
    user: UserOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    name: NameOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Sessions per page.")] = 20,
    page: Annotated[int, typer.Option("--page", min=1, help="Page number, from 1.")] = 1,
    sort: Annotated[
        str, typer.Option("--sort", help="created_at, updated_at, session_id, user_id or session_name.")
    ] = "updated_at",
    ascending: Annotated[bool, typer.Option("--asc", help="Oldest (smallest) first.")] = False,
) -> None:
    """List sessions, newest first, filtered and paged."""
    filters = Filters.from_options(agent, team, workflow, user, since, until, name)
    with open_store(url, db) as store:
        rows, total = sessions_page(
            store,
            **filters.session_kwargs(),
            limit=limit,
            page=page,
            sort_by=sort,
            sort_order="asc" if ascending else "desc",
            include_runs=False,
        )
    sessions = [
        {
            "session_id": row["session_id"],
            "name": (row.get("session_data") or {}).get("session_name"),
            "session_type": row.get("session_type"),
            "component_id": row.get("agent_id") or row.get("team_id") or row.get("workflow_id"),
            "user_id": row.get("user_id"),
            "created_at": row.get("created_at"),
            "updated_at": row.get("updated_at"),
        }
        for row in rows
    ]
    if json_out:
        emit_json({"total": total, "page": page, "limit": limit, "sessions": sessions})
        return
    pages = max(1, -(-int(total or 0) // limit))
    first = (page - 1) * limit + 1
    title = f"Sessions {first}-{first + len(sessions) - 1} of {total} (page {page}/{pages})" if sessions else None
    table = Table(title=title or f"No sessions on page {page} ({total} in all)", title_justify="left")
    for column in ("session", "name", "type", "component", "user", "created (UTC)", "updated (UTC)"):
        table.add_column(column, overflow="fold", no_wrap=column.endswith("(UTC)"))
    for item in sessions:
        table.add_row(
            item["session_id"],
            item["name"] or "",
            item["session_type"] or "",
            item["component_id"] or "",
            item["user_id"] or "",
            fmt_time(item["created_at"])[:16],
            fmt_time(item["updated_at"])[:16],
        )
    stdout_console().print(table)


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="The session id.")],
    url: UrlOption = None,
    db: DbOption = "agno",
    json_out: JsonOption = False,
    user: Annotated[str | None, typer.Option("--user", help="Only if this user owns it.")] = None,
    system: Annotated[bool, typer.Option("--system", help="Also print system messages.")] = False,
) -> None:
    """A session as a readable transcript, with each run's status, model, tokens and timing."""
    with open_store(url, db) as store:
        session = session_dict(store, session_id, user)
    if session is None:
        fail(f"no session {session_id!r}" + (f" owned by {user!r}" if user else ""))
    shown = transcript(session)
    if json_out:
        emit_json(shown)
        return
    console = stdout_console()
    header = Text(f"Session {shown['session_id']}", style="bold")
    if shown["name"]:
        header.append(f"  “{shown['name']}”")
    console.print(header)
    facts = [
        f"{shown['session_type'] or '?'} {shown['component_id'] or ''}".strip(),
        f"user {shown['user_id'] or '-'}",
        f"created {fmt_time(shown['created_at'])}",
        f"updated {fmt_time(shown['updated_at'])}",
        f"{len(shown['runs'])} runs",
    ]
    console.print(Text(" · ".join(facts), style="dim"))
    for number, run in enumerate(shown["runs"], start=1):
        print_run(console, number, len(shown["runs"]), run, system=system)


def print_run(console: Console, number: int, count: int, run: Mapping[str, Any], *, system: bool) -> None:
    """One run of a transcript: a header rule, then its messages."""
    model = run["model"] or "no model"
    if run["model_provider"]:
        model += f" ({run['model_provider']})"
    parts = [
        f"Run {number}/{count}",
        str(run["status"] or "?"),
        model,
        f"{run['total_tokens']} tokens ({run['input_tokens']} in / {run['output_tokens']} out)",
    ]
    if run["duration"] is not None:
        parts.append(f"{run['duration']:.2f} s")
    parts.append(fmt_time(run["created_at"]))
    if run["parent_run_id"]:
        parts.append(f"member of {run['parent_run_id']}")
    console.print()
    console.print(Text("── " + " · ".join(parts), style=STATUS_STYLES.get(str(run["status"]), "")), soft_wrap=True)
    for message in run["messages"]:
        role = message["role"]
        if role == "system" and not system:
            continue
        label = Text(f"{role:>9} ", style={"user": "bold cyan", "assistant": "bold green"}.get(role, "dim"))
        if role == "tool":
            label = Text(f"{'tool':>9} ", style="magenta")
            console.print(label + Text(f"{message.get('tool_name') or ''} ⇒ {shorten(message['content'], 400)}"))
            continue
        if message["content"]:
            console.print(label + Text(message["content"]))
            label = Text(" " * 10)
        for call in message.get("tool_calls") or []:
            console.print(label + Text(f"→ {call['name']}({call['arguments']})", style="magenta"))
            label = Text(" " * 10)


@sessions_app.command("rename")
def sessions_rename(
    session_id: Annotated[str, typer.Argument(help="The session id.")],
    new_name: Annotated[str, typer.Argument(help="The new session name.")],
    url: UrlOption = None,
    db: DbOption = "agno",
    json_out: JsonOption = False,
    user: Annotated[str | None, typer.Option("--user", help="Only if this user owns it.")] = None,
) -> None:
    """Rename a session (``rename_session``: one atomic update)."""
    with open_store(url, db) as store:
        renamed = store.rename_session(session_id, None, new_name, user_id=user, deserialize=False)
    if renamed is None:
        fail(f"no session {session_id!r}" + (f" owned by {user!r}" if user else ""))
    if json_out:
        emit_json({"session_id": session_id, "name": new_name})
    else:
        typer.echo(f"renamed {session_id} to {new_name!r}")


@export_app.command("few-shot")
def export_few_shot_command(
    url: UrlOption = None,
    db: DbOption = "agno",
    json_out: JsonOption = False,
    agent: AgentOption = None,
    team: TeamOption = None,
    workflow: WorkflowOption = None,
    user: UserOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    name: NameOption = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (default: stdout).")] = None,
    completed_only: Annotated[bool, typer.Option("--completed-only", help="Only runs with status COMPLETED.")] = False,
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Leave out tool calls and tool results.")] = False,
    history: Annotated[
        bool, typer.Option("--history", help="Keep history messages agno replayed into a run's context.")
    ] = False,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=10_000, help="Sessions read per page.")] = 100,
    max_examples: Annotated[int | None, typer.Option("--max", min=1, help="Stop after this many examples.")] = None,
) -> None:
    """Runs as JSONL for OpenAI chat fine-tuning: one {"messages": [...]} per run, streamed.

    Sessions come one page at a time (oldest first) and each run is written as soon as it is read,
    so memory stays flat however many runs there are. Session filters (--since/--until on the
    session's creation time) pick the sessions; --completed-only picks runs.
    """
    filters = Filters.from_options(agent, team, workflow, user, since, until, name)
    with open_store(url, db) as store, progress_bar(json_out) as progress:
        target = out.open("w", encoding="utf-8") if out is not None else sys.stdout
        try:
            stats = export_few_shot(
                store,
                filters,
                target,
                tools=not no_tools,
                history=history,
                completed_only=completed_only,
                page_size=page_size,
                max_examples=max_examples,
                progress=progress,
            )
        finally:
            if out is not None:
                target.close()
            else:
                target.flush()
    summary = {
        "sessions": stats.sessions,
        "runs": stats.runs,
        "written": stats.written,
        "skipped": stats.skipped,
        "out": str(out) if out is not None else "-",
    }
    if json_out and out is not None:
        emit_json(summary)
        return
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(stats.skipped.items())) or "none"
    message = f"{stats.written} examples from {stats.runs} runs in {stats.sessions} sessions (skipped: {skipped})"
    if json_out:
        message = json.dumps(summary)
    Console(stderr=True, highlight=False).print(message + (f" → {out}" if out is not None and not json_out else ""))


@app.command("metrics")
def metrics_command(
    url: UrlOption = None,
    db: DbOption = "agno",
    json_out: JsonOption = False,
    agent: AgentOption = None,
    team: TeamOption = None,
    workflow: WorkflowOption = None,
    user: UserOption = None,
    since: Annotated[str | None, typer.Option("--since", help="First day (default: 29 days before --until).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day (default: today, UTC).")] = None,
    from_records: Annotated[
        bool,
        typer.Option(
            "--from-records",
            help="Read agno's stored daily metrics (get_metrics) instead of scanning runs; per day only.",
        ),
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="With --from-records: recalculate the records first (calculate_metrics).")
    ] = False,
) -> None:
    """Runs, sessions, users and tokens per day and per agent, as tables and a terminal chart.

    By default the runs themselves are counted (``get_runs``, newest first, stopping at --since):
    sessions and users are those with a run that day. --from-records reads the daily records agno's
    AgentOS shows instead (sessions counted on the day they were created).
    """
    filters = Filters.from_options(agent, team, workflow, user, None, None)
    last = datetime.fromtimestamp(parse_time(until, "--until", end=True) or time.time(), UTC).date()
    first = datetime.fromtimestamp(parse_time(since, "--since") or 0, UTC).date() if since else last - timedelta(29)
    if first > last:
        raise typer.BadParameter("--since is after --until", param_hint="--since")
    if refresh and not from_records:
        raise typer.BadParameter("--refresh goes with --from-records", param_hint="--refresh")
    with open_store(url, db) as store, progress_bar(json_out) as progress:
        if from_records:
            if filters.component()[1] is not None:
                raise typer.BadParameter("stored records have no per-agent split; drop --agent/--team/--workflow")
            report = metrics_from_records(store, user, first, last, refresh)
        else:
            report = metrics_from_runs(store, filters, first, last, progress=progress)
    if json_out:
        emit_json(report)
        return
    print_metrics(report)


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


@app.command("tail")
def tail_command(
    url: UrlOption = None,
    db: DbOption = "agno",
    json_out: JsonOption = False,
    agent: AgentOption = None,
    team: TeamOption = None,
    workflow: WorkflowOption = None,
    user: UserOption = None,
    session: Annotated[str | None, typer.Option("--session", help="Only this session.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Print the latest N runs first.")] = 10,
    once: Annotated[bool, typer.Option("--once", help="Print the latest runs and exit.")] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Stop following after this many seconds.")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="Seconds between polls.")] = 1.0,
    poll: Annotated[bool, typer.Option("--poll", help="Poll get_runs even if the server has change streams.")] = False,
) -> None:
    """Print runs as they land: change streams on replica sets and clusters, polling elsewhere.

    A run prints when it first appears and again when its status changes. With --json, one JSON
    object per line.
    """
    filters = Filters.from_options(agent, team, workflow, user, None, None)
    seen = Seen()

    def emit(event: Mapping[str, Any]) -> None:
        print_tail_event(event, json_out)

    with open_store(url, db) as store:
        if once:
            for event in latest_runs(store, filters, session, lines):
                emit(event)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            follow(
                store,
                filters,
                session,
                deadline=deadline,
                interval=interval,
                poll=poll,
                seen=seen,
                emit=emit,
                initial=lines,
            )
        except KeyboardInterrupt:
            pass


@app.command("doctor")
def doctor_command(
    url: UrlOption = None,
    db: DbOption = "agno",
    json_out: JsonOption = False,
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="How many of the largest sessions to show.")] = 5,
    create_indexes: Annotated[
        bool,
        typer.Option(
            "--create-indexes",
            help="First create every collection's missing indexes (a deploy-time step; the TTL index is left as is).",
        ),
    ] = False,
) -> None:
    """Server version and topology, indexes present vs expected, the largest session documents.

    With --create-indexes, first creates the indexes agno-mongo declares (``MongoDb.create_indexes``),
    then reports. Exits 1 when something needs attention (a missing index on an existing
    collection, a session document at 90% of the 16 MiB limit or more).
    """
    with open_store(url, db) as store:
        server = server_report(store.db_client)
        created = store.create_indexes() if create_indexes else None
        collections = index_report(store)
        try:
            largest: list[dict[str, Any]] | None = largest_sessions(store, top, server["max_bson_object_size"])
            size_error = None
        except PyMongoError as error:  # $bsonSize needs MongoDB 4.4+
            largest, size_error = None, str(error)
    report: dict[str, Any] = {
        "database": db,
        "server": server,
        "collections": collections,
        "created_indexes": created,
        "largest_sessions": largest,
        "largest_sessions_error": size_error,
    }
    report["problems"] = doctor_problems(report)
    if json_out:
        emit_json(report)
    else:
        print_doctor(report)
    if report["problems"]:
        raise typer.Exit(1)


def print_doctor(report: Mapping[str, Any]) -> None:
    """The doctor report as tables."""
    console = stdout_console()
    server = report["server"]
    yes_no = {True: "[green]yes[/]", False: "[yellow]no[/]"}
    console.print(
        f"[bold]Server[/]  MongoDB {server['version']}" + ("  (embedded mongoeco)" if server["embedded"] else "")
    )
    console.print(
        f"  topology: {server['topology']} · change streams: {yes_no[server['change_streams']]}"
        f" · transactions: {yes_no[server['transactions']]} · ping {server['ping_ms']} ms"
    )
    table = Table(title=f"Indexes in database {report['database']!r}", title_justify="left")
    for column in ("collection", "docs", "index", "keys", "status"):
        table.add_column(column, overflow="fold", no_wrap=column in {"index", "status"})
    styles = {"ok": "green", "missing": "red", "different keys": "red", "no collection yet": "dim"}
    for collection in report["collections"]:
        for position, index in enumerate(collection["indexes"]):
            table.add_row(
                collection["collection"] if position == 0 else "",
                str(collection["documents"]) if position == 0 and collection["exists"] else "",
                index["name"],
                ", ".join(f"{key} {direction}" for key, direction in index["key"].items()),
                Text(index["status"], style=styles.get(index["status"], "")),
            )
        for extra in collection["extra"]:
            table.add_row("", "", extra, "", Text("extra (not created by agno-mongo)", style="dim"))
    console.print(table)
    if report.get("created_indexes") is not None:
        count = sum(len(names) for names in report["created_indexes"].values())
        console.print(
            f"[green]Created or confirmed {count} indexes on {len(report['created_indexes'])} collections.[/]"
        )
    sessions = next((c for c in report["collections"] if c["role"] == "sessions"), None)
    if sessions is not None and sessions["exists"]:
        ttl = sessions.get("session_ttl_seconds")
        console.print(
            f"Session expiry ({TTL_INDEX_NAME}): " + ("off" if ttl is None else f"{ttl} s after the last write")
        )
    largest = report["largest_sessions"]
    if largest is None:
        console.print(f"[yellow]largest sessions unavailable:[/] {report['largest_sessions_error']}", markup=True)
    else:
        limit = server["max_bson_object_size"]
        sizes = Table(title=f"Largest session documents (limit {limit / 2**20:.0f} MiB)", title_justify="left")
        for column in ("session", "user", "runs", "overflow docs", "size", "of limit", ""):
            sizes.add_column(
                column, justify="right" if column in {"runs", "overflow docs", "size", "of limit"} else "left"
            )
        for item in largest:
            percent = item["percent_of_limit"]
            style = "red" if percent >= 90 else "yellow" if percent >= 50 else "green"
            sizes.add_row(
                Text(str(item["session_id"])),
                Text(str(item["user_id"] or "-")),
                str(item["runs"]),
                str(item["overflow_documents"]),
                human_bytes(item["bytes"]),
                f"{percent:.2f}%",
                Text(bar(percent, 100, 20) or "▏", style=style),
            )
        console.print(sizes)
    if report["problems"]:
        console.print("[bold red]Needs attention:[/]")
        for problem in report["problems"]:
            console.print(Text(f"  - {problem}"))
    else:
        console.print("[green]No problems found.[/]")


def human_bytes(size: int) -> str:
    """Bytes as B / KiB / MiB."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 2**20:.2f} MiB"


@app.command("dashboard")
def dashboard_command(
    url: UrlOption = None,
    db: DbOption = "agno",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """Serve the local web dashboard (sessions, transcripts, runs per day) on 127.0.0.1."""
    try:
        import uvicorn

        from agno_mongo.dashboard import build_app
    except ImportError:
        fail("the dashboard needs FastAPI and uvicorn: pip install 'agno-mongo[os]'")
    with open_store(url, db) as store:
        typer.echo(f"agno-mongo dashboard on http://127.0.0.1:{port}  (Ctrl-C to stop)")
        uvicorn.run(build_app(store), host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    """Console-script entry point: the Typer app, quiet when a pipe reader goes away (``| head``)."""
    try:
        app()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
