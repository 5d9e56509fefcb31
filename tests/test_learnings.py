"""Learnings (agno's LearningMachine stores) through MongoDb / AsyncMongoDb on every client flavour.

Each test runs once per client flavour (see ``store`` in conftest) against a real wire server.
"""

from __future__ import annotations

from typing import Any

import pytest

from agno_mongo.errors import LearningOwnershipError
from tests.conftest import Store, assert_refused, call


async def put(store: Store, learning_id: str, learning_type: str = "user_profile", **kwargs: Any) -> None:
    kwargs.setdefault("user_id", "alice")
    kwargs.setdefault("content", {"name": learning_id})
    await call(store.db.upsert_learning(id=learning_id, learning_type=learning_type, **kwargs))


def stamp(store: Store, learning_id: str, updated_at: int) -> None:
    """Set a record's ``updated_at`` directly, for deterministic ordering tests."""
    store.raw.agno_learnings.update_one({"_id": learning_id}, {"$set": {"updated_at": updated_at}})


async def test_round_trip_stores_native_content(store: Store) -> None:
    await put(
        store,
        "p1",
        content={"name": "Alice", "prefs": {"tea": True}},
        agent_id="agent-1",
        namespace="user",
        metadata={"v": 1},
    )
    raw = store.raw.agno_learnings.find_one({"_id": "p1"})
    assert raw["learning_id"] == "p1" and raw["content"] == {"name": "Alice", "prefs": {"tea": True}}
    assert raw["metadata"] == {"v": 1} and isinstance(raw["created_at"], int) and raw["schema_version"] == 1

    assert await call(store.db.get_learning("user_profile", user_id="alice")) == {
        "content": {"name": "Alice", "prefs": {"tea": True}}
    }
    assert await call(store.db.get_learning("user_profile", user_id="bob")) is None
    assert await call(store.db.get_learning("session_context", user_id="alice")) is None

    row = await call(store.db.get_learning_by_id("p1"))
    assert row is not None and "_id" not in row and "schema_version" not in row
    assert {k: row[k] for k in ("learning_id", "learning_type", "user_id", "agent_id", "namespace")} == {
        "learning_id": "p1",
        "learning_type": "user_profile",
        "user_id": "alice",
        "agent_id": "agent-1",
        "namespace": "user",
    }
    assert row["team_id"] is None and row["created_at"] == raw["created_at"]
    assert await call(store.db.get_learning_by_id("missing")) is None


async def test_each_call_is_one_command(store: Store) -> None:
    await put(store, "p1")  # first use creates indexes
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any], list[str]]] = [
        ("upsert_learning", ("p1", "user_profile", {"name": "A"}), {"user_id": "alice"}, ["update"]),
        ("get_learning", ("user_profile",), {"user_id": "alice"}, ["find"]),
        ("get_learnings", (), {"user_id": "alice", "limit": 5}, ["find"]),
        ("get_learning_by_id", ("p1",), {}, ["find"]),
        ("update_learning", ("p1", {"name": "B"}), {}, ["update"]),
        ("list_learnings", (), {"user_id": "alice"}, ["find"]),
        ("get_learnings_user_stats", (), {"limit": 10, "page": 1}, ["aggregate"]),
        ("delete_learning", ("p1",), {}, ["delete"]),
        ("delete_user_learnings", ("alice",), {}, ["delete"]),
    ]
    for method, args, kwargs, expected in calls:
        store.commands.clear()
        await call(getattr(store.db, method)(*args, **kwargs))
        assert store.commands.names == expected, method


async def test_upsert_updates_in_place_and_keeps_created_at(store: Store) -> None:
    await put(store, "p1", content={"v": 1})
    store.raw.agno_learnings.update_one({"_id": "p1"}, {"$set": {"created_at": 100, "updated_at": 100}})
    await put(store, "p1", content={"v": 2}, metadata={"m": True})
    raw = store.raw.agno_learnings.find_one({"_id": "p1"})
    assert raw["content"] == {"v": 2} and raw["metadata"] == {"m": True}
    assert raw["created_at"] == 100 and raw["updated_at"] > 100
    assert store.raw.agno_learnings.count_documents({}) == 1


async def test_another_users_record_is_refused_after_one_owner_read(store: Store) -> None:
    await put(store, "p1", content={"secret": "alice"})
    store.commands.clear()
    with pytest.raises(LearningOwnershipError):
        await put(store, "p1", user_id="bob", content={"secret": "bob"})
    assert store.commands.names == ["update", "find"]
    with pytest.raises(LearningOwnershipError):
        await put(store, "p1", user_id=None, content={"secret": "nobody"})
    assert store.raw.agno_learnings.find_one({"_id": "p1"})["content"] == {"secret": "alice"}
    # An ownerless record may be claimed, like an ownerless session.
    await put(store, "g1", user_id=None, content={"shared": True})
    await put(store, "g1", user_id="bob", content={"mine": True})
    assert store.raw.agno_learnings.find_one({"_id": "g1"})["user_id"] == "bob"


async def test_update_learning_never_inserts(store: Store) -> None:
    assert await call(store.db.update_learning("missing", {"a": 1})) is False
    assert store.raw.agno_learnings.count_documents({}) == 0
    await put(store, "p1", content={"a": 1}, metadata={"old": True})
    assert await call(store.db.update_learning("p1", {"a": 2})) is True
    raw = store.raw.agno_learnings.find_one({"_id": "p1"})
    assert raw["content"] == {"a": 2} and raw["metadata"] is None and raw["user_id"] == "alice"


async def test_get_learning_picks_the_newest_match(store: Store) -> None:
    await put(store, "e1", "entity_memory", namespace="global", entity_id="acme", entity_type="company", user_id=None)
    await put(store, "e2", "entity_memory", namespace="global", entity_id="acme", entity_type="company", user_id=None)
    stamp(store, "e1", 200)
    stamp(store, "e2", 100)
    found = await call(store.db.get_learning("entity_memory", namespace="global", entity_id="acme"))
    assert found == {"content": {"name": "e1"}}
    assert await call(store.db.get_learning("entity_memory", entity_type="person")) is None


async def test_get_learnings_filters_newest_first_with_limit(store: Store) -> None:
    await put(store, "a1", agent_id="agent-1", session_id="s1")
    await put(store, "a2", "session_context", session_id="s1")
    await put(store, "a3", "session_context", session_id="s2", team_id="team-1")
    await put(store, "b1", user_id="bob")
    for index, learning_id in enumerate(["a1", "a2", "a3", "b1"]):
        stamp(store, learning_id, 100 + index)
    ids = lambda rows: [row["learning_id"] for row in rows]  # noqa: E731
    assert ids(await call(store.db.get_learnings())) == ["b1", "a3", "a2", "a1"]
    assert ids(await call(store.db.get_learnings(user_id="alice", limit=2))) == ["a3", "a2"]
    assert ids(await call(store.db.get_learnings(learning_type="session_context"))) == ["a3", "a2"]
    assert ids(await call(store.db.get_learnings(session_id="s1"))) == ["a2", "a1"]
    assert ids(await call(store.db.get_learnings(team_id="team-1"))) == ["a3"]
    assert ids(await call(store.db.get_learnings(agent_id="agent-1"))) == ["a1"]
    assert await call(store.db.get_learnings(user_id="nobody")) == []


async def test_list_learnings_pages_sorts_and_includes_global(store: Store) -> None:
    for index in range(5):
        await put(store, f"a{index}")
        stamp(store, f"a{index}", 100 + index)
    await put(store, "g1", user_id=None)
    stamp(store, "g1", 50)
    await put(store, "b1", user_id="bob")

    store.commands.clear()
    rows, total = await call(store.db.list_learnings(user_id="alice", limit=2, page=1))
    assert [r["learning_id"] for r in rows] == ["a4", "a3"] and total == 5
    assert store.commands.names == ["find", "aggregate"]  # full page: count_documents too
    rows, total = await call(store.db.list_learnings(user_id="alice", limit=2, page=3))
    assert [r["learning_id"] for r in rows] == ["a0"] and total == 5
    rows, total = await call(store.db.list_learnings(user_id="alice", include_global=True))
    assert [r["learning_id"] for r in rows] == ["a4", "a3", "a2", "a1", "a0", "g1"] and total == 6
    rows, _ = await call(store.db.list_learnings(user_id="alice", sort_by="learning_id", sort_order="asc"))
    assert [r["learning_id"] for r in rows] == ["a0", "a1", "a2", "a3", "a4"]
    # agno's learnings API documents that an unknown sort field falls back to the default order.
    rows, _ = await call(store.db.list_learnings(user_id="alice", sort_by="no_such_field"))
    assert [r["learning_id"] for r in rows] == ["a4", "a3", "a2", "a1", "a0"]
    rows, total = await call(store.db.list_learnings())
    assert total == 7


async def test_user_stats(store: Store) -> None:
    await put(store, "a1", user_id="alice")
    await put(store, "a2", "session_context", user_id="alice")
    await put(store, "b1", user_id="bob")
    await put(store, "c1", "session_context", user_id="carol")
    await put(store, "g1", user_id=None)
    store.raw.agno_learnings.insert_one({"_id": "legacy", "learning_id": "legacy", "learning_type": "x", "content": {}})
    for learning_id, updated_at in [("a1", 10), ("a2", 40), ("b1", 30), ("c1", 20), ("g1", 99)]:
        stamp(store, learning_id, updated_at)

    stats, total = await call(store.db.get_learnings_user_stats())
    assert stats == [
        {"user_id": "alice", "last_learning_updated_at": 40},
        {"user_id": "bob", "last_learning_updated_at": 30},
        {"user_id": "carol", "last_learning_updated_at": 20},
    ]
    assert total == 3
    stats, total = await call(store.db.get_learnings_user_stats(learning_type="user_profile"))
    assert stats == [
        {"user_id": "bob", "last_learning_updated_at": 30},
        {"user_id": "alice", "last_learning_updated_at": 10},
    ]
    stats, total = await call(store.db.get_learnings_user_stats(sort_by="user_id", sort_order="asc", limit=2, page=2))
    assert stats == [{"user_id": "carol", "last_learning_updated_at": 20}] and total == 3
    stats, total = await call(store.db.get_learnings_user_stats(user_id="bob"))
    assert stats == [{"user_id": "bob", "last_learning_updated_at": 30}] and total == 1


async def test_deletes(store: Store) -> None:
    await put(store, "a1")
    await put(store, "a2", "session_context")
    await put(store, "b1", user_id="bob")
    await put(store, "g1", user_id=None)
    assert await call(store.db.delete_learning("missing")) is False
    assert await call(store.db.delete_learning("b1")) is True
    assert await call(store.db.delete_user_learnings("alice", learning_type="session_context")) == 1
    assert await call(store.db.delete_user_learnings("alice")) == 1
    assert sorted(d["_id"] for d in store.raw.agno_learnings.find()) == ["g1"]


HOSTILE = {"$ne": None}


@pytest.mark.parametrize(
    ("method", "kwargs", "field"),
    [
        ("get_learning", {"learning_type": HOSTILE}, "learning_type"),
        ("get_learning", {"learning_type": "user_profile", "user_id": HOSTILE}, "user_id"),
        ("get_learning", {"learning_type": "x", "namespace": HOSTILE}, "namespace"),
        ("get_learning", {"learning_type": "x", "entity_id": HOSTILE}, "entity_id"),
        ("get_learnings", {"session_id": HOSTILE}, "session_id"),
        ("get_learnings", {"limit": "10"}, "limit"),
        ("get_learning_by_id", {"id": HOSTILE}, "id"),
        ("delete_learning", {"id": HOSTILE}, "id"),
        ("delete_user_learnings", {"user_id": HOSTILE}, "user_id"),
        ("delete_user_learnings", {"user_id": None}, "user_id"),
        ("delete_user_learnings", {"user_id": "alice", "learning_type": HOSTILE}, "learning_type"),
        ("update_learning", {"id": HOSTILE, "content": {}}, "id"),
        ("update_learning", {"id": "p1", "content": "text"}, "content"),
        ("update_learning", {"id": "p1", "content": {}, "metadata": "m"}, "metadata"),
        ("upsert_learning", {"id": HOSTILE, "learning_type": "x", "content": {}}, "id"),
        ("upsert_learning", {"id": "p1", "learning_type": "x", "content": {}, "user_id": HOSTILE}, "user_id"),
        ("upsert_learning", {"id": "p1", "learning_type": "x", "content": "{}"}, "content"),
        ("upsert_learning", {"id": "p1", "learning_type": "x", "content": {}, "entity_type": 3}, "entity_type"),
        ("list_learnings", {"user_id": HOSTILE}, "user_id"),
        ("list_learnings", {"sort_by": {"$natural": 1}}, "sort_by"),
        ("list_learnings", {"page": 0}, "page"),
        ("list_learnings", {"include_global": "yes"}, "include_global"),
        ("get_learnings_user_stats", {"user_id": HOSTILE}, "user_id"),
        ("get_learnings_user_stats", {"sort_order": "up"}, "sort_order"),
    ],
)
async def test_hostile_input_is_refused_before_any_command(
    store: Store, method: str, kwargs: dict[str, Any], field: str
) -> None:
    await assert_refused(store, method, kwargs, field)


async def test_indexes_are_created_once(store: Store) -> None:
    await put(store, "p1")
    await call(store.db.get_learning("user_profile", user_id="alice"))
    await call(store.db.list_learnings(user_id="alice"))
    assert store.commands.names.count("createIndexes") == 1
    names = {index["name"] for index in store.raw.agno_learnings.list_indexes()}
    assert {"type_user_updated_id", "user_updated_id"} <= names
