"""Two writers creating the same NEW id at once: the loser's duplicate key is a race, not a refusal.

An owner-checked upsert filters on ``{_id: X, user_id: {$in: [caller, None]}}``. When two writers
create X at the same time, both filters miss (X does not exist yet), both try to insert, one wins and
the other gets a duplicate key on ``_id``. MongoDB retries that by itself only when the filter is
equality on ``_id`` alone, which these are not; so the plan must tell a lost race (the stored owner
allows the write: send it again, it now matches) from another owner (refuse, as before).

The embedded server executes commands one at a time, so that race never happens on it by itself.
The deterministic tests below therefore step each plan by hand: build plan A, take its upsert, let
another writer create the document, then answer A's upsert with the duplicate key the server gives
the loser of a real race, and run the rest of A on the real server. The thread tests run 8 writers
on the same new ids, both plainly (a real race on a real ``mongod`` via ``MONGODB_URI``) and through
:class:`RacingMongoDb`, which answers an upsert whose filter was evaluated while the id was absent,
and which another writer created meanwhile, the way MongoDB answers it: a duplicate key, nothing
written.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from agno.db.schemas.evals import EvalRunRecord, EvalType
from agno.db.schemas.knowledge import KnowledgeRow
from agno.db.schemas.memory import UserMemory
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from agno_mongo import MongoDb
from agno_mongo.contract.evals import EvalContract
from agno_mongo.contract.knowledge import KnowledgeContract
from agno_mongo.contract.learnings import LearningContract
from agno_mongo.contract.memories import MemoryContract
from agno_mongo.errors import KnowledgeOwnershipError, LearningOwnershipError
from agno_mongo.ops import memories as memory_ops
from agno_mongo.ops.command import Command, Pause, Plan
from agno_mongo.ops.owned import CREATE_RACE_ROUNDS
from agno_mongo.schema.memories import MemoryFields
from tests.conftest import Store, call

# --- the stores under test -----------------------------------------------------------------------


def memory(memory_id: str, text: str, user_id: str | None) -> UserMemory:
    return UserMemory(memory_id=memory_id, memory=text, user_id=user_id, topics=["t"])


def row(content_id: str, text: str, user_id: str | None) -> KnowledgeRow:
    return KnowledgeRow(id=content_id, name=text, description="d", linked_to="kb", user_id=user_id)


@dataclass(frozen=True)
class Kind:
    """One owner-checked upsert: how to build its plan, call it, and read what it stored."""

    name: str
    role: str  # the collection role (``db.collection_names[role]`` is the real name)
    upsert: str  # the wire command of its upsert
    plan: Callable[[Any, str, str | None, str], Plan[Any]]
    write: Callable[[Any, str, str | None, str], Any]
    refusal: type[Exception] | None  # raised on refusal; None: the method answers None
    text_of: Callable[[dict[str, Any]], str]
    claimable: bool  # whether an owned write may take over an ownerless document


KINDS = [
    Kind(
        "memory",
        "memories",
        "findAndModify",
        lambda db, i, u, t: MemoryContract.upsert_user_memory(db, memory(i, t, u)),
        lambda db, i, u, t: db.upsert_user_memory(memory(i, t, u)),
        None,
        lambda doc: str(doc["memory"]),
        True,
    ),
    Kind(
        "learning",
        "learnings",
        "update",
        lambda db, i, u, t: LearningContract.upsert_learning(db, id=i, learning_type="p", content={"t": t}, user_id=u),
        lambda db, i, u, t: db.upsert_learning(id=i, learning_type="p", content={"t": t}, user_id=u),
        LearningOwnershipError,
        lambda doc: str(doc["content"]["t"]),
        True,
    ),
    Kind(
        "knowledge",
        "knowledge",
        "update",
        lambda db, i, u, t: KnowledgeContract.upsert_knowledge_content(db, row(i, t, u)),
        lambda db, i, u, t: db.upsert_knowledge_content(row(i, t, u)),
        KnowledgeOwnershipError,
        lambda doc: str(doc["name"]),
        False,  # agno's rule: a shared row is never taken over by an owned write
    ),
]
BY_NAME = {kind.name: kind for kind in KINDS}


def raw_collection(store: Store, role: str) -> Any:
    return store.raw[store.db.collection_names[role]]


# --- answering a plan's command the way the server answers the loser of a race ---------------------


def duplicate_key(doc_id: str) -> DuplicateKeyError:
    """What the driver raises for the loser: E11000 on ``_id``, nothing written."""
    message = f"E11000 duplicate key error collection index: _id_ dup key: {{ _id: {doc_id!r} }}"
    details = {"code": 11000, "errmsg": message, "keyPattern": {"_id": 1}, "keyValue": {"_id": doc_id}}
    return DuplicateKeyError(message, 11000, details)


def upserted_ids(command: Command) -> list[Any]:
    """The ``_id`` of each upsert in an owner-checked write command (none for anything else)."""
    if command.op == "bulk_write":
        return [request._filter["_id"] for request in command.kwargs["requests"] if request._upsert]
    if command.op in ("update_one", "find_one_and_update") and command.kwargs.get("upsert"):
        return [command.kwargs["filter"]["_id"]]
    return []


def split_bulk(command: Command, raced: set[Any]) -> tuple[Command | None, list[int], list[dict[str, Any]]]:
    """An unordered bulk whose ``raced`` ids lost a create race: the rest (to run for real), their
    positions in the bulk, and the raced requests' duplicate keys (those write nothing)."""
    requests = command.kwargs["requests"]
    kept = [index for index, request in enumerate(requests) if request._filter["_id"] not in raced]
    errors = [
        {"index": index, "code": 11000, "errmsg": str(duplicate_key(request._filter["_id"]))}
        for index, request in enumerate(requests)
        if request._filter["_id"] in raced
    ]
    rest = Command(command.collection, "bulk_write", {"requests": [requests[i] for i in kept], "ordered": False})
    return (rest if kept else None), kept, errors


def bulk_error(errors: list[dict[str, Any]], kept: list[int], rest_error: BulkWriteError | None) -> BulkWriteError:
    """The whole bulk's answer: the raced duplicate keys plus the rest's own errors, at their positions."""
    if rest_error is not None:
        errors = errors + [{**e, "index": kept[int(e["index"])]} for e in rest_error.details.get("writeErrors", [])]
    ordered = sorted(errors, key=lambda e: int(e["index"]))
    return BulkWriteError({"writeErrors": ordered, "writeConcernErrors": [], "nInserted": 0})


async def finish(store: Store, plan: Plan[Any], error: BaseException) -> Any:
    """Throw ``error`` into ``plan`` (as the driver does), then run the rest of it on the real server."""
    send: Callable[[Any], Any] = plan.throw
    value: Any = error
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, Pause):
            value, send = None, plan.send
            continue
        try:
            value, send = await call(store.db._execute(step)), plan.send
        except PyMongoError as caught:
            value, send = caught, plan.throw


async def outcome(kind: Kind, action: Any) -> str:
    """``"written"`` or ``"refused"`` for an awaited write or a finished plan."""
    try:
        answer = await action
    except Exception as error:
        if kind.refusal is not None and isinstance(error, kind.refusal):
            return "refused"
        raise
    return "refused" if kind.refusal is None and answer is None else "written"


# --- deterministic: the loser of a create race -----------------------------------------------------


def allowed_owners(kind: Kind) -> list[str | None]:
    return ["alice", None] if kind.claimable else ["alice"]


def refused_owners(kind: Kind) -> list[str | None]:
    return ["bob"] if kind.claimable else ["bob", None]


@pytest.mark.parametrize(
    ("kind", "winner"),
    [(kind, owner) for kind in KINDS for owner in allowed_owners(kind)],
    ids=lambda value: value.name if isinstance(value, Kind) else str(value),
)
async def test_the_loser_of_a_create_race_is_written_not_refused(store: Store, kind: Kind, winner: str | None) -> None:
    raw = raw_collection(store, kind.role)
    plan = kind.plan(store.db, "x1", "alice", "A")
    first = next(plan)
    assert isinstance(first, Command) and upserted_ids(first) == ["x1"]
    assert raw.find_one({"_id": "x1"}) is None  # the filter is evaluated while x1 does not exist
    await call(kind.write(store.db, "x1", winner, "B"))  # the winner inserts x1 first
    store.commands.clear()

    async def lost() -> Any:
        return await finish(store, plan, duplicate_key("x1"))

    assert await outcome(kind, lost()) == "written"
    assert store.commands.names == ["find", kind.upsert]  # one owner read, one resend that matches
    stored = raw.find_one({"_id": "x1"})
    assert kind.text_of(stored) == "A" and stored["user_id"] == "alice"
    assert raw.count_documents({}) == 1


@pytest.mark.parametrize(
    ("kind", "owner"),
    [(kind, owner) for kind in KINDS for owner in refused_owners(kind)],
    ids=lambda value: value.name if isinstance(value, Kind) else str(value),
)
async def test_a_duplicate_key_against_another_owner_is_still_refused(
    store: Store, kind: Kind, owner: str | None
) -> None:
    raw = raw_collection(store, kind.role)
    plan = kind.plan(store.db, "x1", "alice", "A")
    next(plan)
    await call(kind.write(store.db, "x1", owner, "theirs"))
    store.commands.clear()

    async def lost() -> Any:
        return await finish(store, plan, duplicate_key("x1"))

    assert await outcome(kind, lost()) == "refused"
    assert store.commands.names == ["find"]  # the owner read decides; nothing else is sent
    stored = raw.find_one({"_id": "x1"})
    assert kind.text_of(stored) == "theirs" and stored.get("user_id") == owner


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
async def test_an_id_deleted_again_after_the_collision_is_created(store: Store, kind: Kind) -> None:
    raw = raw_collection(store, kind.role)
    plan = kind.plan(store.db, "x1", "alice", "A")
    next(plan)
    await call(kind.write(store.db, "x1", "alice", "B"))  # the winner creates x1 ...
    raw.delete_one({"_id": "x1"})  # ... and it is deleted again before the loser's owner read
    store.commands.clear()

    async def lost() -> Any:
        return await finish(store, plan, duplicate_key("x1"))

    assert await outcome(kind, lost()) == "written"
    assert store.commands.names == ["find", kind.upsert]
    assert kind.text_of(raw.find_one({"_id": "x1"})) == "A"


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
async def test_the_common_path_stays_one_command(store: Store, kind: Kind) -> None:
    await call(kind.write(store.db, "x1", "alice", "first"))  # creates indexes
    store.commands.clear()
    assert await outcome(kind, call(kind.write(store.db, "x2", "alice", "new"))) == "written"
    assert await outcome(kind, call(kind.write(store.db, "x1", "alice", "update"))) == "written"
    assert store.commands.names == [kind.upsert, kind.upsert]


async def test_bulk_retries_only_the_indexes_that_lost_a_race(store: Store) -> None:
    raw = raw_collection(store, "memories")
    await call(store.db.upsert_user_memory(memory("taken", "bob's", "bob")))
    batch = [memory(i, "A", "alice") for i in ("raced", "fresh", "taken", "claimed")]
    plan = MemoryContract.upsert_memories(store.db, batch)
    first = next(plan)
    assert isinstance(first, Command) and upserted_ids(first) == ["raced", "fresh", "taken", "claimed"]
    # While the bulk's filters are evaluated, two other writers create "raced" (alice) and "claimed" (nobody).
    await call(store.db.upsert_user_memory(memory("raced", "B", "alice")))
    await call(store.db.upsert_user_memory(memory("claimed", "B", None)))
    rest, kept, errors = split_bulk(first, {"raced", "claimed"})
    assert rest is not None
    try:  # the rest runs for real: "fresh" lands, "taken" is refused (another owner)
        await call(store.db._execute(rest))
        rest_error = None
    except BulkWriteError as caught:
        rest_error = caught
    store.commands.clear()

    result = await finish(store, plan, bulk_error(errors, kept, rest_error))
    assert [m.memory_id for m in result] == ["raced", "fresh", "claimed"]
    assert store.commands.names == ["find", "update"]  # one owner read and one bulk, for the failed indexes
    sent = store.commands.sent[-1]["updates"]
    assert [update["q"]["_id"] for update in sent] == ["raced", "claimed"]  # "taken" is not resent
    assert {d["_id"]: (d["memory"], d["user_id"]) for d in raw.find()} == {
        "taken": ("bob's", "bob"),
        "raced": ("A", "alice"),
        "fresh": ("A", "alice"),
        "claimed": ("A", "alice"),
    }


def eval_record(run_id: str, score: float) -> EvalRunRecord:
    return EvalRunRecord(run_id=run_id, eval_type=EvalType.ACCURACY, eval_data={"score": score}, eval_input={"q": 1})


async def test_an_eval_run_that_lost_a_create_race_is_resent(store: Store) -> None:
    """``create_eval_run`` filters on ``_id`` alone (MongoDB 4.4+ retries that itself); the plan does not
    rely on it: a duplicate key is answered by a resend, which then compares with the stored record."""
    raw = raw_collection(store, "evals")
    plan = EvalContract.create_eval_run(store.db, eval_record("e1", 1.0))
    next(plan)
    await call(store.db.create_eval_run(eval_record("e1", 1.0)))  # the same record (a retry) won
    store.commands.clear()
    assert (await finish(store, plan, duplicate_key("e1"))).run_id == "e1"
    assert store.commands.names == ["findAndModify"]

    plan = EvalContract.create_eval_run(store.db, eval_record("e2", 1.0))
    next(plan)
    await call(store.db.create_eval_run(eval_record("e2", 2.0)))  # a different record won
    with pytest.raises(DuplicateKeyError, match="other contents"):
        await finish(store, plan, duplicate_key("e2"))
    assert raw.find_one({"_id": "e2"})["eval_data"] == {"score": 2.0}


# --- pure plans: bounded rounds ---------------------------------------------------------------------


def drive_without_server(plan: Plan[Any], answer: Callable[[Command], Any]) -> tuple[Any, list[str]]:
    """Run a plan on ``answer`` (which returns a value or an exception to throw); the ops it sent."""
    ops: list[str] = []
    send: Callable[[Any], Any] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            return stop.value, ops
        if isinstance(step, Pause):
            value, send = None, plan.send
            continue
        ops.append(step.op)
        value = answer(step)
        send = plan.throw if isinstance(value, BaseException) else plan.send


def always_colliding(command: Command) -> Any:
    """An id created and deleted again between every two commands: every upsert collides, every read
    finds it owned by the caller."""
    if command.op == "find_one":
        return {"_id": "x1", "user_id": "alice"}
    if command.op == "find":
        return [{"_id": i, "user_id": "alice"} for i in command.kwargs["filter"]["_id"]["$in"]]
    if command.op == "bulk_write":
        return BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000"}]})
    return duplicate_key("x1")


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_sustained_collisions_end_in_a_duplicate_key_not_an_ownership_error(kind: Kind) -> None:
    plan = kind.plan(None, "x1", "alice", "A")
    with pytest.raises(DuplicateKeyError) as error:
        drive_without_server(plan, always_colliding)
    assert not isinstance(error.value, LearningOwnershipError | KnowledgeOwnershipError)
    assert "x1" in str(error.value)


def test_sustained_collisions_in_a_bulk_leave_the_record_out_after_bounded_rounds() -> None:
    fields = MemoryFields.from_memory(memory("x1", "A", "alice"))
    records = [memory_ops.stored_record(fields, 1, preserve_updated_at=False)]
    refused, ops = drive_without_server(memory_ops.upsert_memories_plan(records), always_colliding)
    assert refused == {0}
    assert ops.count("bulk_write") == CREATE_RACE_ROUNDS
    assert ops.count("find") == CREATE_RACE_ROUNDS


# --- real threads -----------------------------------------------------------------------------------


class RacingMongoDb(MongoDb):
    """``MongoDb`` on a server that executes commands one at a time, answering create races as MongoDB does.

    For each owner-checked upsert: the ids absent when the command arrives (its filter misses them);
    a short window; those another writer created meanwhile fail with a duplicate key and are not
    written (MongoDB's own retry applies only to filters on ``_id`` alone), the rest really run.
    """

    window = 0.002

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.races = 0
        self._lock = threading.Lock()

    def _execute(self, command: Command, session: Any = None) -> Any:
        ids = upserted_ids(command) if command.collection != "evals" else []
        if not ids or session is not None:
            return super()._execute(command, session)
        collection = self.database[self._names[command.collection]]
        absent = {doc_id for doc_id in ids if collection.find_one({"_id": doc_id}, {"_id": True}) is None}
        if absent:
            time.sleep(self.window)
        raced = {doc_id for doc_id in absent if collection.find_one({"_id": doc_id}, {"_id": True}) is not None}
        if not raced:
            return super()._execute(command)
        with self._lock:
            self.races += len(raced)
        if command.op != "bulk_write":
            raise duplicate_key(ids[0])
        rest, kept, errors = split_bulk(command, raced)
        rest_error = None
        try:
            if rest is not None:
                super()._execute(rest)
        except BulkWriteError as caught:
            rest_error = caught
        raise bulk_error(errors, kept, rest_error)


THREADS, ROUNDS, IDS = 8, 12, 3


@pytest.mark.parametrize("modelled", [True, False], ids=["modelled-race", "plain"])
@pytest.mark.parametrize("kind_name", ["memory", "memory-bulk", "learning", "knowledge"])
def test_threads_creating_the_same_new_ids(mongodb_url: str, db_name: str, kind_name: str, modelled: bool) -> None:
    kind = BY_NAME["memory" if kind_name == "memory-bulk" else kind_name]
    db = (RacingMongoDb if modelled else MongoDb)(db_url=mongodb_url, db_name=db_name)
    new_ids = [[f"r{r}-n{k}" for k in range(IDS)] for r in range(ROUNDS)]
    bobs = [f"r{r}-bob" for r in range(ROUNDS)]
    for doc_id in bobs:
        kind.write(db, doc_id, "bob", "bob's")
    outcomes: Counter[str] = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS, timeout=60)

    def one(doc_id: str, text: str) -> str:
        try:
            answer = kind.write(db, doc_id, "alice", text)
        except Exception as error:
            if kind.refusal is not None and isinstance(error, kind.refusal):
                return "refused-bob" if doc_id.endswith("bob") else "refused-alice"
            raise
        if kind.refusal is None and answer is None:
            return "refused-bob" if doc_id.endswith("bob") else "refused-alice"
        return "written"

    def worker(thread: int) -> None:
        try:
            for r in range(ROUNDS):
                ids = new_ids[r][thread % IDS :] + new_ids[r][: thread % IDS] + [bobs[r]]
                barrier.wait()
                if kind_name == "memory-bulk":
                    written = {m.memory_id for m in db.upsert_memories([memory(i, f"t{thread}", "alice") for i in ids])}
                    results = [
                        "written" if i in written else ("refused-bob" if i.endswith("bob") else "refused-alice")
                        for i in ids
                    ]
                else:
                    results = [one(doc_id, f"t{thread}") for doc_id in ids]
                with lock:
                    outcomes.update(results)
        except BaseException as error:  # noqa: BLE001  (reported below)
            with lock:
                failures.append(error)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    races = getattr(db, "races", 0)
    print(f"\n{kind_name} {'modelled' if modelled else 'plain'}: {dict(outcomes)} races={races}")
    try:
        assert failures == []
        attempts = THREADS * ROUNDS
        assert outcomes == Counter({"written": attempts * IDS, "refused-bob": attempts})
        if modelled:
            assert races > 0  # the race really was exercised
        raw = db.database[db.collection_names[kind.role]]
        assert raw.count_documents({}) == ROUNDS * (IDS + 1)  # one document per id
        for doc in raw.find():
            if str(doc["_id"]).endswith("bob"):
                assert (doc["user_id"], kind.text_of(doc)) == ("bob", "bob's")
            else:
                assert doc["user_id"] == "alice" and kind.text_of(doc).startswith("t")
    finally:
        db.close()
