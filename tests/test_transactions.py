"""Multi-document transactions in the plan model (:class:`~agno_mongo.ops.command.Atomically`).

A plan yields ``Atomically(steps, what)``; both drivers run ``steps()`` in one transaction with
``with_transaction`` semantics. These tests drive such plans through ``MongoDb`` and ``AsyncMongoDb``
on all three clients against the real wire server, and through a
:class:`~agno_mongo.testing.faults.ReplyDroppingProxy` that loses replies mid-transaction and on
``commitTransaction``, or refuses transactions as a standalone ``mongod`` does.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from agno_mongo import AsyncMongoDb, MongoDb, ReplicaSetRequiredError
from agno_mongo.drivers import run_async, run_sync
from agno_mongo.ops.command import Atomically, Command, Pause, Plan, Written
from tests.conftest import Store

ROLE = "versions"  # any registered role will do; its collection is "agno_schema_versions"


async def run(db: MongoDb | AsyncMongoDb, plan: Plan[Any]) -> Any:
    if isinstance(db, AsyncMongoDb):
        return await run_async(db, plan)
    return run_sync(db, plan)


def insert(doc_id: str, **fields: Any) -> Command:
    return Command(ROLE, "insert_one", {"document": {"_id": doc_id, **fields}})


def bump(doc_id: str) -> Command:
    return Command(ROLE, "update_one", {"filter": {"_id": doc_id}, "update": {"$inc": {"n": 1}}, "upsert": True})


def together(*commands: Command, fail: BaseException | None = None) -> Plan[Any]:
    """An outer plan whose transaction sends ``commands`` (then raises ``fail``, if given)."""

    def steps() -> Plan[list[Any]]:
        answers = []
        for command in commands:
            answers.append((yield command))
        if fail is not None:
            raise fail
        return answers

    return (yield Atomically(steps, "the test's change"))


def stored(raw: Any) -> dict[str, Any]:
    return {doc["_id"]: doc for doc in raw.agno_schema_versions.find()}


async def test_commands_commit_together_and_the_outer_plan_gets_the_answer(store: Store) -> None:
    answers = await run(store.db, together(insert("a", v=1), insert("b", v=2), bump("c")))
    assert answers == [Written(inserted_count=1), Written(inserted_count=1), Written(upserted_count=1)]
    assert stored(store.raw) == {"a": {"_id": "a", "v": 1}, "b": {"_id": "b", "v": 2}, "c": {"_id": "c", "n": 1}}
    sent = store.commands.names
    assert sent.count("insert") == 2 and sent.count("update") == 1 and sent.count("commitTransaction") == 1


async def test_a_plan_that_raises_midway_leaves_nothing_written(store: Store) -> None:
    with pytest.raises(LookupError, match="no such thing"):
        await run(store.db, together(insert("a"), bump("c"), fail=LookupError("no such thing")))
    assert stored(store.raw) == {}
    assert "abortTransaction" in store.commands.names and "commitTransaction" not in store.commands.names


async def test_a_failed_command_ends_the_transaction_and_is_thrown_into_the_outer_plan(store: Store) -> None:
    store.raw.agno_schema_versions.insert_one({"_id": "taken"})

    def outer() -> Plan[str]:
        try:
            yield from together(insert("a"), insert("taken"), insert("b"))
        except DuplicateKeyError:
            return "refused"
        return "written"

    assert await run(store.db, outer()) == "refused"
    assert stored(store.raw) == {"taken": {"_id": "taken"}}  # "a" was rolled back, "b" never sent
    assert store.commands.names.count("insert") == 2


async def test_nested_transactions_are_one_and_a_pause_inside_is_refused(store: Store) -> None:
    def outer() -> Plan[Any]:
        def steps() -> Plan[Any]:
            yield insert("a")
            return (yield from together(insert("b")))

        return (yield Atomically(steps, "outer"))

    await run(store.db, outer())
    assert set(stored(store.raw)) == {"a", "b"} and store.commands.names.count("commitTransaction") == 1

    def pausing() -> Plan[Any]:
        yield insert("c")
        yield Pause(0.01)

    def outer_pausing() -> Plan[Any]:
        return (yield Atomically(pausing, "pausing"))

    with pytest.raises(TypeError, match="cannot pause inside a transaction"):
        await run(store.db, outer_pausing())
    assert "c" not in stored(store.raw)


async def test_the_indexes_of_a_transactions_roles_are_built_before_it_starts(store: Store) -> None:
    """An index build on a collection a transaction uses aborts it (MongoDB refuses createIndexes
    on an existing collection inside one): the roles an ``Atomically`` step names get their indexes
    first, outside the transaction, so the first use of a domain in a transaction commits."""

    def steps() -> Plan[Any]:
        yield insert("v1")  # the transaction starts here, before approvals is first used
        return (yield Command("approvals", "insert_one", {"document": {"_id": "a1", "status": "pending"}}))

    def outer() -> Plan[Any]:
        return (yield Atomically(steps, "first use", roles=(ROLE, "approvals")))

    await run(store.db, outer())
    sent = list(zip(store.commands.names, store.commands.sent, strict=True))
    build = next(i for i, (name, command) in enumerate(sent) if command.get(name) == "agno_approvals")
    start = next(i for i, (_, command) in enumerate(sent) if command.get("startTransaction"))
    assert sent[build][0] == "createIndexes" and "txnNumber" not in sent[build][1] and build < start
    assert store.raw.agno_approvals.find_one({"_id": "a1"}) == {"_id": "a1", "status": "pending"}
    assert "run_created" in store.raw.agno_approvals.index_information()


def in_transaction(name: str) -> Any:
    return lambda command_name, command: command_name == name and "txnNumber" in command


async def test_a_reply_lost_midway_retries_the_whole_transaction_once(through: SimpleNamespace) -> None:
    through.proxy.drop_next(in_transaction("update"))
    await run(through.db, together(bump("c"), bump("d"), insert("a")))
    assert through.proxy.dropped, "no reply was dropped"
    assert stored(through.raw) == {"c": {"_id": "c", "n": 1}, "d": {"_id": "d", "n": 1}, "a": {"_id": "a"}}


async def test_a_lost_commit_reply_is_retried_and_applies_once(through: SimpleNamespace) -> None:
    through.proxy.drop_next("commitTransaction")
    await run(through.db, together(bump("c"), insert("a")))
    assert through.proxy.dropped, "the commit's reply was not dropped"
    assert stored(through.raw) == {"c": {"_id": "c", "n": 1}, "a": {"_id": "a"}}


async def test_a_server_without_transactions_gets_a_clear_error_and_nothing_written(through: SimpleNamespace) -> None:
    through.proxy.refuse_transactions()
    with pytest.raises(ReplicaSetRequiredError, match="the test's change needs multi-document transactions") as caught:
        await run(through.db, together(bump("c"), insert("a")))
    assert "replica set" in str(caught.value) and caught.value.what == "the test's change"
    assert stored(through.raw) == {}
    through.proxy.refuse_transactions(False)
    await run(through.db, together(bump("c")))  # the same instance works once the server has them
    assert stored(through.raw) == {"c": {"_id": "c", "n": 1}}
