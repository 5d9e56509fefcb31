"""The revision-checked session cache (issue 14): a whole-session read sends only what changed,
and is always current.

Every test compares what a caching instance reads with what an instance without a cache reads
from the same server at the same moment, after writes by other instances, another process, other
users, overflow and id reuse. The pure checks at the end walk every session and run write plan and
check the rules the cache relies on: every write advances ``rev``; a stored run carries the revision
it was written at, and the write lands only below it; a write that removes, reorders or moves runs
replaces ``shape``.
"""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import pytest
from agno.run.base import RunStatus
from bson.raw_bson import RawBSONDocument
from pymongo import UpdateMany, UpdateOne

from agno_mongo import AsyncMongoDb, InvalidInputError, MongoDb
from agno_mongo.ops.command import Command
from agno_mongo.schema.codec import RUN_REV
from agno_mongo.session_cache import SessionCache
from tests.conftest import Commands, Store, call, close, make_db
from tests.test_sessions import agent_session, run
from tests.test_shard_targeting import run_scenario, session_scenarios

CONTENT = "x" * 2000


def peer(store: Store, mongodb_url: str, db_name: str, **options: Any) -> MongoDb | AsyncMongoDb:
    """Another storage instance of the same flavour on the same database (its own cache)."""
    db = make_db(store.flavour, mongodb_url, db_name)
    for name, value in options.items():
        setattr(db, name, value)
    return db


def uncached(store: Store, mongodb_url: str, db_name: str) -> MongoDb | AsyncMongoDb:
    db = peer(store, mongodb_url, db_name)
    db._session_cache = SessionCache(0, 0)
    return db


async def read(db: MongoDb | AsyncMongoDb, session_id: str = "s1", user_id: str | None = None) -> Any:
    return await call(db.get_session(session_id, user_id=user_id, deserialize=False))


async def seed(db: MongoDb | AsyncMongoDb, runs: int, session_id: str = "s1", user_id: str | None = "alice") -> None:
    await call(db.upsert_session(agent_session(session_id, user_id)))
    for i in range(runs):
        await call(db.upsert_run(run(f"r{i}", session_id, CONTENT), session_id, user_id))


async def test_an_unchanged_session_costs_one_small_reply(store: Store) -> None:
    await seed(store.db, 30)
    first = await read(store.db)
    store.commands.clear()
    again = await read(store.db)
    assert again == first and len(again["runs"]) == 30
    assert store.commands.names == ["aggregate"]
    assert store.commands.received[0] < 1000  # 30 runs of 2 KB stay on the server


async def test_a_turn_receives_what_it_added_not_the_history(store: Store, mongodb_url: str, db_name: str) -> None:
    await seed(store.db, 40)
    await read(store.db)
    await call(store.db.upsert_run(run("new", "s1", "y" * 3000), "s1", "alice"))
    await call(store.db.upsert_session(agent_session("s1", session_data={"session_state": {"n": 2}})))
    store.commands.clear()
    now = await read(store.db)
    assert store.commands.names == ["aggregate"]
    assert 3000 < store.commands.received[0] < 3000 + 2500  # the new run and the session's fields
    fresh = uncached(store, mongodb_url, db_name)
    assert now == await read(fresh) and now["runs"][-1]["content"] == "y" * 3000
    assert now["session_data"] == {"session_state": {"n": 2}}
    await close(fresh)


async def test_another_instance_writes_between_two_reads(store: Store, mongodb_url: str, db_name: str) -> None:
    await seed(store.db, 5)
    await read(store.db)
    other = peer(store, mongodb_url, db_name)
    await call(other.upsert_run(run("r2", "s1", "rewritten in place"), "s1", "alice"))
    await call(other.upsert_run(run("r9", "s1", "appended elsewhere"), "s1", "alice"))
    await call(other.rename_session("s1", None, "renamed", "alice"))
    got = await read(store.db)
    assert [r["run_id"] for r in got["runs"]] == ["r0", "r1", "r2", "r3", "r4", "r9"]
    assert got["runs"][2]["content"] == "rewritten in place"
    assert got["session_data"]["session_name"] == "renamed"
    await call(other.delete_run("r3"))
    got = await read(store.db)
    assert [r["run_id"] for r in got["runs"]] == ["r0", "r1", "r2", "r4", "r9"]
    fresh = uncached(store, mongodb_url, db_name)
    assert got == await read(fresh)
    await close(other)
    await close(fresh)


async def test_a_second_process_is_seen_on_the_next_read(store: Store, mongodb_url: str, db_name: str) -> None:
    await seed(store.db, 3)
    await read(store.db)
    script = (
        "import sys; from agno.run.agent import RunOutput; from agno_mongo import MongoDb\n"
        "db = MongoDb(db_url=sys.argv[1], db_name=sys.argv[2])\n"
        "db.upsert_run(RunOutput(run_id='r1', agent_id='agent-1', session_id='s1', content='other process'),"
        " 's1', 'alice')\n"
        "db.upsert_run(RunOutput(run_id='p1', agent_id='agent-1', session_id='s1', content='new'), 's1', 'alice')\n"
    )
    subprocess.run([sys.executable, "-c", script, mongodb_url, db_name], check=True, timeout=120)
    got = await read(store.db)
    assert [(r["run_id"], r["content"]) for r in got["runs"]] == [
        ("r0", CONTENT),
        ("r1", "other process"),
        ("r2", CONTENT),
        ("p1", "new"),
    ]


async def test_a_session_deleted_and_created_again_is_never_served_from_the_cache(
    store: Store, mongodb_url: str, db_name: str
) -> None:
    await seed(store.db, 4)
    await read(store.db)
    other = peer(store, mongodb_url, db_name)
    await call(other.delete_session("s1"))
    assert await read(store.db) is None
    await seed(other, 2)  # same id, same run ids, a new incarnation
    await call(other.upsert_run(run("r1", "s1", "second life"), "s1", "alice"))
    got = await read(store.db)
    assert [(r["run_id"], r["content"]) for r in got["runs"]] == [("r0", CONTENT), ("r1", "second life")]
    await close(other)


async def test_another_user_never_gets_a_cached_session(store: Store, mongodb_url: str, db_name: str) -> None:
    await seed(store.db, 2)
    assert (await read(store.db, user_id="alice"))["user_id"] == "alice"
    assert await read(store.db, user_id="bob") is None  # the server refuses first, cache or not
    other = peer(store, mongodb_url, db_name)
    assert await call(other.reassign_session_owner("s1", previous_user_id="alice", user_id="bob"))
    assert await read(store.db, user_id="alice") is None
    assert (await read(store.db, user_id="bob"))["user_id"] == "bob"
    await close(other)


async def test_overflow_and_spills_by_another_writer(store: Store, mongodb_url: str, db_name: str) -> None:
    store.db.max_runs_bytes = 8192
    other = peer(store, mongodb_url, db_name, max_runs_bytes=8192)
    fresh = uncached(store, mongodb_url, db_name)
    await seed(store.db, 3)
    for i in range(12):
        await read(store.db)
        writer = other if i % 2 else store.db
        await call(writer.upsert_run(run(f"o{i}", "s1", CONTENT), "s1", "alice"))
        if i % 3 == 0:  # rewrite one that has overflowed by now
            await call(writer.upsert_run(run("r0", "s1", f"rewrite {i}"), "s1", "alice"))
        assert await read(store.db) == await read(fresh)
    assert store.raw.agno_sessions.find_one({"_id": "s1"})["spilled"]  # the spills did happen
    await close(other)
    await close(fresh)


async def test_a_writer_whose_clock_is_behind_still_lands_and_is_seen(
    store: Store, mongodb_url: str, db_name: str
) -> None:
    await seed(store.db, 2)
    ahead = store.raw.agno_sessions.find_one({"_id": "s1"})["rev"] + 10**12  # a writer 11 days ahead
    store.raw.agno_sessions.update_one({"_id": "s1"}, {"$set": {"rev": ahead}})
    await read(store.db)
    other = peer(store, mongodb_url, db_name)  # no cache: proposes its own clock, below the stored rev
    await call(other.upsert_run(run("late", "s1", "behind"), "s1", "alice"))
    raw = store.raw.agno_sessions.find_one({"_id": "s1"})
    assert raw["rev"] > ahead and raw["runs"][-1][RUN_REV] == raw["rev"]
    assert [r["run_id"] for r in (await read(store.db))["runs"]] == ["r0", "r1", "late"]
    await close(other)


async def test_a_run_known_from_the_cache_is_updated_in_one_command_sent_once(
    store: Store, mongodb_url: str, db_name: str
) -> None:
    await seed(store.db, 3)
    commands = Commands()
    other = make_db(store.flavour, mongodb_url, db_name, commands)  # did not write r1, but read the session
    await read(other)
    commands.clear()
    await call(other.upsert_run(run("r1", "s1", "finished", status=RunStatus.completed), "s1", "alice"))
    assert commands.names == ["update"] and len(commands.sent) == 1
    assert (await read(store.db))["runs"][1]["content"] == "finished"
    await close(other)


async def test_the_cache_stays_within_its_bounds(store: Store, mongodb_url: str, db_name: str) -> None:
    for i in range(6):
        await seed(store.db, 2, session_id=f"b{i}")
    small = peer(store, mongodb_url, db_name)
    small._session_cache = SessionCache(max_sessions=3, max_bytes=12_000)
    for i in range(6):
        assert len((await read(small, f"b{i}"))["runs"]) == 2
        assert len(small._session_cache) <= 3 and small._session_cache.bytes <= 12_000
    await seed(store.db, 8, session_id="big")  # 16 KB: larger than the whole cache
    assert len((await read(small, "big"))["runs"]) == 8
    assert small._session_cache.base("big") is None
    await close(small)


async def test_switched_off_every_read_is_whole(store: Store, mongodb_url: str, db_name: str) -> None:
    await seed(store.db, 2)
    commands = Commands()
    db = make_db(store.flavour, mongodb_url, db_name, commands)
    db._session_cache = SessionCache(0, 0)
    await read(db)
    commands.clear()
    await read(db)
    assert commands.names == ["find"] and commands.received[0] > 2 * len(CONTENT)
    await close(db)


def test_the_bounds_are_checked() -> None:
    with pytest.raises(InvalidInputError) as error:
        MongoDb(db_url="mongodb://127.0.0.1:1", session_cache_bytes=-1)
    assert error.value.field == "session_cache_bytes"
    with pytest.raises(InvalidInputError) as error:
        AsyncMongoDb(db_url="mongodb://127.0.0.1:1", session_cache_sessions=True)  # type: ignore[arg-type]
    assert error.value.field == "session_cache_sessions"


@pytest.mark.parametrize("seed_value", range(4))
async def test_random_writers_and_a_cached_reader_agree_with_an_uncached_one(
    store: Store, mongodb_url: str, db_name: str, seed_value: int
) -> None:
    """Appends, in-place rewrites, placed inserts, deletes, renames, field updates, cancels, spills,
    owner changes and id reuse by two writers (one of them the reader itself), in random order; after
    each, the caching reader must read exactly what an uncached instance reads."""
    rng = random.Random(seed_value)
    store.db.max_runs_bytes = 12_000
    other = peer(store, mongodb_url, db_name, max_runs_bytes=12_000)
    fresh = uncached(store, mongodb_url, db_name)
    owner, ids = "alice", [f"r{i}" for i in range(12)]
    await seed(store.db, 2, user_id=owner)
    for step in range(40):
        writer = rng.choice([store.db, other])
        action = rng.choice(["append", "append", "rewrite", "place", "delete", "rename", "fields", "cancel", "reuse"])
        run_id = rng.choice(ids)
        if action in ("append", "rewrite"):
            size = rng.choice([10, 500, 3000])
            status = rng.choice([RunStatus.completed, RunStatus.pending])
            await call(writer.upsert_run(run(run_id, "s1", f"{step}" * size, status=status), "s1", owner))
        elif action == "place":
            index = rng.randrange(0, 4)
            await call(writer.upsert_run(run(f"p{step}", "s1", "placed"), "s1", owner, run_index=index))
        elif action == "delete":
            await call(writer.delete_run(run_id))
        elif action == "rename":
            await call(writer.rename_session("s1", None, f"name {step}", owner))
        elif action == "fields":
            await call(writer.upsert_session(agent_session("s1", owner, session_data={"step": step})))
        elif action == "cancel":
            await call(writer.cancel_pending_run(run_id, session_id="s1", reason=f"stop {step}", user_id=owner))
        elif action == "reuse":
            await call(writer.delete_session("s1"))
            owner = rng.choice(["alice", "bob"])
            await seed(writer, 1, user_id=owner)
        assert await read(store.db, user_id=owner) == await read(fresh, user_id=owner), f"step {step}: {action}"
    await close(other)
    await close(fresh)


# --- the rules, checked over every session and run write plan (no server) -----------------------------------


def session_writes(command: Command) -> list[dict[str, Any] | list[Any]]:
    """The update documents (or pipelines) a command applies to session documents."""
    if command.collection != "sessions":
        return []
    if command.op in ("update_one", "update_many", "find_one_and_update"):
        return [command.kwargs["update"]]
    if command.op == "bulk_write":
        return [r._doc for r in command.kwargs["requests"] if isinstance(r, UpdateOne | UpdateMany)]
    return []


def advances_revision(update: dict[str, Any] | list[Any]) -> bool:
    if isinstance(update, list):
        return any("rev" in stage.get("$set", {}) for stage in update)
    return "rev" in update.get("$inc", {}) or "rev" in update.get("$set", {})


def pipeline_stamps_the_run(update: list[Any]) -> bool:
    """A pipeline that rewrites runs stamps the rewritten one with the revision it just set."""
    runs = [stage["$set"]["runs"] for stage in update if "runs" in stage.get("$set", {})]
    return all(r["$map"]["in"]["$cond"][1]["$mergeObjects"][1] == {RUN_REV: "$rev"} for r in runs)


def stored_runs(update: dict[str, Any] | list[Any]) -> list[RawBSONDocument]:
    if isinstance(update, list):
        return []
    pushed = update.get("$push", {}).get("runs")
    if isinstance(pushed, dict) and "$each" in pushed:
        pushed = pushed["$each"][0]
    placed = update.get("$set", {}).get("runs.$")
    return [run for run in (pushed, placed) if run is not None]


def test_every_session_write_advances_the_revision_and_stamps_the_runs_it_stores() -> None:
    problems: list[str] = []
    seen = 0
    for label, method, kwargs, answer in session_scenarios():
        commands, _ = run_scenario(method, kwargs, answer)
        for command in commands:
            for update in session_writes(command):
                seen += 1
                if not advances_revision(update):
                    problems.append(f"{label}: {update} does not advance rev")
                if isinstance(update, list) and not pipeline_stamps_the_run(update):
                    problems.append(f"{label}: a pipeline rewrites runs without stamping them")
                for body in stored_runs(update):
                    assert isinstance(update, dict)
                    revision = update["$set"]["rev"]
                    if body[RUN_REV] != revision:
                        problems.append(f"{label}: run stamped {body[RUN_REV]}, session set to {revision}")
                    if command.kwargs["filter"].get("rev") != {"$not": {"$gte": revision}}:
                        problems.append(f"{label}: a run write not conditioned on a lower rev")
                moves = isinstance(update, dict) and (
                    "$pull" in update or "spilled" in update.get("$set", {}) or "$position" in str(update)
                )
                if moves and "shape" not in update.get("$set", {}):
                    problems.append(f"{label}: removes, reorders or moves runs without a new shape")
    assert seen > 20 and problems == []
