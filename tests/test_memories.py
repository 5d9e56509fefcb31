"""User memories through MongoDb / AsyncMongoDb on PyMongo, PyMongo async and Motor.

Each test runs once per client flavour (see ``store`` in conftest) against a real wire server.
"""

from __future__ import annotations

from typing import Any

import pytest
from agno.db.schemas.memory import UserMemory

from tests.conftest import Store, assert_refused, call


def memory(memory_id: str | None, text: str = "likes tea", user_id: str | None = "alice", **extra: Any) -> UserMemory:
    return UserMemory(
        memory_id=memory_id,
        memory=text,
        user_id=user_id,
        topics=extra.pop("topics", ["drinks"]),
        agent_id=extra.pop("agent_id", "agent-1"),
        **extra,
    )


async def seed(store: Store, *memories: UserMemory) -> None:
    """Write memories with their own timestamps (bulk path, ``preserve_updated_at``)."""
    await call(store.db.upsert_memories(list(memories), preserve_updated_at=True))


async def test_round_trip_stores_native_fields_under_the_memory_id(store: Store) -> None:
    saved = await call(
        store.db.upsert_user_memory(memory("m1", topics=["drinks", "food"], input="I like tea", feedback="ok"))
    )
    assert isinstance(saved, UserMemory)
    assert (saved.memory_id, saved.memory, saved.topics) == ("m1", "likes tea", ["drinks", "food"])
    assert (saved.input, saved.feedback, saved.user_id, saved.agent_id) == ("I like tea", "ok", "alice", "agent-1")

    raw = store.raw.agno_memories.find_one({"_id": "m1"})
    assert raw["memory_id"] == "m1" and raw["topics"] == ["drinks", "food"]
    assert isinstance(raw["created_at"], int) and isinstance(raw["updated_at"], int)
    assert raw["input"] == "I like tea" and raw["schema_version"] == 1

    loaded = await call(store.db.get_user_memory("m1"))
    assert isinstance(loaded, UserMemory) and loaded.memory == "likes tea" and loaded.created_at == raw["created_at"]
    as_dict = await call(store.db.get_user_memory("m1", deserialize=False))
    assert as_dict["memory_id"] == "m1" and "_id" not in as_dict and as_dict["topics"] == ["drinks", "food"]
    assert UserMemory.from_dict(as_dict).memory == "likes tea"
    assert await call(store.db.get_user_memory("missing")) is None


async def test_dict_memory_is_a_native_subdocument(store: Store) -> None:
    await call(store.db.upsert_user_memory(UserMemory(memory={"memory": "nested"}, memory_id="m1")))  # type: ignore[arg-type]
    assert store.raw.agno_memories.find_one({"_id": "m1"})["memory"] == {"memory": "nested"}


async def test_memory_without_id_gets_one(store: Store) -> None:
    new = memory(None)
    saved = await call(store.db.upsert_user_memory(new, deserialize=False))
    assert new.memory_id and saved["memory_id"] == new.memory_id
    assert store.raw.agno_memories.find_one({"_id": new.memory_id}) is not None


async def test_each_call_is_one_command(store: Store) -> None:
    await call(store.db.upsert_user_memory(memory("m1")))  # first use creates indexes
    store.commands.clear()
    await call(store.db.upsert_user_memory(memory("m1", "likes green tea")))
    assert store.commands.names == ["findAndModify"]
    for method, args, expected in [
        ("get_user_memory", ("m1",), ["find"]),
        ("get_user_memories", (), ["find"]),
        ("get_user_memory_stats", (), ["aggregate"]),
        ("get_all_memory_topics", (), ["aggregate"]),
        ("delete_user_memory", ("m1",), ["delete"]),
        ("clear_memories", (), ["delete"]),
    ]:
        store.commands.clear()
        await call(getattr(store.db, method)(*args))
        assert store.commands.names == expected, method

    store.commands.clear()
    await call(store.db.upsert_memories([memory(f"b{i}") for i in range(50)]))
    assert store.commands.names == ["update"]
    store.commands.clear()
    await call(store.db.get_user_memory_stats(limit=2, page=1))
    assert store.commands.names == ["aggregate"]


async def test_update_keeps_created_at_and_moves_updated_at(store: Store) -> None:
    await seed(store, memory("m1", created_at=1000, updated_at=1000))
    updated = await call(store.db.upsert_user_memory(memory("m1", "likes coffee", created_at=5)))
    assert updated.created_at == 1000 and updated.updated_at > 1000 and updated.memory == "likes coffee"
    assert store.raw.agno_memories.count_documents({}) == 1


async def test_upsert_is_idempotent(store: Store) -> None:
    first = await call(store.db.upsert_user_memory(memory("m1"), deserialize=False))
    again = await call(store.db.upsert_user_memory(memory("m1"), deserialize=False))
    assert first["created_at"] == again["created_at"]
    assert store.raw.agno_memories.count_documents({}) == 1


async def test_filters_sorting_and_pagination(store: Store) -> None:
    await seed(
        store,
        memory("m1", "Likes TEA", topics=["drinks"], created_at=10, updated_at=40),
        memory("m2", "plays chess", topics=["games"], created_at=20, updated_at=30, agent_id="agent-2"),
        memory("m3", "a.b literal", topics=["misc", "games"], created_at=30, updated_at=20, team_id="team-1"),
        memory("m4", "axb", user_id="bob", topics=["misc"], created_at=40, updated_at=10),
    )
    ids = lambda items: [m.memory_id for m in items]  # noqa: E731
    assert ids(await call(store.db.get_user_memories())) == ["m1", "m2", "m3", "m4"]  # creation order
    assert ids(await call(store.db.get_user_memories(user_id="alice"))) == ["m1", "m2", "m3"]
    assert ids(await call(store.db.get_user_memories(agent_id="agent-2"))) == ["m2"]
    assert ids(await call(store.db.get_user_memories(team_id="team-1"))) == ["m3"]
    assert ids(await call(store.db.get_user_memories(topics=["games", "drinks"]))) == ["m1", "m2", "m3"]
    assert ids(await call(store.db.get_user_memories(search_content="tea"))) == ["m1"]
    assert ids(await call(store.db.get_user_memories(search_content="a.b"))) == ["m3"]  # not a regex
    assert ids(await call(store.db.get_user_memories(sort_by="updated_at", sort_order="asc"))) == [
        "m4",
        "m3",
        "m2",
        "m1",
    ]
    assert ids(await call(store.db.get_user_memories(sort_by="updated_at"))) == ["m1", "m2", "m3", "m4"]

    store.commands.clear()
    page, total = await call(store.db.get_user_memories(limit=3, page=1, sort_by="created_at", deserialize=False))
    assert [m["memory_id"] for m in page] == ["m4", "m3", "m2"] and total == 4
    assert store.commands.names == ["find", "aggregate"]  # count_documents
    store.commands.clear()
    page, total = await call(store.db.get_user_memories(limit=3, page=2, sort_by="created_at", deserialize=False))
    assert [m["memory_id"] for m in page] == ["m1"] and total == 4
    assert store.commands.names == ["find"]  # a short page already tells the total
    assert await call(store.db.get_user_memories(user_id="nobody", deserialize=False)) == ([], 0)


async def test_another_users_memory_is_neither_read_nor_changed(store: Store) -> None:
    await call(store.db.upsert_user_memory(memory("m1", "alice's secret")))
    store.commands.clear()
    refused = await call(store.db.upsert_user_memory(memory("m1", "hijacked", user_id="bob")))
    assert refused is None and store.commands.names == ["findAndModify", "find"]
    assert await call(store.db.upsert_user_memory(memory("m1", "ownerless", user_id=None))) is None
    assert store.raw.agno_memories.find_one({"_id": "m1"})["memory"] == "alice's secret"

    assert await call(store.db.get_user_memory("m1", user_id="bob")) is None
    assert (await call(store.db.get_user_memory("m1", user_id="alice"))).memory == "alice's secret"
    await call(store.db.delete_user_memory("m1", user_id="bob"))
    await call(store.db.delete_user_memories(["m1"], user_id="bob"))
    assert store.raw.agno_memories.count_documents({}) == 1
    await call(store.db.delete_user_memory("m1", user_id="alice"))
    assert store.raw.agno_memories.count_documents({}) == 0


async def test_an_ownerless_memory_can_be_claimed(store: Store) -> None:
    await call(store.db.upsert_user_memory(memory("m1", user_id=None)))
    claimed = await call(store.db.upsert_user_memory(memory("m1", "mine now", user_id="alice")))
    assert claimed.user_id == "alice"


async def test_bulk_upsert_leaves_out_refused_memories_and_lands_the_rest(store: Store) -> None:
    await call(store.db.upsert_user_memory(memory("taken", "bob's", user_id="bob")))
    store.commands.clear()
    result = await call(
        store.db.upsert_memories([memory("a1"), memory("taken", "hijack"), memory("a2"), None])  # type: ignore[list-item]
    )
    assert store.commands.names == ["update", "find"]
    assert [m.memory_id for m in result] == ["a1", "a2"]
    assert store.raw.agno_memories.find_one({"_id": "taken"})["memory"] == "bob's"
    assert store.raw.agno_memories.count_documents({"user_id": "alice"}) == 2
    assert await call(store.db.upsert_memories([])) == []


async def test_bulk_upsert_preserves_updated_at_only_when_asked(store: Store) -> None:
    rows = await call(store.db.upsert_memories([memory("m1", updated_at=123)], deserialize=False))
    assert rows[0]["updated_at"] > 123
    rows = await call(store.db.upsert_memories([memory("m1", created_at=50, updated_at=123)], preserve_updated_at=True))
    assert (rows[0].created_at, rows[0].updated_at) == (50, 123)
    raw = store.raw.agno_memories.find_one({"_id": "m1"})
    assert (raw["created_at"], raw["updated_at"]) == (50, 123)


async def test_memory_stats_group_by_user_newest_first(store: Store) -> None:
    await seed(
        store,
        memory("a1", user_id="alice", updated_at=10),
        memory("a2", user_id="alice", updated_at=50),
        memory("b1", user_id="bob", updated_at=30),
        memory("c1", user_id="carol", updated_at=40),
        memory("n1", user_id=None, updated_at=99),
    )
    stats, total = await call(store.db.get_user_memory_stats())
    assert total == 3
    assert stats == [
        {"user_id": "alice", "total_memories": 2, "last_memory_updated_at": 50},
        {"user_id": "carol", "total_memories": 1, "last_memory_updated_at": 40},
        {"user_id": "bob", "total_memories": 1, "last_memory_updated_at": 30},
    ]
    page, total = await call(store.db.get_user_memory_stats(limit=2, page=2))
    assert [s["user_id"] for s in page] == ["bob"] and total == 3
    mine, total = await call(store.db.get_user_memory_stats(user_id="bob"))
    assert mine == [{"user_id": "bob", "total_memories": 1, "last_memory_updated_at": 30}] and total == 1
    assert await call(store.db.get_user_memory_stats(user_id="nobody", limit=5)) == ([], 0)


async def test_topics_are_distinct_and_scoped(store: Store) -> None:
    await seed(
        store,
        memory("a1", topics=["food", "drinks"]),
        memory("a2", topics=["food", ""]),
        memory("b1", user_id="bob", topics=["games"]),
        memory("n1", topics=None),
    )
    assert sorted(await call(store.db.get_all_memory_topics())) == ["drinks", "food", "games"]
    assert sorted(await call(store.db.get_all_memory_topics(user_id="alice"))) == ["drinks", "food"]


async def test_delete_many_and_clear(store: Store) -> None:
    await seed(store, memory("a1"), memory("a2"), memory("a3"), memory("b1", user_id="bob"))
    await call(store.db.delete_user_memories(["a1", "a2", "b1"], user_id="alice"))
    assert sorted(d["_id"] for d in store.raw.agno_memories.find()) == ["a3", "b1"]
    store.commands.clear()
    await call(store.db.delete_user_memories([]))
    assert store.commands.names == []
    await call(store.db.delete_user_memories(["a3", "b1"]))
    assert store.raw.agno_memories.count_documents({}) == 0
    await seed(store, memory("a1"), memory("b1", user_id="bob"))
    await call(store.db.clear_memories())
    assert store.raw.agno_memories.count_documents({}) == 0


HOSTILE = {"$ne": None}


@pytest.mark.parametrize(
    ("method", "kwargs", "field"),
    [
        ("get_user_memory", {"memory_id": HOSTILE}, "memory_id"),
        ("get_user_memory", {"memory_id": "m1", "user_id": HOSTILE}, "user_id"),
        ("get_user_memories", {"user_id": HOSTILE}, "user_id"),
        ("get_user_memories", {"agent_id": HOSTILE}, "agent_id"),
        ("get_user_memories", {"team_id": 7}, "team_id"),
        ("get_user_memories", {"topics": [HOSTILE]}, "topics[0]"),
        ("get_user_memories", {"topics": "drinks"}, "topics"),
        ("get_user_memories", {"search_content": {"$regex": ".*"}}, "search_content"),
        ("get_user_memories", {"sort_by": "$where"}, "sort_by"),
        ("get_user_memories", {"sort_by": "password"}, "sort_by"),
        ("get_user_memories", {"sort_order": "sideways"}, "sort_order"),
        ("get_user_memories", {"page": 2}, "page"),
        ("get_user_memories", {"limit": -1}, "limit"),
        ("get_user_memory_stats", {"user_id": HOSTILE}, "user_id"),
        ("get_all_memory_topics", {"user_id": HOSTILE}, "user_id"),
        ("delete_user_memory", {"memory_id": HOSTILE}, "memory_id"),
        ("delete_user_memory", {"memory_id": "m1", "user_id": HOSTILE}, "user_id"),
        ("delete_user_memories", {"memory_ids": [HOSTILE]}, "memory_ids[0]"),
        ("delete_user_memories", {"memory_ids": "m1"}, "memory_ids"),
        ("upsert_user_memory", {"memory": UserMemory(memory="x", memory_id="m1", user_id=HOSTILE)}, "memory.user_id"),  # type: ignore[arg-type]
        ("upsert_user_memory", {"memory": UserMemory(memory="x", memory_id=HOSTILE)}, "memory.memory_id"),  # type: ignore[arg-type]
        ("upsert_user_memory", {"memory": UserMemory(memory="x", topics=[HOSTILE])}, "memory.topics.0"),  # type: ignore[list-item]
        ("upsert_user_memory", {"memory": {"memory": "x"}}, "memory"),
        ("upsert_memories", {"memories": [memory("ok"), UserMemory(memory=3)]}, "memories[1].memory"),  # type: ignore[arg-type]
    ],
)
async def test_hostile_input_is_refused_before_any_command(
    store: Store, method: str, kwargs: dict[str, Any], field: str
) -> None:
    await assert_refused(store, method, kwargs, field)


async def test_indexes_are_created_once(store: Store) -> None:
    await call(store.db.upsert_user_memory(memory("m1")))
    await call(store.db.get_user_memories(user_id="alice"))
    await call(store.db.get_user_memory_stats())
    assert store.commands.names.count("createIndexes") == 1
    names = {index["name"] for index in store.raw.agno_memories.list_indexes()}
    assert {"user_created_id", "user_updated_id"} <= names
