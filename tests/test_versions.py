"""``table_exists`` and agno's schema-version stamps: one command each, retried like every plan,
on all three clients."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agno_mongo.contract.versions import CURRENT_AGNO_SCHEMA
from tests.conftest import Store, assert_refused, call


async def test_table_exists_names_only_the_collections_there(store: Store) -> None:
    sessions = store.db.session_table_name
    assert await call(store.db.table_exists(sessions)) is False
    store.raw[sessions].insert_one({"_id": "x"})
    store.commands.clear()
    assert await call(store.db.table_exists(sessions)) is True
    assert store.commands.names == ["listCollections"]
    (sent,) = store.commands.sent
    assert sent["filter"] == {"name": sessions} and sent["nameOnly"] is True
    assert await call(store.db.table_exists(sessions + "_other")) is False
    assert await call(store.db.table_exists(sessions[:-1])) is False  # a prefix is not the name


@pytest.mark.parametrize("name", [{"$ne": None}, "", "$cmd", "a\0b", 7])
async def test_table_exists_refuses_what_is_not_a_collection_name(store: Store, name: object) -> None:
    await assert_refused(store, "table_exists", {"table_name": name}, "table_name")


async def test_stamps_read_current_until_written_then_the_last_written(store: Store) -> None:
    assert await call(store.db.get_latest_schema_version("agno_sessions")) == CURRENT_AGNO_SCHEMA
    store.commands.clear()
    await call(store.db.upsert_schema_version("agno_sessions", "2.0.0"))
    await call(store.db.upsert_schema_version("agno_sessions", "2.5.0"))
    await call(store.db.upsert_schema_version("agno_memories", "2.0.0"))
    assert store.commands.names == ["update"] * 3
    store.commands.clear()
    assert await call(store.db.get_latest_schema_version("agno_sessions")) == "2.5.0"
    assert store.commands.names == ["find"]
    stamps = sorted(store.raw[store.db.versions_table_name].find({}, {"_id": False}), key=str)
    assert stamps == [
        {"table_name": "agno_memories", "version": "2.0.0"},
        {"table_name": "agno_sessions", "version": "2.5.0"},
    ]


async def test_a_stamp_whose_reply_is_lost_is_resent_and_stored_once(through: SimpleNamespace) -> None:
    through.proxy.drop_next("update")
    await call(through.db.upsert_schema_version("agno_sessions", "2.0.0"))
    assert through.proxy.dropped
    assert list(through.raw[through.db.versions_table_name].find({}, {"_id": False})) == [
        {"table_name": "agno_sessions", "version": "2.0.0"}
    ]
    through.proxy.drop_next("listCollections")
    assert await call(through.db.table_exists(through.db.versions_table_name)) is True
