"""Schedules and schedule runs through MongoDb / AsyncMongoDb on PyMongo, PyMongo async and Motor.

Each test runs once per client flavour (see ``store`` in conftest) against a real wire server. The
differential test plays every one of the 16 methods on agno's own ``SqliteDb`` / ``AsyncSqliteDb``
(``oracle``) and compares every answer. The claim is raced by 8 pollers (threads, separate processes
and asyncio tasks) over 200 due schedules, and the lost-reply paths of the claim, the release and the
other non-idempotent writes are proved with :class:`~agno_mongo.testing.faults.ReplyDroppingProxy`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from agno.db.schemas.scheduler import Schedule, ScheduleRun
from agno.db.utils import is_unique_violation
from agno.os.routers.schedules.schema import ScheduleResponse, ScheduleRunResponse
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.errors import CorruptDocumentError
from agno_mongo.ops import schedules as ops
from agno_mongo.ops.command import Command, Plan, ReplyLost, Written
from agno_mongo.schema.schedules import RUN_COLUMNS, SCHEDULE_COLUMNS
from tests.conftest import Store, assert_refused, call
from tests.differential import assert_same_answers
from tests.plans import drive, lost

STAMPED = frozenset({"updated_at", "locked_at"})
"""The times a store stamps itself (with its own clock); every other time in these scenarios is given."""
FUTURE = 4_000_000_000
"""A ``next_run_at`` never due during a test."""


def schedule(schedule_id: str, name: str, created_at: int, **extra: Any) -> dict[str, Any]:
    """A schedule as agno's ``Schedule.to_dict`` builds one (every column; ScheduleManager, Company)."""
    values: dict[str, Any] = {"cron_expr": "*/5 * * * *", "endpoint": "/agents/a1/runs", **extra}
    return Schedule(id=schedule_id, name=name, created_at=created_at, **values).to_dict()


def routed(schedule_id: str, name: str, created_at: int, **extra: Any) -> dict[str, Any]:
    """A schedule as AgentOS's ``POST /schedules`` builds one (no provenance columns)."""
    record = schedule(schedule_id, name, created_at, **extra)
    for column in ("managed_by", "target_type", "target_id", "created_by_run_id", "created_by_session_id"):
        del record[column]
    for column in ("updated_by_run_id", "updated_by_session_id", "disabled_reason"):
        del record[column]
    return record


def run(run_id: str, schedule_id: str, created_at: int, **extra: Any) -> dict[str, Any]:
    """A run record as agno's executor builds one."""
    values: dict[str, Any] = {"triggered_at": created_at, **extra}
    return ScheduleRun(id=run_id, schedule_id=schedule_id, created_at=created_at, **values).to_dict()


async def attempt(answer: Any) -> Any:
    """The answer, or ``"raised"``: agno's SQLite raises IntegrityError / ValueError where we raise
    DuplicateKeyError / InvalidInputError / UnknownScheduleError (each checked on its own elsewhere)."""
    try:
        return await call(answer())
    except Exception:
        return "raised"


async def play(db: Any) -> list[Any]:
    """Every method of the domain, in an order that exercises each filter and each outcome."""
    out: list[Any] = []
    records = [
        schedule("A", "alpha", 10, next_run_at=3, payload={"message": "hi", "nested": {"k": [1, 2.5, None]}}),
        schedule("B", "beta", 20, next_run_at=1, user_id="alice"),
        schedule("C", "alpha", 30, next_run_at=2, user_id="alice", enabled=False),  # same name, other owner
        routed("D", "alpha", 30, next_run_at=FUTURE, user_id=""),  # "" is an owner of its own
        schedule(
            "E", "ondemand", 40, cron_expr="", next_run_at=2, managed_by="studio", target_type="agent", target_id="a1"
        ),
        schedule("F", "slash", 50, endpoint="/agents/a1/runs/", next_run_at=FUTURE),
        schedule("G", "team", 60, endpoint="/teams/a1/runs", next_run_at=FUTURE),
    ]
    for record in records:
        out.append(await call(db.create_schedule(dict(record))))
    out.append(await attempt(lambda: db.create_schedule(schedule("X", "alpha", 70))))  # the unowned "alpha"
    out.append(await attempt(lambda: db.create_schedule(schedule("A", "fresh", 70))))  # a taken id
    out.append(await attempt(lambda: db.create_schedule({"id": "Y", "name": "y"})))  # required columns missing
    out.append(await call(db.get_schedule("A")))
    for schedule_id, user_id in (("A", "alice"), ("B", "alice"), ("B", "bob"), ("missing", None)):
        out.append(await call(db.get_schedule(schedule_id, user_id=user_id)))
    for name, user_id in (("alpha", None), ("alpha", "alice"), ("alpha", ""), ("alpha", "bob"), ("beta", None)):
        out.append(await call(db.get_schedule_by_name(name, user_id=user_id)))
    listings: list[dict[str, Any]] = [
        {},
        {"enabled": True},
        {"enabled": False},
        {"user_id": "alice"},
        {"user_id": ""},
        {"user_id": "alice", "enabled": True},
        {"user_id": "nobody"},
        {"limit": 2, "page": 1},
        {"limit": 2, "page": 2},
        {"limit": 2, "page": 4},
        {"limit": 2, "page": 5},
        {"limit": 3, "page": 2},
        {"limit": 0},
        {"raise_on_error": True},
    ]
    for kwargs in listings:
        out.append(await call(db.get_schedules(**kwargs)))

    out.append(await call(db.update_schedule("A", description="first", payload={"message": "bye", "$odd.key": 1})))
    out.append(await call(db.update_schedule("A", user_id="alice", description="not hers")))
    out.append(await call(db.update_schedule("missing", description="x")))
    out.append(await call(db.update_schedule("C", disabled_reason="paused by hand")))
    out.append(await call(db.update_schedule("C", enabled=True)))  # enabling clears disabled_reason
    out.append(await attempt(lambda: db.update_schedule("B", user_id="alice", name="alpha")))  # C has it
    out.append(await call(db.update_schedule("D", user_id="", name="beta")))  # "" bucket: free
    out.append(await attempt(lambda: db.update_schedule("A", created_at=5)))  # not mutable: refused
    out.append(await attempt(lambda: db.update_schedule("A", locked_by="w")))
    repoint = {"endpoint": "/agents/g1/runs", "target_type": "agent", "target_id": "g1"}
    out.append(await call(db.update_schedule("G", **repoint)))  # targets matching the endpoint are allowed
    out.append(
        await attempt(lambda: db.update_schedule("G", endpoint="/agents/h/runs", target_type="agent", target_id="x"))
    )
    out.append(await call(db.stamp_schedule_provenance("A", managed_by="studio", created_by_run_id="run-1")))
    out.append(await call(db.stamp_schedule_provenance("missing", managed_by="studio")))
    out.append(await attempt(lambda: db.stamp_schedule_provenance("A", user_id="mallory")))
    out.append(await call(db.get_schedule("A")))

    # Due: B (1), C (2), E (2, on demand), A (3); oldest first, ties by id.
    first = await call(db.claim_due_schedule("w1"))
    second = await call(db.claim_due_schedule("w2"))
    out += [first, second]
    out.append(await call(db.release_schedule("C", FUTURE, worker_id="w1")))  # not the holder
    out.append(await call(db.release_schedule("B", FUTURE, worker_id="w1", locked_at=first["locked_at"])))
    third = await call(db.claim_due_schedule("w3"))
    out.append(third)
    out.append(await call(db.release_schedule("E", 5, worker_id="w3", locked_at=third["locked_at"])))  # stays null
    out.append(await call(db.claim_due_schedule("w1")))
    out.append(await call(db.claim_due_schedule("w1")))  # nothing unlocked is due
    stolen = await call(db.claim_due_schedule("w4", lock_grace_seconds=0))  # every lock is stale: C
    out.append(stolen)
    out.append(await call(db.release_schedule("C", FUTURE, worker_id="w2", locked_at=second["locked_at"])))
    out.append(await call(db.release_schedule("C", worker_id="w4")))  # keeps next_run_at
    out.append(await call(db.release_schedule("A")))  # an unconditional release
    out.append(await call(db.release_schedule("missing", 5)))
    for schedule_id in ("A", "B", "C", "E"):
        out.append(await call(db.get_schedule(schedule_id)))
    out.append(await call(db.disable_schedules_for_target("agent", "a1", reason="target_archived:agent:a1")))
    out.append(await call(db.disable_schedules_for_target("agent", "a1", reason="again")))
    out.append(await call(db.disable_schedules_for_target("team", "a1")))
    out.append(await call(db.get_schedules()))

    runs = [
        run("sr1", "A", 100, completed_at=110, status="success", status_code=200, input={"m": "x"}),
        run("sr2", "A", 200),
        run("sr3", "B", 150, completed_at=160, status="failed", error="boom", user_id="alice"),
        run("sr4", "A", 120, triggered_at=None, attempt=2),
    ]
    for record in runs:
        out.append(await call(db.create_schedule_run(dict(record))))
    out.append(await attempt(lambda: db.create_schedule_run(run("sr9", "missing", 10))))
    out.append(await attempt(lambda: db.create_schedule_run(run("sr1", "A", 10))))
    done = {"completed_at": 210, "status": "success", "output": {"content": "ok", "list": [1, {"a": None}]}}
    out.append(await call(db.update_schedule_run("sr2", run_id="r-2", session_id="s-2", **done)))
    out.append(await call(db.update_schedule_run("missing", status="success")))
    for run_id, user_id in (("sr1", None), ("sr3", "alice"), ("sr3", "bob"), ("missing", None)):
        out.append(await call(db.get_schedule_run(run_id, user_id=user_id)))
    for schedule_id, kwargs in (
        ("A", {}),
        ("A", {"limit": 1, "page": 2}),
        ("A", {"limit": 2, "page": 2}),
        ("A", {"limit": 0}),
        ("B", {"user_id": "alice"}),
        ("B", {"user_id": "bob"}),
        ("missing", {}),
    ):
        out.append(await call(db.get_schedule_runs(schedule_id, **kwargs)))
    out.append(await call(db.get_latest_schedule_runs(["A", "B", "missing"])))
    out.append(await call(db.get_latest_schedule_runs([])))
    out.append(await call(db.delete_schedule_runs("A", before=200)))  # sr1 (110); sr2 completed 210, sr4 running
    out.append(await call(db.delete_schedule_runs("A", before=200)))
    out.append(await call(db.delete_schedule_runs("A", before=1000)))
    out.append(await call(db.get_schedule_runs("A")))

    out.append(await call(db.delete_schedule("B", user_id="bob")))  # not bob's: stays, with its run
    out.append(await call(db.get_schedule_run("sr3")))
    out.append(await call(db.delete_schedule("B")))
    out.append(await call(db.get_schedule_run("sr3")))  # the cascade took it
    out.append(await call(db.delete_schedule("B")))
    out.append(await call(db.delete_schedule("A", user_id=None)))
    out.append(await call(db.get_schedule_runs("A")))
    out.append(await call(db.get_schedules()))
    return out


async def test_every_method_answers_as_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await play(store.db)
    theirs = await play(oracle)
    assert_same_answers(ours, theirs, times=STAMPED)


async def test_rows_have_agnos_keys_and_types_and_feed_the_router_schema(store: Store, oracle: Any) -> None:
    for db in (store.db, oracle):
        await call(db.create_schedule(schedule("A", "alpha", 10, next_run_at=FUTURE, payload={"k": [1]})))
        await call(db.create_schedule(routed("B", "beta", 10, cron_expr="")))
        await call(db.create_schedule_run(run("sr1", "A", 5, completed_at=6, output={"a": 1})))
        await call(db.update_schedule("A", description="d"))
    for schedule_id in ("A", "B"):
        mine = await call(store.db.get_schedule(schedule_id))
        reference = await call(oracle.get_schedule(schedule_id))
        assert list(mine) == list(reference) == list(SCHEDULE_COLUMNS)
        assert {key: type(value) for key, value in mine.items()} == {k: type(v) for k, v in reference.items()}
        ScheduleResponse.model_validate(mine)  # what GET /schedules/{id} answers
        Schedule.from_dict(mine)  # what the poller and the manager build
    mine_run = await call(store.db.get_schedule_run("sr1"))
    reference_run = await call(oracle.get_schedule_run("sr1"))
    assert list(mine_run) == list(reference_run) == list(RUN_COLUMNS)
    assert {key: type(value) for key, value in mine_run.items()} == {k: type(v) for k, v in reference_run.items()}
    ScheduleRunResponse.model_validate(mine_run)
    ScheduleRun.from_dict(mine_run)


async def test_documents_are_native_bson_with_agnos_id_as_the_key(store: Store) -> None:
    hostile = {"$where": 1, "a.b": [1, {"c": (1, 2)}]}
    await call(store.db.create_schedule(schedule("A", "alpha", 10, payload=hostile)))
    raw = store.raw.agno_schedules.find_one({"_id": "A"})
    assert "id" not in raw and raw["user_id"] is None and raw["enabled"] is True and raw["_claim"] is None
    assert raw["payload"]["%24where"] == 1 and raw["_codec"] == {"payload": 1} and raw["schema_version"] == 1
    assert len(raw["_ops"]) == 1 and type(raw["created_at"]) is int
    assert (await call(store.db.get_schedule("A")))["payload"] == hostile
    await call(store.db.update_schedule("A", payload={"plain": {"nested": True}}))
    raw = store.raw.agno_schedules.find_one({"_id": "A"})
    assert raw["payload"] == {"plain": {"nested": True}} and raw["_codec"] == {}
    await call(store.db.create_schedule_run(run("sr1", "A", 5, input={"q": [1, 2]}, requirements=[{"x": 1}])))
    raw_run = store.raw.agno_schedule_runs.find_one({"_id": "sr1"})
    assert raw_run["input"] == {"q": [1, 2]} and raw_run["requirements"] == [{"x": 1}] and "id" not in raw_run


async def test_names_are_unique_per_owner_the_unowned_bucket_included(store: Store) -> None:
    """The unique index on (user_id, name) treats a null owner as a value, so two unowned schedules
    of one name collide as two of one owner do; the refusal is PyMongo's DuplicateKeyError, which
    agno's routes map to 409 (``is_unique_violation``), and nothing is written."""
    db = store.db
    await call(db.create_schedule(schedule("A", "daily", 10)))
    await call(db.create_schedule(schedule("B", "daily", 10, user_id="alice")))
    await call(db.create_schedule(schedule("C", "daily", 10, user_id="")))
    await call(db.create_schedule(schedule("D", "nightly", 10, user_id="alice")))
    for record in (schedule("X", "daily", 11), schedule("Y", "daily", 11, user_id="alice")):
        with pytest.raises(DuplicateKeyError) as error:
            await call(db.create_schedule(record))
        assert is_unique_violation(error.value)
    with pytest.raises(DuplicateKeyError) as error:
        await call(db.update_schedule("D", user_id="alice", name="daily"))
    assert is_unique_violation(error.value)
    assert store.raw.agno_schedules.count_documents({}) == 4
    assert store.raw.agno_schedules.find_one({"_id": "D"})["name"] == "nightly"
    assert (await call(db.update_schedule("D", name="nightly")))["name"] == "nightly"  # its own name is fine
    assert (await call(db.get_schedule_by_name("daily")))["id"] == "A"
    assert (await call(db.get_schedule_by_name("daily", user_id="")))["id"] == "C"
    # A document written by something else without the field is in the unowned bucket too.
    store.raw.agno_schedules.delete_one({"_id": "A"})
    store.raw.agno_schedules.insert_one({**ops.schedule_document(_columns(schedule("Z", "daily", 9)), "t")})
    store.raw.agno_schedules.update_one({"_id": "Z"}, {"$unset": {"user_id": ""}})
    with pytest.raises(DuplicateKeyError):
        await call(db.create_schedule(schedule("X", "daily", 11)))


def _columns(record: dict[str, Any]) -> dict[str, Any]:
    from agno_mongo.schema.schedules import check_schedule_record

    return check_schedule_record(record)[1]


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    await call(store.db.create_schedule(schedule("A", "alpha", 10)))
    await call(store.db.create_schedule_run(run("sr1", "A", 10)))
    good = schedule("X", "x", 1)
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("create_schedule", {"schedule_data": ["not", "a", "dict"]}, "schedule_data"),
        ("create_schedule", {"schedule_data": {**good, "colour": "red"}}, "schedule_data.colour"),
        (
            "create_schedule",
            {"schedule_data": {k: v for k, v in good.items() if k != "endpoint"}},
            "schedule_data.endpoint",
        ),
        ("create_schedule", {"schedule_data": {**good, "id": {"$ne": None}}}, "schedule_data.id"),
        ("create_schedule", {"schedule_data": {**good, "name": None}}, "schedule_data.name"),
        ("create_schedule", {"schedule_data": {**good, "enabled": "yes"}}, "schedule_data.enabled"),
        ("create_schedule", {"schedule_data": {**good, "timeout_seconds": "60"}}, "schedule_data.timeout_seconds"),
        ("create_schedule", {"schedule_data": {**good, "next_run_at": 1 << 70}}, "schedule_data.next_run_at"),
        ("create_schedule", {"schedule_data": {**good, "user_id": {"$exists": True}}}, "schedule_data.user_id"),
        ("create_schedule", {"schedule_data": {**good, "payload": {"f": object()}}}, "schedule_data.payload.f"),
        ("get_schedule", {"schedule_id": {"$ne": None}}, "schedule_id"),
        ("get_schedule", {"schedule_id": "A", "user_id": 5}, "user_id"),
        ("get_schedule_by_name", {"name": {"$regex": "."}}, "name"),
        ("get_schedules", {"enabled": "true"}, "enabled"),
        ("get_schedules", {"limit": -1}, "limit"),
        ("get_schedules", {"page": 0}, "page"),
        ("get_schedules", {"user_id": {"$ne": None}}, "user_id"),
        ("get_schedules", {"raise_on_error": 1}, "raise_on_error"),
        ("update_schedule", {"schedule_id": "A", "user_id": "alice2", "locked_by": "w"}, "locked_by"),
        ("update_schedule", {"schedule_id": "A", "managed_by": "x"}, "managed_by"),
        ("update_schedule", {"schedule_id": "A", "name": None}, "name"),
        ("update_schedule", {"schedule_id": "A", "enabled": 1}, "enabled"),
        ("update_schedule", {"schedule_id": "A", "next_run_at": "soon"}, "next_run_at"),
        ("update_schedule", {"schedule_id": "A", "endpoint": 5, "target_type": "agent", "target_id": "x"}, "target_id"),
        ("update_schedule", {"schedule_id": {"$gt": ""}, "name": "b"}, "schedule_id"),
        ("delete_schedule", {"schedule_id": ""}, "schedule_id"),
        ("disable_schedules_for_target", {"target_type": "agent", "target_id": {"$ne": None}}, "target_id"),
        ("disable_schedules_for_target", {"target_type": "agent", "target_id": "a", "reason": 3}, "reason"),
        ("stamp_schedule_provenance", {"schedule_id": "A", "user_id": "mallory"}, "user_id"),
        ("stamp_schedule_provenance", {"schedule_id": "A", "managed_by": 3}, "managed_by"),
        ("claim_due_schedule", {"worker_id": None}, "worker_id"),
        ("claim_due_schedule", {"worker_id": "w", "lock_grace_seconds": -1}, "lock_grace_seconds"),
        ("claim_due_schedule", {"worker_id": "w", "lock_grace_seconds": 1.5}, "lock_grace_seconds"),
        ("release_schedule", {"schedule_id": "A", "next_run_at": "later"}, "next_run_at"),
        ("release_schedule", {"schedule_id": "A", "worker_id": {"$ne": None}}, "worker_id"),
        ("release_schedule", {"schedule_id": "A", "locked_at": {"$gt": 0}}, "locked_at"),
        ("delete_schedule_runs", {"schedule_id": "A", "before": None}, "before"),
        ("create_schedule_run", {"run_data": {**run("sr2", "A", 1), "attempt": None}}, "run_data.attempt"),
        (
            "create_schedule_run",
            {"run_data": {**run("sr2", "A", 1), "schedule_id": {"$ne": 1}}},
            "run_data.schedule_id",
        ),
        ("create_schedule_run", {"run_data": {**run("sr2", "A", 1), "colour": 1}}, "run_data.colour"),
        ("update_schedule_run", {"schedule_run_id": "sr1", "id": "sr9"}, "id"),
        ("update_schedule_run", {"schedule_run_id": "sr1", "schedule_id": "B"}, "schedule_id"),
        ("update_schedule_run", {"schedule_run_id": "sr1", "status": None}, "status"),
        ("update_schedule_run", {"schedule_run_id": "sr1", "status_code": "200"}, "status_code"),
        ("get_schedule_run", {"run_id": ["sr1"]}, "run_id"),
        ("get_latest_schedule_runs", {"schedule_ids": "A"}, "schedule_ids"),
        ("get_latest_schedule_runs", {"schedule_ids": ["A", {"$ne": 1}]}, "schedule_ids[1]"),
        ("get_schedule_runs", {"schedule_id": "A", "limit": None}, "limit"),
        ("get_schedule_runs", {"schedule_id": "A", "user_id": {"$in": ["a"]}}, "user_id"),
    ]
    for method, kwargs, field in refused:
        await assert_refused(store, method, kwargs, field)
    assert store.raw.agno_schedules.count_documents({}) == 1
    raw = store.raw.agno_schedules.find_one({"_id": "A"})
    assert raw["name"] == "alpha" and raw["locked_by"] is None and raw.get("managed_by") is None
    assert store.raw.agno_schedule_runs.count_documents({}) == 1


async def test_the_claim_takes_only_due_unlocked_or_stale_schedules_oldest_first(store: Store) -> None:
    db, raw = store.db, store.raw.agno_schedules
    now = int(time.time())
    await call(db.create_schedule(schedule("late", "late", 1, next_run_at=now - 10)))
    await call(db.create_schedule(schedule("early", "early", 1, next_run_at=now - 100)))
    await call(db.create_schedule(schedule("off", "off", 1, next_run_at=now - 1000, enabled=False)))
    await call(db.create_schedule(schedule("future", "future", 1, next_run_at=now + 3600)))
    await call(db.create_schedule(schedule("never", "never", 1, next_run_at=None)))
    await call(db.create_schedule(schedule("stale", "stale", 1, next_run_at=now - 50)))
    raw.update_one({"_id": "stale"}, {"$set": {"locked_by": "dead-worker", "locked_at": now - 400}})
    await call(db.create_schedule(schedule("held", "held", 1, next_run_at=now - 60)))
    raw.update_one({"_id": "held"}, {"$set": {"locked_by": "live-worker", "locked_at": now - 5}})

    store.commands.clear()
    claimed = [await call(db.claim_due_schedule("w")) for _ in range(4)]
    assert [row and row["id"] for row in claimed] == ["early", "stale", "late", None]
    assert store.commands.names == ["findAndModify"] * 4  # one command per claim
    assert all(row["locked_by"] == "w" and row["locked_at"] >= now for row in claimed[:3] if row)
    # A shorter grace makes the fresh lock stale too.
    stolen = await call(db.claim_due_schedule("w2", lock_grace_seconds=1))
    assert stolen["id"] == "held" and stolen["locked_by"] == "w2"

    # Only the holder of that claim releases it; the expired one ("dead-worker") cannot.
    stale = claimed[1]
    assert await call(db.release_schedule("stale", now + 60, worker_id="dead-worker")) is False
    assert await call(db.release_schedule("stale", now + 60, worker_id="w", locked_at=stale["locked_at"] - 1)) is False
    assert raw.find_one({"_id": "stale"})["locked_by"] == "w"
    assert await call(db.release_schedule("stale", now + 60, worker_id="w", locked_at=stale["locked_at"])) is True
    row = await call(db.get_schedule("stale"))
    assert (row["locked_by"], row["locked_at"], row["next_run_at"]) == (None, None, now + 60)
    assert raw.find_one({"_id": "stale"})["_claim"] is None

    # An on-demand schedule is left unarmed by a release, whatever the executor's snapshot said.
    await call(db.create_schedule(schedule("manual", "manual", 1, cron_expr="", next_run_at=now - 1)))
    claimed_manual = await call(db.claim_due_schedule("w", lock_grace_seconds=10_000))
    assert claimed_manual["id"] == "manual"
    assert await call(db.release_schedule("manual", now + 60, worker_id="w", locked_at=claimed_manual["locked_at"]))
    assert (await call(db.get_schedule("manual")))["next_run_at"] is None
    assert await call(db.claim_due_schedule("w", lock_grace_seconds=10_000)) is None


async def test_deleting_a_schedule_deletes_its_runs(store: Store) -> None:
    db = store.db
    await call(db.create_schedule(schedule("A", "a", 1, user_id="alice")))
    await call(db.create_schedule(schedule("B", "b", 1)))
    for index in range(3):
        await call(db.create_schedule_run(run(f"a{index}", "A", 10 + index, user_id="alice")))
    await call(db.create_schedule_run(run("b0", "B", 10)))
    assert await call(db.delete_schedule("A", user_id="bob")) is False
    assert store.raw.agno_schedule_runs.count_documents({"schedule_id": "A"}) == 3
    assert await call(db.delete_schedule("A", user_id="alice")) is True
    assert store.raw.agno_schedule_runs.count_documents({"schedule_id": "A"}) == 0
    assert store.raw.agno_schedule_runs.count_documents({"schedule_id": "B"}) == 1
    # A run of a schedule that is gone is not kept (agno's SQL: a foreign-key error).
    with pytest.raises(ops.UnknownScheduleError) as error:
        await call(db.create_schedule_run(run("late", "A", 20)))
    assert error.value.schedule_id == "A" and store.raw.agno_schedule_runs.find_one({"_id": "late"}) is None


def test_no_run_outlives_its_schedule_whatever_the_interleaving(mongodb_url: str, db_name: str) -> None:
    """``create_schedule_run`` and ``delete_schedule`` stepped one command at a time, in each order
    that matters: the run is inserted before the schedule goes, or after the schedule went but before
    the runs cascade, or after both. In every case no run of the deleted schedule remains."""
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    raw = MongoClient(mongodb_url)[db_name]
    # Steps: c = insert, check the schedule (then, if it is gone, remove the run); d = delete the
    # schedule, delete its runs. The value says whether the run's creator is told the schedule is gone.
    orders = {
        "insert, check, delete all": (["c", "c", "d", "d"], False),
        "insert, delete all, check": (["c", "d", "d", "c", "c"], True),
        "insert, delete schedule, check, delete runs": (["c", "d", "c", "c", "d"], True),
        "delete schedule, insert, check, delete runs": (["d", "c", "c", "c", "d"], True),
        "delete schedule, insert, delete runs, check": (["d", "c", "d", "c", "c"], True),
        "delete all, insert, check": (["d", "d", "c", "c", "c"], True),
    }
    for label, (order, refused) in orders.items():
        db.create_schedule(schedule("A", "a", 1))
        from agno_mongo.schema.schedules import check_run_record

        creating = ops.create_run_plan(ops.run_document(check_run_record(run("r", "A", 5))[1], ops.token()))
        deleting = ops.delete_schedule_plan("A", None)
        stepper = {"c": Stepped(db, creating), "d": Stepped(db, deleting)}
        for who in order:
            stepper[who].step()
        assert stepper["d"].done and stepper["d"].answer is True, label
        assert stepper["c"].done and isinstance(stepper["c"].error, ops.UnknownScheduleError) is refused, label
        assert raw.agno_schedule_runs.count_documents({"schedule_id": "A"}) == 0, label
        assert raw.agno_schedules.count_documents({}) == 0, label
        raw.agno_schedule_runs.delete_many({})


class Stepped:
    """A plan run one command per :meth:`step` on a sync store (``_execute``), for interleavings."""

    def __init__(self, db: MongoDb, plan: Plan[Any]) -> None:
        self.db, self.plan = db, plan
        self.pending: Any = plan.send(None)
        self.done = False
        self.answer: Any = None
        self.error: BaseException | None = None

    def step(self) -> None:
        assert not self.done, "stepped past the end"
        assert isinstance(self.pending, Command)
        try:
            self.pending = self.plan.send(self.db._execute(self.pending))
        except StopIteration as stop:
            self.done, self.answer = True, stop.value
        except ops.UnknownScheduleError as error:
            self.done, self.error = True, error


async def test_listing_errors_follow_raise_on_error_and_reads_never_swallow_them(store: Store) -> None:
    await call(store.db.create_schedule(schedule("A", "a", 1)))
    store.raw.agno_schedules.insert_one({"_id": "bad", "name": "b", "created_at": 5, "enabled": True})
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_schedules(raise_on_error=True))
    assert error.value.document_id == "bad" and error.value.collection == "schedules"
    assert await call(store.db.get_schedules()) == ([], 0)  # agno's documented answer
    with pytest.raises(CorruptDocumentError):
        await call(store.db.get_schedule("bad"))
    url = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300"
    unreachable = AsyncMongoDb(db_url=url) if store.is_async else MongoDb(db_url=url)
    assert await call(unreachable.get_schedules()) == ([], 0)
    with pytest.raises(Exception, match="127.0.0.1:9"):
        await call(unreachable.claim_due_schedule("w"))  # never "nothing due" from a server not read


async def test_where_agnos_sqlite_is_loose_ours_answers_the_stored_truth(store: Store, oracle: Any) -> None:
    """Two deliberate differences from agno's SqliteDb, each asserted on both stores."""
    for db in (store.db, oracle):
        await call(db.create_schedule(schedule("A", "a", 1)))
        for index in range(3):
            await call(db.create_schedule_run(run(f"sr_{index}", "A", 100)))  # one created_at second
    # 1. An update with no columns: SQLite fails to build the statement and answers None for a run
    #    that exists; ours answers the run as stored.
    assert await call(oracle.update_schedule_run("sr_1")) is None
    assert (await call(store.db.update_schedule_run("sr_1")))["id"] == "sr_1"
    # 2. Runs created in the same second: SQLite lists them oldest first (its scan order), although
    #    the listing is newest first; ours breaks the tie by agno's time-ordered run id, newest first.
    theirs, _ = await call(oracle.get_schedule_runs("A"))
    ours, _ = await call(store.db.get_schedule_runs("A"))
    assert [row["id"] for row in theirs] == ["sr_0", "sr_1", "sr_2"]
    assert [row["id"] for row in ours] == ["sr_2", "sr_1", "sr_0"]


async def test_listings_and_the_claim_are_served_by_an_index(store: Store) -> None:
    """Every filter + sort these plans send has an index whose keys are equality fields of the
    query, then the sort (a range field may sit between them only if the sort starts with it)."""
    await call(store.db.get_schedules())
    await call(store.db.get_schedule_runs("x"))
    schedule_keys = [list(i["key"]) for i in store.raw.agno_schedules.list_indexes() if i["name"] != "_id_"]
    run_keys = [list(i["key"]) for i in store.raw.agno_schedule_runs.list_indexes() if i["name"] != "_id_"]

    def serves(indexes: list[list[str]], equality: set[str], sort: list[str]) -> bool:
        return any(
            set(keys[: len(keys) - len(sort)]) == equality and keys[len(keys) - len(sort) :] == sort for keys in indexes
        )

    newest = [field for field, _ in ops.NEWEST_FIRST]
    for shape in (set(), {"enabled"}, {"user_id"}, {"user_id", "enabled"}):
        assert serves(schedule_keys, shape, newest), shape
    assert serves(schedule_keys, {"user_id", "name"}, [])  # get_schedule_by_name, and the unique rule
    # The claim: equality on enabled, then next_run_at (its range and its sort), then the tie-break.
    claim = ops.claim("w", 100, 300, "t")
    assert list(claim.kwargs["sort"]) == ops.DUE_ORDER
    assert serves(schedule_keys, {"enabled"}, [field for field, _ in ops.DUE_ORDER])
    assert serves(schedule_keys, {"_claim"}, [])
    assert serves(schedule_keys, {"target_id", "target_type"}, []) and serves(schedule_keys, {"endpoint"}, [])
    for shape in ({"schedule_id"}, {"schedule_id", "user_id"}):
        assert serves(run_keys, shape, newest), shape
    assert serves(run_keys, {"schedule_id"}, [field for field, _ in ops.LATEST_ORDER])
    unique = [i for i in store.raw.agno_schedules.list_indexes() if i.get("unique") and i["name"] != "_id_"]
    assert [list(i["key"]) for i in unique] == [["user_id", "name"]] and "partialFilterExpression" not in unique[0]


# --- plans without a server --------------------------------------------------------------------------------


def test_the_claim_is_one_non_resendable_find_and_modify_with_a_token() -> None:
    won = {"_id": "A", "locked_by": "w"}
    commands, answer = drive(ops.claim_plan("w", 1000, 300), [won])
    (claim,) = commands
    assert claim.op == "find_one_and_update" and claim.resend is False and answer is won
    assert claim.kwargs["filter"] == {
        "enabled": True,
        "next_run_at": {"$type": "number", "$lte": 1000},
        "$or": [{"locked_by": None}, {"locked_at": {"$type": "number", "$lte": 700}}],
    }
    stamp = claim.kwargs["update"]["$set"]
    assert (stamp["locked_by"], stamp["locked_at"], len(stamp["_claim"])) == ("w", 1000, 16)


def test_after_a_lost_claim_reply_the_token_read_decides() -> None:
    won = {"_id": "A", "locked_by": "w"}
    # Landed: the read by token finds the schedule; nothing is sent again.
    commands, answer = drive(ops.claim_plan("w", 1000, 300), [lost(ops.claim("w", 1000, 300, "t")), won])
    claim, check = commands
    assert check.op == "find_one" and check.kwargs["filter"] == {"_claim": claim.kwargs["update"]["$set"]["_claim"]}
    assert answer is won
    # Not landed: the same claim (same token) is sent again and its answer is the answer.
    commands, answer = drive(ops.claim_plan("w", 1000, 300), [lost(claim), None, won])
    assert commands[2] == commands[0] and answer is won
    # Not landed and nothing due on the resend: read once more (the first may have landed late).
    commands, answer = drive(ops.claim_plan("w", 1000, 300), [lost(claim), None, None, won])
    assert [c.op for c in commands] == ["find_one_and_update", "find_one", "find_one_and_update", "find_one"]
    assert answer is won
    _, answer = drive(ops.claim_plan("w", 1000, 300), [lost(claim), None, None, None])
    assert answer is None
    with pytest.raises(ReplyLost):
        drive(ops.claim_plan("w", 1000, 300), [lost(claim), None, lost(claim), None, lost(claim), None])


def test_the_release_is_a_guarded_pipeline_update_whose_lost_reply_a_token_resolves() -> None:
    release = ops.release("A", 500, "w", 400, 450, "t")
    assert release.op == "update_one" and release.resend is False
    assert release.kwargs["filter"] == {"_id": "A", "locked_by": "w", "locked_at": 400}
    (stage,) = release.kwargs["update"]
    assert stage["$set"]["next_run_at"] == {"$cond": [{"$eq": ["$cron_expr", ""]}, None, {"$literal": 500}]}
    assert ops.release("A", None, None, None, 1, "t").kwargs["filter"] == {"_id": "A"}
    matched, missed = Written(matched_count=1), Written(matched_count=0)
    assert drive(ops.release_plan("A", 500, "w", 400, 450), [missed])[1] is False
    commands, answer = drive(ops.release_plan("A", 500, "w", 400, 450), [lost(release), {"_id": "A"}])
    assert answer is True and commands[1].kwargs["filter"]["_id"] == "A" and "_ops" in commands[1].kwargs["filter"]
    assert drive(ops.release_plan("A", 500, "w", 400, 450), [lost(release), None, matched])[1] is True
    assert drive(ops.release_plan("A", 500, "w", 400, 450), [lost(release), None, missed, {"_id": "A"}])[1] is True
    assert drive(ops.release_plan("A", 500, "w", 400, 450), [lost(release), None, missed, None])[1] is False


def test_counts_survive_lost_replies() -> None:
    update = Written(matched_count=2)
    commands, answer = drive(ops.disable_for_target_plan("agent", "a", "/agents/a/runs", "r", 1), [update])
    assert commands[0].resend is False and answer == 2
    disable = commands[0]
    assert drive(ops.disable_for_target_plan("agent", "a", "/agents/a/runs", "r", 1), [lost(disable), 3])[1] == 3
    commands, answer = drive(
        ops.disable_for_target_plan("agent", "a", "/agents/a/runs", "r", 1),
        [lost(disable), 0, Written(matched_count=0), 2],
    )
    assert answer == 2 and [c.op for c in commands] == [
        "update_many",
        "count_documents",
        "update_many",
        "count_documents",
    ]
    commands, answer = drive(ops.delete_runs_plan("A", 100), [Written(matched_count=4), 4, Written(deleted_count=4)])
    assert [c.op for c in commands] == ["update_many", "count_documents", "delete_many"] and answer == 4
    assert all(command.resend for command in commands)
    assert drive(ops.delete_runs_plan("A", 100), [Written(matched_count=0), 0])[1] == 0


def test_inserts_know_their_own_token_after_a_lost_reply() -> None:
    document = {"_id": "A", "_ops": ["mine"]}
    insert = Command(ops.SCHEDULES, "insert_one", {"document": document}, resend=False)
    assert drive(ops.insert_plan(ops.SCHEDULES, document), [Written(inserted_count=1)])[0] == [insert]
    assert drive(ops.insert_plan(ops.SCHEDULES, document), [lost(insert), {"_ops": ["mine"]}])[1] is None
    with pytest.raises(DuplicateKeyError):
        drive(ops.insert_plan(ops.SCHEDULES, document), [lost(insert), {"_ops": ["theirs"]}])
    duplicate = DuplicateKeyError("dup", 11000)
    assert (
        drive(ops.insert_plan(ops.SCHEDULES, document), [lost(insert), None, duplicate, {"_ops": ["mine"]}])[1] is None
    )
    with pytest.raises(DuplicateKeyError):
        drive(ops.insert_plan(ops.SCHEDULES, document), [duplicate])


# --- lost replies on a real server -------------------------------------------------------------------------


def on_schedules(name: str) -> Any:
    return lambda command_name, command: command_name == name and command.get(name) == "agno_schedules"


async def test_a_claim_whose_reply_is_lost_is_still_ours_and_made_once(through: SimpleNamespace) -> None:
    db, proxy, raw, direct = through.db, through.proxy, through.raw, through.direct
    now = int(time.time())
    for index in range(3):
        direct.create_schedule(schedule(f"S{index}", f"s{index}", 1, next_run_at=now - 10 + index))
    await call(db.get_schedules())  # indexes built before anything is armed
    proxy.drop_next(on_schedules("findAndModify"))
    claimed = await call(db.claim_due_schedule("w1"))
    assert proxy.dropped, "the reply was not dropped"
    assert claimed is not None and (claimed["id"], claimed["locked_by"]) == ("S0", "w1")
    # Exactly one schedule was locked (a blind resend would have locked S1 as well).
    assert [d["_id"] for d in raw.agno_schedules.find({"locked_by": {"$ne": None}})] == ["S0"]
    assert direct.claim_due_schedule("w2")["id"] == "S1"  # the next poller gets the next one
    # A claim that matched nothing, whose reply is lost, answers None and locks nothing.
    direct.claim_due_schedule("w2")
    proxy.drop_next(on_schedules("findAndModify"))
    assert await call(db.claim_due_schedule("w1")) is None
    assert len(proxy.dropped) == 2 and raw.agno_schedules.count_documents({"locked_by": "w1"}) == 1


async def test_a_release_whose_reply_is_lost_answers_true_and_applies_once(through: SimpleNamespace) -> None:
    db, proxy, raw, direct = through.db, through.proxy, through.raw, through.direct
    now = int(time.time())
    direct.create_schedule(schedule("S", "s", 1, next_run_at=now - 10))
    claimed = await call(db.claim_due_schedule("w1"))
    proxy.drop_next(on_schedules("update"))
    released = await call(db.release_schedule("S", now + 600, worker_id="w1", locked_at=claimed["locked_at"]))
    assert proxy.dropped and released is True
    stored = raw.agno_schedules.find_one({"_id": "S"})
    assert (stored["locked_by"], stored["next_run_at"], len(stored["_ops"])) == (None, now + 600, 2)
    # What a blind resend would have answered: the guard no longer matches.
    assert direct.release_schedule("S", now + 600, worker_id="w1", locked_at=claimed["locked_at"]) is False


async def test_other_writes_whose_replies_are_lost_answer_right(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.get_schedules())
    await call(db.get_schedule_runs("x"))
    proxy.drop_next("insert")
    assert (await call(db.create_schedule(schedule("S", "s", 1, target_type="agent", target_id="a"))))["id"] == "S"
    proxy.drop_next("insert")
    assert (await call(db.create_schedule_run(run("r1", "S", 5, completed_at=6))))["id"] == "r1"
    await call(db.create_schedule(schedule("T", "t", 1, endpoint="/agents/a/runs/")))
    proxy.drop_next(on_schedules("update"))
    assert await call(db.disable_schedules_for_target("agent", "a", reason="gone")) == 2
    proxy.drop_next(lambda name, command: name == "delete" and command.get("delete") == "agno_schedule_runs")
    assert await call(db.delete_schedule_runs("S", before=100)) == 1
    proxy.drop_next(on_schedules("delete"))
    assert await call(db.delete_schedule("S")) is True
    assert len(proxy.dropped) == 5
    assert [d["_id"] for d in raw.agno_schedules.find()] == ["T"] and raw.agno_schedule_runs.count_documents({}) == 0
    assert raw.agno_schedules.find_one({"_id": "T"})["disabled_reason"] == "gone"


# --- eight pollers ----------------------------------------------------------------------------------------

SCHEDULES = 200
BASE = 1_000_000_000
"""Round-one due times are even (BASE + 2k); a release re-arms one second later (odd, still due), and
the round-two release parks the schedule in the far future: two due times per schedule."""


def _next_due(due: int) -> int:
    return due + 1 if due % 2 == 0 else FUTURE


def _poll_sync(db: MongoDb, worker: str, go: Any) -> list[tuple[str, int, str, bool]]:
    """Claim until nothing is due, releasing each schedule for its next due time; the records kept."""
    go.wait()
    records = []
    while (claimed := db.claim_due_schedule(worker)) is not None:
        time.sleep(0.002)  # the "run"
        released = db.release_schedule(
            claimed["id"], _next_due(claimed["next_run_at"]), worker_id=worker, locked_at=claimed["locked_at"]
        )
        records.append((claimed["id"], claimed["next_run_at"], worker, released))
    return records


def _poll_in_process(url: str, name: str, worker: str, ready: Any, go: Any, out: Any) -> None:
    """A poller in its own process, with its own client (spawned: nothing shared with the parent)."""
    db = MongoDb(db_url=url, db_name=name)
    db.get_schedule("warm-up")  # connect and build indexes before the start
    ready.set()
    out.put(_poll_sync(db, worker, go))


async def _poll_async(db: AsyncMongoDb, worker: str) -> list[tuple[str, int, str, bool]]:
    records = []
    while (claimed := await db.claim_due_schedule(worker)) is not None:
        await asyncio.sleep(0.002)
        released = await db.release_schedule(
            claimed["id"], _next_due(claimed["next_run_at"]), worker_id=worker, locked_at=claimed["locked_at"]
        )
        records.append((claimed["id"], claimed["next_run_at"], worker, released))
    return records


async def test_eight_pollers_claim_each_schedule_exactly_once_per_due_time(mongodb_url: str, db_name: str) -> None:
    """3 threads, 3 processes and 2 asyncio tasks (PyMongo async and Motor) poll 200 due schedules
    at once. From the pollers' own records: every schedule was claimed for each of its two due
    times, exactly once each, and every release by the holder landed. From the stored documents:
    every schedule ends unlocked and parked, having been released exactly twice."""
    setup = MongoDb(db_url=mongodb_url, db_name=db_name)
    due = {f"S{index:03d}": BASE + 2 * (index % 7) for index in range(SCHEDULES)}
    for schedule_id, when in due.items():
        setup.create_schedule(schedule(schedule_id, schedule_id, 1, next_run_at=when))

    context = multiprocessing.get_context("spawn")  # the parent runs server threads: never fork it
    go, out = context.Event(), context.Queue()
    processes = []
    for index in range(3):
        ready = context.Event()
        process = context.Process(
            target=_poll_in_process, args=(mongodb_url, db_name, f"process-{index}", ready, go, out), daemon=True
        )
        process.start()
        processes.append((process, ready))
    for _process, ready in processes:
        assert ready.wait(120), "a poller process did not start"

    thread_records: list[list[tuple[str, int, str, bool]]] = [[] for _ in range(3)]
    shared = MongoDb(db_url=mongodb_url, db_name=db_name)

    def in_thread(index: int) -> None:
        thread_records[index] = _poll_sync(shared, f"thread-{index}", go)

    threads = [threading.Thread(target=in_thread, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    pymongo_async = AsyncMongoDb(db_url=mongodb_url, db_name=db_name)
    motor = AsyncMongoDb(db_client=AsyncIOMotorClient(mongodb_url), db_name=db_name)
    await pymongo_async.get_schedule("warm-up")
    await motor.get_schedule("warm-up")
    go.set()
    task_records = await asyncio.gather(_poll_async(pymongo_async, "task-pymongo"), _poll_async(motor, "task-motor"))
    for thread in threads:
        thread.join(120)
    process_records = [out.get(timeout=120) for _ in processes]
    for process, _ in processes:
        process.join(30)
    motor.db_client.close()
    await pymongo_async.close()
    setup.close()
    shared.close()

    records = [r for group in (*thread_records, *process_records, *task_records) for r in group]
    claims = Counter((schedule_id, when) for schedule_id, when, _, _ in records)
    expected = {(s, when) for s, when in due.items()} | {(s, when + 1) for s, when in due.items()}
    assert set(claims) == expected  # none starved: every schedule, both due times
    assert set(claims.values()) == {1}, [key for key, n in claims.items() if n > 1]  # never twice
    assert all(released for *_, released in records)  # each holder's release landed
    workers = {worker for _, _, worker, _ in records}
    assert {w.split("-")[0] for w in workers} == {"thread", "process", "task"}, Counter(w for *_, w, _ in records)

    raw_client: MongoClient[Any] = MongoClient(mongodb_url)
    for document in raw_client[db_name].agno_schedules.find():
        assert (document["locked_by"], document["locked_at"], document["_claim"]) == (None, None, None)
        assert document["next_run_at"] == FUTURE and len(document["_ops"]) == 3  # create + two releases
    raw_client.close()
