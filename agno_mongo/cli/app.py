"""The ``agno-mongo`` Typer app: options and commands, wired to the modules that do the work.

Only Typer and :mod:`agno_mongo.cli.common` are imported up front; each command imports what it
needs (PyMongo, agno, rich, the store) when it runs, so ``agno-mongo --help`` answers at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from agno_mongo.cli.common import (
    DEFAULT_TIMEOUT_SECONDS,
    AgentOption,
    Connection,
    DbOption,
    Filters,
    JsonErrorsGroup,
    JsonOption,
    NameOption,
    SinceOption,
    TeamOption,
    TimeoutOption,
    UntilOption,
    UrlOption,
    UserOption,
    WorkflowOption,
    emit_json,
    fail,
    parse_time,
)

app = typer.Typer(
    name="agno-mongo",
    cls=JsonErrorsGroup,
    help="Inspect, export and check agno sessions stored in MongoDB. Without --url or MONGODB_URL, "
    "the embedded server on the examples' data file (.agno_mongo/demo.sqlite).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sessions_app = typer.Typer(help="List, read and rename sessions.", no_args_is_help=True)
export_app = typer.Typer(help="Export stored runs.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.add_typer(export_app, name="export")


@sessions_app.command("list")
def sessions_list(
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
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
    from agno_mongo.cli.connect import open_store
    from agno_mongo.cli.shape import session_row

    filters = Filters.from_options(agent, team, workflow, user, since, until, name)
    with open_store(Connection(url, db, timeout)) as store:
        page_rows = store.get_sessions(
            **filters.session_kwargs(),
            limit=limit,
            page=page,
            sort_by=sort,
            sort_order="asc" if ascending else "desc",
            include_runs=False,
            deserialize=False,
        )
    rows, total = cast(tuple[list[dict[str, Any]], int], page_rows)
    sessions = [session_row(row) for row in rows]
    if json_out:
        emit_json({"total": total, "page": page, "limit": limit, "sessions": sessions})
        return
    from agno_mongo.cli.views import print_sessions

    print_sessions(sessions, total, page, limit)


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="The session id.")],
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    json_out: JsonOption = False,
    user: Annotated[str | None, typer.Option("--user", help="Only if this user owns it.")] = None,
    system: Annotated[bool, typer.Option("--system", help="Also print system messages.")] = False,
) -> None:
    """A session as a readable transcript, with each run's status, model, tokens and timing."""
    from agno_mongo.cli.connect import open_store
    from agno_mongo.cli.shape import transcript

    with open_store(Connection(url, db, timeout)) as store:
        session = store.get_session(session_id, user_id=user, deserialize=False)
    if not isinstance(session, dict):
        fail(f"no session {session_id!r}" + (f" owned by {user!r}" if user else ""), kind="not_found")
    shown = transcript(session)
    if json_out:
        emit_json(shown)
        return
    from agno_mongo.cli.views import print_transcript

    print_transcript(shown, system=system)


@sessions_app.command("rename")
def sessions_rename(
    session_id: Annotated[str, typer.Argument(help="The session id.")],
    new_name: Annotated[str, typer.Argument(help="The new session name.")],
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    json_out: JsonOption = False,
    user: Annotated[str | None, typer.Option("--user", help="Only if this user owns it.")] = None,
) -> None:
    """Rename a session (``rename_session``: one atomic update)."""
    from agno_mongo.cli.connect import open_store

    with open_store(Connection(url, db, timeout)) as store:
        renamed = store.rename_session(session_id, None, new_name, user_id=user, deserialize=False)
    if renamed is None:
        fail(f"no session {session_id!r}" + (f" owned by {user!r}" if user else ""), kind="not_found")
    if json_out:
        emit_json({"session_id": session_id, "name": new_name})
    else:
        typer.echo(f"renamed {session_id} to {new_name!r}")


@export_app.command("few-shot")
def export_few_shot_command(
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
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

    Sessions come one keyset page at a time (oldest first) and each run is written as soon as it is
    read, so memory stays flat however many runs there are. Session filters (--since/--until on the
    session's creation time) pick the sessions; --completed-only picks runs.
    """
    import json

    from rich.console import Console

    from agno_mongo.cli.connect import open_store
    from agno_mongo.cli.export import export_few_shot
    from agno_mongo.cli.views import progress_bar

    filters = Filters.from_options(agent, team, workflow, user, since, until, name)
    with open_store(Connection(url, db, timeout)) as store, progress_bar(json_out) as progress:
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
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
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
            help="Read agno's stored daily metrics (get_metrics) instead of counting runs; per day only.",
        ),
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="With --from-records: recalculate the records first (calculate_metrics).")
    ] = False,
) -> None:
    """Runs, sessions, users and tokens per day and per agent over a window of days, as tables and a chart.

    By default the runs created in the window are counted (only sessions written in it are read):
    sessions and users are those with a run that day. --from-records reads the daily records agno's
    AgentOS shows instead (sessions counted on the day they were created).
    """
    filters = Filters.from_options(agent, team, workflow, user, None, None)
    if refresh and not from_records:
        raise typer.BadParameter("--refresh goes with --from-records", param_hint="--refresh")
    if from_records and filters.component()[1] is not None:
        raise typer.BadParameter("stored records have no per-agent split; drop --agent/--team/--workflow")
    from agno_mongo.cli.connect import open_store
    from agno_mongo.cli.metrics import metrics_from_records, metrics_from_runs, print_metrics, window

    first, last = window(parse_time(since, "--since"), parse_time(until, "--until", end=True), time.time())
    if first > last:
        raise typer.BadParameter("--since is after --until", param_hint="--since")
    with open_store(Connection(url, db, timeout), create_indexes=refresh) as store:
        if from_records:
            report = metrics_from_records(store, user, first, last, refresh)
        else:
            report = metrics_from_runs(store, filters, first, last)
    if json_out:
        emit_json(report)
        return
    print_metrics(report)


@app.command("tail")
def tail_command(
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    json_out: JsonOption = False,
    agent: AgentOption = None,
    team: TeamOption = None,
    workflow: WorkflowOption = None,
    user: UserOption = None,
    session: Annotated[str | None, typer.Option("--session", help="Only this session.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Print the latest N runs first.")] = 10,
    once: Annotated[bool, typer.Option("--once", help="Print the latest runs and exit.")] = False,
    duration: Annotated[
        float | None, typer.Option("--for", min=0, help="Stop following after this many seconds.")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="Seconds between polls.")] = 1.0,
    poll: Annotated[bool, typer.Option("--poll", help="Poll even if the server has change streams.")] = False,
) -> None:
    """Print runs as they land: change streams on replica sets and clusters, polling elsewhere.

    A run prints when it first appears and again when its status changes. With --json, one JSON
    object per line.
    """
    from agno_mongo.cli.connect import open_store
    from agno_mongo.cli.tail import Seen, follow, latest_runs, print_tail_event

    filters = Filters.from_options(agent, team, workflow, user, None, None)

    def emit(event: object) -> None:
        print_tail_event(event, json_out)  # type: ignore[arg-type]

    with open_store(Connection(url, db, timeout)) as store:
        if once:
            for event in latest_runs(store, filters, session, lines):
                emit(event)
            return
        deadline = None if duration is None else time.monotonic() + duration
        try:
            follow(
                store,
                filters,
                session,
                deadline=deadline,
                interval=interval,
                poll=poll,
                seen=Seen(),
                emit=emit,
                initial=lines,
            )
        except KeyboardInterrupt:
            pass


@app.command("doctor")
def doctor_command(
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
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
    from agno_mongo.cli.connect import open_store
    from agno_mongo.cli.doctor import doctor_report, print_doctor

    with open_store(Connection(url, db, timeout)) as store:
        report = doctor_report(store, store.db_name, top, create_indexes)
    if json_out:
        emit_json(report)
    else:
        print_doctor(report)
    if report["problems"]:
        raise typer.Exit(1)


@app.command("seed")
def seed_command(
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    json_out: JsonOption = False,
) -> None:
    """Write the README tour's sessions (four agent sessions over four days) so the tour runs on your data.

    Fixed session ids: running it again rewrites the same sessions.
    """
    from agno_mongo.cli.connect import open_store
    from agno_mongo.cli.seed import seed_tour

    with open_store(Connection(url, db, timeout), create_indexes=True) as store:
        written = seed_tour(store)
    if json_out:
        emit_json(written)
    else:
        typer.echo(
            f"seeded {len(written['sessions'])} sessions ({written['runs']} runs) in database {written['database']}: "
            + ", ".join(written["sessions"])
        )


@app.command("dashboard")
def dashboard_command(
    url: UrlOption = None,
    db: DbOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")] = 8765,
) -> None:
    """Serve the local web dashboard (sessions, transcripts, runs per day) on 127.0.0.1."""
    try:
        import uvicorn
    except ImportError:
        fail("the dashboard needs FastAPI and uvicorn: pip install 'agno-mongo[os]'", kind="missing_extra")
    import socket

    from agno_mongo.cli.connect import open_store
    from agno_mongo.dashboard import build_app

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as error:
        listener.close()
        fail(f"cannot serve on 127.0.0.1:{port}: {error.strerror or error} (pick another with --port)", kind="port")
    listener.listen(128)
    with listener, open_store(Connection(url, db, timeout)) as store:
        bound = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(build_app(store), log_level="warning"))
        typer.echo(f"agno-mongo dashboard on http://127.0.0.1:{bound}  (Ctrl-C to stop)")
        server.run(sockets=[listener])


def main() -> None:
    """Console-script entry point: the Typer app, quiet when a pipe reader goes away (``| head``)."""
    import os

    try:
        app()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
