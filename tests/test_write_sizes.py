"""Every write that can grow a session document or a chunk is sized before it is sent (issue 12).

MongoDB refuses a document over 16 MiB with a raw error; the embedded test server stores it. So
these tests measure the stored documents themselves, and check that a write that would not fit is
refused with a clear error naming the field, with nothing sent or nothing changed.
"""

from __future__ import annotations

from typing import Any

import bson
import pytest
from agno.db.base import SessionType
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

from agno_mongo import AsyncMongoDb, InvalidInputError, MongoDb, RunTooLargeError
from agno_mongo.ops.runs import MAX_REASON_BYTES
from agno_mongo.ops.sessions import FIELDS_BOOKKEEPING_BYTES, MAX_FIELDS_BYTES
from tests.conftest import Store, call

LIMIT = 16 * 1024 * 1024


def rebuild(store: Store, budget: int) -> MongoDb | AsyncMongoDb:
    """The class under test on the same client (same command listener), with a small runs budget."""
    return type(store.db)(db_client=store.db.db_client, db_name=store.db.db_name, max_runs_bytes=budget)


def run(i: int, size: int, session_id: str, content: str | None = None) -> RunOutput:
    return RunOutput(
        run_id=f"r{i:03d}",
        agent_id="a",
        session_id=session_id,
        content=content if content is not None else f"{i}:" + "x" * size,
        status=RunStatus.completed,
    )


def stored(store: Store) -> list[dict[str, Any]]:
    return [*store.raw.agno_sessions.find(), *store.raw.agno_sessions_overflow.find()]


def sizes(store: Store) -> list[int]:
    return [len(bson.encode(document)) for document in stored(store)]


async def full_session(store: Store, session_data_bytes: int, runs: int, run_bytes: int) -> None:
    """A session whose fields are close to their cap and whose runs are close to the default budget."""
    session = AgentSession(session_id="big", agent_id="a", user_id="u", session_data={"blob": "d" * session_data_bytes})
    await call(store.db.upsert_session(session))
    for i in range(runs):
        await call(store.db.upsert_run(run(i, run_bytes, "big"), "big", "u"))


async def test_a_name_larger_than_the_fields_cap_is_refused_before_anything_is_sent(store: Store) -> None:
    """The issue's case: near its budget, a 4 MB name would have made a 17 MiB document."""
    await full_session(store, 2_000_000, 11, 1_100_000)
    before = stored(store)
    assert max(sizes(store)) < LIMIT
    store.commands.clear()
    with pytest.raises(InvalidInputError) as refused:
        await call(store.db.rename_session("big", SessionType.AGENT, "n" * 4_000_000, user_id="u"))
    assert refused.value.field == "session_name"
    assert store.commands.names == []
    assert stored(store) == before


async def test_a_name_that_would_push_the_fields_past_their_cap_changes_nothing(store: Store) -> None:
    """The name alone fits, but not beside the session's other fields: the guard in the filter
    misses, one read says why, and the stored session is untouched."""
    await full_session(store, 3_000_000, 11, 1_100_000)
    before = stored(store)
    store.commands.clear()
    with pytest.raises(InvalidInputError) as refused:
        await call(store.db.rename_session("big", SessionType.AGENT, "n" * 200_000, user_id="u"))
    assert refused.value.field == "session_name" and "nothing was changed" in str(refused.value)
    assert store.commands.names == ["findAndModify", "aggregate"]
    assert stored(store) == before

    store.commands.clear()  # a normal name still renames it, in one command, within 16 MiB
    renamed = await call(store.db.rename_session("big", SessionType.AGENT, "Trip", user_id="u"))
    assert renamed.session_data["session_name"] == "Trip" and len(renamed.runs) == 11
    assert store.commands.names == ["findAndModify"]
    assert max(sizes(store)) < LIMIT
    await call(store.db.upsert_run(run(11, 1_100_000, "big"), "big", "u"))  # a run still fits (it spills)
    assert max(sizes(store)) < LIMIT
    session = await call(store.db.get_session("big", user_id="u"))
    assert [r.run_id for r in session.runs] == [f"r{i:03d}" for i in range(12)]


async def test_a_rename_up_to_the_cap_lands_and_a_missing_session_is_none(store: Store) -> None:
    await call(store.db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="u")))
    name = "n" * (MAX_FIELDS_BYTES - 4096)
    store.commands.clear()
    renamed = await call(store.db.rename_session("s", SessionType.AGENT, name, user_id="u"))
    assert renamed.session_data == {"session_name": name}
    assert store.commands.names == ["findAndModify"]
    stored_fields = {k: v for k, v in store.raw.agno_sessions.find_one({"_id": "s"}).items() if k != "runs"}
    assert len(bson.encode(stored_fields)) <= MAX_FIELDS_BYTES + FIELDS_BOOKKEEPING_BYTES

    store.commands.clear()
    assert await call(store.db.rename_session("nobody", SessionType.AGENT, "x", user_id="u")) is None
    assert await call(store.db.rename_session("s", SessionType.AGENT, "x", user_id="other")) is None
    assert store.commands.names == ["findAndModify", "aggregate"] * 2
    assert store.raw.agno_sessions.find_one({"_id": "s"})["session_data"] == {"session_name": name}


async def test_an_overflowed_run_rewritten_larger_than_its_chunk_moves_to_its_own_chunk(store: Store) -> None:
    """integrity.md's model: a chunk is never changed. A run that lives in overflow and is saved again,
    now far larger than the chunk it was in, goes to a new one-run chunk sized like any run (at
    most the budget); its entry is split around it, so it keeps its place and nothing is lost."""
    budget = 16 * 1024
    db = rebuild(store, budget)
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="u")))
    for i in range(30):
        await call(db.upsert_run(run(i, 1000, "s"), "s", "u"))
    assert store.raw.agno_sessions_overflow.count_documents({}) >= 2
    spilled_ids = [i for entry in store.raw.agno_sessions.find_one({"_id": "s"})["spilled"] for i in entry["ids"]]
    target = spilled_ids[1]
    chunk_before = max(sizes(store)[1:])

    grown = "g" * (budget - 1024)
    await call(db.upsert_run(run(int(target[1:]), 0, "s", content=grown), "s", "u"))
    assert max(sizes(store)) <= budget + 1024 and max(sizes(store)) > chunk_before
    session = await call(db.get_session("s", user_id="u"))
    assert [r.run_id for r in session.runs] == [f"r{i:03d}" for i in range(30)]
    assert [r.content for r in session.runs if r.run_id == target] == [grown]
    assert all(r.content.startswith(f"{i}:") for i, r in enumerate(session.runs) if r.run_id != target)
    assert (await call(db.get_run(target))).content == grown


async def test_an_overflowed_run_rewritten_past_the_budget_is_refused_and_nothing_changes(store: Store) -> None:
    budget = 16 * 1024
    db = rebuild(store, budget)
    await call(db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="u")))
    for i in range(30):
        await call(db.upsert_run(run(i, 1000, "s"), "s", "u"))
    target = store.raw.agno_sessions.find_one({"_id": "s"})["spilled"][0]["ids"][0]
    before = stored(store)
    store.commands.clear()
    with pytest.raises(RunTooLargeError):
        await call(db.upsert_run(run(int(target[1:]), 0, "s", content="g" * (budget + 1)), "s", "u"))
    assert store.commands.names == []
    assert stored(store) == before


async def test_a_cancellation_reason_is_sized_and_counted(store: Store) -> None:
    pending = RunOutput(run_id="p", agent_id="a", session_id="s", status=RunStatus.pending)
    await call(store.db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="u")))
    await call(store.db.upsert_run(pending, "s", "u"))
    before = stored(store)
    store.commands.clear()
    with pytest.raises(InvalidInputError) as refused:
        await call(store.db.cancel_pending_run("p", session_id="s", reason="r" * MAX_REASON_BYTES, user_id="u"))
    assert refused.value.field == "reason" and store.commands.names == []
    assert stored(store) == before

    counted = int(store.raw.agno_sessions.find_one({"_id": "s"})["runs_bytes"])
    reason = "stopped by the operator " * 100
    store.commands.clear()
    assert await call(store.db.cancel_pending_run("p", session_id="s", reason=reason, user_id="u")) is True
    assert store.commands.names == ["update"]
    document = store.raw.agno_sessions.find_one({"_id": "s"})
    assert document["runs"][0]["content"] == reason and document["runs"][0]["status"] == "CANCELLED"
    assert int(document["runs_bytes"]) >= counted + len(reason)  # the next spill sees the reason's bytes
