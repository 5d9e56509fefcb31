"""agno-mongo against agno 3.1.10's own MongoDb / AsyncMongoDb: the same workloads, one server, one run.

What is measured is what does not depend on the server's speed: commands (round trips), BSON bytes
each way (a PyMongo ``CommandListener`` on the client given as ``db_client``; hello, ping and
endSessions are left out) and the client's CPU time, median per operation. CPU is the calling
thread's (``time.thread_time``): the driver's work for a sync call, and the event loop's for an
async one, happens there, while ``time.process_time`` would also charge each operation with the
background threads (PyMongo's server monitor, the local model server) for as long as the server
takes to answer, which on the embedded server grows with the size of the stored document.
Wall-clock time is only reported for the async throughput rows: on the embedded server it measures
mongoeco (a Python server) more than either store.

Workloads, each on its own database per store (agno keeps runs in a second collection):

* a real ``Agent`` run (``OpenAIChat`` talking to the local OpenAI-compatible server), steady state,
  sync and async, and its first run on a new database (which creates the indexes);
* a real ``Agent`` turn on a session that already holds 10, 100 or 1,000 runs (agno re-reads the
  whole session every run: what a turn costs as history grows; ``--turns`` runs only these);
* at sessions of 10, 100 and 1,000 runs (built by ``upsert_run`` appends of ~2 KB runs with a few
  messages and metrics): append a run, update a run (by the process that wrote it, and by a fresh
  instance as another process would), read the session, read the recent history
  (``runs_limit=3``), list sessions (``limit=20, deserialize=False``; the database holds 20 sessions
  of that length: the measured one and 19 copies of it in each store's own layout);
* async throughput: 50 sessions appending concurrently through ``AsyncMongoDb``.

    python benchmarks/compare.py [--quick] [--markdown] [--metrics] [--turns] [--sizes 10,100,1000]

``MONGODB_URL`` (or its alias ``MONGODB_URI``) picks the server; without it the embedded server
(mongoeco) is started. An operation that raises is recorded in the notes column, not fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import importlib.util
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agno.agent import Agent
from agno.db.mongo import AsyncMongoDb as AgnoAsyncMongoDb
from agno.db.mongo import MongoDb as AgnoMongoDb
from agno.metrics import MessageMetrics, RunMetrics
from agno.models.message import Message
from agno.models.openai import OpenAIChat
from agno.run.agent import RunInput, RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession
from pymongo import AsyncMongoClient, MongoClient

from agno_mongo import AsyncMongoDb, MongoDb, local

try:
    from benchmarks.traffic import Traffic
except ImportError:  # run as a script: this folder is on sys.path, the repository root is not
    from traffic import Traffic  # type: ignore[no-redef]

OURS = "agno-mongo"
AGNO = "agno MongoDb"
USER = "user-1"
AGENT_ID = "analyst"
LIST_SESSIONS = 20
CLONE_BATCH = 100
FIRST_AGENT_RUN = "agent run, first on a new database"
QUESTIONS = ["What is the capital of France?", "What was my last question?", "Tell me about Paris."]


@dataclass(frozen=True)
class Settings:
    """Sizes for one run of the benchmark."""

    sizes: tuple[int, ...] = (10, 100, 1000)
    repeat: int = 5
    agent_runs: int = 5
    concurrent_sessions: int = 50
    appends_per_session: int = 20

    @classmethod
    def quick(cls) -> Settings:
        """Small sizes for the smoke test: the same workloads, seconds instead of minutes."""
        return cls(sizes=(5, 50), repeat=2, agent_runs=2, concurrent_sessions=50, appends_per_session=2)


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: per-operation averages for one store and workload."""

    workload: str
    store: str
    runs: int | None
    commands: float
    bytes_sent: float
    bytes_received: float
    cpu_ms: float
    note: str = ""
    error: str | None = None
    command_names: list[str] = field(default_factory=list)


def describe_error(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"raised {type(error).__name__}: {text[:90]}"


def measure(
    workload: str, store: str, runs: int | None, traffic: Traffic, op: Callable[[int], object], repeat: int
) -> Row:
    """Run ``op(i)`` ``repeat`` times; commands and bytes averaged, CPU the median, errors recorded."""
    traffic.reset()
    cpu: list[float] = []
    error: str | None = None
    first: list[str] = []
    for i in range(repeat):
        start = time.thread_time()
        try:
            with traffic.counting():
                op(i)
        except Exception as e:  # agno's store may behave differently: record, don't crash
            error = describe_error(e)
            break
        finally:
            cpu.append(time.thread_time() - start)
            first = first or traffic.snapshot()
    return finish(workload, store, runs, traffic, cpu, error, first)


async def ameasure(
    workload: str,
    store: str,
    runs: int | None,
    traffic: Traffic,
    op: Callable[[int], Awaitable[object]],
    repeat: int,
) -> Row:
    """Async twin of :func:`measure`."""
    traffic.reset()
    cpu: list[float] = []
    error: str | None = None
    first: list[str] = []
    for i in range(repeat):
        start = time.thread_time()
        try:
            with traffic.counting():
                await op(i)
        except Exception as e:
            error = describe_error(e)
            break
        finally:
            cpu.append(time.thread_time() - start)
            first = first or traffic.snapshot()
    return finish(workload, store, runs, traffic, cpu, error, first)


def finish(
    workload: str,
    store: str,
    runs: int | None,
    traffic: Traffic,
    cpu: list[float],
    error: str | None,
    first: list[str],
) -> Row:
    """Per-operation averages of what ``traffic`` counted over ``len(cpu)`` operations."""
    n = max(len(cpu), 1)
    return Row(
        workload=workload,
        store=store,
        runs=runs,
        commands=traffic.commands / n,
        bytes_sent=traffic.sent / n,
        bytes_received=traffic.received / n,
        cpu_ms=1000 * statistics.median(cpu) if cpu else 0.0,
        error=error,
        command_names=first,
    )


# --- the data -------------------------------------------------------------------------------------


def make_run(session_id: str, index: int, status: RunStatus = RunStatus.completed) -> RunOutput:
    """A run as an agent stores it: input, three messages with metrics, the answer: about 2 KB of BSON."""
    question = f"Question {index}: could you summarise the quarterly figures for region {index % 7} and what next?"
    answer = (
        "Here is a summary of the figures you asked about. Revenue grew steadily, costs stayed flat, "
        "and the margin improved. Next steps: review pricing, check churn, and plan the hiring round. "
    ) * 3
    usage = MessageMetrics(input_tokens=120, output_tokens=90, total_tokens=210)
    messages = [
        Message(role="system", content="You are a helpful analyst. Answer briefly and cite figures."),
        Message(role="user", content=question),
        Message(role="assistant", content=answer, metrics=usage),
    ]
    return RunOutput(
        run_id=f"{session_id}-run-{index}",
        agent_id=AGENT_ID,
        session_id=session_id,
        user_id=USER,
        input=RunInput(input_content=question),
        content=answer,
        model="gpt-4o",
        model_provider="OpenAI",
        messages=messages,
        metrics=RunMetrics(input_tokens=120, output_tokens=90, total_tokens=210),
        status=status,
        created_at=int(time.time()),
    )


def make_session(session_id: str) -> AgentSession:
    return AgentSession(
        session_id=session_id,
        agent_id=AGENT_ID,
        user_id=USER,
        session_data={"session_name": f"Figures {session_id}", "session_state": {"region": 3}},
        agent_data={"name": "Analyst", "model": {"id": "gpt-4o", "provider": "OpenAI"}},
        created_at=int(time.time()),
    )


def clone_ours(database: Any, collection: str, session_id: str, copies: int) -> None:
    """Copies of one stored session in agno-mongo's layout (runs embedded), with fresh ids."""
    original = database[collection].find_one({"_id": session_id})
    documents = []
    for k in range(copies):
        new_id = f"{session_id}-copy{k}"
        document = copy.deepcopy(original)
        document["_id"] = document["session_id"] = new_id
        document["created_at"] -= k + 1
        for run in document["runs"]:
            run["run_id"] = run["run_id"].replace(session_id, new_id, 1)
            run["session_id"] = new_id
        documents.append(document)
    for document in documents:  # one at a time: the embedded server is slow with very large inserts
        database[collection].insert_one(document)


def clone_agno(database: Any, sessions: str, runs: str, session_id: str, copies: int) -> None:
    """Copies of one stored session in agno's layout (a session row plus one row per run)."""
    original = database[sessions].find_one({"session_id": session_id})
    rows = list(database[runs].find({"session_id": session_id}))
    for k in range(copies):
        new_id = f"{session_id}-copy{k}"
        document = {key: value for key, value in original.items() if key != "_id"}
        document["session_id"] = new_id
        document["created_at"] -= k + 1
        database[sessions].insert_one(document)
        new_rows = []
        for row in rows:
            new_row = {key: copy.deepcopy(value) for key, value in row.items() if key != "_id"}
            new_row["run_id"] = new_row["run_data"]["run_id"] = row["run_id"].replace(session_id, new_id, 1)
            new_row["session_id"] = new_row["run_data"]["session_id"] = new_id
            new_rows.append(new_row)
        for start in range(0, len(new_rows), CLONE_BATCH):  # small batches: the embedded server is single-threaded
            database[runs].insert_many(new_rows[start : start + CLONE_BATCH])


# --- the workloads --------------------------------------------------------------------------------


@dataclass
class Side:
    """One store under test: its class, a listener and a name prefix for its databases."""

    name: str
    slug: str
    sync_cls: Any
    async_cls: Any
    traffic: Traffic
    client: MongoClient[Any]


def make_agent(db: Any, model_url: str) -> Agent:
    return Agent(
        model=OpenAIChat(id="gpt-4o", base_url=model_url, api_key="local"),
        db=db,
        session_id="agent-session",
        add_history_to_context=True,
        num_history_runs=3,
    )


def warm_up(side: Side, model_url: str, database: str) -> None:
    """Two agent runs on a throwaway database: imports and first-call costs are paid before measuring."""
    agent = make_agent(side.sync_cls(db_client=side.client, db_name=database), model_url)
    for question in QUESTIONS[:2]:
        agent.run(question)


def agent_rows(side: Side, model_url: str, database: str, settings: Settings) -> tuple[Row, Row]:
    """A real Agent with history: steady-state runs, and its first run on a new database."""
    agent = make_agent(side.sync_cls(db_client=side.client, db_name=database), model_url)
    first = measure(FIRST_AGENT_RUN, side.name, None, side.traffic, lambda i: agent.run("Hi"), 1)
    agent.run(QUESTIONS[0])  # the steady state starts with history present

    def turn(i: int) -> object:
        return agent.run(QUESTIONS[i % len(QUESTIONS)])

    return measure("agent run", side.name, None, side.traffic, turn, settings.agent_runs), first


HISTORY_TURN = "agent turn, stored history"


def history_turn_row(side: Side, model_url: str, database: str, size: int, settings: Settings) -> Row:
    """One real Agent turn (``add_history_to_context``, 3 history runs) on a session that already
    holds ``size`` runs: agno reads the whole session at the start of every run, whatever the store."""
    db = side.sync_cls(db_client=side.client, db_name=database)
    session_id = "history"
    db.upsert_session(make_session(session_id))
    for index in range(size):
        db.upsert_run(make_run(session_id, index), session_id=session_id, user_id=USER, run_index=index)
    agent = Agent(
        model=OpenAIChat(id="gpt-4o", base_url=model_url, api_key="local"),
        db=db,
        id=AGENT_ID,
        session_id=session_id,
        user_id=USER,
        add_history_to_context=True,
        num_history_runs=3,
    )
    agent.run(QUESTIONS[0])  # this instance has read the session once: the steady state

    def turn(i: int) -> object:
        return agent.run(QUESTIONS[i % len(QUESTIONS)])

    return measure(HISTORY_TURN, side.name, size, side.traffic, turn, settings.agent_runs)


async def async_agent_row(url: str, side: Side, model_url: str, database: str, settings: Settings) -> Row:
    """The same Agent on the async class (``arun``), steady state."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, event_listeners=[side.traffic])
    try:
        agent = make_agent(side.async_cls(db_client=client, db_name=database), model_url)
        await agent.arun("Hi")
        await agent.arun(QUESTIONS[0])

        def turn(i: int) -> Awaitable[object]:
            return agent.arun(QUESTIONS[i % len(QUESTIONS)])

        return await ameasure("agent run (async)", side.name, None, side.traffic, turn, settings.agent_runs)
    finally:
        await client.close()


def session_rows(side: Side, db: Any, fresh: Any, size: int, settings: Settings) -> list[Row]:
    """Build a session of ``size`` runs by appending, copy it 19 times, then measure each operation."""
    session_id = f"s{size}"
    db.upsert_session(make_session(session_id))
    for index in range(size):
        db.upsert_run(make_run(session_id, index), session_id=session_id, user_id=USER, run_index=index)
    raw = side.client[db.db_name]
    if side.name == OURS:
        clone_ours(raw, db.session_table_name, session_id, LIST_SESSIONS - 1)
    else:
        clone_agno(raw, db.session_table_name, db.runs_table_name, session_id, LIST_SESSIONS - 1)

    def append(i: int) -> None:
        db.upsert_run(make_run(session_id, size + i), session_id=session_id, user_id=USER, run_index=size + i)

    def update(store: Any) -> Callable[[int], None]:
        def op(i: int) -> None:
            run = make_run(session_id, size - 1 - i, status=RunStatus.cancelled)
            run.content = f"edited {i}"
            store.upsert_run(run, session_id=session_id, user_id=USER)

        return op

    fresh.get_session(session_id)  # a process that has served requests before: collections opened
    t, r, name = side.traffic, settings.repeat, side.name
    return [
        measure("read session", name, size, t, lambda i: db.get_session(session_id, user_id=USER), r),
        measure(
            "read recent history (runs_limit=3)",
            name,
            size,
            t,
            lambda i: db.get_session(session_id, user_id=USER, runs_limit=3),
            r,
        ),
        measure("list sessions (limit=20)", name, size, t, lambda i: db.get_sessions(limit=20, deserialize=False), r),
        measure("append run", name, size, t, append, r),
        measure("update run", name, size, t, update(db), r),
        measure("update run, fresh instance", name, size, t, update(fresh), r),
    ]


async def throughput_row(url: str, side: Side, prefix: str, settings: Settings) -> Row:
    """``concurrent_sessions`` sessions, each appending ``appends_per_session`` runs, all at once."""
    traffic = side.traffic
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, event_listeners=[traffic])
    n_sessions, k = settings.concurrent_sessions, settings.appends_per_session
    workload = f"async appends, {n_sessions} sessions at once"
    try:
        db = side.async_cls(db_client=client, db_name=f"{prefix}_{side.slug}_async")
        ids = [f"c{j}" for j in range(n_sessions)]
        await db.upsert_session(make_session("warm"))  # collections and indexes exist before timing
        await db.upsert_run(make_run("warm", 0), session_id="warm", user_id=USER, run_index=0)
        await asyncio.gather(*(db.upsert_session(make_session(sid)) for sid in ids))

        async def appender(sid: str) -> None:
            for index in range(k):
                await db.upsert_run(make_run(sid, index), session_id=sid, user_id=USER, run_index=index)

        traffic.reset()
        error = None
        cpu, wall = time.thread_time(), time.perf_counter()
        with traffic.counting():
            results = await asyncio.gather(*(appender(sid) for sid in ids), return_exceptions=True)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            error = f"{len(failures)} of {n_sessions} sessions failed; first {describe_error(failures[0])}"
        ops = n_sessions * k
        return Row(
            workload=workload,
            store=side.name,
            runs=None,
            commands=traffic.commands / ops,
            bytes_sent=traffic.sent / ops,
            bytes_received=traffic.received / ops,
            cpu_ms=1000 * cpu / ops,
            note=f"{ops / wall:.0f} ops/s ({ops} appends in {wall:.2f} s wall)",
            error=error,
            command_names=sorted(set(traffic.names)),
        )
    finally:
        await client.close()


# --- putting it together --------------------------------------------------------------------------


@dataclass
class Report:
    server: str
    rows: list[Row]
    settings: Settings


def describe_server(url: str) -> str:
    """Which server produced the numbers: from ``hello`` (and ``buildInfo`` where hello has no version)."""
    client: MongoClient[Any] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        hello = client.admin.command("hello")
        version = hello.get("version")
        if version is None:
            try:
                version = client.admin.command("buildInfo").get("version")
            except Exception:
                version = "unknown version"
        product = "mongoeco (embedded, MongoDB wire protocol)" if hello.get("gitVersion") == "mongoeco" else "MongoDB"
        topology = f"replica set {hello['setName']}" if hello.get("setName") else "standalone"
        if hello.get("msg") == "isdbgrid":
            topology = "mongos"
        return f"{product} {version}, {topology}, maxWireVersion {hello.get('maxWireVersion')}"
    finally:
        client.close()


def run(url: str, *, settings: Settings | None = None, quick: bool = False, turns_only: bool = False) -> Report:
    """Run every workload on both stores against the server at ``url``; the table rows. With
    ``turns_only``, only the agent rows and the per-turn rows at each session size."""
    from agno_mongo.testing import LocalOpenAIServer

    settings = settings or (Settings.quick() if quick else Settings())
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    sides = []
    for name, slug, sync_cls, async_cls in (
        (OURS, "ours", MongoDb, AsyncMongoDb),
        (AGNO, "agno", AgnoMongoDb, AgnoAsyncMongoDb),
    ):
        traffic = Traffic()  # on the client passed as db_client
        sides.append(Side(name, slug, sync_cls, async_cls, traffic, MongoClient(url, event_listeners=[traffic])))
    rows: list[Row] = []
    try:
        with LocalOpenAIServer() as model_server:
            for side in sides:
                warm_up(side, model_server.base_url, f"{prefix}_{side.slug}_warm")
            steady, first = zip(
                *(agent_rows(side, model_server.base_url, f"{prefix}_{side.slug}_agent", settings) for side in sides),
                strict=True,
            )
            rows += steady
            for side in sides:
                database = f"{prefix}_{side.slug}_agent_async"
                rows.append(asyncio.run(async_agent_row(url, side, model_server.base_url, database, settings)))
            rows += first
            for size in settings.sizes:
                for side in sides:
                    database = f"{prefix}_{side.slug}_turns_{size}"
                    rows.append(history_turn_row(side, model_server.base_url, database, size, settings))
            if turns_only:
                return Report(server=describe_server(url), rows=rows, settings=settings)
        for size in settings.sizes:
            per_side = []
            for side in sides:
                name = f"{prefix}_{side.slug}_{size}"
                db = side.sync_cls(db_client=side.client, db_name=name)
                fresh = side.sync_cls(db_client=side.client, db_name=name)
                per_side.append(session_rows(side, db, fresh, size, settings))
            for pair in zip(*per_side, strict=True):
                rows += pair
        for side in sides:
            rows.append(asyncio.run(throughput_row(url, side, prefix, settings)))
    finally:
        for side in sides:
            try:
                for database in side.client.list_database_names():
                    if database.startswith(prefix):
                        side.client.drop_database(database)
            except Exception as e:  # never hide the error that got us here
                print(f"could not drop the benchmark databases: {describe_error(e)}", file=sys.stderr)
            side.client.close()
    return Report(server=describe_server(url), rows=rows, settings=settings)


def metrics_rows(url: str, n_sessions: int) -> list[Row]:
    """``calculate_metrics`` rows from ``benchmarks/metrics_compare.py``, in this table's shape."""
    spec = importlib.util.spec_from_file_location("metrics_compare", Path(__file__).with_name("metrics_compare.py"))
    if spec is None or spec.loader is None:
        raise ImportError("benchmarks/metrics_compare.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = []
    for row in module.compare(url, n_sessions):
        rows.append(
            Row(
                workload=f"calculate_metrics, {row['phase']}, {n_sessions} sessions",
                store=row["store"],
                runs=None,
                commands=row["commands"],
                bytes_sent=row["bytes_sent"],
                bytes_received=row["bytes_received"],
                cpu_ms=1000 * row["client_cpu_s"],
                note=f"{row['records']} records; same records: {row['same_records']}",
            )
        )
    return rows


# --- printing -------------------------------------------------------------------------------------

COLUMNS = ["workload", "runs in session", "store", "commands", "bytes sent", "bytes received", "client CPU ms", "notes"]


def number(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


def cells(row: Row) -> list[str]:
    notes = "; ".join(part for part in (row.error, row.note) if part)
    return [
        row.workload,
        "" if row.runs is None else f"{row.runs:,}",
        row.store,
        number(row.commands),
        number(round(row.bytes_sent)),
        number(round(row.bytes_received)),
        f"{row.cpu_ms:.2f}",
        notes,
    ]


def format_table(report: Report, *, markdown: bool) -> str:
    """The one table: markdown for README, or aligned plain text."""
    lines = [
        f"Server: {report.server}",
        "Per operation: commands (round trips), BSON bytes sent and received, client CPU (median).",
        "",
    ]
    body = [cells(row) for row in report.rows]
    if markdown:
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join("---:" if c in COLUMNS[3:7] else "---" for c in COLUMNS) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body]
    else:
        widths = [max(len(COLUMNS[i]), *(len(line[i]) for line in body)) for i in range(len(COLUMNS))]
        lines.append("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
        for line in body:
            lines.append(
                "  ".join(
                    c.rjust(w) if 3 <= i < 7 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
                ).rstrip()
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (the smoke test uses this)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--sizes", help="session lengths, comma separated (default 10,100,1000)")
    parser.add_argument("--metrics", action="store_true", help="add calculate_metrics rows (metrics_compare.py)")
    parser.add_argument("--turns", action="store_true", help="only the agent rows, per turn at each session size")
    parser.add_argument(
        "--metrics-sessions",
        type=int,
        default=None,
        help="sessions for --metrics (default 1,000 on the embedded server, 10,000 on MONGODB_URL)",
    )
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    if args.sizes:
        sizes = tuple(int(part) for part in args.sizes.split(","))
        settings = Settings(**{**settings.__dict__, "sizes": sizes})
    url = local.env_url() or ""  # MONGODB_URL, or its alias MONGODB_URI
    # agno's layout at 10,000 sessions cannot be indexed on the embedded server in useful time
    # (mongoeco checks a unique index pair by pair): 1,000 there, 10,000 on a real server.
    n_metrics = args.metrics_sessions or (200 if args.quick else 10_000 if url else 1_000)

    def on(url: str, source: str) -> Report:
        report = run(url, settings=settings, turns_only=args.turns)
        if args.metrics:
            report.rows += metrics_rows(url, n_metrics)
        report.server = f"{report.server} ({source})"
        return report

    if url:
        report = on(url, "MONGODB_URL")
    else:
        from agno_mongo.testing import EmbeddedServer

        with EmbeddedServer() as server:
            report = on(server.url, "embedded server started by this script")
    print(format_table(report, markdown=args.markdown))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
