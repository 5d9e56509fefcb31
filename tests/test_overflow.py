"""Sessions that outgrow one BSON document keep working (issue: the 16 MiB limit).

The embedded server does not enforce MongoDB's 16 MiB limit, so these tests measure the stored
documents themselves.
"""

from __future__ import annotations

from typing import Any

import bson
import pytest
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

from agno_mongo import AsyncMongoDb, MongoDb, RunTooLargeError
from tests.conftest import Store, call

LIMIT = 16 * 1024 * 1024


def rebuild(store: Store, budget: int) -> MongoDb | AsyncMongoDb:
    """The class under test on the same client, with a small runs budget."""
    return type(store.db)(db_client=store.db.db_client, db_name=store.db.db_name, max_runs_bytes=budget)


def big_run(i: int, size: int, session_id: str = "long") -> RunOutput:
    return RunOutput(
        run_id=f"r{i:03d}",
        agent_id="a",
        session_id=session_id,
        content=f"{i}:" + "x" * size,
        status=RunStatus.completed,
    )


def stored_sizes(store: Store) -> list[int]:
    docs = list(store.raw.agno_sessions.find()) + list(store.raw.agno_sessions_overflow.find())
    return [len(bson.encode(doc)) for doc in docs]


async def test_long_session_spills_and_reads_back_in_order(store: Store) -> None:
    budget = 64 * 1024
    db = rebuild(store, budget)
    await call(db.upsert_session(AgentSession(session_id="long", agent_id="a", user_id="u")))
    for i in range(60):
        await call(db.upsert_run(big_run(i, 4000), "long", "u"))

    assert store.raw.agno_sessions_overflow.count_documents({"session_id": "long"}) >= 2
    assert max(stored_sizes(store)) < budget + 16 * 1024
    session = await call(db.get_session("long", user_id="u"))
    assert [r.run_id for r in session.runs] == [f"r{i:03d}" for i in range(60)]

    store.commands.clear()
    recent = await call(db.get_session("long", user_id="u", runs_limit=3))
    assert [r.run_id for r in recent.runs] == ["r057", "r058", "r059"]
    assert store.commands.names == ["aggregate"]

    assert (await call(db.get_run("r001"))).content.startswith("1:")
    ordered = await call(db.get_runs(session_id="long"))
    assert [r.run_id for r in ordered] == [f"r{i:03d}" for i in range(60)]

    await call(db.upsert_run(big_run(2, 10, "long"), "long", "u"))  # an overflowed run changes in place
    again = await call(db.get_session("long"))
    assert [r.run_id for r in again.runs] == [f"r{i:03d}" for i in range(60)]
    assert again.runs[2].content == "2:" + "x" * 10

    assert await call(db.delete_run("r000"))
    assert await call(db.get_run("r000")) is None
    assert await call(db.delete_session("long"))
    assert store.raw.agno_sessions_overflow.count_documents({}) == 0


async def test_no_stored_document_exceeds_16_mib(store: Store) -> None:
    if store.flavour != "pymongo":
        pytest.skip("one flavour is enough to move ~24 MiB through the embedded server")
    await call(store.db.upsert_session(AgentSession(session_id="long", agent_id="a")))
    for i in range(24):
        await call(store.db.upsert_run(big_run(i, 1024 * 1024), "long"))
    sizes = stored_sizes(store)
    assert sum(sizes) > 24 * 1024 * 1024 and max(sizes) < LIMIT
    session = await call(store.db.get_session("long"))
    assert [r.run_id for r in session.runs] == [f"r{i:03d}" for i in range(24)]


async def test_a_run_that_can_never_fit_is_refused_and_nothing_changes(store: Store) -> None:
    db = rebuild(store, 64 * 1024)
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a")))
    await call(db.upsert_run(big_run(0, 100, "s"), "s"))
    before: dict[str, Any] = store.raw.agno_sessions.find_one({"_id": "s"})
    store.commands.clear()
    with pytest.raises(RunTooLargeError):
        await call(db.upsert_run(big_run(1, 70 * 1024, "s"), "s"))
    assert store.commands.names == []
    assert store.raw.agno_sessions.find_one({"_id": "s"}) == before


async def test_orphaned_overflow_documents_are_deleted(store: Store) -> None:
    db = rebuild(store, 16 * 1024)
    await call(db.upsert_session(AgentSession(session_id="gone", agent_id="a")))
    await call(db.upsert_session(AgentSession(session_id="kept", agent_id="a")))
    for i in range(12):
        await call(db.upsert_run(big_run(i, 3000, "gone"), "gone"))
        await call(db.upsert_run(big_run(100 + i, 3000, "kept"), "kept"))
    store.raw.agno_sessions.delete_one({"_id": "gone"})  # what a TTL expiry does
    assert await call(db.delete_orphaned_overflow()) == 0  # younger than the grace period: kept
    assert await call(db.delete_orphaned_overflow(older_than_seconds=0)) >= 1
    assert store.raw.agno_sessions_overflow.count_documents({"session_id": "gone"}) == 0
    kept = await call(db.get_session("kept"))
    assert [r.run_id for r in kept.runs] == [f"r{100 + i:03d}" for i in range(12)]


async def test_listing_sessions_returns_overflowed_runs_too(store: Store) -> None:
    db = rebuild(store, 16 * 1024)
    await call(db.upsert_session(AgentSession(session_id="long", agent_id="a")))
    await call(db.upsert_session(AgentSession(session_id="short", agent_id="a")))
    for i in range(10):
        await call(db.upsert_run(big_run(i, 3000), "long"))
    await call(db.upsert_run(big_run(99, 10, "short"), "short"))
    assert store.raw.agno_sessions_overflow.count_documents({}) >= 1
    store.commands.clear()
    listed = {s.session_id: [r.run_id for r in s.runs or []] for s in await call(db.get_sessions())}
    assert listed == {"long": [f"r{i:03d}" for i in range(10)], "short": ["r099"]}
    assert store.commands.names == ["find", "find"]  # the page, then the overflow of the page
