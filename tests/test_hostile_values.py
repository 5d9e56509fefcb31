"""Hostile values through the public API: what agno or a user puts in a session comes back exactly.

``tests/test_codec.py`` checks the codec alone; here the same strategies go through ``MongoDb`` and
``AsyncMongoDb`` (``upsert_session``, ``upsert_run``, ``get_session``, ``get_sessions``, ``get_run``,
``get_runs``) on the server: keys with ``.`` or a leading ``$``, NUL and lone surrogates, ints beyond
64 bits, NaN and the infinities, datetimes with their tzinfo, bytes, tuples, sets. What cannot be
stored faithfully is refused naming the field, and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from agno.session import AgentSession
from hypothesis import HealthCheck, given, settings
from pymongo import MongoClient

from agno_mongo import InvalidInputError, MongoDb
from tests.conftest import Store, call
from tests.test_codec import plain, same, values

HOSTILE: dict[str, Any] = {
    "$where": "sleep(1000)",
    "a.b": {"$gt": ""},
    "%agno": "int",
    "nul\x00key": [math.nan, math.inf, -math.inf, -0.0],
    "big": [2**63, -(2**100), 2**31],
    "at": dt.datetime(2024, 3, 31, 2, 30, 0, 123456, tzinfo=ZoneInfo("Europe/Paris")),
    "naive": dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
    "tagged": {"%agno": "tuple", "v": [1, 2]},
    "raw": b"\x00\xff",
    "pair": (1, "two"),
    "set": {1, 2, 3},
    "money": Decimal("1.10"),
    "lone": "\ud800",
}


@pytest.fixture(scope="module")
def client(mongodb_url: str) -> Iterator[MongoClient[Any]]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield client
    client.close()


@pytest.fixture
def db(client: MongoClient[Any], db_name: str) -> MongoDb:
    return MongoDb(db_client=client, db_name=db_name)


def new_session(**fields: Any) -> AgentSession:
    return AgentSession(session_id=uuid.uuid4().hex, agent_id="agent", user_id="alice", **fields)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session_data=values | plain, metadata=values | plain, agent_data=values)
def test_session_fields_round_trip(db: MongoDb, session_data: Any, metadata: Any, agent_data: Any) -> None:
    session = new_session(
        session_data={"state": session_data}, metadata={"m": metadata}, agent_data={"model": agent_data}
    )
    returned = db.upsert_session(session, deserialize=False)
    assert isinstance(returned, dict)
    for stored in (returned, db.get_session(session.session_id, user_id="alice", deserialize=False)):
        assert isinstance(stored, dict)
        assert same(stored["session_data"], {"state": session_data})
        assert same(stored["metadata"], {"m": metadata})
        assert same(stored["agent_data"], {"model": agent_data})
    listed, _ = db.get_sessions(user_id="alice", deserialize=False, limit=None)
    (mine,) = [row for row in listed if row["session_id"] == session.session_id]
    assert same(mine["session_data"], {"state": session_data})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=values | plain, metadata=values, edited=values | plain)
def test_run_content_round_trips_on_append_and_update(db: MongoDb, content: Any, metadata: Any, edited: Any) -> None:
    session_id, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    run = {"run_id": run_id, "agent_id": "agent", "status": "COMPLETED", "content": content, "metadata": metadata}
    db.upsert_run(dict(run), session_id=session_id, user_id="alice")
    stored = db.get_session(session_id, user_id="alice", deserialize=False)
    assert isinstance(stored, dict) and same(stored["runs"], [run])
    run["content"] = edited  # saved again: the positional $set path
    db.upsert_run(dict(run), session_id=session_id, user_id="alice")
    fresh = MongoDb(db_client=db.db_client, db_name=db.db_name)  # no hint: the $push-then-$set path
    run["metadata"] = {"again": metadata}
    fresh.upsert_run(dict(run), session_id=session_id, user_id="alice")
    recent = db.get_session(session_id, user_id="alice", deserialize=False, runs_limit=1)
    assert isinstance(recent, dict) and same(recent["runs"], [run])
    row = db.get_run(run_id, deserialize=False)
    assert isinstance(row, dict) and same(row["run_data"], run)
    rows, total = db.get_runs(session_id=session_id, deserialize=False)
    assert total == 1 and same(rows[0]["run_data"], run)


def test_an_agno_session_keeps_its_hostile_state(db: MongoDb) -> None:
    session = new_session(session_data={"session_state": dict(HOSTILE)}, metadata={"k.v": ("x", 1)})
    db.upsert_session(session)
    loaded = db.get_session(session.session_id, user_id="alice")
    assert isinstance(loaded, AgentSession)
    assert loaded.session_data is not None and same(loaded.session_data["session_state"], HOSTILE)
    assert same(loaded.metadata, {"k.v": ("x", 1)})


def test_plain_data_is_stored_as_is_and_queryable(db: MongoDb, client: MongoClient[Any]) -> None:
    """Ordinary data needs no decoding: stored verbatim, no marker, still filterable by the server."""
    session = new_session(session_data={"session_name": "Plain", "session_state": {"n": 1}})
    db.upsert_session(session)
    db.upsert_run(
        {"run_id": "r1", "agent_id": "agent", "content": "hi"}, session_id=session.session_id, user_id="alice"
    )
    raw = client[db.db_name][db.session_table_name].find_one({"_id": session.session_id})
    assert raw is not None
    assert raw["session_data"] == {"session_name": "Plain", "session_state": {"n": 1}}
    assert raw["_codec"] is None and "_codec" not in raw["runs"][0]
    found = db.get_sessions(session_name="Plain", user_id="alice")
    assert [s.session_id for s in found] == [session.session_id]


def test_escaped_values_are_stored_escaped(db: MongoDb, client: MongoClient[Any]) -> None:
    session = new_session(session_data={"a.b": 1, "$x": 2}, metadata={"plain": True})
    db.upsert_session(session)
    raw = client[db.db_name][db.session_table_name].find_one({"_id": session.session_id})
    assert raw is not None
    assert raw["session_data"] == {"a%2Eb": 1, "%24x": 2} and raw["_codec"] == {"session_data": 1}
    # rewritten with plain data: the marker goes with it
    session.session_data = {"ok": 1}
    db.upsert_session(session)
    raw = client[db.db_name][db.session_table_name].find_one({"_id": session.session_id})
    assert raw is not None and raw["session_data"] == {"ok": 1} and raw["_codec"] is None


REFUSED = [
    ({"session_data": {"x": [re.compile("a")]}}, "session.session_data.x[0]"),
    ({"metadata": {"deep": {"z": object()}}}, "session.metadata.deep.z"),
    ({"session_data": {"when": dt.datetime(2024, 1, 1, tzinfo=dt.tzinfo())}}, "session.session_data.when"),
]


@pytest.mark.parametrize(("fields", "path"), REFUSED, ids=[path for _, path in REFUSED])
async def test_unstorable_session_values_are_refused_and_nothing_is_written(
    store: Store, fields: dict[str, Any], path: str
) -> None:
    session = new_session(**fields)
    with pytest.raises(InvalidInputError) as error:
        await call(store.db.upsert_session(session))
    assert error.value.field == path
    assert store.commands.writes() == []
    assert store.raw[store.db.session_table_name].find_one({"_id": session.session_id}) is None


async def test_unstorable_run_values_are_refused_and_nothing_is_written(store: Store) -> None:
    run = {"run_id": "r1", "agent_id": "agent", "content": {"ok": [1, {"bad": {1j: 2}}]}}
    with pytest.raises(InvalidInputError) as error:
        await call(store.db.upsert_run(run, session_id="s1"))
    assert error.value.field == "run.content.ok[1].bad[1j]"
    with pytest.raises(InvalidInputError) as error:
        await call(store.db.upsert_run({"run_id": "r1", "_codec": 1}, session_id="s1"))
    assert error.value.field == "run._codec"
    with pytest.raises(InvalidInputError) as error:
        await call(store.db.upsert_run({"run_id": "r\ud800"}, session_id="s1"))
    assert error.value.field == "run.run_id"
    assert store.commands.writes() == []
    assert store.raw[store.db.session_table_name].count_documents({}) == 0


async def test_hostile_values_on_every_client_flavour(store: Store) -> None:
    session = new_session(session_data={"session_state": dict(HOSTILE)})
    await call(store.db.upsert_session(session))
    run = {"run_id": "r1", "agent_id": "agent", "status": "COMPLETED", "content": dict(HOSTILE)}
    await call(store.db.upsert_run(dict(run), session_id=session.session_id, user_id="alice"))
    stored = await call(store.db.get_session(session.session_id, user_id="alice", deserialize=False))
    assert same(stored["session_data"], {"session_state": HOSTILE})
    assert same(stored["runs"], [run])
    rows, _ = await call(store.db.get_runs(session_id=session.session_id, deserialize=False))
    assert same(rows[0]["run_data"], run)
