"""Index management: changing, keeping and removing session expiry; creating indexes explicitly.

What a user relies on: a deployment that changes ``session_ttl_seconds`` keeps working (the TTL index
is changed in place with ``collMod``, once per process, and no call fails because of it); a store
built without a TTL (the CLI, the dashboard, a script) never switches expiry off; only
``set_session_ttl(None)`` does; ``create_indexes()`` / ``agno-mongo doctor --create-indexes`` build
every declared index up front, and ``create_indexes_on_first_use=False`` never builds them lazily.

The embedded server (mongoeco) has no ``collMod`` ("unsupported wire command") and refuses a TTL
index re-created with another expiry with IndexKeySpecsConflict (86; MongoDB answers
IndexOptionsConflict, 85). Tests that need the index actually changed skip there, saying so; the
command sequence and the "no call fails" guarantee are checked on every server.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.schemas.memory import UserMemory
from pymongo import MongoClient
from pymongo.errors import OperationFailure
from typer.testing import CliRunner

from agno_mongo import AsyncMongoDb, InvalidInputError, MongoDb
from agno_mongo.cli import app
from agno_mongo.db import MAX_TTL_SECONDS, TTL_INDEX_NAME
from agno_mongo.domains import INDEXES
from tests.conftest import Store, assert_refused, call
from tests.test_sessions import agent_session, run

LONG_AGO = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


def has_collmod(raw: Any) -> bool:
    """Whether the server knows ``collMod`` (MongoDB: NamespaceNotFound for a missing collection;
    mongoeco: "unsupported wire command")."""
    try:
        raw.command({"collMod": "agno_probe_no_such_collection"})
    except OperationFailure as error:
        return error.code != 59 and "unsupported wire command" not in str(error)
    return True


def expires_on_read(raw: Any) -> bool:
    """mongoeco drops expired documents as it reads them; MongoDB's TTL monitor runs about once a
    minute, so "this session has expired" can only be asserted at once on the embedded server."""
    return "mongoeco" in str(raw.client.admin.command("buildInfo").get("gitVersion"))


def needs_collmod(store: Store) -> None:
    if not has_collmod(store.raw):
        pytest.skip("the embedded server (mongoeco) has no collMod: a TTL index cannot be changed in place there")


def sibling(store: Store, **options: Any) -> MongoDb | AsyncMongoDb:
    """Another storage instance of the store's class on the same client and database (its commands
    are recorded by ``store.commands``), as a redeploy with other settings would build it."""
    return type(store.db)(db_client=store.db.db_client, db_name=store.db.db_name, **options)


def ttl_of(store: Store) -> int | None:
    index = store.raw.agno_sessions.index_information().get(TTL_INDEX_NAME)
    return None if index is None else int(index["expireAfterSeconds"])


def ttl_commands(store: Store) -> list[str]:
    """Index commands sent on the sessions collection, in order."""
    names = []
    for name, command in zip(store.commands.names, store.commands.sent, strict=True):
        if name in {"createIndexes", "collMod", "dropIndexes"} and command[name] == "agno_sessions":
            names.append(name)
    return names


async def session_calls(db: MongoDb | AsyncMongoDb, session_id: str) -> None:
    """Every kind of session call: write, append a run, read, list, rename, delete."""
    await call(db.upsert_session(agent_session(session_id)))
    await call(db.upsert_run(run(f"{session_id}-r1", session_id), session_id, "alice"))
    assert (await call(db.get_session(session_id, SessionType.AGENT))).session_id == session_id
    assert session_id in [s.session_id for s in await call(db.get_sessions(SessionType.AGENT))]
    renamed = await call(db.rename_session(session_id, SessionType.AGENT, "renamed", "alice"))
    assert renamed.session_data["session_name"] == "renamed"
    assert [r.run_id for r in await call(db.get_runs(session_id=session_id))] == [f"{session_id}-r1"]
    assert await call(db.delete_session(session_id, "alice")) is True


# --- changing session_ttl_seconds ------------------------------------------------------------------


async def test_a_changed_ttl_is_sent_as_collmod_once_and_no_call_fails(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await session_calls(sibling(store, session_ttl_seconds=3600), "before")
    assert ttl_of(store) == 3600
    changed = sibling(store, session_ttl_seconds=60)
    store.commands.clear()
    with caplog.at_level(logging.WARNING, logger="agno_mongo.db"):
        for attempt in range(3):  # the old code failed here with IndexOptionsConflict, on every call
            await session_calls(changed, f"after-{attempt}")
    # refused create (other expiry), the other indexes alone, collMod; then nothing more, ever
    assert ttl_commands(store) == ["createIndexes", "createIndexes", "collMod"]
    collmod = store.commands.sent[store.commands.names.index("collMod")]
    assert collmod["collMod"] == "agno_sessions"
    assert collmod["index"] == {"name": TTL_INDEX_NAME, "expireAfterSeconds": 60}
    warned = [r for r in caplog.records if TTL_INDEX_NAME in r.getMessage()]
    if has_collmod(store.raw):
        assert warned == [] and ttl_of(store) == 60
    else:  # the call goes on; the warning says the index keeps its expiry and what to do
        assert len(warned) == 1 and "set_session_ttl(60)" in warned[0].getMessage()
        assert ttl_of(store) == 3600


async def test_a_changed_ttl_is_what_the_index_says(store: Store) -> None:
    needs_collmod(store)
    await call(sibling(store, session_ttl_seconds=3600).upsert_session(agent_session("s1")))
    changed = sibling(store, session_ttl_seconds=60)
    await session_calls(changed, "s2")
    assert ttl_of(store) == 60
    await call(changed.set_session_ttl(7200))
    assert ttl_of(store) == 7200


async def test_a_store_built_without_a_ttl_leaves_the_ttl_index_alone(store: Store) -> None:
    await call(sibling(store, session_ttl_seconds=3600).upsert_session(agent_session("s1")))
    store.commands.clear()
    plain = sibling(store)  # what the CLI and the dashboard build
    await session_calls(plain, "s2")
    await call(plain.create_indexes())
    assert "collMod" not in store.commands.names and "dropIndexes" not in store.commands.names
    assert ttl_of(store) == 3600


async def test_set_session_ttl_none_drops_the_index_and_sessions_stop_expiring(store: Store) -> None:
    db = sibling(store, session_ttl_seconds=60)
    for session_id in ("old", "kept"):
        await call(db.upsert_session(agent_session(session_id)))
    store.raw.agno_sessions.update_one({"_id": "old"}, {"$set": {"touched_at": LONG_AGO}})
    if expires_on_read(store.raw):  # the control: with the index, a session idle that long is gone
        assert await call(db.get_session("old", SessionType.AGENT)) is None
    store.commands.clear()
    await call(db.set_session_ttl(None))
    assert ttl_commands(store) == ["dropIndexes"]
    assert TTL_INDEX_NAME not in store.raw.agno_sessions.index_information()
    assert db.session_ttl_seconds is None
    store.raw.agno_sessions.update_one({"_id": "kept"}, {"$set": {"touched_at": LONG_AGO}})
    assert (await call(db.get_session("kept", SessionType.AGENT))).session_id == "kept"
    await session_calls(db, "later")  # the same instance does not bring the index back
    await session_calls(sibling(store), "later-plain")
    assert TTL_INDEX_NAME not in store.raw.agno_sessions.index_information()
    await call(db.set_session_ttl(None))  # nothing left to drop: still fine
    await call(sibling(store, session_collection="never_used").set_session_ttl(None))  # no collection


async def test_set_session_ttl_creates_the_index_then_changes_it(store: Store) -> None:
    db = sibling(store)
    await call(db.set_session_ttl(120))
    assert ttl_of(store) == 120 and db.session_ttl_seconds == 120
    store.commands.clear()
    if has_collmod(store.raw):
        await call(db.set_session_ttl(300))
        assert ttl_of(store) == 300 and db.session_ttl_seconds == 300
    else:  # an explicit change the server refuses is raised, and the instance keeps its setting
        with pytest.raises(OperationFailure, match="collMod"):
            await call(db.set_session_ttl(300))
        assert ttl_of(store) == 120 and db.session_ttl_seconds == 120
    assert ttl_commands(store) == ["createIndexes", "collMod"]


async def test_the_largest_ttl_mongodb_accepts_is_accepted(store: Store) -> None:
    await call(sibling(store).set_session_ttl(MAX_TTL_SECONDS))
    assert ttl_of(store) == MAX_TTL_SECONDS


@pytest.mark.parametrize("bad", [0, -5, MAX_TTL_SECONDS + 1, 2**63, True, False, 1.5, "60"])
async def test_out_of_range_ttls_are_refused_naming_the_field(store: Store, bad: Any) -> None:
    store.commands.clear()
    with pytest.raises(InvalidInputError) as error:
        sibling(store, session_ttl_seconds=bad)
    assert error.value.field == "session_ttl_seconds"
    await assert_refused(store, "set_session_ttl", {"seconds": bad}, "session_ttl_seconds")


def test_create_indexes_on_first_use_must_be_a_bool() -> None:
    for cls in (MongoDb, AsyncMongoDb):
        with pytest.raises(InvalidInputError) as error:
            cls(db_url="mongodb://127.0.0.1:1", create_indexes_on_first_use="no")  # type: ignore[arg-type]
        assert error.value.field == "create_indexes_on_first_use"


# --- explicit index creation -----------------------------------------------------------------------


def declared(role: str) -> dict[str, list[tuple[str, int]]]:
    return {
        model.document["name"]: [(field, int(direction)) for field, direction in model.document["key"].items()]
        for model in INDEXES[role]
    }


def present(raw: Any, collection: str) -> dict[str, list[tuple[str, int]]]:
    return {
        name: [(field, int(direction)) for field, direction in info["key"]]
        for name, info in raw[collection].index_information().items()
        if name != "_id_"
    }


async def test_create_indexes_creates_every_declared_index(store: Store) -> None:
    db = sibling(store, session_ttl_seconds=900)
    assert all(not present(store.raw, db.collection_names[role]) for role in INDEXES)
    created = await call(db.create_indexes())
    for role in INDEXES:
        collection = db.collection_names[role]
        expected = declared(role)
        if role == "sessions":
            expected[TTL_INDEX_NAME] = [("touched_at", 1)]
        assert present(store.raw, collection) == expected, role
        assert sorted(created[collection]) == sorted(expected), role
    assert ttl_of(store) == 900
    store.commands.clear()
    await call(db.upsert_session(agent_session("s1")))  # already done in this process: nothing resent
    assert "createIndexes" not in store.commands.names
    assert sorted(await call(sibling(store).create_indexes())) == sorted(created)  # again: no error


async def test_create_indexes_on_first_use_false_never_creates_indexes(store: Store) -> None:
    db = sibling(store, create_indexes_on_first_use=False, session_ttl_seconds=600)
    store.commands.clear()
    await call(db.get_session("nothing", SessionType.AGENT))
    assert store.commands.names == ["find"]  # the first use just sends its command
    await session_calls(db, "s1")
    await call(db.upsert_user_memory(UserMemory(memory="likes tea", user_id="alice", memory_id="m1")))
    assert len(await call(db.get_user_memories(user_id="alice"))) == 1
    assert "createIndexes" not in store.commands.names
    for collection in ("agno_sessions", "agno_memories"):
        assert present(store.raw, collection) == {}
    await call(db.create_indexes())
    assert present(store.raw, "agno_memories") == declared("memories") and ttl_of(store) == 600


# --- agno-mongo doctor --create-indexes ------------------------------------------------------------


def test_doctor_create_indexes_builds_every_index_and_keeps_the_ttl(mongodb_url: str, db_name: str) -> None:
    seeded = MongoDb(db_url=mongodb_url, db_name=db_name, session_ttl_seconds=3600)
    seeded.upsert_session(agent_session("s1"))
    seeded.close()
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    client[db_name]["agno_sessions"].drop_index("user_created_id")
    runner = CliRunner()
    args = ["--url", mongodb_url, "--db", db_name, "--json"]
    before = runner.invoke(app, ["doctor", *args])
    assert before.exit_code == 1
    assert json.loads(before.stdout)["problems"] == ["agno_sessions: index user_created_id missing"]
    result = runner.invoke(app, ["doctor", "--create-indexes", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["problems"] == []
    for collection in report["collections"]:
        assert {index["status"] for index in collection["indexes"]} == {"ok"}, collection["collection"]
        assert sorted(report["created_indexes"][collection["collection"]]) == sorted(declared(collection["role"]))
    sessions = next(c for c in report["collections"] if c["role"] == "sessions")
    assert sessions["session_ttl_seconds"] == 3600 and sessions["extra"] == []
    info = client[db_name]["agno_sessions"].index_information()
    assert "user_created_id" in info and info[TTL_INDEX_NAME]["expireAfterSeconds"] == 3600
    client.close()
    text = runner.invoke(app, ["doctor", "--create-indexes", *args[:-1]], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "Created or confirmed" in text.stdout and "3600 s after the last write" in text.stdout


def test_a_freed_clients_indexes_are_forgotten_so_a_reused_id_builds_them_again(mongodb_url: str, db_name: str) -> None:
    """The process-wide "indexes created" cache is keyed per client passed in; once that client is
    freed its entries go, so a later client that happens to get the same ``id`` (CPython reuses them)
    on another server or database still builds its indexes."""
    import gc

    from agno_mongo import db as db_module

    client: MongoClient[Any] = MongoClient(mongodb_url)
    store = MongoDb(db_client=client, db_name=db_name)
    key = store._server_key
    store.upsert_session(agent_session("s1", "u1", runs=[run("r1", "s1")]))
    assert any(entry[0] == key for entry in db_module._INDEXED)
    second = MongoDb(db_client=client, db_name=db_name)
    assert second._server_key == key  # instances on one client share what was built
    client.close()
    del store, second, client
    gc.collect()
    assert not any(entry[0] == key for entry in db_module._INDEXED)
