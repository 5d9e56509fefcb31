"""Compaction records through MongoDb on a real wire server, against agno's own SqliteDb.

agno calls the five record methods synchronously, and only ``BaseDb`` declares them, so they exist on
``MongoDb`` alone (``AsyncMongoDb`` has none, like agno's own async stores). The ``store`` fixture is
therefore overridden here with the PyMongo flavour only; what an async store does is checked on both
async flavours (PyMongo async and Motor) separately. The end-to-end tests drive a real ``Agent`` with
``compaction=`` through ``OpenAIChat`` on :class:`~agno_mongo.testing.openai_server.LocalOpenAIServer`.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from agno.agent import Agent
from agno.compaction import Compaction
from agno.compaction.archive import stores_compaction_records
from agno.compaction.prompts import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from agno.db.base import AsyncBaseDb
from agno.db.sqlite import AsyncSqliteDb
from agno.models.openai import OpenAIChat
from agno.session import AgentSession
from agno.utils import log as agno_log
from pymongo import MongoClient

from agno_mongo import AsyncMongoDb
from agno_mongo.errors import CorruptDocumentError
from agno_mongo.ops import compactions as ops
from agno_mongo.ops.command import ReplyLost, Written
from agno_mongo.schema.compactions import COLUMNS
from agno_mongo.testing.openai_server import LocalOpenAIServer, tool_call
from tests.conftest import Commands, Store, assert_refused, make_db
from tests.differential import assert_same_answers
from tests.plans import drive

METHODS = (
    "upsert_compaction",
    "get_compaction",
    "get_compactions_for_session",
    "search_compactions",
    "delete_compactions_for_session",
)


@pytest.fixture
def store(mongodb_url: str, db_name: str) -> Iterator[Store]:
    """conftest's ``store``, PyMongo flavour only: the record methods are sync-only (see module)."""
    commands = Commands()
    db = make_db("pymongo", mongodb_url, db_name, commands)
    raw_client: MongoClient[Any] = MongoClient(mongodb_url)
    yield Store(db=db, commands=commands, raw=raw_client[db_name], flavour="pymongo")
    raw_client.close()
    db.db_client.close()


def record(compaction_id: str, created_at: int, session_id: str = "s1", **extra: Any) -> dict[str, Any]:
    """A row shaped as agno's ``CompactionArchive._row`` builds one (every column given)."""
    row: dict[str, Any] = {
        "compaction_id": compaction_id,
        "session_id": session_id,
        "run_id": f"run-{compaction_id}",
        "user_id": "alice",
        "first_kept_message_id": f"msg-{compaction_id}",
        "summary": f"Summary {compaction_id}",
        "archived_messages": f"## user\n\nTicket {compaction_id} opened\n\n## assistant\n\nNoted.",
        "messages_compacted": 4,
        "tokens_before": 1200,
        "tokens_after": 300,
        "created_at": created_at,
    }
    row.update(extra)
    return row


RECORDS = [
    record("A", 10),
    record("B", 20, archived_messages="## user\n\nThe build HASH is 3f.a9 (see [log]) -- cost 100$ ^_^"),
    record("C", 20, archived_messages="## tool (grep)\n\nmatch: a|b and a*b and back\\slash"),  # ties with B
    record("D", 30, archived_messages=None, summary=None, first_kept_message_id=None, tokens_after=None),
    record("E", 40, session_id="s2", archived_messages="## user\n\nThe build hash is elsewhere"),
    {"compaction_id": "F", "session_id": "s1", "created_at": 50},  # the fewest columns a row may have
    record("G", 20, archived_messages="## user\n\nbuild hash again, lowercase"),  # a second tie, inserted last
]


def play(db: Any) -> list[Any]:
    """Every method of the domain, in an order that exercises each outcome."""
    out: list[Any] = [db.get_compactions_for_session("s1"), db.get_compaction("A"), db.search_compactions("s1", "x")]
    for row in RECORDS:
        out.append(db.upsert_compaction(dict(row)))
    out.append(db.upsert_compaction(record("A", 99, session_id="s2", summary="rewritten")))  # repeated id: no-op
    for compaction_id in ("A", "D", "F", "missing"):
        out.append(db.get_compaction(compaction_id))
    for session_id, limit in (("s1", None), ("s1", 2), ("s1", 0), ("s1", 100), ("s2", None), ("nobody", None)):
        out.append(db.get_compactions_for_session(session_id, limit=limit))
    out.append(db.get_compactions_for_session("s1", 3))  # positional, as agno's archive calls it
    searches: list[tuple[str, Any, int]] = [
        ("s1", "build hash", 10),  # case-insensitive, and only s1 (E says it too)
        ("s1", "BUILD HASH", 10),
        ("s1", "build hash", 1),  # the newest match only
        ("s1", ["ticket a", "a|b"], 10),  # any of several terms; "|" inside a term is literal
        ("s1", ["", "nothing like this"], 10),
        ("s1", [], 10),
        ("s1", "", 10),
        ("s1", "3f.a9", 10),  # "." is literal
        ("s1", "3f?a9", 10),  # "?" is literal: no match
        ("s1", "(see [log])", 10),
        ("s1", "100$ ^", 10),
        ("s1", "a*b", 10),
        ("s1", "back\\slash", 10),
        ("s1", "## USER", 10),
        ("s1", "ticket", 0),
        ("s2", "hash", 10),
        ("nobody", "hash", 10),
    ]
    for session_id, query, limit in searches:
        out.append(db.search_compactions(session_id, query, limit))
    out.append(db.search_compactions("s1", ("Ticket A", "Ticket F")))  # a tuple, default limit
    out.append(db.delete_compactions_for_session("s1"))
    out.append(db.delete_compactions_for_session("s1"))
    out.append(db.delete_compactions_for_session("nobody"))
    out.append(db.get_compactions_for_session("s1"))
    out.append(db.get_compactions_for_session("s2"))
    out.append(db.get_compaction("E"))
    return out


def test_every_method_answers_as_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = play(store.db)
    theirs = play(oracle)
    assert_same_answers(ours, theirs, times=frozenset())


def test_rows_have_agnos_keys_types_and_feed_agnos_record(store: Store, oracle: Any) -> None:
    from agno.compaction.types import CompactionRecord

    for db in (store.db, oracle):
        db.upsert_compaction(record("A", 10))
        db.upsert_compaction({"compaction_id": "F", "session_id": "s1", "created_at": 50})
    for compaction_id in ("A", "F"):
        mine, reference = store.db.get_compaction(compaction_id), oracle.get_compaction(compaction_id)
        assert list(mine) == list(reference) == list(COLUMNS)
        assert {k: type(v) for k, v in mine.items()} == {k: type(v) for k, v in reference.items()}
        assert CompactionRecord.from_dict(mine) == CompactionRecord.from_dict(reference)
    raw = store.raw.agno_compactions.find_one({"_id": "A"})
    assert raw["session_id"] == "s1" and "compaction_id" not in raw  # the id is _id; session_id top level
    assert type(raw["created_at"]) is int and isinstance(raw["created_ns"], int) and raw["schema_version"] == 1


def test_a_repeated_id_is_a_no_op(store: Store, oracle: Any) -> None:
    for db in (store.db, oracle):
        assert db.upsert_compaction(record("A", 10)) is None
        assert db.upsert_compaction(record("A", 20, session_id="s2", summary="second")) is None
        assert db.get_compaction("A")["summary"] == "Summary A"
        assert db.get_compactions_for_session("s2") == []
    assert store.raw.agno_compactions.count_documents({}) == 1
    assert store.commands.writes() == ["update", "update"]  # one command each, no read first


def test_concurrent_writers_of_one_new_id_store_it_once(store: Store) -> None:
    n = 12
    barrier = threading.Barrier(n)

    def write(who: int) -> Any:
        barrier.wait()
        return store.db.upsert_compaction(record("A", 10, summary=f"writer {who}"))

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(write, range(n)))
    assert answers == [None] * n
    (stored,) = store.raw.agno_compactions.find({})
    assert stored["summary"].startswith("writer ")


def test_search_is_literal_where_sqlite_like_is_not(store: Store, oracle: Any) -> None:
    """agno's SQLite hands the terms to ``LIKE`` unescaped, so ``%`` and ``_`` are wildcards there (a
    bug: the docstring says substring, and agno's caller re-greps the rows literally). Here every
    character matches itself, including NUL, which a MongoDB pattern cannot hold raw."""
    texts = {"A": "order 1000 shipped", "B": "file abc.txt", "C": "literal 100% and a_c", "D": "nul \0 here"}
    for db in (store.db, oracle):
        for index, (compaction_id, text) in enumerate(texts.items()):
            db.upsert_compaction(record(compaction_id, 10 + index, archived_messages=text))

    def ids(db: Any, query: Any) -> list[str]:
        return [row["compaction_id"] for row in db.search_compactions("s1", query)]

    assert ids(oracle, "100%") == ["C", "A"] and ids(store.db, "100%") == ["C"]
    assert ids(oracle, "a_c") == ["C", "B"] and ids(store.db, "a_c") == ["C"]
    assert ids(oracle, "%") == ["D", "C", "B", "A"] and ids(store.db, "%") == ["C"]
    for query in (".*", "^", "$", "\\", "(", "[a-z]", "a{2}", "\\d", "?"):
        assert ids(store.db, query) == [], query
    assert ids(store.db, "\0") == ["D"] and ids(store.db, "NUL \0 HERE") == ["D"]
    assert ids(store.db, "ABC.TXT") == ["B"] and ids(store.db, "abc?txt") == []


def test_search_and_listing_are_scoped_to_one_session(store: Store) -> None:
    for session_id in ("s1", "s2", "s10"):
        store.db.upsert_compaction(record(f"{session_id}-r", 10, session_id=session_id, archived_messages="secret"))
    assert [r["compaction_id"] for r in store.db.search_compactions("s1", "secret")] == ["s1-r"]
    assert [r["compaction_id"] for r in store.db.get_compactions_for_session("s1")] == ["s1-r"]
    sent = store.commands.sent[-1]
    assert sent["filter"]["session_id"] == "s1"


def test_newest_first_with_ties_in_insertion_order(store: Store, oracle: Any) -> None:
    """``latest()`` takes the first row as the fold in force, so two folds of one second must come
    back as SQLite gives them: the later insert first."""
    for db in (store.db, oracle):
        for compaction_id, created_at in (("m", 5), ("a", 5), ("z", 5), ("old", 1), ("new", 9)):
            db.upsert_compaction(record(compaction_id, created_at))
    expected = ["new", "z", "a", "m", "old"]
    assert [r["compaction_id"] for r in oracle.get_compactions_for_session("s1")] == expected
    assert [r["compaction_id"] for r in store.db.get_compactions_for_session("s1")] == expected
    assert [r["compaction_id"] for r in store.db.search_compactions("s1", "ticket")] == expected


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    store.db.upsert_compaction(record("A", 10))
    without = {k: v for k, v in record("X", 1).items()}
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("upsert_compaction", {"row": ["not", "a", "dict"]}, "row"),
        ("upsert_compaction", {"row": {**record("X", 1), "colour": "red"}}, "row.colour"),
        ("upsert_compaction", {"row": {k: v for k, v in without.items() if k != "compaction_id"}}, "row.compaction_id"),
        ("upsert_compaction", {"row": {k: v for k, v in without.items() if k != "session_id"}}, "row.session_id"),
        ("upsert_compaction", {"row": {k: v for k, v in without.items() if k != "created_at"}}, "row.created_at"),
        ("upsert_compaction", {"row": record("X", None)}, "row.created_at"),  # type: ignore[arg-type]
        ("upsert_compaction", {"row": record("X", "yesterday")}, "row.created_at"),  # type: ignore[arg-type]
        ("upsert_compaction", {"row": record("X", 1, messages_compacted=True)}, "row.messages_compacted"),
        ("upsert_compaction", {"row": record("X", 1, tokens_before=1 << 70)}, "row.tokens_before"),
        ("upsert_compaction", {"row": {**record("X", 1), "compaction_id": {"$ne": None}}}, "row.compaction_id"),
        ("upsert_compaction", {"row": record("X", 1, session_id="")}, "row.session_id"),
        ("upsert_compaction", {"row": record("X", 1, summary=["a"])}, "row.summary"),
        ("upsert_compaction", {"row": record("X", 1, archived_messages="lone \ud800")}, "row.archived_messages"),
        ("get_compaction", {"compaction_id": {"$ne": None}}, "compaction_id"),
        ("get_compaction", {"compaction_id": ""}, "compaction_id"),
        ("get_compactions_for_session", {"session_id": {"$exists": True}}, "session_id"),
        ("get_compactions_for_session", {"session_id": "s1", "limit": -1}, "limit"),
        ("get_compactions_for_session", {"session_id": "s1", "limit": "3"}, "limit"),
        ("delete_compactions_for_session", {"session_id": None}, "session_id"),
        ("delete_compactions_for_session", {"session_id": {"$ne": None}}, "session_id"),
        ("search_compactions", {"session_id": {"$ne": None}, "query": "x"}, "session_id"),
        ("search_compactions", {"session_id": "s1", "query": {"$regex": ".*"}}, "query"),
        ("search_compactions", {"session_id": "s1", "query": ["ok", 5]}, "query[1]"),
        ("search_compactions", {"session_id": "s1", "query": None}, "query"),
        ("search_compactions", {"session_id": "s1", "query": "x", "limit": -1}, "limit"),
        ("search_compactions", {"session_id": "s1", "query": "x", "limit": 2.5}, "limit"),
    ]
    for method, kwargs, field in refused:
        await assert_refused(store, method, kwargs, field)
    assert store.raw.agno_compactions.count_documents({}) == 1


def test_a_corrupt_stored_record_raises_instead_of_reaching_agno(store: Store) -> None:
    store.raw.agno_compactions.insert_one({"_id": "bad", "session_id": "s1", "created_at": "yesterday"})
    with pytest.raises(CorruptDocumentError) as error:
        store.db.get_compactions_for_session("s1")
    assert (error.value.collection, error.value.document_id, error.value.field) == ("compactions", "bad", "created_at")


def test_a_record_too_large_for_one_document_keeps_its_fold(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """agno's contract lets a backend leave ``archived_messages`` null: the summary and anchor are
    kept, so later runs still apply the fold; only the verbatim transcript is not."""
    huge = "## user\n\n" + "x" * (17 * 1024 * 1024)
    with caplog.at_level(logging.WARNING, logger="agno_mongo"):
        store.db.upsert_compaction(record("A", 10, archived_messages=huge))
    assert "stored without them" in caplog.text
    row = store.db.get_compaction("A")
    assert row["archived_messages"] is None
    assert (row["summary"], row["first_kept_message_id"]) == ("Summary A", "msg-A")
    (update,) = [sent for sent in store.commands.sent if "update" in sent]
    assert len(json.dumps(update["updates"][0]["u"])) < 10_000


def test_one_index_serves_every_read_search_and_delete(store: Store) -> None:
    store.db.get_compactions_for_session("s1")  # creates the indexes
    keys = [list(i["key"].items()) for i in store.raw.agno_compactions.list_indexes() if i["name"] != "_id_"]
    assert keys == [[("session_id", 1), ("created_at", -1), ("created_ns", -1)]]
    for command in (ops.for_session("s1", 5), ops.for_session("s1", None, ops.contains_any(["x"]))):
        assert command.kwargs["filter"]["session_id"] == "s1" and command.kwargs["sort"] == ops.NEWEST_FIRST
    assert ops.count_for_session("s1").kwargs["filter"] == {"session_id": "s1"}
    assert ops.delete_for_sessions(["s1", "s2"]).kwargs["filter"] == {"session_id": {"$in": ["s1", "s2"]}}


# --- deleting a session deletes its records (wired by the sessions domain) ---------------------------------


def seed_sessions(db: Any) -> None:
    for session_id, user_id in (("s1", "alice"), ("s2", "bob"), ("s3", "alice")):
        db.upsert_session(AgentSession(session_id=session_id, user_id=user_id, agent_id="a", created_at=1))
        for index in range(2):
            db.upsert_compaction(record(f"{session_id}-{index}", 10 + index, session_id=session_id))


def remaining(db: Any) -> dict[str, int]:
    return {session_id: len(db.get_compactions_for_session(session_id)) for session_id in ("s1", "s2", "s3")}


def test_deleting_a_session_deletes_its_records_and_only_its(store: Store, oracle: Any) -> None:
    """As agno's SQL stores do: otherwise a session recreated under the same id inherits the old fold,
    and the agent is offered a search over the deleted conversation."""
    for db in (oracle, store.db):  # agno's first: the assertions are its behaviour
        seed_sessions(db)
        assert db.delete_session("s1", user_id="bob") is False  # not bob's: nothing goes
        assert remaining(db) == {"s1": 2, "s2": 2, "s3": 2}
        assert db.delete_session("s1", user_id="alice") is True
        assert remaining(db) == {"s1": 0, "s2": 2, "s3": 2}
        db.delete_sessions(["s2", "s3"], user_id="alice")  # s2 is bob's: only s3's records go
        assert remaining(db) == {"s1": 0, "s2": 2, "s3": 0}
        db.delete_sessions(["s2"])
        assert remaining(db) == {"s1": 0, "s2": 0, "s3": 0}


# --- an async store has no record methods, as agno's own ---------------------------------------------------


@pytest.fixture(params=["pymongo-async", "motor"])
async def async_db(request: pytest.FixtureRequest, mongodb_url: str, db_name: str) -> AsyncIterator[AsyncMongoDb]:
    db = make_db(request.param, mongodb_url, db_name, Commands())
    assert isinstance(db, AsyncMongoDb)
    yield db
    closed = db.db_client.close()
    if inspect.isawaitable(closed):
        await closed


async def test_an_async_store_declares_no_record_methods_like_agnos(async_db: AsyncMongoDb, tmp_path: Any) -> None:
    """agno calls the record methods without awaiting them, so a coroutine version would store
    nothing: ``AsyncMongoDb`` has none, like ``AsyncBaseDb`` and ``AsyncSqliteDb``, and agno's check
    says neither stores records."""
    oracle = AsyncSqliteDb(db_file=str(tmp_path / "oracle.sqlite"))
    for name in METHODS:
        assert not hasattr(async_db, name) and not hasattr(AsyncBaseDb, name) and not hasattr(oracle, name), name
    assert stores_compaction_records(async_db) is stores_compaction_records(oracle) is False


async def test_an_agent_on_an_async_store_turns_compaction_off_as_on_agnos(
    async_db: AsyncMongoDb, mongodb_url: str, db_name: str
) -> None:
    with agno_warnings() as warnings, LocalOpenAIServer() as server:
        agent = make_agent(async_db, server, compaction=Compaction(compact_at_tokens=50, uncompacted_runs=1))
        assert agent.compaction is None
        for turn in range(3):
            await agent.arun(f"turn {turn}: " + "words " * 60)
    assert any("Compaction is only supported" in message for message in warnings)
    client: MongoClient[Any] = MongoClient(mongodb_url)
    try:
        assert client[db_name].agno_compactions.count_documents({}) == 0
        assert len(client[db_name].agno_sessions.find_one({"_id": "fold-me"})["runs"]) == 3
    finally:
        client.close()


# --- plans without a server --------------------------------------------------------------------------------


def test_the_insert_is_resendable_and_the_delete_is_not() -> None:
    document = ops.stored_document({column: None for column in COLUMNS} | {"compaction_id": "A", "session_id": "s"})
    (insert,), _ = drive(ops.insert_plan(document), [Written(upserted_count=1)])
    assert insert.resend is True and insert.kwargs["update"] == {"$setOnInsert": document}
    count, delete = drive(ops.delete_plan("s"), [3, Written(deleted_count=3)])[0]
    assert count.op == "count_documents" and delete.op == "delete_many" and delete.resend is False
    assert ops.delete_for_sessions(["s"]).resend is True
    # Lost after it landed: the resend deletes nothing, the count read before it is the answer.
    lost = ReplyLost(delete, OSError("connection reset"))
    commands, answer = drive(ops.delete_plan("s"), [3, lost, Written(deleted_count=0)])
    assert answer == 3 and commands[2].resend is True and commands[2].kwargs == delete.kwargs
    # Lost before it arrived: the resend deletes them.
    assert drive(ops.delete_plan("s"), [3, lost, Written(deleted_count=3)])[1] == 3
    # Nothing to delete: no delete is sent.
    assert drive(ops.delete_plan("s"), [0]) == ([ops.count_for_session("s")], 0)


def test_the_literal_pattern_escapes_every_metacharacter() -> None:
    import re

    for term in (".*", "a|b", "(x)", "[a-z]", "100%", "a_c", "$^", "\\d", "tab\there", "line\nbreak", "é.ü", "\0"):
        pattern = ops.literal_pattern(term)
        assert "\0" not in pattern
        assert re.fullmatch(pattern, term) and not re.fullmatch(pattern, term.replace(term[0], "Z", 1) + "!")


# --- lost replies on a real server -------------------------------------------------------------------------


@pytest.mark.parametrize("through", ["pymongo"], indirect=True)  # the sync class: these calls are not awaited
def test_insert_and_delete_whose_replies_are_lost_answer_right(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    db.get_compactions_for_session("s1")  # indexes built before anything is armed
    proxy.drop_next("update")
    assert db.upsert_compaction(record("A", 10)) is None  # resent: the second arrival is a no-op
    assert proxy.dropped and raw.agno_compactions.count_documents({}) == 1
    for compaction_id in ("B", "C"):
        db.upsert_compaction(record(compaction_id, 10))
    proxy.drop_next("delete")
    assert db.delete_compactions_for_session("s1") == 3  # applied, its reply lost: still "3 deleted"
    assert len(proxy.dropped) == 2 and raw.agno_compactions.count_documents({}) == 0


# --- end to end: a real Agent folds a long session on MongoDb ---------------------------------------------

SUMMARY = "SUMMARY-OF-EARLIER-TURNS: the user gave ticket ZX-9.4 (urgent)."
STORAGE_WARNINGS = (
    "Compaction is only supported",  # agno turned compaction off for this db
    "does not implement compaction records",
    "Could not store compaction record",
    "Could not read compaction records",
    "Could not search compaction records",
    "Ignoring unreadable compaction record",
)
"""What agno logs when a db cannot store, read or search compaction records (agno/compaction/archive.py,
agno/agent/_init.py, agno/agent/_messages.py)."""


@contextmanager
def agno_warnings() -> Iterator[list[str]]:
    """Warnings agno logs (its logger does not propagate, so ``caplog`` does not see them)."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    handler = Keep()
    # agno logs through whichever of its three loggers the last agent, team or workflow switched to.
    loggers = [agno_log.agent_logger, agno_log.team_logger, agno_log.workflow_logger]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield messages
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def is_summary_request(body: Mapping[str, Any]) -> bool:
    """agno's summariser call: its own system prompt, then the transcript."""
    first = body["messages"][0]
    opening = DEFAULT_COMPACTION_PROMPT[:60]
    return first.get("role") in {"system", "developer"} and str(first.get("content", "")).startswith(opening)


def responder(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The summariser gets :data:`SUMMARY`; an agent asked to look something up calls the search tool
    once, with a pattern full of regex metacharacters; anything else is echoed."""
    messages = body["messages"]
    if is_summary_request(body):
        return {"content": SUMMARY}
    last = messages[-1]
    if last.get("role") == "tool":
        return {"content": f"Found: {last.get('content')}"}
    if "look up" in str(last.get("content", "")):
        return {"tool_calls": [tool_call("search_compacted_history", {"pattern": "zx-9.4 (URGENT)|no such"})]}
    return {"content": f"ok: {str(last.get('content', ''))[:20]}"}


def make_agent(db: Any, server: LocalOpenAIServer, **kwargs: Any) -> Agent:
    return Agent(
        model=OpenAIChat(id="gpt-4o-mini", base_url=server.base_url, api_key="test"),
        db=db,
        session_id="fold-me",
        user_id="alice",
        add_history_to_context=True,
        telemetry=False,
        **kwargs,
    )


def test_an_agent_on_mongodb_keeps_compaction_on_folds_and_reads_the_fold_back(store: Store) -> None:
    compaction = Compaction(compact_at_tokens=400, uncompacted_runs=1)
    with agno_warnings() as warnings, LocalOpenAIServer(responder=responder) as server:
        agent = make_agent(store.db, server, compaction=compaction)
        assert agent.compaction is compaction  # not turned off
        agent.run("My ticket is ZX-9.4 (urgent). " + "Some long context about it. " * 40)
        for turn in range(4):
            agent.run(f"Turn {turn}: " + "more padding words here. " * 40)
            if store.raw.agno_compactions.count_documents({}):
                break
        assert not [m for m in warnings if any(sign in m for sign in STORAGE_WARNINGS)], warnings

        (stored,) = store.raw.agno_compactions.find({})
        assert (stored["session_id"], stored["user_id"], stored["summary"]) == ("fold-me", "alice", SUMMARY)
        assert "ZX-9.4 (urgent)" in stored["archived_messages"] and stored["messages_compacted"] > 0
        fold_run = stored["run_id"]

        # A new agent (a new process would build exactly this) reads the fold back and sends it.
        server.clear_requests()
        store.commands.clear()
        fresh = make_agent(store.db, server, compaction=Compaction(compact_at_tokens=100_000, uncompacted_runs=1))
        answer = fresh.run("Please look up my ticket")
        reads = [sent for sent in store.commands.sent if sent.get("find") == "agno_compactions"]
        assert reads and all(sent["filter"]["session_id"] == "fold-me" for sent in reads)
        first = server.requests[0]
        sent_text = json.dumps(first["messages"])
        assert SUMMARY_PREFIX.strip() in sent_text and SUMMARY in sent_text
        assert "My ticket is ZX-9.4" not in sent_text  # the folded turn is replaced by the summary
        assert any(tool["function"]["name"] == "search_compacted_history" for tool in first.get("tools", []))
        # The agent's search went to search_compactions (literal, case-insensitive) and found the turn.
        assert "ZX-9.4 (urgent)" in str(answer.content)
        assert any(sent.get("filter", {}).get("archived_messages") for sent in reads)
    assert store.db.get_compactions_for_session("fold-me")[0]["run_id"] == fold_run
