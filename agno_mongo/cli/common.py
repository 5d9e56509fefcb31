"""What every ``agno-mongo`` command shares and that costs nothing to import: options, errors, times, filters.

No agno, PyMongo or rich import happens here (``agno-mongo --help`` loads this module and Typer only).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from agno_mongo.local import DB_VAR, URL_VAR, default_db_name

JSON_ERRORS: ContextVar[bool] = ContextVar("agno_mongo_cli_json_errors", default=False)
"""True while a command given ``--json`` runs: errors then go to stdout as one JSON object."""

DEFAULT_TIMEOUT_SECONDS = 5.0
"""How long a command waits to find the server before it says it cannot reach it (``--timeout``)."""


# --- errors -------------------------------------------------------------------------------------


def error_json(message: str, kind: str) -> str:
    """The JSON an error prints in ``--json`` mode."""
    return json.dumps({"error": message, "kind": kind}, ensure_ascii=False)


def fail(message: str, code: int = 1, kind: str = "error") -> NoReturn:
    """Stop with ``code``: one line on stderr, or ``{"error", "kind"}`` on stdout in ``--json`` mode."""
    if JSON_ERRORS.get():
        typer.echo(error_json(message, kind))
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class JsonErrorsGroup(TyperGroup):
    """The top-level group: with ``--json`` anywhere on the line, every error (usage errors included)
    is printed as JSON on stdout, with the same non-zero exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv or not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        token = JSON_ERRORS.set(True)
        try:
            result = super().main(argv, prog_name, complete_var, False, **extra)
        except Exception as error:
            # Click's exceptions, by shape: Typer 0.29 vendors its own Click (typer._click), older ones use click.
            names = {kind.__name__ for kind in type(error).__mro__}
            if "Abort" in names:
                typer.echo(error_json("aborted", "aborted"))
                sys.exit(1)
            if "ClickException" not in names:
                raise
            typer.echo(error_json(error.format_message(), "usage" if "UsageError" in names else "error"))  # type: ignore[attr-defined]
            sys.exit(int(error.exit_code))  # type: ignore[attr-defined]
        finally:
            JSON_ERRORS.reset(token)
        sys.exit(result if isinstance(result, int) else 0)


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


# --- options every command shares ----------------------------------------------------------------

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help=f"MongoDB connection string (default: ${URL_VAR}, or $MONGODB_URI; without either, "
        "the embedded server on the demo's data file).",
        show_default=False,
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help=f"Database name (default: ${DB_VAR}, else {default_db_name({})!r}).", show_default=False),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.05, help="Seconds to wait for the server before giving up."),
]
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


@dataclass(frozen=True)
class Connection:
    """Where a command reads: ``--url``, ``--db``, ``--timeout``."""

    url: str | None
    db: str | None
    timeout: float = DEFAULT_TIMEOUT_SECONDS


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
