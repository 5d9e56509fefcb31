"""Transcripts (``ClaudeAgent``'s external-agent transcript storage) on PyMongo, PyMongo async and Motor.

Each test runs once per client flavour (``store`` in conftest) against a real wire server. The
differential tests play the same scenario on agno's own ``SqliteDb`` / ``AsyncSqliteDb``
(``oracle``) and compare every answer. Appends to one transcript are raced by threads, asyncio tasks
and two processes, interleaved one command at a time, and their lost replies are proved with
:class:`~agno_mongo.testing.faults.ReplyDroppingProxy`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import bson
import pytest
from agno.agents.claude.session_store import AgnoSessionStore
from agno.db.base import AsyncBaseDb, BaseDb
from agno.session import AgentSession
from bson import ObjectId
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from agno_mongo import MongoDb
from agno_mongo.contract.transcripts import TranscriptContract
from agno_mongo.errors import CorruptDocumentError, InvalidInputError, WriteContentionError
from agno_mongo.ops import transcripts as ops
from agno_mongo.ops.command import Command, Pause, Plan, Written
from agno_mongo.schema.transcripts import MAX_DOCUMENT_BYTES, TranscriptKey, prepare_entries
from tests.conftest import Store, assert_refused, call
from tests.differential import assert_same_answers, normalised
from tests.plans import drive, lost

F, P = "claude-agent-sdk", "proj"
MTIME = frozenset({"mtime"})
COLLECTION = "agno_transcripts"


def line(uuid: str | None, text: str, **extra: Any) -> dict[str, Any]:
    """A transcript line shaped like the SDK's JSONL entries."""
    entry: dict[str, Any] = {"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": text}]}}
    if uuid is not None:
        entry["uuid"] = uuid
    entry.update(extra)
    return entry


async def play(db: Any) -> list[Any]:
    """Every method of the domain, in an order that exercises each outcome agno's SQL store has."""
    out: list[Any] = []

    async def append(session_id: str, entries: list[Any], subpath: str | None = None, agno: str = "ag1") -> None:
        out.append(await call(db.append_transcript_entries(F, P, session_id, entries, agno, subpath=subpath)))

    async def read(session_id: str, subpath: str | None = None, framework: str = F, project: str = P) -> None:
        out.append(await call(db.get_transcript_entries(framework, project, session_id, subpath=subpath)))

    async def listings(session_id: str = "s1") -> None:
        out.append(await call(db.list_transcript_sessions(F, P)))
        out.append(await call(db.list_transcript_subpaths(F, P, session_id)))

    await read("s1")  # nothing stored yet
    await listings()
    out.append(await call(db.delete_transcript(F, P, "s1")))  # deleting nothing
    await append("s2", [line("u1", "first of s2")])
    await append("s1", [line("u1", "a"), line(None, "no uuid"), line("", "empty uuid"), line("u2", "b")])
    await append("s1", [line("u1", "a again"), line("u3", "c"), line("u3", "c twice in one call"), line(None, "d")])
    await append("s1", [line("u2", "known"), line("u1", "known")])  # nothing new: a no-op
    await append("s1", [])  # nothing at all
    await append("s1", [line(None, "no uuid again"), line(None, "no uuid again")])  # both kept: no uuid, no dedupe
    await append("s1", [{"uuid": "u4", "t": (1, 2), 7: "int key", "$where": {"a.b": 2**70}, "deep": [[[{"x": None}]]]}])
    await append("s1", [{"uuid": "u5", "unicode": "héllo ☃ \U0001f600", "f": 1.5, "neg": -(2**40), "b": True}])
    await append("s1", [line("u1", "u1 in a subagent is another transcript")], subpath="agents/b")
    await append("s1", [line("u6", "sub a")], subpath="agents/a")
    await append("s1", [line("u7", "sub a 2"), line("u6", "known in sub a")], subpath="agents/a")
    await append("s1", [line("u8", "main by empty subpath")], subpath="")
    await append("s10", [line("u1", "only a subagent")], subpath="zeta")
    await append("s0", [line("x", "another agno session")], agno="ag2")
    await read("s1")
    await read("s1", subpath="")
    await read("s1", subpath="agents/a")
    await read("s1", subpath="agents/b")
    await read("s1", subpath="agents/missing")
    await read("s1", framework="other")
    await read("s1", project="other")
    await read("s10")
    await listings("s1")
    await listings("s10")
    await listings("missing")
    out.append(await call(db.delete_transcript(F, P, "s1", subpath="agents/b")))
    await listings("s1")
    out.append(await call(db.delete_transcript(F, P, "s1", subpath="")))  # the main one only
    await read("s1")
    await read("s1", subpath="agents/a")
    await listings("s1")
    await append("s1", [line("u1", "after the delete u1 is new again")])
    await read("s1")
    out.append(await call(db.delete_transcript(F, P, "s1")))  # main and every subpath
    await read("s1")
    await read("s1", subpath="agents/a")
    await listings("s1")
    await read("s2")
    return out


async def test_every_method_answers_as_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await play(store.db)
    theirs = await play(oracle)
    assert_same_answers(ours, theirs, times=MTIME)


async def test_mtime_is_the_newest_appends_epoch_milliseconds(store: Store, oracle: Any) -> None:
    for db in (store.db, oracle):
        before = time.time_ns() // 1_000_000
        await call(db.append_transcript_entries(F, P, "s1", [line("a", "x")], "ag"))
        await asyncio.sleep(0.01)
        await call(db.append_transcript_entries(F, P, "s1", [line("b", "y")], "ag"))
        await call(db.append_transcript_entries(F, P, "s1", [line("c", "sub")], "ag", subpath="sub"))
        after = time.time_ns() // 1_000_000
        (listed,) = await call(db.list_transcript_sessions(F, P))
        assert type(listed["mtime"]) is int and before <= listed["mtime"] <= after, db
    ours = store.raw[COLLECTION].find_one({"subpath": "", "uuids": "b"})
    (listed,) = await call(store.db.list_transcript_sessions(F, P))
    assert listed == {"session_id": "s1", "mtime": ours["created_at"]}  # the newest main append, not the subagent's


async def test_one_document_per_append_with_contiguous_positions(store: Store) -> None:
    db = store.db
    await call(db.append_transcript_entries(F, P, "s1", [line("a", "1"), line(None, "2"), line("a", "dup")], "ag"))
    await call(db.append_transcript_entries(F, P, "s1", [line("a", "known"), line("b", "3"), {"$k": 1}], "ag"))
    await call(db.append_transcript_entries(F, P, "s1", [line(None, "4")], "ag", subpath="sub"))
    docs = list(store.raw[COLLECTION].find({}).sort([("subpath", 1), ("position", 1)]))
    assert [(d["subpath"], d["position"], d["end"], len(d["entries"])) for d in docs] == [
        ("", 1, 2, 2),
        ("", 3, 4, 2),
        ("sub", 1, 1, 1),
    ]
    first, second, sub = docs
    assert first["uuids"] == ["a"] and second["uuids"] == ["b"] and "uuids" not in sub
    assert first["agno_session_id"] == "ag" and isinstance(first["created_at"], int)
    assert first["entries"][0] == line("a", "1") and "_codec" not in first  # native subdocuments
    assert second["entries"][1] == {"%24k": 1} and second["_codec"] == 1  # escaped only where needed
    assert isinstance(first["_id"], ObjectId) and first["schema_version"] == 1
    assert {d["framework"] for d in docs} == {F} and {d["project_key"] for d in docs} == {P}


async def test_commands_per_call(store: Store) -> None:
    db = store.db
    await call(db.append_transcript_entries(F, P, "s1", [line("a", "warm up")], "ag"))  # creates the indexes
    store.commands.clear()
    await call(db.append_transcript_entries(F, P, "s1", [line("b", "x"), line("c", "y")], "ag"))
    assert store.commands.names == ["find", "insert"]
    store.commands.clear()
    await call(db.append_transcript_entries(F, P, "s1", [line("b", "known"), line("d", "z")], "ag"))
    assert store.commands.names == ["find", "insert", "find", "find", "insert"]  # refused, known read, rest
    store.commands.clear()
    await call(db.append_transcript_entries(F, P, "s1", [line("b", "known")], "ag"))
    assert store.commands.names == ["find", "insert", "find"]  # nothing new: nothing written
    for method, args, name in [
        ("get_transcript_entries", (F, P, "s1"), "find"),
        ("list_transcript_sessions", (F, P), "aggregate"),
        ("list_transcript_subpaths", (F, P, "s1"), "aggregate"),
        ("delete_transcript", (F, P, "s1"), "delete"),
    ]:
        store.commands.clear()
        await call(getattr(db, method)(*args))
        assert store.commands.names == [name], method
    assert (await call(db.get_transcript_entries(F, P, "s1"))) == []


async def test_indexes_serve_every_read_and_enforce_the_keys(store: Store) -> None:
    await call(store.db.append_transcript_entries(F, P, "s1", [line("a", "x")], "ag"))
    indexes = {index["name"]: index for index in store.raw[COLLECTION].list_indexes()}
    key = ["framework", "project_key", "session_id", "subpath"]
    assert (
        list(indexes["transcript_position"]["key"]) == [*key, "position"] and indexes["transcript_position"]["unique"]
    )
    uuid_index = indexes["transcript_uuid"]
    assert list(uuid_index["key"]) == [*key, "uuids"] and uuid_index["unique"]
    assert dict(uuid_index["partialFilterExpression"]) == {"uuids": {"$exists": True}}
    assert list(indexes["transcript_mtime"]["key"].items()) == [
        ("framework", 1),
        ("project_key", 1),
        ("subpath", 1),
        ("session_id", 1),
        ("created_at", -1),
    ]
    assert list(indexes["transcript_agno_session"]["key"]) == ["agno_session_id"]
    # The unique keys hold against any writer, not only against the plan's own checks.
    raw = store.raw[COLLECTION]
    base = {"framework": F, "project_key": P, "session_id": "s1", "subpath": ""}
    with pytest.raises(DuplicateKeyError):
        raw.insert_one({**base, "position": 1, "end": 1, "entries": [{}]})
    with pytest.raises(DuplicateKeyError):
        raw.insert_one({**base, "position": 9, "end": 9, "entries": [{}], "uuids": ["a"]})
    raw.insert_one({**base, "position": 10, "end": 10, "entries": [{}]})  # no uuids: never a conflict
    raw.insert_one({**base, "position": 11, "end": 11, "entries": [{}]})


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    await call(store.db.append_transcript_entries(F, P, "s1", [line("a", "x")], "ag"))
    good = {"framework": F, "project_key": P, "session_id": "s1", "entries": [line("b", "y")], "agno_session_id": "ag"}

    class Unknown:
        pass

    circular: dict[str, Any] = {}
    circular["self"] = circular
    deep: Any = {}
    for _ in range(120):
        deep = {"d": deep}
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("append_transcript_entries", {**good, "framework": {"$ne": None}}, "framework"),
        ("append_transcript_entries", {**good, "project_key": 5}, "project_key"),
        ("append_transcript_entries", {**good, "session_id": ""}, "session_id"),
        ("append_transcript_entries", {**good, "subpath": 3}, "subpath"),
        ("append_transcript_entries", {**good, "subpath": "\ud800"}, "subpath"),
        ("append_transcript_entries", {**good, "agno_session_id": None}, "agno_session_id"),
        ("append_transcript_entries", {**good, "entries": None}, "entries"),
        ("append_transcript_entries", {**good, "entries": "text"}, "entries"),
        ("append_transcript_entries", {**good, "entries": [line("c", "ok"), ["not", "a", "dict"]]}, "entries[1]"),
        ("append_transcript_entries", {**good, "entries": [line("c", "ok"), {"when": Unknown()}]}, "entries[1]"),
        ("append_transcript_entries", {**good, "entries": [{"s": {1, 2}}]}, "entries[0]"),
        ("append_transcript_entries", {**good, "entries": [circular]}, "entries[0]"),
        ("append_transcript_entries", {**good, "entries": [deep]}, "entries[0]" + ".d" * 98),
        ("append_transcript_entries", {**good, "entries": [{"uuid": 5}]}, "entries[0].uuid"),
        ("append_transcript_entries", {**good, "entries": [{"uuid": {"$ne": None}}]}, "entries[0].uuid"),
        ("append_transcript_entries", {**good, "entries": [{"uuid": "\udc00"}]}, "entries[0].uuid"),
        (
            "append_transcript_entries",
            {**good, "entries": [line("c", "ok"), {"x": "y" * MAX_DOCUMENT_BYTES}]},
            "entries[1]",
        ),
        ("get_transcript_entries", {"framework": F, "project_key": P, "session_id": None}, "session_id"),
        ("get_transcript_entries", {"framework": F, "project_key": P, "session_id": "s1", "subpath": {}}, "subpath"),
        ("list_transcript_sessions", {"framework": F, "project_key": {"$gt": ""}}, "project_key"),
        ("list_transcript_sessions", {"framework": "", "project_key": P}, "framework"),
        ("list_transcript_subpaths", {"framework": F, "project_key": P, "session_id": ["s1"]}, "session_id"),
        ("delete_transcript", {"framework": F, "project_key": P, "session_id": {"$exists": True}}, "session_id"),
        ("delete_transcript", {"framework": F, "project_key": P, "session_id": "s1", "subpath": 0}, "subpath"),
    ]
    for method, kwargs, field in refused:
        await assert_refused(store, method, kwargs, field)
    assert store.raw[COLLECTION].count_documents({}) == 1


async def test_non_json_entries_are_refused_where_agnos_sqlite_raises(store: Store, oracle: Any) -> None:
    """agno's SQL store raises json's ``TypeError`` for an entry ``json.dumps`` refuses; here it is an
    ``InvalidInputError`` (a ``ValueError``) naming the entry. Either way nothing is stored."""
    import datetime as dt

    entries = [line("a", "fine"), {"when": dt.datetime(2024, 1, 1)}]
    with pytest.raises(TypeError):
        await call(oracle.append_transcript_entries(F, P, "s1", entries, "ag"))
    with pytest.raises(InvalidInputError) as error:
        await call(store.db.append_transcript_entries(F, P, "s1", entries, "ag"))
    assert error.value.field == "entries[1]"
    assert await call(oracle.get_transcript_entries(F, P, "s1")) == []
    assert await call(store.db.get_transcript_entries(F, P, "s1")) == []


async def test_a_large_append_is_split_and_reads_back_whole_in_order(store: Store) -> None:
    """An append beyond one 16 MiB document becomes consecutive documents; a read joins them."""
    big = "x" * (6 * 1024 * 1024)
    entries = [{"uuid": f"b{i}", "i": i, "blob": big} for i in range(3)] + [line("tail", "small")]
    await call(store.db.append_transcript_entries(F, P, "s1", entries, "ag"))
    await call(store.db.append_transcript_entries(F, P, "s1", [line("after", "next")], "ag"))
    docs = list(store.raw[COLLECTION].find({}, {"entries": 0}).sort("position", 1))
    assert [(d["position"], d["end"]) for d in docs] == [(1, 2), (3, 4), (5, 5)]
    read = await call(store.db.get_transcript_entries(F, P, "s1"))
    assert [entry["uuid"] for entry in read] == ["b0", "b1", "b2", "tail", "after"]
    assert read[:4] == entries


async def test_a_corrupt_document_raises_instead_of_reaching_the_agent(store: Store) -> None:
    await call(store.db.append_transcript_entries(F, P, "s1", [line("a", "x")], "ag"))
    base = {"framework": F, "project_key": P, "session_id": "s1", "subpath": ""}
    store.raw[COLLECTION].insert_one({"_id": "bad", **base, "position": 2, "end": 2, "entries": "not a list"})
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_transcript_entries(F, P, "s1"))
    assert (error.value.collection, error.value.document_id, error.value.field) == ("transcripts", "bad", "entries")
    store.raw[COLLECTION].update_one({"_id": "bad"}, {"$set": {"entries": [{}], "end": "two"}})
    with pytest.raises(CorruptDocumentError) as error:  # an append never guesses past a broken end
        await call(store.db.append_transcript_entries(F, P, "s1", [line("b", "y")], "ag"))
    assert error.value.field == "end"


# --- concurrency ------------------------------------------------------------------------------------------


def check_transcript(raw: Any, read: list[dict[str, Any]], batches: dict[tuple[int, int], list[str]]) -> None:
    """Every batch stored once, whole, contiguous and in order; positions unique and increasing;
    each writer's batches in the order it sent them."""
    docs = list(raw[COLLECTION].find({"subpath": ""}, {"position": 1, "end": 1, "entries": 1}).sort("position", 1))
    positions = [(d["position"], d["end"]) for d in docs]
    for (_, end), (start, _) in zip(positions, positions[1:], strict=False):
        assert start > end, positions  # ranges disjoint and increasing
    assert all(start <= end for start, end in positions)
    uuids = [entry["uuid"] for entry in read]
    assert len(uuids) == len(set(uuids)) == sum(len(batch) for batch in batches.values())
    where = {uuid: index for index, uuid in enumerate(uuids)}
    for batch in batches.values():
        first = where[batch[0]]
        assert uuids[first : first + len(batch)] == batch  # contiguous, in order
    for writer in {writer for writer, _ in batches}:
        mine = [where[batches[(writer, i)][0]] for i in sorted(i for w, i in batches if w == writer)]
        assert mine == sorted(mine)


def batch_of(writer: int, index: int, size: int = 3) -> list[dict[str, Any]]:
    return [{"uuid": f"w{writer}-{index}-{j}", "w": writer, "i": index, "j": j} for j in range(size)]


async def test_concurrent_appends_to_one_transcript_never_collide(store: Store) -> None:
    """N writers (threads on the sync class, tasks on the async one) append M batches each to one
    transcript at once, and every writer also re-sends its previous batch (uuid no-ops racing)."""
    writers, rounds = 8, 6
    batches = {(w, i): [e["uuid"] for e in batch_of(w, i)] for w in range(writers) for i in range(rounds)}
    await call(store.db.get_transcript_entries(F, P, "s1"))

    def entries(writer: int, index: int) -> list[dict[str, Any]]:
        return batch_of(writer, index) + (batch_of(writer, index - 1) if index else [])

    if store.is_async:

        async def writer_task(writer: int) -> None:
            for index in range(rounds):
                await call(store.db.append_transcript_entries(F, P, "s1", entries(writer, index), "ag"))

        await asyncio.gather(*(writer_task(w) for w in range(writers)))
    else:
        barrier = threading.Barrier(writers)

        def writer_thread(writer: int) -> None:
            barrier.wait()
            for index in range(rounds):
                store.db.append_transcript_entries(F, P, "s1", entries(writer, index), "ag")

        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(writer_thread, range(writers)))
    read = await call(store.db.get_transcript_entries(F, P, "s1"))
    check_transcript(store.raw, read, batches)


async def test_concurrent_appends_of_the_same_entries_store_each_once(store: Store) -> None:
    """Replicas resuming one session may append the same lines at once: each uuid is stored once."""
    same = [line(f"u{i}", f"line {i}") for i in range(5)]
    n = 8
    await call(store.db.get_transcript_entries(F, P, "s1"))
    if store.is_async:
        await asyncio.gather(*(call(store.db.append_transcript_entries(F, P, "s1", same, "ag")) for _ in range(n)))
    else:
        barrier = threading.Barrier(n)

        def append(_: int) -> None:
            barrier.wait()
            store.db.append_transcript_entries(F, P, "s1", same, "ag")

        with ThreadPoolExecutor(n) as pool:
            list(pool.map(append, range(n)))
    assert await call(store.db.get_transcript_entries(F, P, "s1")) == same
    assert store.raw[COLLECTION].count_documents({}) == 1


WRITER = """
import sys
from agno_mongo import MongoDb
url, name, writer, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
db = MongoDb(db_url=url, db_name=name)
for index in range(rounds):
    batch = [{"uuid": f"w{writer}-{index}-{j}", "w": writer, "i": index, "j": j} for j in range(3)]
    db.append_transcript_entries("claude-agent-sdk", "proj", "s1", batch, "ag")
print("done")
"""


def test_two_processes_and_threads_append_to_one_transcript(mongodb_url: str, db_name: str) -> None:
    rounds = 10
    client: MongoClient[Any] = MongoClient(mongodb_url)
    db = MongoDb(db_client=client, db_name=db_name)
    db.get_transcript_entries(F, P, "s1")  # the indexes exist before anyone races
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, mongodb_url, db_name, str(writer), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for writer in (0, 1)
    ]

    def thread_writer(writer: int) -> None:
        for index in range(rounds):
            db.append_transcript_entries(F, P, "s1", batch_of(writer, index), "ag")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(thread_writer, (2, 3)))
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and out.strip() == "done", err
    batches = {(w, i): [e["uuid"] for e in batch_of(w, i)] for w in range(4) for i in range(rounds)}
    check_transcript(client[db_name], db.get_transcript_entries(F, P, "s1"), batches)
    client.close()


# --- deterministic interleavings ---------------------------------------------------------------------------


def stepping(db: MongoDb, plan: Plan[Any], outcome: list[Any]) -> Iterator[None]:
    """Run a plan on ``db`` one command per ``next()``; its answer lands in ``outcome``."""
    send: Callable[[Any], Any] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            outcome.append(stop.value)
            return
        if isinstance(step, Pause):
            value, send = None, plan.send
            continue
        try:
            value, send = db._execute(step), plan.send
        except PyMongoError as error:
            value, send = error, plan.throw
        yield


@pytest.mark.parametrize("split", range(6))
@pytest.mark.parametrize("overlap", [False, True])
def test_two_appends_interleaved_at_every_step_equal_a_serial_order(
    mongodb_url: str, db_name: str, split: int, overlap: bool
) -> None:
    """A runs ``split`` commands, then B runs to the end, then A finishes: the transcript is A then
    B, or B then A, each whole, each uuid once (with ``overlap``, both append uuid ``shared``)."""
    client: MongoClient[Any] = MongoClient(mongodb_url)
    db = MongoDb(db_client=client, db_name=db_name)
    db.append_transcript_entries(F, P, "s1", [line("p", "prefix")], "ag")
    a = [line("a1", "A"), line(None, "A no uuid"), *([line("shared", "from A")] if overlap else [])]
    b = [*([line("shared", "from B")] if overlap else []), line("b1", "B")]
    results: list[Any] = []
    contract = TranscriptContract()
    first = stepping(db, contract.append_transcript_entries(F, P, "s1", a, "ag"), results)
    for _ in range(split):
        next(first, None)
    for _ in stepping(db, contract.append_transcript_entries(F, P, "s1", b, "ag"), results):
        pass
    for _ in first:
        pass
    assert results == [None, None]
    read = db.get_transcript_entries(F, P, "s1")
    a_then_b = [line("p", "prefix"), *a, *[e for e in b if e.get("uuid") != "shared" or not overlap]]
    b_then_a = [line("p", "prefix"), *b, *[e for e in a if e.get("uuid") != "shared" or not overlap]]
    assert read in (a_then_b, b_then_a), read
    client.close()


# --- plans without a server --------------------------------------------------------------------------------


KEY = TranscriptKey(F, P, "s1", "")


INSERTED = Written(inserted_count=1)
"""What a driver answers an ``insert_one`` that landed."""


def append(entries: list[dict[str, Any]]) -> Plan[None]:
    return ops.append_plan(KEY, prepare_entries(entries), "ag", 1000)


def test_an_append_reads_the_end_then_inserts_after_it_once() -> None:
    commands, answer = drive(
        append([line("a", "x"), line(None, "y")]), [{"_id": 1, "end": 7}, Written(inserted_count=1)]
    )
    read, insert = commands
    assert read.op == "find_one" and read.kwargs["sort"] == [("position", -1)] and read.resend is True
    assert read.kwargs["filter"] == {"framework": F, "project_key": P, "session_id": "s1", "subpath": ""}
    assert insert.op == "insert_one" and insert.resend is False and answer is None
    stored = insert.kwargs["document"]
    assert (stored["position"], stored["end"], stored["uuids"], stored["created_at"]) == (8, 9, ["a"], 1000)
    assert [bson.decode(entry.raw) for entry in stored["entries"]] == [line("a", "x"), line(None, "y")]
    assert stored["agno_session_id"] == "ag" and "_codec" not in stored


def test_a_lost_insert_is_checked_by_its_id_and_never_stored_twice() -> None:
    # Landed: one read by _id, nothing sent again.
    commands, _ = drive(append([line(None, "x")]), [None, lost(Command("t", "insert_one")), [{"_id": 1}]])
    read, insert, check = commands
    doc_id = insert.kwargs["document"]["_id"]
    assert check.op == "find" and check.kwargs["filter"] == {"_id": doc_id}
    # Not there yet: the next round sends the same _id; a late first arrival makes it collide, and the
    # read after the duplicate key finds it, so the entries are stored once.
    commands, _ = drive(
        append([line(None, "x")]),
        [
            None,
            lost(Command("t", "insert_one")),
            [],
            {"_id": 9, "end": 1},
            DuplicateKeyError("dup"),
            lambda check: [{"_id": check.kwargs["filter"]["_id"]}],  # our first send, landed late
        ],
    )
    first, second = commands[1], commands[4]
    assert first.kwargs["document"]["_id"] == second.kwargs["document"]["_id"]
    assert (first.kwargs["document"]["position"], second.kwargs["document"]["position"]) == (1, 2)


def test_known_uuids_are_dropped_and_a_lost_race_reads_the_end_again() -> None:
    entries = [line("a", "x"), line("b", "y"), line(None, "z")]
    # "a" is known: it is dropped and the rest inserted at once (no pause: not a race).
    plan = append(entries)
    commands, _ = drive(
        plan, [None, DuplicateKeyError("dup"), [{"_id": 5, "uuids": ["a", "q"]}], None, Written(inserted_count=1)]
    )
    check = commands[2]
    assert check.kwargs["filter"]["$or"][1]["uuids"] == {"$in": ["a", "b"]}
    assert [e.get("uuid") for e in commands[4].kwargs["document"]["entries"]] == ["b", None]
    # Every entry known: nothing more is written.
    commands, _ = drive(append([line("a", "x")]), [None, DuplicateKeyError("dup"), [{"_id": 5, "uuids": ["a"]}]])
    assert [c.op for c in commands] == ["find_one", "insert_one", "find"]
    # Nothing known: another append took the position; read the end again and go after it.
    commands, _ = drive(
        append(entries), [None, DuplicateKeyError("dup"), [], {"_id": 5, "end": 3}, Written(inserted_count=1)]
    )
    assert commands[4].kwargs["document"]["position"] == 4


def test_sustained_contention_gives_up_with_write_contention_error() -> None:
    answers: list[Any] = []
    for _ in range(ops.MAX_ROUNDS):
        answers += [None, DuplicateKeyError("dup"), []]
    with pytest.raises(WriteContentionError):
        drive(append([line("a", "x")]), answers)


def test_an_entry_that_cannot_fit_is_refused_before_the_first_command() -> None:
    plan = append([line("a", "fits"), {"blob": "x" * (MAX_DOCUMENT_BYTES - 100)}])
    with pytest.raises(InvalidInputError) as error:
        next(plan)
    assert error.value.field == "entries[1]"


# --- lost replies on a real server -------------------------------------------------------------------------


def transcript_insert(name: str, command: dict[str, Any]) -> bool:
    return name == "insert" and command.get("insert") == COLLECTION


async def test_an_append_whose_insert_reply_is_lost_is_stored_once(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.append_transcript_entries(F, P, "s1", [line("a", "first")], "ag"))
    proxy.drop_next(transcript_insert)
    entries = [line(None, "no uuid: only the _id tells it landed"), line("b", "with uuid")]
    await call(db.append_transcript_entries(F, P, "s1", entries, "ag"))
    assert len(proxy.dropped) == 1, "the reply was not dropped"
    assert raw[COLLECTION].count_documents({}) == 2
    assert through.direct.get_transcript_entries(F, P, "s1") == [line("a", "first"), *entries]
    await call(db.append_transcript_entries(F, P, "s1", [line("c", "next")], "ag"))  # goes after it
    assert [d["position"] for d in raw[COLLECTION].find().sort("position", 1)] == [1, 2, 4]


async def test_a_refused_insert_whose_reply_is_lost_still_appends_the_new_entries(through: SimpleNamespace) -> None:
    """The insert collides on a known uuid and its answer is lost: the plan finds nothing of its own,
    tries again, learns which uuid is known and stores the rest, once."""
    db, proxy = through.db, through.proxy
    await call(db.append_transcript_entries(F, P, "s1", [line("a", "first")], "ag"))
    proxy.drop_next(transcript_insert)
    await call(db.append_transcript_entries(F, P, "s1", [line("a", "again"), line("b", "new")], "ag"))
    assert len(proxy.dropped) == 1
    assert through.direct.get_transcript_entries(F, P, "s1") == [line("a", "first"), line("b", "new")]


async def test_a_lost_read_reply_is_resent(through: SimpleNamespace) -> None:
    db, proxy = through.db, through.proxy
    await call(db.append_transcript_entries(F, P, "s1", [line("a", "first")], "ag"))
    proxy.drop_next(lambda name, command: name == "find" and command.get("find") == COLLECTION)
    await call(db.append_transcript_entries(F, P, "s1", [line("b", "second")], "ag"))
    assert len(proxy.dropped) == 1
    assert through.direct.get_transcript_entries(F, P, "s1") == [line("a", "first"), line("b", "second")]


# --- agno's callers ---------------------------------------------------------------------------------------


async def test_claude_agents_session_store_round_trips(store: Store) -> None:
    """``AgnoSessionStore`` (what ``ClaudeAgent`` hands the SDK) on our classes: it is attached (the
    method is ours, not BaseDb's stub) and append / load / list / delete behave as the SDK expects."""
    base = AsyncBaseDb if isinstance(store.db, AsyncBaseDb) else BaseDb
    assert type(store.db).append_transcript_entries is not base.append_transcript_entries
    sdk = AgnoSessionStore(store.db, project_key=P, agno_session_id="agno-1")
    main, sub = {"session_id": "c1"}, {"session_id": "c1", "subpath": "subagents/agent-x"}
    assert await sdk.load(main) is None  # no transcript: None, so the SDK starts fresh
    await sdk.append(main, [line("m1", "hello"), line("m2", "world")])
    await sdk.append(main, [line("m2", "world"), line("m3", "again")])  # the SDK re-sends a line
    await sdk.append(sub, [line("s1", "sub")])
    assert await sdk.load(main) == [line("m1", "hello"), line("m2", "world"), line("m3", "again")]
    assert await sdk.load(sub) == [line("s1", "sub")]
    (listed,) = await sdk.list_sessions(P)
    assert listed["session_id"] == "c1" and isinstance(listed["mtime"], int)
    assert await sdk.list_subkeys(main) == ["subagents/agent-x"]
    await sdk.delete(sub)
    assert await sdk.list_subkeys(main) == [] and await sdk.load(main)
    await sdk.delete(main)
    assert await sdk.load(main) is None
    assert store.raw[COLLECTION].count_documents({"agno_session_id": "agno-1"}) == 0


async def test_json_normalisation_matches_agnos_round_trip(store: Store) -> None:
    """What comes back is ``json.loads(json.dumps(entry))``, as from agno's SQL stores."""
    entry = {"uuid": "a", "t": (1, (2, 3)), 1: "x", None: "n", 2.5: "f", "big": 2**80, "$k.x": {"%agno": "t"}}
    await call(store.db.append_transcript_entries(F, P, "s1", [entry], "ag"))
    assert await call(store.db.get_transcript_entries(F, P, "s1")) == [json.loads(json.dumps(entry))]


# --- deleting an agno session deletes its transcripts -------------------------------------------------------


async def test_deleting_agno_sessions_deletes_their_transcripts(store: Store, oracle: Any) -> None:
    """agno's SQL stores delete the transcripts appended under a session with it (``agno_session_id``);
    an owner-scoped delete of someone else's session leaves them."""

    async def scenario(db: Any) -> list[Any]:
        for session_id, user in (("ag1", "alice"), ("ag2", "alice"), ("ag3", "bob")):
            await call(db.upsert_session(AgentSession(session_id=session_id, user_id=user, agent_id="a")))
        for claude, agno in (("c1", "ag1"), ("c2", "ag2"), ("c3", "ag3"), ("c4", "ag4")):
            await call(db.append_transcript_entries(F, P, claude, [line(f"{claude}-1", "x")], agno))
        await call(db.append_transcript_entries(F, P, "c1", [line("c1-s", "sub")], "ag1", subpath="sub"))
        seen: list[Any] = []
        seen.append(await call(db.delete_session("ag1", user_id="bob")))  # not bob's: nothing deleted
        seen.append(await call(db.get_transcript_entries(F, P, "c1")))
        seen.append(await call(db.delete_session("ag1")))
        seen.append(await call(db.get_transcript_entries(F, P, "c1")))
        seen.append(await call(db.get_transcript_entries(F, P, "c1", subpath="sub")))
        seen.append(await call(db.delete_sessions(["ag2", "ag3"], user_id="alice")))  # ag3 is bob's
        seen.append(await call(db.get_transcript_entries(F, P, "c2")))
        seen.append(await call(db.get_transcript_entries(F, P, "c3")))
        seen.append(await call(db.delete_sessions(["ag3", "ag4"])))  # unscoped: ag4 has no session row
        seen.append(await call(db.get_transcript_entries(F, P, "c3")))
        seen.append(await call(db.get_transcript_entries(F, P, "c4")))
        seen.append(await call(db.list_transcript_sessions(F, P)))
        return seen

    ours, theirs = await scenario(store.db), await scenario(oracle)
    assert normalised(ours, times=MTIME) == normalised(theirs, times=MTIME)
    assert ours[3] == [] and ours[-1] == []
    assert store.raw[COLLECTION].count_documents({}) == 0


def test_delete_for_sessions_is_one_idempotent_delete_many() -> None:
    (command,) = ops.delete_for_sessions(["ag1", "ag2"])
    assert command.collection == "transcripts" and command.op == "delete_many" and command.resend is True
    assert command.kwargs == {"filter": {"agno_session_id": {"$in": ["ag1", "ag2"]}}}


def test_prepare_follows_agnos_uuid_rules() -> None:
    """``prepare_entries`` keeps the first of repeated uuids and treats falsy uuids as none, like agno."""
    prepared = prepare_entries([{"uuid": "a", "n": 1}, {"uuid": ""}, {"uuid": None}, {"uuid": "a", "n": 2}, {}])
    assert [(p.index, p.uuid) for p in prepared] == [(0, "a"), (1, None), (2, None), (4, None)]
    with pytest.raises(InvalidInputError):
        prepare_entries([{"uuid": 0.5}])
