"""Company (Products, Projects, Tasks, Sources) through MongoDb / AsyncMongoDb on all three clients.

Each scenario runs once per client flavour against a real wire server and, step by step, on agno's
own ``SqliteDb`` / ``AsyncSqliteDb`` (``oracle``): every answer (rows, ``(rows, total)`` pages,
counts, agno's ``ValueError`` messages, duplicate-key refusals) is compared after normalising
timestamps. Then what SQL gets from its locks: N writers race ``start_task_run`` and
``transition_task`` on one Task (exactly one wins each round, no transition lost); archive and
restore cascade to exactly the children they should; a refused archive and a transaction whose reply
is lost midway leave nothing half-written; bad input is refused before any command; and AgentOS
starts with ``CompanyConfig(products=...)`` on our store and serves ``/company/*``.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from agno.db.utils import is_unique_violation
from pymongo import MongoClient
from pymongo.errors import AutoReconnect

from agno_mongo import AsyncMongoDb, InvalidInputError, MongoDb
from agno_mongo.contract.company import CompanyContract
from agno_mongo.ops.command import ReplyLost
from tests.conftest import Store, assert_refused, call
from tests.differential import normalised

TIMES = frozenset({"created_at", "updated_at", "deleted_at", "accepted_at"})
COMPANY_TABLES = ("products", "projects", "tasks", "sources")


@pytest.fixture
async def sql(oracle: Any) -> Any:
    """The oracle with its Company tables created (agno's async SQLite writes nothing otherwise)."""
    for table_type in COMPANY_TABLES:
        made = oracle._get_table(table_type, create_table_if_not_found=True)
        if asyncio.iscoroutine(made):
            await made
    return oracle


def outcome(value: Any = None, error: BaseException | None = None) -> tuple[Any, ...]:
    """An answer, or what kind of refusal it was (agno's messages for its own rules)."""
    if error is None:
        return ("ok", value)
    if isinstance(error, Exception) and is_unique_violation(error):
        return ("duplicate",)
    if isinstance(error, InvalidInputError):
        return ("ValueError", "<invalid input>")
    if isinstance(error, ValueError):
        return ("ValueError", str(error))
    return ("error", type(error).__name__, str(error))


class Pair:
    """Plays each call on our store and on the oracle and insists the answers agree."""

    def __init__(self, store: Store, oracle: Any) -> None:
        self.store, self.oracle = store, oracle

    async def answer(self, db: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        try:
            return outcome(await call(getattr(db, method)(*args, **kwargs)))
        except Exception as error:  # noqa: BLE001 - the kind of refusal is compared
            return outcome(error=error)

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        ours = await self.answer(self.store.db, method, args, kwargs)
        theirs = await self.answer(self.oracle, method, args, kwargs)
        assert normalised(ours, times=TIMES) == normalised(theirs, times=TIMES), method
        assert ours[0] != "error", ours  # agreeing on a crash proves nothing
        return ours[1] if ours[0] == "ok" else ours

    async def refused(self, method: str, *args: Any, **kwargs: Any) -> str:
        """Both refuse with a ValueError; agno's message (ours, when state decides it, is the same)."""
        answer = await self(method, *args, **kwargs)
        assert isinstance(answer, tuple) and answer[0] in {"ValueError", "duplicate"}, answer
        return str(answer[-1])


@pytest.fixture
def both(store: Store, sql: Any) -> Pair:
    return Pair(store, sql)


def product(product_id: str, created_at: int, **extra: Any) -> dict[str, Any]:
    """A Product as agno's ``CompanyManager`` / bootstrap builds one."""
    return {
        "id": product_id,
        "name": f"Product {product_id}",
        "purpose": "Make things",
        "metadata": None,
        "user_id": None,
        "created_at": created_at,
        "updated_at": None,
        "deleted_at": None,
        **extra,
    }


def project(project_id: str, product_id: str, created_at: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": project_id,
        "product_id": product_id,
        "name": f"Project {project_id}",
        "outcome": "Shipped",
        "status": "proposed",
        "user_id": None,
        "transitions": [],
        "created_at": created_at,
        "updated_at": None,
        "deleted_at": None,
        **extra,
    }


def task(task_id: str, product_id: str, created_at: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "product_id": product_id,
        "project_id": None,
        "title": f"Task {task_id}",
        "brief": "Do it",
        "status": "backlog",
        "user_id": None,
        "evidence": [{"kind": "note", "text": "seen"}],
        "transitions": [],
        "metadata": {"origin": "test"},
        "created_at": created_at,
        "updated_at": None,
        "deleted_at": None,
        **extra,
    }


def source(source_id: str, product_id: str, created_at: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": source_id,
        "product_id": product_id,
        "type": "markdown",
        "reference": "docs/handbook",
        "credential_ref": None,
        "config": {"paths": ["a.md"]},
        "user_id": None,
        "created_at": created_at,
        "updated_at": None,
        "deleted_at": None,
        **extra,
    }


# --- differential scenarios ------------------------------------------------------------------------


async def test_products_answer_as_agnos(both: Pair) -> None:
    await both("get_products")
    await both("create_product", product("p1", 100))
    await both("create_product", product("p2", 200, metadata={"archive_window_days": 3, "team": "core"}))
    await both("create_product", product("p3", 200, user_id="alice"))
    assert await both.refused("create_product", product("p1", 300)) == "duplicate"
    await both("get_product", "p1")
    await both("get_product", "p3", user_id="alice")
    await both("get_product", "p3", user_id="bob")
    await both("get_product", "nope")
    for kwargs in (
        {},
        {"sort_order": "asc"},
        {"limit": 2},
        {"limit": 2, "page": 2},
        {"limit": 2, "page": 3},
        {"user_id": "alice"},
        {"sort_by": "updated_at"},
    ):
        await both("get_products", **kwargs)
    await both("update_product", "p1", name="Renamed", purpose=None)
    await both("get_products", sort_by="updated_at")
    await both("get_products", sort_by="updated_at", sort_order="asc")
    await both("update_product", "p3", user_id="bob", name="Not yours")
    await both("update_product", "nope", name="x")
    # Routine links: appended once, and kept when the metadata is replaced without them.
    await both("add_product_routine", "p2", "sched-1")
    await both("add_product_routine", "p2", "sched-2")
    await both("add_product_routine", "p2", "sched-1")
    await both("update_product", "p2", metadata={"team": "web"})
    await both("get_product", "p2")
    await both("update_product", "p2", metadata={"team": "web", "routine_ids": []})
    await both("get_product", "p2")
    await both.refused("add_product_routine", "nope", "sched-1")
    await both("get_product_counts", [])
    counts = await both("get_product_counts", ["p1", "p2", "missing"])
    assert set(counts) == {"p1", "p2", "missing"}
    # Archive and restore of a childless Product.
    await both("delete_product", "p1", user_id="alice")
    await both("delete_product", "p1")
    await both("delete_product", "p1")
    await both("get_product", "p1")
    await both("get_product", "p1", include_deleted=True)
    await both("get_products")
    await both("get_products", include_deleted=True)
    await both.refused("add_product_routine", "p1", "sched-1")
    await both("update_product", "p1", name="archived")
    await both("restore_product", "p2")
    await both("restore_product", "p1", user_id="alice")
    await both("restore_product", "p1")
    await both("get_products")


async def test_projects_and_tasks_answer_as_agnos(both: Pair) -> None:
    await both("create_product", product("P", 100))
    await both("create_product", product("Q", 100))
    await both.refused("create_project", project("J0", "missing", 100))
    await both("create_project", project("J1", "P", 110))
    await both("create_project", project("J2", "P", 120, user_id="alice"))
    await both("create_project", project("JQ", "Q", 120))
    await both("create_project", project("J1", "P", 999), reuse=True)
    await both.refused("create_project", project("J1", "Q", 999), reuse=True)
    assert await both.refused("create_project", project("J1", "P", 130)) == "duplicate"
    for kwargs in (
        {},
        {"product_id": "P"},
        {"status": "proposed", "product_id": "P"},
        {"user_id": "alice"},
        {"limit": 1, "page": 2},
        {"sort_by": "updated_at", "sort_order": "asc"},
    ):
        await both("get_projects", **kwargs)
    await both("update_project", "J1", name="First", target_date=1_900_000_000)
    await both("update_project", "J1", expected_status="active", name="no")
    await both("get_project", "J1")
    await both("get_project", "J2", user_id="bob")
    # Tasks: plain, in a Project, deduplicated, refused in another Product's Project.
    await both("create_task", task("T1", "P", 200, project_id="J1"))
    await both("create_task", task("T2", "P", 210))
    await both("create_task", task("T3", "P", 220, dedupe_key="finding-1", origin="routine", routine_id="r1"))
    await both("create_task", task("T4", "P", 230, dedupe_key="finding-1"))
    await both("create_task", task("T5", "P", 230, dedupe_key="finding-1", project_id="JQ"))
    await both("create_task", task("T6", "P", 240))
    await both.refused("create_task", task("TQ", "P", 250, project_id="JQ"))
    await both.refused("create_task", task("TX", "P", 250, project_id="missing"))
    assert await both.refused("create_task", task("T2", "P", 260)) == "duplicate"
    await both("create_task", task("TQ1", "Q", 250, dedupe_key="finding-1"))
    for kwargs in (
        {},
        {"product_id": "P"},
        {"project_id": "J1"},
        {"status": "backlog", "limit": 2},
        {"failed": True},
        {"failed": False},
        {"sort_by": "updated_at"},
    ):
        await both("get_tasks", **kwargs)
    await both("update_task", "T2", title="Second", evidence=[{"kind": "log"}], project_id="J1")
    await both.refused("update_task", "T2", project_id="JQ")
    await both("update_task", "T2", project_id=None)
    await both("update_task", "missing", title="x")
    # Lifecycle: accept, start, complete, review; invalid moves refused with agno's messages.
    await both.refused("transition_task", "T1", "done", "skip ahead")
    await both.refused("transition_task", "T1", "ready", "no executor")
    stale = await both("get_task", "T1")
    ready = await both(
        "transition_task", "T1", "ready", "Go", accepted_by="alice", executor_type="agent", executor_id="coder"
    )
    await both("update_task", "T1", title="not in backlog any more")
    await both("start_task_run", "T1", 1, stale["transitions"])
    await both.refused("start_task_run", "T1", 2, ready["transitions"])
    started = await both("start_task_run", "T1", 1, ready["transitions"], user_id="alice", run_db_id="run-db")
    await both("start_task_run", "T1", 2, ready["transitions"])
    await both("complete_task_run", "T1", "wrong-job", {"status": "COMPLETED"})
    await both("complete_task_run", "T1", started["job_id"], {"status": "ERROR"}, ready["transitions"])
    await both("get_tasks", failed=True)
    await both("get_tasks", failed=False, product_id="P")
    failed = await both("complete_task_run", "T1", started["job_id"], {"status": "ERROR", "content": "boom"})
    await both("complete_task_run", "T1", started["job_id"], {"status": "COMPLETED"})
    await both("get_tasks", failed=True)
    again = await both("start_task_run", "T1", 2, failed["transitions"], session_user_id="bob")
    done = await both(
        "complete_task_run", "T1", again["job_id"], {"status": "COMPLETED"}, checkout={"branch": "task/T1"}
    )
    await both("transition_task", "T1", "done", "Looks good", expected_updated_at=123)
    await both("transition_task", "T1", "done", "Looks good", user_id="bob")
    await both("transition_task", "T1", "done", "Looks good", expected_updated_at=done["updated_at"])
    await both("get_project_counts", ["J1", "J2", "none"])
    await both("get_product_counts", ["P", "Q"])
    # Project lifecycle: completion refused while a Task is open, then allowed.
    await both("transition_project", "J1", "active", "Start", accepted_by="alice")
    await both("transition_project", "J1", "active", "Again")
    await both("create_task", task("T7", "P", 300, project_id="J1"))
    await both.refused("transition_project", "J1", "done", "Finish")
    await both("transition_task", "T7", "cancelled", "Not needed")
    await both("transition_project", "J1", "done", "Finish", user_id="bob")
    await both("transition_project", "J1", "done", "Finish", expected_updated_at=None)
    await both("transition_project", "J1", "done", "Finish")
    await both.refused("create_task", task("T8", "P", 310, project_id="J1"))
    await both("create_task", task("T8", "P", 310, project_id="J1", status="done"))
    # Deleting and restoring single Tasks.
    await both("delete_task", "T6", updated_before=1)
    await both("delete_task", "T6", user_id="alice")
    await both("delete_task", "T6")
    await both("delete_task", "T6")
    await both("get_task", "T6", include_deleted=True)
    await both("restore_task", "T6", user_id="alice")
    await both("restore_task", "T6")
    await both("restore_task", "T6")
    await both("delete_task", "T7", updated_before=10**12)
    await both("get_tasks", include_deleted=True, product_id="P")


async def test_archive_and_restore_cascade_as_agnos(both: Pair, store: Store) -> None:
    await both("create_product", product("P", 100))
    await both("create_project", project("J1", "P", 110))
    await both("create_project", project("J2", "P", 120))
    await both("create_task", task("A", "P", 200, project_id="J1"))
    await both("create_task", task("B", "P", 210, project_id="J2"))
    await both("create_task", task("C", "P", 220))
    await both("create_source", source("S", "P", 230))
    # An active Task blocks both archives, and the refusal changes nothing.
    await both("transition_task", "C", "ready", "Go", executor_type="agent", executor_id="coder")
    message = await both.refused("delete_product", "P")
    assert "Cannot archive with active Tasks" in message and "'C'" in message
    await both("transition_task", "A", "ready", "Go", executor_type="agent", executor_id="coder")
    await both.refused("delete_project", "J1")
    await both("get_product", "P")
    await both("get_project", "J1")
    await both("transition_task", "A", "cancelled", "Stop")
    await both("transition_task", "C", "backlog", "Later")
    # A Project archived on its own, then the Product: each child records who archived it.
    await both("delete_project", "J2", updated_before=10**12)
    await both("delete_project", "J2")
    await both("get_tasks", include_deleted=True)
    await both.refused("restore_task", "B")
    await both("delete_product", "P")
    for method, record_id in (("get_project", "J1"), ("get_project", "J2"), ("get_task", "A"), ("get_task", "B")):
        await both(method, record_id, include_deleted=True)
    for listing in ("get_projects", "get_tasks", "get_sources"):
        await both(listing)
        await both(listing, include_deleted=True)
    await both("get_product_counts", ["P"])
    await both("get_project_counts", ["J1", "J2"])
    await both.refused("create_task", task("D", "P", 300))
    await both.refused("create_project", project("J3", "P", 300))
    await both.refused("create_source", source("S2", "P", 300))
    await both.refused("restore_task", "A")
    await both.refused("delete_task", "A")
    await both.refused("update_project", "J1", name="x")
    await both.refused("restore_project", "J1")
    # Restore brings back exactly what the Product's archive archived (J2 and B stay archived).
    await both("restore_product", "P")
    for method, record_id in (("get_project", "J1"), ("get_project", "J2"), ("get_task", "A"), ("get_task", "B")):
        await both(method, record_id, include_deleted=True)
    for listing in ("get_projects", "get_tasks", "get_sources"):
        await both(listing, include_deleted=True)
    await both("restore_project", "J2")
    assert (await both("get_task", "B"))["deleted_at"] is None
    await both("get_tasks")
    await both("get_product_counts", ["P"])
    raw = store.raw
    events = [entry.get("action") for entry in raw.agno_company_tasks.find_one({"_id": "A"})["transitions"]]
    assert events.count("archive") == 1 and events.count("restore") == 1


async def test_sources_answer_as_agnos(both: Pair) -> None:
    await both("create_product", product("P", 100))
    await both("create_product", product("Q", 100))
    await both("create_source", source("S1", "P", 200))
    await both("create_source", source("S2", "P", 210, reference="docs/other", user_id="alice"))
    await both("create_source", source("S3", "Q", 220))
    await both("create_source", source("S9", "P", 300, config={"paths": ["a.md"], "metadata": {"x": 1}}), reuse=True)
    await both.refused("create_source", source("S9", "P", 300, config={"paths": ["b.md"]}), reuse=True)
    await both.refused("create_source", source("S9", "P", 300, credential_ref="TOKEN"), reuse=True)
    await both.refused("create_source", source("S9", "missing", 300))
    assert await both.refused("create_source", source("S1", "P", 300, reference="docs/new")) == "duplicate"
    for kwargs in ({}, {"product_id": "P"}, {"user_id": "alice"}, {"limit": 1, "page": 2}):
        await both("get_sources", **kwargs)
    await both("get_source", "S2", user_id="bob")
    await both("update_source", "S1", config={"paths": ["b.md", "c.md"]})
    await both("update_source", "S1", reference="docs/moved", credential_ref="DOCS_TOKEN")
    await both.refused("update_source", "S1", credential_ref="not an env name")
    await both.refused("update_source", "S1", type="website", reference="http://localhost/x")
    await both("update_source", "S2", user_id="bob", reference="docs/x")
    await both("delete_source", "S1", user_id="bob")
    await both("delete_source", "S1")
    await both("delete_source", "S1")
    await both("update_source", "S1", reference="docs/x")
    await both.refused("create_source", source("S9", "P", 300, reference="docs/moved"), reuse=True)
    await both("get_sources", include_deleted=True)
    await both("restore_source", "S2")
    await both("restore_source", "S1")
    await both("get_source", "S1")


async def test_automatic_acceptance_spends_the_routine_budget_as_agnos(both: Pair) -> None:
    await both("create_product", product("P", 100))
    await both("create_project", project("J", "P", 110, status="active"))
    for name, created in (("A", 200), ("B", 210), ("C", 220)):
        await both("create_task", task(name, "P", created, routine_id="r1", origin="routine"))
    policy = {"routine_id": "r1", "policy": "trusted", "max_acceptances": 2}
    await both("count_company_acceptances", "r1", "trusted", "X")
    a = await both("get_task", "A")
    await both.refused(
        "transition_task", "A", "ready", "auto", executor_type="agent", executor_id="coder", auto_accept=policy
    )
    await both(
        "transition_task",
        "A",
        "ready",
        "auto",
        executor_type="agent",
        executor_id="coder",
        expected_updated_at=a["updated_at"],
        auto_accept=policy,
    )
    assert await both("count_company_acceptances", "r1", "trusted", "X") == 1
    assert await both("count_company_acceptances", "r1", "trusted", "A") == 0
    await both("count_company_acceptances", "r1", "other", "X")
    await both("count_company_acceptances", "r1", "trusted", "X", user_id="alice")
    b = await both("get_task", "B")
    await both(
        "transition_task",
        "B",
        "ready",
        "auto",
        executor_type="agent",
        executor_id="coder",
        expected_updated_at=b["updated_at"],
        auto_accept=policy,
    )
    c = await both("get_task", "C")
    assert "limit reached" in await both.refused(
        "transition_task",
        "C",
        "ready",
        "auto",
        executor_type="agent",
        executor_id="coder",
        expected_updated_at=c["updated_at"],
        auto_accept=policy,
    )
    await both.refused("transition_project", "J", "done", "auto", auto_accept=policy, expected_updated_at=None)
    roomy = {**policy, "max_acceptances": 5}
    j = await both("get_project", "J")
    await both.refused("transition_project", "J", "cancelled", "auto", auto_accept=roomy, expected_updated_at=None)
    await both("transition_project", "J", "done", "auto", auto_accept=roomy, expected_updated_at=j["updated_at"])
    assert await both("count_company_acceptances", "r1", "trusted", "X") == 3


# --- what SQL gets from its locks ----------------------------------------------------------------------


async def ready_task(db: Any, task_id: str = "T") -> dict[str, Any]:
    await call(db.create_product(product("P", 100)))
    await call(db.create_task(task(task_id, "P", 200)))
    row: dict[str, Any] = await call(
        db.transition_task(task_id, "ready", "Go", executor_type="agent", executor_id="coder")
    )
    return row


async def race(store: Store, calls: list[Any]) -> list[Any]:
    """Run zero-argument callables at once: threads on the sync class, tasks on the async one; each
    answer, or the exception it raised."""
    if store.is_async:
        return list(await asyncio.gather(*(fn() for fn in calls), return_exceptions=True))
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # noqa: BLE001 - a loser may be refused by agno's rules
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def one_winner(results: list[Any]) -> Any:
    """Exactly one racer landed; every other lost the compare-and-set (``None``) or, having read
    the winner's state, was refused by agno's lifecycle rule (a ``ValueError``)."""
    winners = [result for result in results if result is not None and not isinstance(result, BaseException)]
    assert len(winners) == 1, results
    for result in results:
        if isinstance(result, BaseException):
            assert isinstance(result, ValueError) and not isinstance(result, InvalidInputError), result
    return winners[0]


async def test_racing_starts_and_transitions_have_one_winner_each_round(store: Store) -> None:
    db = store.db
    row = await ready_task(db)
    writers = 6
    history = []
    for attempt in range(1, 4):
        expected = row["transitions"]
        starts = await race(
            store,
            [
                lambda i=i, n=attempt, seen=expected: db.start_task_run("T", n, seen, user_id=f"u{i}")
                for i in range(writers)
            ],
        )
        row = one_winner(starts)
        history.append(row["transitions"][-1]["user_id"])
        # Racing reviewers: each tries the same move from the state they saw; one lands.
        moved = await race(
            store,
            [
                lambda i=i, job=row["job_id"]: db.complete_task_run("T", job, {"status": "COMPLETED", "by": i})
                for i in range(writers)
            ],
        )
        row = one_winner(moved)
        back = await race(store, [lambda i=i: db.transition_task("T", "in_progress", f"r{i}") for i in range(writers)])
        row = one_winner(back)
    stored = await call(db.get_task("T"))
    # No transition lost: ready, then per round: start, review, back in progress (one each).
    targets = [entry["target"] for entry in stored["transitions"]]
    assert targets == ["ready"] + ["in_progress", "in_review", "in_progress"] * 3
    assert [entry.get("attempt") for entry in stored["transitions"] if "attempt" in entry] == [1, 2, 3]
    assert stored["transitions"][1::3] and [e["user_id"] for e in stored["transitions"][1::3]] == history
    assert store.raw.agno_company_tasks.find_one({"_id": "T"})["_rev"] == len(stored["transitions"])


@pytest.fixture
def concurrent_transactions(mongodb_url: str) -> None:
    """Skip on the embedded server: its transactions fail at commit whenever anything else was
    written meanwhile (one global version, no TransientTransactionError label), and the failed
    transaction's writes then leak into the next one on the same pooled server session, so
    overlapping transactions cannot be tested on it (real MongoDB reports the conflict at the write,
    labelled, and the driver retries). Set MONGODB_URI to a replica set to run these."""
    client: MongoClient[Any] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command("buildinfo")
    except Exception:  # noqa: BLE001 - the embedded server has no buildinfo
        pytest.skip("the embedded server cannot run overlapping transactions (see fixture docstring)")
    finally:
        client.close()


async def test_racing_hierarchy_writers_on_one_product_all_land(store: Store, concurrent_transactions: None) -> None:
    """Concurrent creates under one Product are serialised by its lock (write conflicts retried)."""
    db = store.db
    await call(db.create_product(product("P", 100)))
    await call(db.create_project(project("J", "P", 110)))
    made = await race(
        store, [lambda i=i: db.create_task(task(f"T{i}", "P", 200 + i, project_id="J")) for i in range(5)]
    )
    assert sorted(row["id"] for row in made) == [f"T{i}" for i in range(5)]
    same = await race(store, [lambda i=i: db.create_task(task(f"D{i}", "P", 300, dedupe_key="one")) for i in range(4)])
    assert len({row["id"] for row in same}) == 1  # one proposal per dedupe key, answered to all
    assert store.raw.agno_company_tasks.count_documents({"dedupe_key": "one"}) == 1
    # An archive racing the creates either refuses nothing or sees every Task: never a live child.
    await race(store, [lambda: db.delete_product("P"), lambda: db.create_task(task("late", "P", 400))])
    if store.raw.agno_company_products.find_one({"_id": "P"})["deleted_at"] is not None:
        assert store.raw.agno_company_tasks.count_documents({"deleted_at": None}) == 0


async def test_every_hierarchy_write_takes_the_product_lock(store: Store) -> None:
    """What serialises hierarchy writers on a real server: each one's transaction writes its
    Product's ``_rev`` (so two overlapping ones conflict and one re-runs). Checked write by write,
    here where overlapping transactions cannot be raced (see ``concurrent_transactions``)."""
    db, products = store.db, store.raw.agno_company_products
    await call(db.create_product(product("P", 100)))
    steps: list[Any] = [
        lambda: db.create_project(project("J", "P", 110, status="active")),
        lambda: db.create_task(task("T", "P", 200, project_id="J")),
        lambda: db.create_source(source("S", "P", 210)),
        lambda: db.update_task("T", title="Renamed"),
        lambda: db.transition_project("J", "cancelled", "Stop"),
        lambda: db.transition_task(
            "T",
            "ready",
            "auto",
            executor_type="agent",
            executor_id="coder",
            expected_updated_at=store.raw.agno_company_tasks.find_one({"_id": "T"})["updated_at"],
            auto_accept={"routine_id": "r", "policy": "p", "max_acceptances": 9},
        ),
        lambda: db.transition_task("T", "cancelled", "Stop"),  # a single-document CAS: no lock
        lambda: db.delete_project("J"),
        lambda: db.restore_project("J"),
        lambda: db.delete_task("T"),  # single document: no lock
        lambda: db.restore_task("T"),
        lambda: db.delete_product("P"),
    ]
    unlocked = {6, 9}
    for index, step in enumerate(steps):
        before = products.find_one({"_id": "P"})["_rev"]
        assert await call(step()), index
        moved = products.find_one({"_id": "P"})["_rev"] - before
        assert moved == (0 if index in unlocked else 1), index


async def test_racing_routine_links_and_metadata_edits_lose_nothing(store: Store) -> None:
    """``add_product_routine`` and ``update_product(metadata=...)`` are compare-and-sets on the
    Product's revision: racing ones all land, none overwrites another's link."""
    db = store.db
    await call(db.create_product(product("P", 100)))
    calls = [lambda i=i: db.add_product_routine("P", f"s{i}") for i in range(6)]
    calls += [lambda i=i: db.update_product("P", metadata={"edit": i}) for i in range(3)]
    results = await race(store, calls)
    assert all(isinstance(row, dict) for row in results), results
    stored = await call(db.get_product("P"))
    assert sorted(stored["metadata"]["routine_ids"]) == [f"s{i}" for i in range(6)]
    assert stored["metadata"]["edit"] in {0, 1, 2} and stored["metadata"]["archive_window_days"] == 14


async def test_dedupe_key_is_unique_only_where_set(store: Store) -> None:
    db = store.db
    await call(db.create_product(product("P", 100)))
    for index in range(3):
        await call(db.create_task(task(f"N{index}", "P", 200)))
    assert store.raw.agno_company_tasks.count_documents({"dedupe_key": None}) == 3
    indexes = store.raw.agno_company_tasks.index_information()
    assert indexes["product_dedupe_key"]["unique"]
    assert indexes["product_dedupe_key"]["partialFilterExpression"] == {"dedupe_key": {"$type": "string"}}
    with pytest.raises(Exception) as caught:
        store.raw.agno_company_tasks.insert_one({"_id": "raw", "product_id": "P", "dedupe_key": "k"})
        store.raw.agno_company_tasks.insert_one({"_id": "raw2", "product_id": "P", "dedupe_key": "k"})
    assert is_unique_violation(caught.value)


async def test_a_refused_archive_leaves_nothing_half_written(store: Store) -> None:
    db = store.db
    await ready_task(db, "busy")
    await call(db.create_project(project("J", "P", 110)))
    await call(db.create_task(task("idle", "P", 300, project_id="J")))
    before = {
        doc["_id"]: doc
        for coll in ("products", "projects", "tasks")
        for doc in store.raw[f"agno_company_{coll}"].find()
    }
    with pytest.raises(ValueError, match="Cannot archive with active Tasks"):
        await call(db.delete_product("P"))
    after = {
        doc["_id"]: doc
        for coll in ("products", "projects", "tasks")
        for doc in store.raw[f"agno_company_{coll}"].find()
    }
    assert after == before
    assert "abortTransaction" in store.commands.names


class Stepper:
    """Runs a plan one command at a time against the real server, so a test chooses the interleaving
    (and may lose a reply on purpose by throwing ``ReplyLost`` instead of handing back the answer)."""

    def __init__(self, store: Store, plan: Any) -> None:
        self.store, self.plan = store, plan
        self.step: Any = plan.send(None)
        self.done, self.answer = False, None

    def _advance(self, send: Any, value: Any) -> None:
        try:
            self.step = send(value)
        except StopIteration as stop:
            self.done, self.answer = True, stop.value

    async def run_one(self, *, lose_reply: bool = False, apply: bool = True) -> None:
        command = self.step
        result = await call(self.store.db._execute(command)) if apply else None
        if lose_reply:
            self._advance(self.plan.throw, ReplyLost(command, AutoReconnect("cut")))
        else:
            self._advance(self.plan.send, result)

    async def finish(self) -> Any:
        while not self.done:
            await self.run_one()
        return self.answer


async def test_two_starts_that_read_the_same_state_have_one_winner(store: Store) -> None:
    row = await ready_task(store.db)
    first = Stepper(store, CompanyContract().start_task_run("T", 1, row["transitions"], user_id="a"))
    second = Stepper(store, CompanyContract().start_task_run("T", 1, row["transitions"], user_id="b"))
    await first.run_one()  # both read the ready Task
    await second.run_one()
    assert first.step.op == second.step.op == "find_one_and_update"
    won = await first.finish()
    assert won is not None and won["transitions"][-1]["user_id"] == "a"
    assert await second.finish() is None  # its revision is gone: the compare-and-set misses
    stored = await call(store.db.get_task("T"))
    assert [entry["target"] for entry in stored["transitions"]] == ["ready", "in_progress"]


async def test_a_transition_whose_reply_is_lost_finds_out_by_its_token(store: Store) -> None:
    await ready_task(store.db)
    # Landed, reply lost: the plan reads, finds its token, answers the row (no second write).
    winner = Stepper(store, CompanyContract().transition_task("T", "backlog", "Rethink"))
    await winner.run_one()
    await winner.run_one(lose_reply=True)
    assert winner.step.op == "find_one"
    moved = await winner.finish()
    assert moved is not None and moved["status"] == "backlog"
    # Never applied, and meanwhile another writer moved the Task: the resend misses, it is told it lost.
    loser = Stepper(store, CompanyContract().transition_task("T", "cancelled", "Drop"))
    await loser.run_one()
    await call(store.db.transition_task("T", "ready", "Go", executor_type="agent", executor_id="coder"))
    await loser.run_one(lose_reply=True, apply=False)
    assert await loser.finish() is None
    stored = await call(store.db.get_task("T"))
    assert stored["status"] == "ready"
    assert [entry["target"] for entry in stored["transitions"]] == ["ready", "backlog", "ready"]


LISTINGS: list[tuple[str, dict[str, Any]]] = [
    (method, {**shape, **extra})
    for method, shapes in (
        ("get_products", [{}, {"include_deleted": True}, {"user_id": "alice"}]),
        ("get_projects", [{}, {"include_deleted": True}, {"product_id": "P"}, {"product_id": "P", "status": "active"}]),
        ("get_projects", [{"status": "active"}, {"product_id": "P", "include_deleted": True}]),
        ("get_tasks", [{}, {"include_deleted": True}, {"product_id": "P"}, {"project_id": "J"}, {"status": "ready"}]),
        ("get_tasks", [{"product_id": "P", "status": "ready"}, {"project_id": "J", "include_deleted": True}]),
        ("get_tasks", [{"session_id": "s"}, {"product_id": "P", "include_deleted": True}]),
        ("get_sources", [{}, {"include_deleted": True}, {"product_id": "P"}]),
    )
    for shape in shapes
    for extra in ({}, {"sort_by": "updated_at", "sort_order": "asc"})
    if not (method == "get_sources" and extra)
]


def served(filter_: dict[str, Any], sort: dict[str, int], indexes: dict[str, Any]) -> bool:
    """Some index starts with exactly the filter's equality fields (any order), then the sort keys
    in order, all ascending or all descending relative to the sort (so one walk serves the page)."""
    equal = {key for key, value in filter_.items() if not isinstance(value, dict) and not key.startswith("$")}
    for index in indexes.values():
        keys = index["key"]
        head, tail = keys[: len(equal)], keys[len(equal) : len(equal) + len(sort)]
        if {key for key, _ in head} != equal or [key for key, _ in tail] != list(sort):
            continue
        signs = {direction * int(order) for (_, direction), order in zip(tail, sort.values(), strict=True)}
        if len(signs) == 1:
            return True
    return False


async def test_every_listing_is_served_by_an_index(store: Store) -> None:
    await call(store.db.get_product_counts(["P"]))  # the indexes are made on first use
    await call(store.db.get_sources())
    await call(store.db.get_projects())
    for method, kwargs in LISTINGS:
        store.commands.clear()
        await call(getattr(store.db, method)(**kwargs))
        find = next(command for command in store.commands.sent if "find" in command)
        indexes = store.raw[find["find"]].index_information()
        assert served(find["filter"], dict(find["sort"]), indexes), (method, kwargs, find["filter"])


# --- bad input ----------------------------------------------------------------------------------------


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("create_product", {"product_data": {**product("p", 1), "bogus": 1}}, "product_data.bogus"),
        ("create_product", {"product_data": {**product("p", 1), "name": 5}}, "product_data.name"),
        (
            "create_product",
            {"product_data": {**product("p", 1), "metadata": {"archive_window_days": -1}}},
            "product_data.metadata",
        ),
        ("create_product", {"product_data": {**product("p", 1), "id": {"$ne": None}}}, "product_data.id"),
        ("get_product", {"product_id": {"$ne": None}}, "product_id"),
        ("get_products", {"limit": 0}, "limit"),
        ("get_products", {"sort_by": "name"}, "sort_by"),
        ("get_products", {"include_deleted": "yes"}, "include_deleted"),
        ("update_product", {"product_id": "p", "owner": "x"}, "owner"),
        ("update_product", {"product_id": "p", "name": " "}, "name"),
        ("get_product_counts", {"product_ids": "p"}, "product_ids"),
        ("create_project", {"project_data": {**project("j", "p", 1), "status": None}}, "project_data.status"),
        ("update_project", {"project_id": "j", "target_date": "soon"}, "target_date"),
        ("delete_project", {"project_id": "j", "updated_before": "x"}, "updated_before"),
        ("create_task", {"task_data": {**task("t", "p", 1), "transitions": "none"}}, "task_data.transitions"),
        ("create_task", {"task_data": {**task("t", "p", 1), "title": "\ud800"}}, "task_data.title"),
        ("update_task", {"task_id": "t", "evidence": "x"}, "evidence"),
        ("start_task_run", {"task_id": "t", "attempt": 0, "expected_transitions": []}, "attempt"),
        ("start_task_run", {"task_id": "t", "attempt": True, "expected_transitions": []}, "attempt"),
        ("start_task_run", {"task_id": "t", "attempt": 1, "expected_transitions": "x"}, "expected_transitions"),
        ("complete_task_run", {"task_id": "t", "job_id": "j", "result": "done"}, "result"),
        ("transition_task", {"task_id": "t", "target": 3, "reason": "r"}, "target"),
        (
            "transition_task",
            {"task_id": "t", "target": "ready", "reason": "r", "expected_updated_at": "x"},
            "expected_updated_at",
        ),
        (
            "transition_task",
            {"task_id": "t", "target": "ready", "reason": "r", "auto_accept": {"routine_id": "r"}},
            "auto_accept.policy",
        ),
        ("transition_project", {"project_id": "j", "target": "done", "reason": "r", "auto_accept": []}, "auto_accept"),
        ("count_company_acceptances", {"routine_id": None, "policy": "p", "exclude_task_id": "t"}, "routine_id"),
        ("create_source", {"source_data": {**source("s", "p", 1), "secret": "x"}}, "source_data.secret"),
        ("update_source", {"source_id": "s", "password": "x"}, "password"),
        ("get_sources", {"page": 0}, "page"),
        ("add_product_routine", {"product_id": "p", "schedule_id": ""}, "schedule_id"),
    ]
    for method, kwargs, field in cases:
        await assert_refused(store, method, kwargs, field)


# --- lost replies ------------------------------------------------------------------------------------


def in_transaction(name: str, collection: str) -> Any:
    return lambda command_name, command: (
        command_name == name and "txnNumber" in command and command.get(name) == collection
    )


async def test_a_reply_lost_inside_the_archive_transaction_applies_it_once(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.create_product(product("P", 100)))
    for name in ("J1", "J2"):
        await call(db.create_project(project(name, "P", 110)))
    await call(db.create_task(task("T", "P", 200, project_id="J1")))
    revision = raw.agno_company_products.find_one({"_id": "P"})["_rev"]
    proxy.drop_next(in_transaction("update", "agno_company_tasks"))
    # True, and the Product's revision moved once: the first run (Product already archived, then
    # cut) left nothing behind, else the retry would have found no active Product and answered False.
    assert await call(db.delete_product("P")) is True
    assert proxy.dropped, "no reply was dropped"
    assert raw.agno_company_products.find_one({"_id": "P"})["_rev"] == revision + 1
    for collection in ("agno_company_projects", "agno_company_tasks"):
        for doc in raw[collection].find():
            actions = [entry["action"] for entry in doc["transitions"] if "action" in entry]
            assert actions == ["archive"] and doc["deleted_at"] is not None and doc["_product_archived"] is True
    assert raw.agno_company_products.find_one({"_id": "P"})["deleted_at"] is not None
    proxy.drop_next("commitTransaction")
    restored = await call(db.restore_product("P"))
    assert proxy.dropped and restored["deleted_at"] is None
    assert through.direct.get_tasks()[1] == 1 and through.direct.get_projects()[1] == 2


async def test_a_start_whose_reply_is_lost_is_told_it_won(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    row = await ready_task(db)
    proxy.drop_next(lambda name, command: name == "findAndModify" and command.get("query", {}).get("_id") == "T")
    started = await call(db.start_task_run("T", 1, row["transitions"], user_id="alice"))
    assert proxy.dropped, "the reply was not dropped"
    assert started is not None and started["status"] == "in_progress"
    stored = raw.agno_company_tasks.find_one({"_id": "T"})
    assert [entry["target"] for entry in stored["transitions"]] == ["ready", "in_progress"]  # applied once
    assert through.direct.start_task_run("T", 1, row["transitions"]) is None  # the first really won


# --- AgentOS --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_agentos_company_starts_and_serves_products(flavour: str, mongodb_url: str, db_name: str) -> None:
    from agno.agent import Agent
    from agno.company.config import CompanyConfig
    from agno.company.declarations import Product
    from agno.os import AgentOS
    from fastapi.testclient import TestClient

    from agno_mongo.testing.models import OfflineStandInModel

    db: MongoDb | AsyncMongoDb = (
        MongoDb(db_url=mongodb_url, db_name=db_name)
        if flavour == "sync"
        else AsyncMongoDb(db_url=mongodb_url, db_name=db_name)
    )
    agent = Agent(id="coder", name="Coder", model=OfflineStandInModel(), db=db)
    company = CompanyConfig(products=[Product(name="Handbook", purpose="Keep the handbook current")])
    app = AgentOS(agents=[agent], db=db, company=company).get_app()
    with TestClient(app) as client:
        listed = client.get("/company/products")
        assert listed.status_code == 200, listed.text
        rows = listed.json()["data"]
        assert [row["name"] for row in rows] == ["Handbook"]
        product_id = rows[0]["id"]
        created = client.post(
            "/company/projects", json={"product_id": product_id, "name": "Rewrite", "outcome": "A clear handbook"}
        )
        assert created.status_code in (200, 201), created.text
        projects = client.get("/company/projects", params={"product_id": product_id})
        assert projects.status_code == 200 and projects.json()["meta"]["total_count"] == 1
        tasks = client.get("/company/tasks")
        assert tasks.status_code == 200, tasks.text
    raw: MongoClient[Any] = MongoClient(mongodb_url)
    try:
        stored = raw[db_name].agno_company_products.find_one({"_id": product_id})
        assert stored is not None and stored["name"] == "Handbook"
        assert raw[db_name].agno_company_projects.count_documents({"product_id": product_id}) == 1
    finally:
        raw.close()
