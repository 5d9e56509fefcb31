"""Every acknowledged run exactly once, with its latest content, in order; nothing deleted comes back.

The defects of the old overflow path, each as the scenario that showed it, on the three client
flavours; then many writers at once (threads, async tasks with cancellation) at a small runs budget,
counting lost, duplicated and resurrected runs.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession
from pymongo import AsyncMongoClient, MongoClient

from agno_mongo import AsyncMongoDb, MongoDb
from tests.conftest import Store, call


def rebuild(store: Store, budget: int) -> MongoDb | AsyncMongoDb:
    return type(store.db)(db_client=store.db.db_client, db_name=store.db.db_name, max_runs_bytes=budget)


def run(run_id: str, content: str, session_id: str = "s", status: str = "COMPLETED") -> RunOutput:
    return RunOutput(run_id=run_id, agent_id="a", session_id=session_id, content=content, status=RunStatus(status))


async def every_read(db: MongoDb | AsyncMongoDb, session_id: str = "s", user_id: str | None = None) -> list[Any]:
    """(run_id, content) in order, checked to be the same through get_session, get_runs and get_run."""
    session = await call(db.get_session(session_id, user_id=user_id))
    runs = [(r.run_id, r.content) for r in (session.runs if session else [])]
    listed = await call(db.get_runs(session_id=session_id, user_id=user_id))
    assert [(r.run_id, r.content) for r in listed] == runs
    for run_id, content in runs:
        assert (await call(db.get_run(run_id))).content == content
    if runs:
        recent = await call(db.get_session(session_id, user_id=user_id, runs_limit=2))
        assert [r.run_id for r in recent.runs] == [run_id for run_id, _ in runs[-2:]]
    return runs


async def test_updating_an_overflowed_run_keeps_one_copy_in_its_place(store: Store) -> None:
    db = rebuild(store, 64 * 1024)
    for i in range(12):
        await call(db.upsert_run(run(f"r-{i}", f"{i}:" + "x" * 10_000), "s"))
    assert store.raw.agno_sessions.find_one({"_id": "s"})["spilled"]
    await call(db.upsert_run(run("r-0", "new content"), "s"))
    runs = await every_read(db)
    assert [r for r, _ in runs] == [f"r-{i}" for i in range(12)]
    assert runs[0] == ("r-0", "new content")
    assert await call(db.delete_run("r-0"))
    assert [r for r, _ in await every_read(db)] == [f"r-{i}" for i in range(1, 12)]
    assert await call(db.get_run("r-0")) is None


async def test_updating_the_oldest_run_past_the_budget_is_saved(store: Store) -> None:
    db = rebuild(store, 64 * 1024)
    await call(db.upsert_run(run("small", "x" * 1_000), "s"))
    await call(db.upsert_run(run("big-1", "y" * 30_000), "s"))
    await call(db.upsert_run(run("big-2", "z" * 30_000), "s"))
    await call(db.upsert_run(run("small", "w" * 10_000), "s"))  # fits neither way without moving it
    runs = await every_read(db)
    assert [(r, len(c)) for r, c in runs] == [("small", 10_000), ("big-1", 30_000), ("big-2", 30_000)]


async def test_a_reused_session_id_sees_nothing_of_the_old_session(store: Store) -> None:
    db = rebuild(store, 16 * 1024)
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="alice")))
    for i in range(10):
        await call(db.upsert_run(run(f"a-{i}", "x" * 3_000), "s", "alice"))
    assert store.raw.agno_sessions_overflow.count_documents({"session_id": "s"})
    store.raw.agno_sessions.delete_one({"_id": "s"})  # what a TTL expiry does: chunks stay behind
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="bob")))
    for i in range(6):
        await call(db.upsert_run(run(f"b-{i}", "y" * 3_000), "s", "bob"))
    assert [r for r, _ in await every_read(db, user_id="bob")] == [f"b-{i}" for i in range(6)]
    assert await call(db.get_run("a-1")) is None
    rows = await call(db.get_runs(user_id="alice"))
    assert rows == []


async def test_deleting_a_claimed_anonymous_session_leaves_nothing_reachable(store: Store) -> None:
    db = rebuild(store, 16 * 1024)
    for i in range(10):
        await call(db.upsert_run(run(f"a-{i}", "x" * 3_000), "s"))  # anonymous, overflows
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="alice")))  # claimed
    await call(db.delete_sessions(["s"], user_id="alice"))
    assert store.raw.agno_sessions_overflow.count_documents({"session_id": "s"}) == 0
    await call(db.upsert_run(run("b-0", "new"), "s", "bob"))
    assert await every_read(db, user_id="bob") == [("b-0", "new")]


async def test_a_reassigned_session_is_readable_only_by_its_new_owner(store: Store) -> None:
    db = rebuild(store, 16 * 1024)
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="alice")))
    for i in range(10):
        await call(db.upsert_run(run(f"r-{i}", "x" * 3_000), "s", "alice"))
    assert await call(db.reassign_session_owner("s", previous_user_id="alice", user_id="bob"))
    assert await call(db.get_session("s", user_id="alice")) is None
    assert await call(db.get_runs(user_id="alice")) == []
    assert len(await every_read(db, user_id="bob")) == 10
    assert store.raw.agno_sessions_overflow.count_documents({"user_id": {"$exists": True}}) == 0


async def test_a_refused_write_moves_nothing(store: Store) -> None:
    db = rebuild(store, 16 * 1024)
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="alice")))
    for i in range(4):
        await call(db.upsert_run(run(f"r-{i}", "x" * 3_000), "s", "alice"))
    before = store.raw.agno_sessions.find_one({"_id": "s"})
    chunks = store.raw.agno_sessions_overflow.count_documents({})
    try:
        await call(db.upsert_run(run("m", "y" * 3_000), "s", "mallory"))
    except PermissionError:
        pass
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("mallory's write was not refused")
    assert store.raw.agno_sessions.find_one({"_id": "s"}) == before
    assert store.raw.agno_sessions_overflow.count_documents({}) == chunks


# --- many writers at once --------------------------------------------------------------------------


def test_threads_appending_and_updating_lose_nothing(mongodb_url: str, db_name: str) -> None:
    """8 threads, each appending its own runs and rewriting random earlier ones, at a 24 KB budget
    (a spill every few writes). Afterwards each run is stored once with its last acknowledged content."""
    client: MongoClient[Any] = MongoClient(mongodb_url)
    acknowledged: dict[str, str] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        db = MongoDb(db_client=client, db_name=db_name, max_runs_bytes=24 * 1024)
        rng = random.Random(worker)
        mine: list[str] = []
        try:
            for step in range(24):
                if mine and rng.random() < 0.4:
                    run_id = rng.choice(mine)
                else:
                    run_id = f"w{worker}-{step}"
                    mine.append(run_id)
                content = f"{run_id}@{step}:" + "x" * rng.randint(500, 2_500)
                db.upsert_run(run(run_id, content), "shared")
                with lock:
                    acknowledged[run_id] = content
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        db = MongoDb(db_client=client, db_name=db_name, max_runs_bytes=24 * 1024)
        session = db.get_session("shared")
        stored = [(r.run_id, r.content) for r in session.runs]
        ids = [run_id for run_id, _ in stored]
        assert len(ids) == len(set(ids)), "duplicated runs"
        assert set(ids) == set(acknowledged), "lost or unknown runs"
        assert dict(stored) == acknowledged, "a stale version"
        assert client[db_name].agno_sessions.find_one({"_id": "shared"})["spilled"], "no spill happened"
        rows = db.get_runs(session_id="shared")
        assert [(r.run_id, r.content) for r in rows] == stored
    finally:
        client.close()


async def test_async_tasks_with_cancellations_lose_nothing_acknowledged(mongodb_url: str, db_name: str) -> None:
    """Async writers, some cancelled mid-write: every acknowledged write is there once with its
    latest content; a cancelled write is either wholly there or not, never twice."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_url)
    db = AsyncMongoDb(db_client=client, db_name=db_name, max_runs_bytes=24 * 1024)
    acknowledged: dict[str, str] = {}
    attempted: dict[str, set[str]] = {}
    rng = random.Random(7)

    async def write(run_id: str, content: str) -> None:
        attempted.setdefault(run_id, set()).add(content)
        await db.upsert_run(run(run_id, content), "shared")
        acknowledged[run_id] = content

    try:
        for wave in range(12):
            tasks = []
            for worker in range(6):
                run_id = f"t{worker}-{rng.randint(0, wave)}"
                content = f"{run_id}@{wave}:" + "y" * rng.randint(500, 2_500)
                tasks.append(asyncio.create_task(write(run_id, content)))
            await asyncio.sleep(rng.uniform(0, 0.01))
            for task in rng.sample(tasks, 2):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        session = await db.get_session("shared")
        stored = {r.run_id: r.content for r in session.runs}
        assert len(stored) == len(session.runs), "duplicated runs"
        assert set(acknowledged) <= set(stored), "lost runs"
        for run_id, content in stored.items():
            assert content in attempted[run_id], "content nobody wrote"
        rows = await db.get_runs(session_id="shared")
        assert [(r.run_id, r.content) for r in rows] == [(r.run_id, r.content) for r in session.runs]
    finally:
        await client.close()
