"""calculate_metrics: agno-mongo against agno 3.1.10's own MongoDb, on the same server and data.

Seeds N sessions (a couple of runs each, with token metrics, spread over the last 30 days, several
users, some without one) into each store's own layout (ours: one document per session with its runs
embedded; agno's: a sessions collection plus a runs collection), on separate databases of one
server. Then runs ``calculate_metrics`` on each, twice (the first call builds every day; the second
only reopens today), with a PyMongo ``CommandListener`` counting commands and BSON bytes each way,
and ``time.process_time`` for the client's CPU. The records both produce are compared too.

    python benchmarks/metrics_compare.py [--sessions 10000]

``MONGODB_URL`` (or its alias ``MONGODB_URI``) picks the server; without it the embedded server (mongoeco) is started.
``compare(url, n_sessions)`` returns the table rows for the main benchmark to import.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import bson
from agno.db.base import SessionType
from agno.db.mongo import MongoDb as AgnoMongoDb
from agno.db.utils import build_single_run_row
from agno.metrics import RunMetrics
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.run.team import TeamRunOutput
from agno.run.workflow import WorkflowRunOutput
from pymongo import MongoClient

from agno_mongo import MongoDb, local
from agno_mongo.schema.base import SCHEMA_VERSION

try:
    from benchmarks.traffic import Traffic
except ImportError:  # run as a script: this folder is on sys.path, the repository root is not
    from traffic import Traffic  # type: ignore[no-redef]

STORES = ("ours", "agno")
DAY = 86400
BATCH = 500
MODELS = [("gpt-4o", "OpenAI"), ("gpt-4o-mini", "OpenAI"), ("claude-sonnet-4", "Anthropic"), ("gemini-2.5", "Google")]
PATIENT: dict[str, Any] = {"connectTimeoutMS": 600_000, "serverSelectionTimeoutMS": 600_000}
"""The embedded server answers nothing while it works through a long command; without patience
the driver's monitor gives up on it (its ``hello`` times out) and cancels the command in flight."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the data -----------------------------------------------------------------------------------


def make_sessions(n_sessions: int, now: int, seed: int = 7) -> list[dict[str, Any]]:
    """Plain descriptions of the sessions, the same for both stores."""
    rng = random.Random(seed)
    users = [f"user-{i:02d}" for i in range(25)]
    sessions = []
    for index in range(n_sessions):
        kind = rng.choices(["agent", "team", "workflow"], weights=[7, 2, 1])[0]
        created_at = now - rng.randrange(30 * DAY)
        runs = []
        for number in range(rng.choice([1, 2, 2, 3])):
            model, provider = rng.choice(MODELS)
            tokens = rng.randrange(50, 2000)
            runs.append(
                {
                    "run_id": f"s{index}-r{number}",
                    "model": model,
                    "model_provider": provider,
                    "input_tokens": tokens,
                    "output_tokens": tokens // 3,
                    "created_at": min(created_at + 30 * number, now),
                }
            )
        sessions.append(
            {
                "session_id": f"s{index}",
                "kind": kind,
                "user_id": None if rng.random() < 0.1 else rng.choice(users),
                "created_at": created_at,
                "runs": runs,
            }
        )
    return sessions


def run_object(kind: str, session_id: str, run: dict[str, Any]) -> Any:
    """The agno run object, as agno would save it."""
    common: dict[str, Any] = {
        "run_id": run["run_id"],
        "session_id": session_id,
        "status": RunStatus.completed,
        "content": "The answer is 42. " * 8,
        "created_at": run["created_at"],
    }
    if kind == "workflow":
        return WorkflowRunOutput(workflow_id="wf-1", **common)
    metrics = RunMetrics(
        input_tokens=run["input_tokens"],
        output_tokens=run["output_tokens"],
        total_tokens=run["input_tokens"] + run["output_tokens"],
    )
    owner: dict[str, Any] = {"agent_id": "agent-1"} if kind == "agent" else {"team_id": "team-1"}
    cls = RunOutput if kind == "agent" else TeamRunOutput
    return cls(model=run["model"], model_provider=run["model_provider"], metrics=metrics, **owner, **common)


def session_fields(session: dict[str, Any]) -> dict[str, Any]:
    """The fields both layouts share, with ``session_metrics`` summed from the runs as agno keeps it."""
    kind = session["kind"]
    inputs = sum(run["input_tokens"] for run in session["runs"]) if kind != "workflow" else 0
    outputs = sum(run["output_tokens"] for run in session["runs"]) if kind != "workflow" else 0
    metrics = {"input_tokens": inputs, "output_tokens": outputs, "total_tokens": inputs + outputs} if inputs else {}
    return {
        "session_id": session["session_id"],
        "session_type": kind,
        f"{kind}_id": {"agent": "agent-1", "team": "team-1", "workflow": "wf-1"}[kind],
        "user_id": session["user_id"],
        f"{kind}_data": {"name": kind},
        "session_data": {"session_metrics": metrics, "session_state": {"step": 1}},
        "summary": None,
        "metadata": None,
        "created_at": session["created_at"],
        "updated_at": session["created_at"],
    }


def our_documents(sessions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Our layout: one document per session, runs embedded (what upsert_session + upsert_run store)."""
    for session in sessions:
        runs = [run_object(session["kind"], session["session_id"], run).to_dict() for run in session["runs"]]
        yield {
            "_id": session["session_id"],
            **session_fields(session),
            "runs": runs,
            "runs_bytes": sum(len(bson.encode(run)) for run in runs),
            "schema_version": SCHEMA_VERSION,
        }


def agno_documents(sessions: list[dict[str, Any]]) -> tuple[Iterator[dict[str, Any]], Iterator[dict[str, Any]]]:
    """agno's layout: session documents, and one runs-collection row per run (its own row builder)."""
    session_rows = (session_fields(session) for session in sessions)
    run_rows = (
        build_single_run_row(
            run_object(session["kind"], session["session_id"], run),
            session_id=session["session_id"],
            user_id=session["user_id"],
            run_index=index,
        )
        for session in sessions
        for index, run in enumerate(session["runs"])
    )
    return session_rows, run_rows


def insert_batches(collection: Any, documents: Iterator[dict[str, Any]]) -> None:
    """insert_many in batches: the embedded server inserts one document at a time (each scanning the
    collection's ids), so a large insert keeps it busy for minutes."""
    batch: list[dict[str, Any]] = []
    for document in documents:
        batch.append(document)
        if len(batch) >= BATCH:
            collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=False)


# --- the comparison -----------------------------------------------------------------------------


def comparable(records: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Records without ids and timestamps, in a fixed order."""
    out = []
    for record in records or []:
        row = {k: v for k, v in record.items() if k not in {"id", "created_at", "updated_at"}}
        row["model_metrics"] = sorted(row["model_metrics"], key=lambda m: (m["model_id"], m["model_provider"]))
        out.append(row)
    return sorted(out, key=lambda r: (r["date"], r["user_id"] or ""))


def measure(name: str, phase: str, traffic: Traffic, calculate: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
    traffic.reset()
    with traffic.counting():
        cpu, wall = time.process_time(), time.perf_counter()
        records = calculate()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    row = {
        "store": name,
        "phase": phase,
        "commands": traffic.commands,
        "bytes_sent": traffic.sent,
        "bytes_received": traffic.received,
        "client_cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "records": len(records or []),
        "command_names": ", ".join(f"{command} x{n}" for command, n in Counter(traffic.names).most_common()),
    }
    return row, records


def compare(
    url: str, n_sessions: int, stores: tuple[str, ...] = STORES, *, plain_unique_indexes: bool = False
) -> list[dict[str, Any]]:
    """Seed the stores with the same ``n_sessions`` sessions, calculate metrics on each; the table rows.

    After seeding, each store creates its collections and indexes (one cheap read each), so the
    numbers are a steady-state calculation, not index creation. With both stores, each row also says
    whether they produced the same records (ids and timestamps aside). ``stores`` may name one of
    ``"ours"`` and ``"agno"`` alone (see ``--stores``).

    ``plain_unique_indexes`` is for the embedded server: mongoeco builds a unique index by comparing
    every pair of documents (17 s for 2,000 documents here, most of an hour for agno's 25,000 runs
    at 10,000 sessions), so agno's two unique indexes on seeded data (``session_id_1``, ``run_id_1``)
    are built first as plain indexes under agno's own names. agno's ``create_index(unique=True)``
    then meets a conflicting definition, logs a warning and goes on, as it does on any legacy
    collection. Uniqueness plays no part in what is measured (reads and the metrics upserts).
    """
    suffix = uuid.uuid4().hex[:8]
    names = {"ours": f"bench_metrics_ours_{suffix}", "agno": f"bench_metrics_agno_{suffix}"}
    traffic = {"ours": Traffic(), "agno": Traffic()}
    raw: MongoClient[dict[str, Any]] = MongoClient(url, **PATIENT)
    clients = {key: MongoClient(url, event_listeners=[traffic[key]], **PATIENT) for key in names}
    ours = MongoDb(db_client=clients["ours"], db_name=names["ours"])
    agno = AgnoMongoDb(db_client=clients["agno"], db_name=names["agno"])
    try:
        sessions = make_sessions(n_sessions, int(time.time()))
        started = time.perf_counter()
        if "ours" in stores:
            insert_batches(raw[names["ours"]][ours.session_table_name], our_documents(sessions))
        if "agno" in stores:
            agno_sessions, agno_runs = agno_documents(sessions)
            insert_batches(raw[names["agno"]][agno.session_table_name], agno_sessions)
            insert_batches(raw[names["agno"]][agno.runs_table_name], agno_runs)
            if plain_unique_indexes:
                raw[names["agno"]][agno.session_table_name].create_index("session_id", name="session_id_1")
                raw[names["agno"]][agno.runs_table_name].create_index("run_id", name="run_id_1")
        log(f"seeded {n_sessions} sessions into {' and '.join(stores)} in {time.perf_counter() - started:.0f} s")
        every = {"ours": ("agno-mongo", ours), "agno": ("agno MongoDb", agno)}
        chosen = {key: every[key] for key in stores}
        for _, db in chosen.values():  # each store creates its collections and indexes before the measurement
            # a point read: a listing sorts every session. agno's get_session opens its runs collection too.
            db.get_session("warm-up", SessionType.AGENT)
            db.get_metrics()

        rows: list[dict[str, Any]] = []
        for phase in ("first (all days)", "again (today)"):
            log(f"calculate_metrics, {phase} ...")
            measured = []
            for key, (name, db) in chosen.items():
                row, records = measure(name, phase, traffic[key], db.calculate_metrics)
                log(f"  {row}")  # each row as soon as it is measured: agno's pass can take very long
                measured.append((row, comparable(records)))
            same = measured[0][1] == measured[1][1] if len(measured) == 2 else None
            rows += [{**row, "same_records": same} for row, _ in measured]
        return rows
    finally:
        for key, name in names.items():
            raw.drop_database(name)
            clients[key].close()
        raw.close()


def print_table(rows: list[dict[str, Any]], n_sessions: int) -> None:
    columns = ["phase", "store", "commands", "bytes_sent", "bytes_received", "client_cpu_s", "wall_s", "records"]
    columns.append("same_records")
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print(f"calculate_metrics over {n_sessions} sessions")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    print("commands sent:")
    for row in rows:
        print(f"  {row['phase']}, {row['store']}: {row['command_names']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--stores", default=",".join(STORES), help="ours, agno or both (default)")
    args = parser.parse_args()
    stores = tuple(name for name in STORES if name in args.stores.split(","))
    if not stores:
        parser.error("--stores takes ours, agno or ours,agno")
    url = local.env_url() or ""  # MONGODB_URL, or its alias MONGODB_URI
    if url:
        rows = compare(url, args.sessions, stores)
    else:
        from agno_mongo.testing import EmbeddedServer

        with EmbeddedServer() as server:
            rows = compare(server.url, args.sessions, stores, plain_unique_indexes=True)
    print_table(rows, args.sessions)


if __name__ == "__main__":
    main()
