"""Hostile values in memories, learnings, eval runs and knowledge rows come back exactly.

The same codec as session fields (``agno_mongo.schema.codec``): a memory's ``memory`` dict, a
learning's ``content`` and ``metadata``, an eval run's ``eval_data`` and ``eval_input``, a knowledge
row's ``metadata``. Keys with ``.`` or a leading ``$``, NUL, lone surrogates, big ints, NaN, tz-aware
datetimes, bytes, tuples and sets are escaped on write and restored on read, on every client
flavour; what cannot be restored is refused naming the field, with no command sent.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from agno.db.schemas.evals import EvalRunRecord, EvalType
from agno.db.schemas.knowledge import KnowledgeRow
from agno.db.schemas.memory import UserMemory
from hypothesis import HealthCheck, given, settings

from agno_mongo import MongoDb
from tests.conftest import Store, assert_refused, call
from tests.test_codec import plain, same, values
from tests.test_hostile_values import HOSTILE, client, db  # noqa: F401  (fixtures)


def new_id() -> str:
    return uuid.uuid4().hex


async def test_memory_dict_round_trips(store: Store) -> None:
    memory = UserMemory(memory_id=new_id(), memory=dict(HOSTILE), user_id="alice", topics=["a.b", "$t"])
    returned = await call(store.db.upsert_user_memory(memory, deserialize=False))
    assert same(returned["memory"], HOSTILE)
    loaded = await call(store.db.get_user_memory(memory.memory_id, user_id="alice"))
    assert isinstance(loaded, UserMemory)
    assert same(loaded.memory, HOSTILE) and loaded.topics == ["a.b", "$t"]
    rows, _ = await call(store.db.get_user_memories(user_id="alice", deserialize=False))
    assert [same(row["memory"], HOSTILE) for row in rows] == [True]
    raw = store.raw[store.db.collection_names["memories"]].find_one({"_id": memory.memory_id})
    assert raw["_codec"] == {"memory": 1} and "a%2Eb" in raw["memory"]


async def test_bulk_memories_round_trip(store: Store) -> None:
    memories = [UserMemory(memory_id=new_id(), memory={"k.v": (i, b"\x00")}, user_id="alice") for i in range(3)]
    returned = await call(store.db.upsert_memories(memories, deserialize=False))
    assert [same(row["memory"], {"k.v": (i, b"\x00")}) for i, row in enumerate(returned)] == [True] * 3
    for i, memory in enumerate(memories):
        loaded = await call(store.db.get_user_memory(memory.memory_id, user_id="alice", deserialize=False))
        assert same(loaded["memory"], {"k.v": (i, b"\x00")})


async def test_text_memory_is_stored_as_is_and_searchable(store: Store) -> None:
    memory = UserMemory(memory_id=new_id(), memory="Likes Lisbon", user_id="alice")
    await call(store.db.upsert_user_memory(memory))
    raw = store.raw[store.db.collection_names["memories"]].find_one({"_id": memory.memory_id})
    assert raw["memory"] == "Likes Lisbon" and raw["_codec"] is None
    found = await call(store.db.get_user_memories(user_id="alice", search_content="lisbon"))
    assert [m.memory_id for m in found] == [memory.memory_id]


async def test_learning_content_and_metadata_round_trip(store: Store) -> None:
    learning_id = new_id()
    await call(
        store.db.upsert_learning(
            id=learning_id,
            learning_type="user_profile",
            content=dict(HOSTILE),
            user_id="alice",
            metadata={"$source": ("chat", 1)},
        )
    )
    newest = await call(store.db.get_learning(learning_type="user_profile", user_id="alice"))
    assert same(newest, {"content": HOSTILE})
    (row,) = await call(store.db.get_learnings(learning_type="user_profile", user_id="alice"))
    assert same(row["content"], HOSTILE) and same(row["metadata"], {"$source": ("chat", 1)})
    raw = store.raw[store.db.collection_names["learnings"]].find_one({"_id": learning_id})
    assert raw["_codec"] == {"content": 1, "metadata": 1}

    # update_learning rewrites both fields and the marker with them
    assert await call(store.db.update_learning(learning_id, content={"plain": 1}, metadata={"a.b": {1, 2}}))
    by_id = await call(store.db.get_learning_by_id(learning_id))
    assert by_id["content"] == {"plain": 1} and same(by_id["metadata"], {"a.b": {1, 2}})
    raw = store.raw[store.db.collection_names["learnings"]].find_one({"_id": learning_id})
    assert raw["content"] == {"plain": 1} and raw["_codec"] == {"metadata": 1}


async def test_eval_run_round_trips_and_a_retry_stays_a_no_op(store: Store) -> None:
    record = EvalRunRecord(
        run_id=new_id(), eval_type=EvalType.ACCURACY, eval_data=dict(HOSTILE), eval_input={"q.1": float("nan")}
    )
    await call(store.db.create_eval_run(record))
    await call(store.db.create_eval_run(record))  # a retried insert of the same record is not a conflict
    row = await call(store.db.get_eval_run(record.run_id, deserialize=False))
    assert same(row["eval_data"], HOSTILE) and same(row["eval_input"], {"q.1": float("nan")})
    loaded = await call(store.db.get_eval_run(record.run_id))
    assert isinstance(loaded, EvalRunRecord) and same(loaded.eval_data, HOSTILE)
    assert store.raw[store.db.collection_names["evals"]].count_documents({"_id": record.run_id}) == 1


async def test_knowledge_metadata_round_trips(store: Store) -> None:
    row = KnowledgeRow(id=new_id(), name="doc", description="d", metadata={"page.no": 3, "$tag": b"\xff"})
    await call(store.db.upsert_knowledge_content(row))
    loaded = await call(store.db.get_knowledge_content(row.id))
    assert isinstance(loaded, KnowledgeRow) and same(loaded.metadata, {"page.no": 3, "$tag": b"\xff"})
    rows, _ = await call(store.db.get_knowledge_contents())
    assert [same(r.metadata, {"page.no": 3, "$tag": b"\xff"}) for r in rows] == [True]


async def test_unstorable_values_are_refused_naming_the_field(store: Store) -> None:
    bad = {"x": [re.compile("a")]}
    await assert_refused(
        store,
        "upsert_user_memory",
        {"memory": UserMemory(memory_id="m1", memory=bad, user_id="alice")},
        "memory.memory.x[0]",
    )
    await assert_refused(
        store,
        "upsert_learning",
        {"id": "l1", "learning_type": "t", "content": {"ok": 1}, "metadata": {"o": object()}},
        "metadata.o",
    )
    await assert_refused(store, "update_learning", {"id": "l1", "content": bad}, "content.x[0]")
    record = EvalRunRecord(run_id="e1", eval_type=EvalType.ACCURACY, eval_data=bad)
    await assert_refused(store, "create_eval_run", {"eval_run": record}, "eval_run.eval_data.x[0]")
    knowledge = KnowledgeRow(id="k1", name="doc", description="d", metadata=bad)
    await assert_refused(store, "upsert_knowledge_content", {"knowledge_row": knowledge}, "knowledge_row.metadata.x[0]")
    for role in ("memories", "learnings", "evals", "knowledge"):
        assert store.raw[store.db.collection_names[role]].count_documents({}) == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=values | plain, metadata=values, memory=values | plain)
def test_property_learnings_and_memories_round_trip(db: MongoDb, content: Any, metadata: Any, memory: Any) -> None:  # noqa: F811
    learning_id, memory_id = new_id(), new_id()
    db.upsert_learning(id=learning_id, learning_type="t", content={"c": content}, metadata={"m": metadata})
    row = db.get_learning_by_id(learning_id)
    assert row is not None
    assert same(row["content"], {"c": content}) and same(row["metadata"], {"m": metadata})
    db.upsert_user_memory(UserMemory(memory_id=memory_id, memory={"v": memory}, user_id="alice"))
    stored = db.get_user_memory(memory_id, user_id="alice", deserialize=False)
    assert isinstance(stored, dict) and same(stored["memory"], {"v": memory})
