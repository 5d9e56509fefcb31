"""Approvals through MongoDb / AsyncMongoDb on PyMongo, PyMongo async and Motor.

Each test runs once per client flavour (see ``store`` in conftest) against a real wire server. The
differential tests play the same scenario on agno's own ``SqliteDb`` / ``AsyncSqliteDb`` (``oracle``)
and compare every answer. The compare-and-set is raced by N threads and N tasks, and its lost-reply
path is proved with :class:`~agno_mongo.testing.faults.ReplyDroppingProxy`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from agno.os.auth import run_continuation_blocked_reason
from agno.os.routers.approvals.schema import ApprovalResponse
from agno.run.base import RunStatus
from pymongo.errors import DuplicateKeyError, PyMongoError

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.errors import CorruptDocumentError
from agno_mongo.ops import approvals as ops
from agno_mongo.ops.command import ReplyLost, Written
from agno_mongo.schema.approvals import COLUMNS
from tests.conftest import Store, assert_refused, call
from tests.differential import assert_same_answers, normalised
from tests.plans import drive, lost

UPDATED = frozenset({"updated_at"})
"""Only ``updated_at`` is stamped by the store itself; every other time in these scenarios is given."""


def approval(approval_id: str, created_at: int | None, **extra: Any) -> dict[str, Any]:
    """An approval record shaped as agno's ``_build_approval_dict`` builds one (every column given)."""
    record: dict[str, Any] = {
        "id": approval_id,
        "run_id": "r1",
        "session_id": "s1",
        "status": "pending",
        "approval_type": "required",
        "pause_type": "confirmation",
        "tool_name": "pay",
        "tool_args": {"amount": 5, "to": {"iban": "DE00", "tags": ["rent", 2]}},
        "source_type": "agent",
        "agent_id": "a1",
        "team_id": None,
        "workflow_id": None,
        "user_id": "alice",
        "schedule_id": None,
        "schedule_run_id": None,
        "source_name": "Payer",
        "requirements": [{"tool_execution": {"tool_call_id": f"call-{approval_id}", "tool_name": "pay"}}],
        "context": {"tool_names": ["pay"], "source_name": "Payer"},
        "resolved_by": None,
        "resolved_at": None,
        "created_at": created_at,
        "updated_at": None,
        "run_status": "PAUSED",
    }
    if created_at is None:
        del record["created_at"]
    record.update(extra)
    return record


def audit(approval_id: str, created_at: int, **extra: Any) -> dict[str, Any]:
    """An audit record shaped as agno's ``create_audit_approval`` builds one (some columns absent)."""
    record: dict[str, Any] = {
        "id": approval_id,
        "run_id": "r1",
        "session_id": "s1",
        "status": "approved",
        "approval_type": "audit",
        "pause_type": "user_input",
        "tool_name": "lookup",
        "tool_args": {"q": "x"},
        "source_type": "team",
        "agent_id": None,
        "team_id": "t1",
        "user_id": "alice",
        "source_name": "Team",
        "context": {"tool_names": ["lookup"]},
        "resolved_at": created_at + 1,
        "created_at": created_at,
        "updated_at": None,
    }
    record.update(extra)
    return record


RECORDS = [
    approval("A", 10),
    approval("B", 20, run_id="r2", source_type="team", agent_id=None, team_id="t1", user_id="bob"),
    audit("C", 30, workflow_id="w1", schedule_id="sch1"),
    approval("D", 40, run_id="r3", user_id="", pause_type="external_execution", tool_args=None, requirements=None),
    audit("E", 50, status="rejected", run_id="r2", user_id="bob"),
    approval("F", 60, status="expired", schedule_id="sch1", schedule_run_id="sr1", expires_at=55),
]


async def play(db: Any) -> list[Any]:
    """Every method of the domain, in an order that exercises each filter and each outcome."""
    out: list[Any] = []
    for record in RECORDS:
        out.append(await call(db.create_approval(dict(record))))
    for approval_id in ("A", "C", "D", "missing"):
        out.append(await call(db.get_approval(approval_id)))
    listings: list[dict[str, Any]] = [
        {},
        {"status": "pending"},
        {"status": "approved"},
        {"source_type": "team"},
        {"approval_type": "audit"},
        {"pause_type": "user_input"},
        {"agent_id": "a1"},
        {"team_id": "t1"},
        {"workflow_id": "w1"},
        {"user_id": "alice"},
        {"user_id": ""},
        {"user_id": "nobody"},
        {"schedule_id": "sch1"},
        {"run_id": "r1"},
        {"run_id": "r1", "status": "pending", "approval_type": "required"},  # the continue gate
        {"run_id": "r2", "approval_type": "required", "limit": 1},  # the run's latest record
        {"user_id": "bob", "status": "pending"},
        {"limit": 2, "page": 1},
        {"limit": 2, "page": 2},
        {"limit": 2, "page": 3},
        {"limit": 2, "page": 4},
        {"limit": 4, "page": 2},
        {"status": "pending", "limit": 1, "page": 2},
    ]
    for kwargs in listings:
        out.append(await call(db.get_approvals(**kwargs)))
    for user_id in (None, "alice", "bob", "", "nobody"):
        out.append(await call(db.get_pending_approval_count(user_id=user_id)))
    resolve = {"status": "approved", "resolved_by": "admin", "resolved_at": 70, "resolution_data": {"note": "ok"}}
    out.append(await call(db.update_approval("A", expected_status="pending", **resolve)))
    out.append(await call(db.update_approval("A", expected_status="pending", status="rejected")))  # lost the CAS
    out.append(await call(db.update_approval("missing", expected_status="pending", status="approved")))
    out.append(await call(db.update_approval("B", status="cancelled", context={"why": ["timeout"]})))  # no guard
    out.append(await call(db.update_approval("D", expected_status="approved", status="rejected")))  # wrong status
    out.append(await call(db.update_approval("D")))  # nothing but updated_at
    out.append(await call(db.update_approval_run_status("r1", RunStatus.completed)))
    out.append(await call(db.update_approval_run_status("r2", RunStatus.error)))
    out.append(await call(db.update_approval_run_status("missing", RunStatus.completed)))
    out.append(await call(db.get_approvals(run_id="r1")))
    out.append(await call(db.get_pending_approval_count()))
    out.append(await call(db.delete_approval("A")))
    out.append(await call(db.delete_approval("A")))
    out.append(await call(db.get_approval("A")))
    out.append(await call(db.get_approvals()))
    return out


async def test_every_method_answers_as_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await play(store.db)
    theirs = await play(oracle)
    assert_same_answers(ours, theirs, times=UPDATED)


async def test_rows_have_agnos_keys_and_types_and_feed_the_router_schema(store: Store, oracle: Any) -> None:
    for db in (store.db, oracle):
        await call(db.create_approval(approval("A", 10)))
        await call(db.create_approval(audit("C", 30)))
    for approval_id in ("A", "C"):
        mine = await call(store.db.get_approval(approval_id))
        reference = await call(oracle.get_approval(approval_id))
        assert list(mine) == list(reference) == list(COLUMNS)
        assert {key: type(value) for key, value in mine.items()} == {k: type(v) for k, v in reference.items()}
        assert normalised(mine, times=UPDATED) == normalised(reference, times=UPDATED)
        ApprovalResponse.model_validate(mine)  # what GET /approvals/{id} answers
    raw = store.raw.agno_approvals.find_one({"_id": "A"})
    assert raw["tool_args"] == {"amount": 5, "to": {"iban": "DE00", "tags": ["rent", 2]}}  # a subdocument
    assert raw["requirements"][0]["tool_execution"]["tool_name"] == "pay"  # an array of subdocuments
    assert type(raw["created_at"]) is int and raw["schema_version"] == 1 and "id" not in raw
    assert len(raw["_ops"]) == 1 and isinstance(raw["created_ns"], int)


async def test_create_defaults_the_timestamps_as_agno_does(store: Store, oracle: Any) -> None:
    record = approval("A", None)
    del record["updated_at"]
    for db in (store.db, oracle):
        returned = await call(db.create_approval(dict(record)))
        assert set(returned) == set(record) | {"created_at", "updated_at"}
        assert isinstance(returned["created_at"], int) and returned["updated_at"] == returned["created_at"]
        stored = await call(db.get_approval("A"))
        assert stored["created_at"] == returned["created_at"] and stored["updated_at"] == returned["updated_at"]
    # agno's own records pass updated_at=None: it stays None (setdefault), on both stores.
    for db in (store.db, oracle):
        await call(db.create_approval(approval("B", 5)))
        assert (await call(db.get_approval("B")))["updated_at"] is None


async def test_update_stamps_updated_at_and_keeps_codec_fields_exact(store: Store) -> None:
    await call(store.db.create_approval(approval("A", 10)))
    hostile = {"$where": 1, "a.b": {"%agno": "x"}, "when": dt.datetime(2024, 5, 1, 12, 30, 1, 123456), "t": (1, 2)}
    row = await call(store.db.update_approval("A", expected_status="pending", status="approved", tool_args=hostile))
    assert row["tool_args"] == hostile and isinstance(row["updated_at"], int) and row["updated_at"] > 10
    raw = store.raw.agno_approvals.find_one({"_id": "A"})
    assert "%24where" in raw["tool_args"] and raw["_codec"] == {"tool_args": 1}
    # Rewriting it with plain data clears the marker: the stored value is read as it is.
    row = await call(store.db.update_approval("A", tool_args={"plain": True}))
    assert row["tool_args"] == {"plain": True} and store.raw.agno_approvals.find_one({"_id": "A"})["_codec"] == {}
    assert (await call(store.db.get_approval("A")))["tool_args"] == {"plain": True}
    # Created with escaped data, then rewritten plain, in one create and one update.
    await call(store.db.create_approval(approval("B", 10, context={"$k": 1})))
    assert (await call(store.db.get_approval("B")))["context"] == {"$k": 1}
    assert (await call(store.db.update_approval("B", context={"k": 1})))["context"] == {"k": 1}


async def test_a_taken_id_is_refused_and_left_as_it_was(store: Store, oracle: Any) -> None:
    await call(store.db.create_approval(approval("A", 10)))
    with pytest.raises(DuplicateKeyError):
        await call(store.db.create_approval(approval("A", 99, status="approved")))
    assert store.raw.agno_approvals.find_one({"_id": "A"})["status"] == "pending"
    await call(oracle.create_approval(approval("A", 10)))
    with pytest.raises(Exception, match="UNIQUE"):  # agno's SQLite refuses it too (IntegrityError)
        await call(oracle.create_approval(approval("A", 99, status="approved")))


async def test_update_approval_run_status_updates_every_approval_of_the_run(store: Store) -> None:
    for record in RECORDS:
        await call(store.db.create_approval(dict(record)))
    assert await call(store.db.update_approval_run_status("r2", RunStatus.completed)) == 2
    assert await call(store.db.update_approval_run_status("r2", RunStatus.completed)) == 2  # unchanged rows count
    assert await call(store.db.update_approval_run_status("r2", "CANCELLED")) == 2  # the value is accepted too
    statuses = {d["_id"]: d["run_status"] for d in store.raw.agno_approvals.find({}, {"run_status": 1})}
    assert statuses == {"A": "PAUSED", "B": "CANCELLED", "C": None, "D": "PAUSED", "E": "CANCELLED", "F": "PAUSED"}
    assert store.commands.writes().count("update") == 3  # one updateMany each


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    await call(store.db.create_approval(approval("A", 10)))
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("create_approval", {"approval_data": ["not", "a", "dict"]}, "approval_data"),
        ("create_approval", {"approval_data": {**approval("X", 1), "colour": "red"}}, "approval_data.colour"),
        (
            "create_approval",
            {"approval_data": {k: v for k, v in approval("X", 1).items() if k != "run_id"}},
            "approval_data.run_id",
        ),  # noqa: E501
        ("create_approval", {"approval_data": approval("X", 1, session_id=None)}, "approval_data.session_id"),
        (
            "create_approval",
            {"approval_data": {**approval("X", 1), "created_at": "yesterday"}},
            "approval_data.created_at",
        ),
        ("create_approval", {"approval_data": approval("X", 1, expires_at=1 << 70)}, "approval_data.expires_at"),
        ("create_approval", {"approval_data": {**approval("X", 1), "id": {"$ne": None}}}, "approval_data.id"),
        ("create_approval", {"approval_data": approval("X", 1, status=3)}, "approval_data.status"),
        ("get_approval", {"approval_id": {"$ne": None}}, "approval_id"),
        ("get_approvals", {"run_id": {"$ne": None}}, "run_id"),
        ("get_approvals", {"status": {"$in": ["pending"]}}, "status"),
        ("get_approvals", {"user_id": {"$exists": True}}, "user_id"),
        ("get_approvals", {"limit": 0}, "limit"),
        ("get_approvals", {"limit": None}, "limit"),
        ("get_approvals", {"page": 0}, "page"),
        ("get_approvals", {"limit": 1 << 62, "page": 1 << 62}, "page"),
        (
            "update_approval",
            {"approval_id": "A", "expected_status": {"$ne": "x"}, "status": "approved"},
            "expected_status",
        ),  # noqa: E501
        ("update_approval", {"approval_id": "A", "id": "B"}, "id"),
        ("update_approval", {"approval_id": "A", "colour": "red"}, "colour"),
        ("update_approval", {"approval_id": "A", "status": None}, "status"),
        ("update_approval", {"approval_id": "A", "resolved_at": "now"}, "resolved_at"),
        ("delete_approval", {"approval_id": ""}, "approval_id"),
        ("get_pending_approval_count", {"user_id": 5}, "user_id"),
        ("update_approval_run_status", {"run_id": "r1", "run_status": "DONE"}, "run_status"),
        ("update_approval_run_status", {"run_id": None, "run_status": RunStatus.completed}, "run_id"),
    ]
    for method, kwargs, field in refused:
        await assert_refused(store, method, kwargs, field)
    assert store.raw.agno_approvals.count_documents({}) == 1


async def test_exactly_one_of_many_concurrent_resolvers_wins(store: Store) -> None:
    """N resolvers of one pending approval at once (threads on the sync class, tasks on the async one):
    one gets the row back, every other ``None``, and the stored resolution is the winner's."""
    n = 12
    for index in range(3):
        await call(store.db.create_approval(approval(f"A{index}", 10 + index)))
    for index in range(3):
        approval_id = f"A{index}"

        def resolve(who: int, approval_id: str = approval_id) -> Any:
            status = "approved" if who % 2 else "rejected"
            return store.db.update_approval(
                approval_id, expected_status="pending", status=status, resolved_by=f"u{who}"
            )

        if store.is_async:
            answers = await asyncio.gather(*(call(resolve(who)) for who in range(n)))
        else:
            barrier = threading.Barrier(n)

            def at_once(who: int, barrier: threading.Barrier = barrier) -> Any:
                barrier.wait()
                return resolve(who)

            with ThreadPoolExecutor(n) as pool:
                answers = list(pool.map(at_once, range(n)))
        winners = [answer for answer in answers if answer is not None]
        assert len(winners) == 1, answers
        stored = store.raw.agno_approvals.find_one({"_id": approval_id})
        assert (stored["resolved_by"], stored["status"]) == (winners[0]["resolved_by"], winners[0]["status"])
        assert len(stored["_ops"]) == 2  # the create's token and the winner's: no loser wrote anything


async def test_get_approvals_raises_instead_of_answering_a_page_it_did_not_read(store: Store) -> None:
    """agno's continue gate reads an empty page of pending approvals as permission: a corrupt document
    or an unreachable server must raise, and the gate then refuses to continue."""
    await call(store.db.create_approval(approval("A", 10)))
    store.raw.agno_approvals.insert_one({"_id": "bad", "run_id": "r1", "status": "pending", "created_at": 5})
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_approvals(run_id="r1", status="pending", approval_type=None))
    assert error.value.document_id == "bad" and error.value.collection == "approvals"

    unreachable: MongoDb | AsyncMongoDb
    url = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300"
    unreachable = AsyncMongoDb(db_url=url) if store.is_async else MongoDb(db_url=url)
    with pytest.raises(PyMongoError):
        await call(unreachable.get_approvals(run_id="r1", status="pending", approval_type="required"))
    reason = await run_continuation_blocked_reason(
        unreachable, "r1", authorization_enabled=True, user_scopes=["agents:run"]
    )
    assert reason == "This run's approval state could not be verified; try again"


async def test_listings_and_counts_are_served_by_an_index(store: Store) -> None:
    """Each filter AgentOS sends (equality on some columns, newest first) has an index whose keys are
    equality fields of the query followed by the sort, so neither the scan nor the sort is unbounded."""
    await call(store.db.get_pending_approval_count())  # creates the indexes
    indexes = [list(index["key"]) for index in store.raw.agno_approvals.list_indexes() if index["name"] != "_id_"]
    sort = [field for field, _ in ops.NEWEST_FIRST]
    shapes = [
        set(),
        {"status"},
        {"user_id"},
        {"user_id", "status"},
        {"run_id", "status", "approval_type"},
        {"run_id", "approval_type"},
        {"run_id"},
        {"agent_id"},
        {"agent_id", "status"},
        {"team_id"},
        {"workflow_id"},
        {"schedule_id"},
        {"status", "source_type"},
        {"approval_type"},
    ]

    def serves(keys: list[str], shape: set[str]) -> bool:
        equality = keys[: len(keys) - len(sort)]
        return (
            keys[len(equality) :] == sort
            and set(equality) <= shape
            and (bool(equality) or not shape - {"approval_type"})
        )

    for shape in shapes:
        assert any(serves(keys, shape) for keys in indexes), shape


# --- plans without a server --------------------------------------------------------------------------------


def test_the_compare_and_set_is_one_non_resendable_command_with_a_token() -> None:
    plan = ops.update_approval_plan("A", "pending", {"status": "approved", "resolution_data": {"$x": 1}}, 77)
    commands, answer = drive(plan, [{"_id": "A", "status": "approved"}])
    (cas,) = commands
    assert cas.op == "find_one_and_update" and cas.resend is False
    assert cas.kwargs["filter"] == {"_id": "A", "status": "pending"}
    update = cas.kwargs["update"]
    assert update["$set"]["status"] == "approved" and update["$set"]["updated_at"] == 77
    assert update["$set"]["resolution_data"] == {"%24x": 1} and update["$set"]["_codec.resolution_data"] == 1
    (stamp,) = update["$push"]["_ops"]["$each"]
    assert update["$push"]["_ops"]["$slice"] == -ops.OPS_KEPT and len(stamp) == 16
    assert answer == {"_id": "A", "status": "approved"}


def test_after_a_lost_reply_the_token_read_decides_who_won() -> None:
    won = {"_id": "A", "status": "approved"}
    cas = ops.update_approval("A", "pending", {"status": "approved"}, 1, "t")
    # Landed: the read finds our token, that document is the answer, nothing is sent again.
    commands, answer = drive(ops.update_approval_plan("A", "pending", {"status": "approved"}, 1), [lost(cas), won])
    cas, check = commands
    token = cas.kwargs["update"]["$push"]["_ops"]["$each"][0]
    assert check.op == "find_one" and check.kwargs["filter"] == {"_id": "A", "_ops": token} and answer is won
    # Not landed, and someone else won meanwhile: the resend misses, the second read confirms it: None.
    commands, answer = drive(
        ops.update_approval_plan("A", "pending", {"status": "approved"}, 1), [lost(cas), None, None, None]
    )
    assert [c.op for c in commands] == ["find_one_and_update", "find_one", "find_one_and_update", "find_one"]
    assert commands[2] == commands[0] and answer is None  # the same command (same token) was resent
    # Landed late (after the first check read): the resend misses, the second read finds our token.
    commands, answer = drive(
        ops.update_approval_plan("A", "pending", {"status": "approved"}, 1), [lost(cas), None, None, won]
    )
    assert answer is won
    # Not landed, and the resend lands: its answer.
    commands, answer = drive(
        ops.update_approval_plan("A", "pending", {"status": "approved"}, 1), [lost(cas), None, won]
    )
    assert answer is won and len(commands) == 3
    # Lost every time: the plan gives up with the error rather than guess.
    with pytest.raises(ReplyLost):
        drive(
            ops.update_approval_plan("A", "pending", {"status": "approved"}, 1),
            [lost(cas), None, lost(cas), None, lost(cas), None],
        )


def test_create_is_resendable_and_knows_its_own_token() -> None:
    document = ops.stored_document({column: None for column in COLUMNS} | {"id": "A"}, "tok")
    commands, answer = drive(ops.create_approval_plan(document), [{"_id": "A", "_ops": ["tok"]}])
    assert commands[0].resend is True and commands[0].kwargs["update"] == {"$setOnInsert": document}
    assert answer is None
    with pytest.raises(DuplicateKeyError):
        drive(ops.create_approval_plan(document), [{"_id": "A", "_ops": ["other"]}])


def test_delete_after_a_lost_reply_reads_whether_it_is_gone() -> None:
    command = ops.delete_approval("A")
    assert command.resend is False
    commands, answer = drive(ops.delete_approval_plan("A"), [lost(command), None])
    assert answer is True and commands[1].kwargs["filter"] == {"_id": "A"}
    commands, answer = drive(ops.delete_approval_plan("A"), [lost(command), {"_id": "A"}, Written(deleted_count=1)])
    assert answer is True and len(commands) == 3
    assert drive(ops.delete_approval_plan("A"), [Written(deleted_count=0)])[1] is False


# --- lost replies on a real server -------------------------------------------------------------------------


def find_and_modify_of(approval_id: str) -> Any:
    return lambda name, command: name == "findAndModify" and command.get("query", {}).get("_id") == approval_id


async def test_the_winner_whose_reply_is_lost_is_told_it_won(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.create_approval(approval("A", 10)))
    proxy.drop_next(find_and_modify_of("A"))
    row = await call(db.update_approval("A", expected_status="pending", status="approved", resolved_by="admin"))
    assert proxy.dropped, "the reply was not dropped"
    assert row is not None and (row["status"], row["resolved_by"]) == ("approved", "admin")
    stored = raw.agno_approvals.find_one({"_id": "A"})
    assert (stored["status"], stored["resolved_by"], len(stored["_ops"])) == ("approved", "admin", 2)  # applied once
    # A second resolver, direct, loses: the first really won.
    assert through.direct.update_approval("A", expected_status="pending", status="rejected") is None


async def test_a_loser_whose_reply_is_lost_is_told_it_lost(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.create_approval(approval("A", 10)))
    assert through.direct.update_approval("A", expected_status="pending", status="rejected", resolved_by="bob")
    proxy.drop_next(find_and_modify_of("A"))
    row = await call(db.update_approval("A", expected_status="pending", status="approved", resolved_by="admin"))
    assert proxy.dropped and row is None
    stored = raw.agno_approvals.find_one({"_id": "A"})
    assert (stored["status"], stored["resolved_by"]) == ("rejected", "bob")


async def test_create_and_delete_whose_replies_are_lost_answer_right(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.get_pending_approval_count())  # indexes built before anything is armed
    proxy.drop_next("findAndModify")
    returned = await call(db.create_approval(approval("A", 10)))  # resent, and recognised as ours
    assert proxy.dropped and returned["id"] == "A" and raw.agno_approvals.count_documents({}) == 1
    proxy.drop_next("delete")
    assert await call(db.delete_approval("A")) is True
    assert len(proxy.dropped) == 2 and raw.agno_approvals.count_documents({}) == 0
