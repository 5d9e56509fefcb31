"""``upsert_run(run, run_index=i)``: a run saved out of order reads back at agno's index.

agno's Agent passes the run's position in the session to every save; a run saved after a later one
(a continued run, a member run) must read back in that order, as it does on agno's ``SqliteDb``
(the oracle here), while the usual append still costs one command, overflowed session or not.
"""

from __future__ import annotations

from typing import Any

from agno.db.base import SessionType
from agno.run.agent import RunOutput
from agno.session import AgentSession

from agno_mongo import AsyncMongoDb, MongoDb
from tests.conftest import Store, call


def run(index: int, size: int = 200) -> RunOutput:
    return RunOutput(run_id=f"run-{index}", session_id="s-order", agent_id="agent", content="x" * size)


async def run_ids(db: Any) -> list[str]:
    session = await call(db.get_session("s-order", SessionType.AGENT))
    return [r.run_id for r in session.runs]


async def test_out_of_order_saves_read_back_in_agnos_order(store: Store, oracle: Any) -> None:
    order = [(0, 0), (1, 1), (3, 3), (2, 2), (4, 4), (0, 0)]  # (run, index): 3 lands before 2; 0 is resent
    for db in (store.db, oracle):
        await call(db.upsert_session(AgentSession(session_id="s-order", agent_id="agent", created_at=1)))
        for number, index in order:
            await call(db.upsert_run(run(number), "s-order", run_index=index))
    expected = ["run-0", "run-1", "run-2", "run-3", "run-4"]
    assert await run_ids(store.db) == expected
    assert await run_ids(oracle) == expected


async def test_an_append_at_its_index_is_one_command_even_when_overflowed(store: Store) -> None:
    db: MongoDb | AsyncMongoDb = type(store.db)(
        db_client=store.db.db_client, db_name=store.db.db_name, max_runs_bytes=4096
    )
    for index in range(30):
        await call(db.upsert_run(run(index, 300), "s-order", run_index=index))
    raw = store.raw[db.collection_names["sessions"]].find_one({"_id": "s-order"})
    assert raw["spilled"], "the scenario must overflow"
    store.commands.clear()
    await call(db.upsert_run(run(30, 300), "s-order", run_index=30))
    assert store.commands.names == ["update"]
    assert await run_ids(db) == [f"run-{i}" for i in range(31)]


async def test_an_index_among_overflowed_runs_places_the_run_first_in_the_document(store: Store) -> None:
    """Spilled chunks are immutable: a new run whose index falls among them goes right after them."""
    db: MongoDb | AsyncMongoDb = type(store.db)(
        db_client=store.db.db_client, db_name=store.db.db_name, max_runs_bytes=4096
    )
    for index in range(20):
        await call(db.upsert_run(run(index, 300), "s-order", run_index=index))
    raw = store.raw[db.collection_names["sessions"]].find_one({"_id": "s-order"})
    spilled = sum(len(entry["ids"]) for entry in raw["spilled"])
    await call(db.upsert_run(run(99, 100), "s-order", run_index=1))
    ids = await run_ids(db)
    assert ids.index("run-99") == spilled
    assert sorted(ids) == sorted([*(f"run-{i}" for i in range(20)), "run-99"])
