"""``search_learnings`` (agno's LearningMachine entity search) against agno's own SQLite store.

agno's SQL stores match ``content ILIKE`` patterns over the JSON text of ``content``; agno-mongo
keeps ``content`` as a subdocument and matches a derived ``search_text`` (that JSON text,
lower-cased). Each scenario is written to both stores and every answer compared, on every client
flavour. agno's ``AsyncSqliteDb`` has no ``search_learnings`` (agno's entity memory then falls back
to scanning the 50 newest rows), so the reference for the async flavours is agno's sync
``SqliteDb``, which has it: the semantics are the same.
"""

from __future__ import annotations

import json
import re
import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from agno_mongo.ops import learnings as ops
from agno_mongo.ops.command import Command, Written
from agno_mongo.schema.learnings import SEARCH_TEXT, search_text
from tests.conftest import Store, assert_refused, call
from tests.differential import normalised

# agno's SqliteDb runs ILIKE on a JSON column, which SQLAlchemy warns about on every search.
pytestmark = pytest.mark.filterwarnings("ignore:Type object .*JSON.* does not include operator")


@pytest.fixture
async def reference(store: Store, oracle: Any, tmp_path: Any) -> Any:
    """agno's SQLite store with ``search_learnings``: the oracle, or for async flavours a sync twin."""
    from agno.db.sqlite import SqliteDb

    if not store.is_async:
        return oracle
    with pytest.raises(NotImplementedError):  # if agno adds it, compare with the async one instead
        await oracle.search_learnings("x")
    return SqliteDb(db_file=str(tmp_path / "reference.sqlite"))


ROWS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # id, content, scope
    ("e1", {"name": "Sarah Chen", "facts": ["on Harbor ingest"]}, {"namespace": "global", "entity_type": "person"}),
    ("e2", {"name": "sarah_chen", "aliases": ["S. Chen"]}, {"namespace": "global", "entity_type": "person"}),
    ("e3", {"name": "Harbor", "note": "multi-tenant, 50% done"}, {"namespace": "global", "entity_type": "project"}),
    ("e4", {"name": "Café Olé", "city": "Zürich", "greek": "ΟΣ"}, {"namespace": "global", "entity_type": "company"}),
    ("e5", {"regex": "a.b*c(d)[e]{2}|^x$ \\d+?", "quote": 'say "hi"', "path": "C:\\tmp"}, {"namespace": "global"}),
    ("e6", {"name": "sarahXchen", "text": "line1\nline2\ttab"}, {"namespace": "user", "user_id": "alice"}),
    ("e7", {"name": "Sarah Chen", "owner": "bob"}, {"namespace": "user", "user_id": "bob", "agent_id": "ag"}),
    ("e8", {"name": "SARAH CHEN", "n": 1, "ok": True, "x": None}, {"namespace": "user", "user_id": "", "team_id": "t"}),
    ("e9", {"kelvin": "\u212a", "k": "kilo"}, {"namespace": "global", "session_id": "s1", "entity_id": "kel"}),
    ("p1", {"name": "Sarah Chen", "prefers": "tea"}, {"user_id": "alice", "learning_type": "user_profile"}),
]

QUERIES = [
    "sarah chen",
    "SARAH_CHEN",
    "Sarah  Chen",
    "sarah-chen",
    " sarah chen ",
    'name": "sarah chen',
    '"sarah chen"',
    "harbor",
    "multi tenant",
    "50%",
    "%",
    "%%",
    "_",
    " _ ",
    "",
    "a.b*c(d)[e]{2}|^x$",
    "a.b",
    ".*",
    "^x",
    "x$",
    "|",
    "\\d+?",
    "[e]",
    "(?i)",
    'say "hi"',
    "C:\\tmp",
    "\\",
    "café",
    "CAFÉ",
    "zürich",
    "ΟΣ",
    "\u212a",
    "k",
    "line1\nline2",
    "line1 line2",
    "\\n",
    "true",
    "null",
    "nothing like it",
]

FILTERS: list[dict[str, Any]] = [
    {},
    {"limit": 2},
    {"limit": 1},
    {"limit": 0},
    {"namespace": "global"},
    {"namespace": "global", "entity_type": "person", "limit": 1},
    {"namespace": "user", "user_id": "alice"},
    {"user_id": ""},
    {"user_id": "bob", "agent_id": "ag"},
    {"team_id": "t"},
    {"session_id": "s1", "entity_id": "kel"},
    {"learning_type": "user_profile"},
    {"learning_type": "entity_memory", "limit": 3},
    {"workflow_id": "wf"},  # upsert_learning never sets it: nothing matches (agno's documented behaviour)
]


async def seed(store: Store, reference: Any) -> None:
    for order, (learning_id, content, scope) in enumerate(ROWS):
        kwargs = {"learning_type": "entity_memory", **scope}
        await call(store.db.upsert_learning(id=learning_id, content=content, **kwargs))
        reference.upsert_learning(id=learning_id, content=content, **kwargs)
        stamp(store, reference, learning_id, 1000 + order)


def stamp(store: Store, reference: Any, learning_id: str, updated_at: int) -> None:
    """The same distinct ``updated_at`` on both (agno orders by it; writes in one second tie)."""
    store.raw.agno_learnings.update_one({"_id": learning_id}, {"$set": {"updated_at": updated_at}})
    with reference.db_engine.begin() as connection:
        update = text("UPDATE agno_learnings SET updated_at = :t WHERE learning_id = :i")
        connection.execute(update, {"t": updated_at, "i": learning_id})


def same(rows: list[dict[str, Any]]) -> Any:
    return normalised(rows, times=frozenset({"created_at"}))


@pytest.mark.parametrize("filters", FILTERS, ids=[repr(f) for f in FILTERS])
async def test_search_matches_agnos_sqlite(store: Store, reference: Any, filters: dict[str, Any]) -> None:
    await seed(store, reference)
    for query in QUERIES:
        ours = await call(store.db.search_learnings(query, **filters))
        theirs = reference.search_learnings(query, **filters)
        assert same(ours) == same(theirs), (query, filters)


async def test_what_the_matches_are(store: Store, reference: Any) -> None:
    """The differential test's answers, pinned: separators, case, JSON text, literal metacharacters."""
    await seed(store, reference)

    async def ids(query: str, **filters: Any) -> list[str]:
        return [row["learning_id"] for row in await call(store.db.search_learnings(query, **filters))]

    # newest first; space, "_" and "-" runs match any one character, case folds
    assert await ids("sarah chen") == ["p1", "e8", "e7", "e6", "e2", "e1"]
    assert await ids("SARAH-CHEN", namespace="global") == ["e2", "e1"]
    assert await ids('name": "sarah chen"') == ["p1", "e8", "e7", "e6", "e2", "e1"]  # the JSON text, quotes too
    assert await ids("sarah chen", limit=2) == ["p1", "e8"]
    # regex metacharacters, % and backslashes are literal
    assert await ids("a.b*c(d)[e]{2}|^x$") == ["e5"]
    assert await ids(".*") == []
    assert await ids("50%") == ["e3"]
    assert await ids("C:\\tmp") == ["e5"]
    # non-ASCII is stored \\u-escaped (ensure_ascii): each such character matches any six
    assert await ids("Zürich") == ["e4"]
    # nothing to search for
    assert await ids("%") == await ids("  ") == await ids("_") == []
    assert await ids("sarah chen", user_id="") == ["e8"]


async def test_every_write_keeps_the_search_text_in_step(store: Store, reference: Any) -> None:
    content = {"name": "Ada Lovelace", "when": "1843"}
    await call(store.db.upsert_learning(id="w1", learning_type="t", content=content, user_id="u"))
    raw = store.raw.agno_learnings.find_one({"_id": "w1"})
    assert raw[SEARCH_TEXT] == json.dumps(content).lower()
    await call(store.db.upsert_learning(id="w1", learning_type="t", content={"name": "Grace Hopper"}, user_id="u"))
    assert store.raw.agno_learnings.find_one({"_id": "w1"})[SEARCH_TEXT] == '{"name": "grace hopper"}'
    await call(store.db.update_learning("w1", {"name": "Katherine Johnson"}))
    assert store.raw.agno_learnings.find_one({"_id": "w1"})[SEARCH_TEXT] == '{"name": "katherine johnson"}'
    # ... and the reads that return rows leave it on the server
    assert SEARCH_TEXT not in (await call(store.db.get_learning_by_id("w1")))
    reference.upsert_learning(id="w1", learning_type="t", content=content, user_id="u")
    reference.upsert_learning(id="w1", learning_type="t", content={"name": "Grace Hopper"}, user_id="u")
    reference.update_learning("w1", {"name": "Katherine Johnson"})
    for query in ("katherine johnson", "grace", "ada"):
        ours = await call(store.db.search_learnings(query))
        assert same(ours) == same(reference.search_learnings(query)), query
    assert [row["learning_id"] for row in await call(store.db.search_learnings("katherine"))] == ["w1"]


async def test_rows_written_before_the_search_text_are_backfilled(store: Store, reference: Any) -> None:
    """Rows an older agno-mongo wrote (no ``search_text``) are found all the same: the first search
    that meets them fills the text in for its whole scope, then searches are one command again."""
    await seed(store, reference)
    old = ["e1", "e3", "e6", "e7", "p1"]
    store.raw.agno_learnings.update_many({"_id": {"$in": old}}, {"$unset": {SEARCH_TEXT: ""}})
    # A row as an older version stored it, written straight to the collection (codec-escaped key too).
    legacy = {"na.me": "Sarah Chen", "$v": 1}
    await call(store.db.upsert_learning(id="old", learning_type="entity_memory", content=legacy, namespace="global"))
    store.raw.agno_learnings.update_one({"_id": "old"}, {"$unset": {SEARCH_TEXT: ""}})
    reference.upsert_learning(id="old", learning_type="entity_memory", content=legacy, namespace="global")
    stamp(store, reference, "old", 2000)

    store.commands.clear()
    ours = await call(store.db.search_learnings("sarah chen", namespace="global", limit=2))
    assert store.commands.names == ["aggregate", "find", "update", "aggregate"]
    assert same(ours) == same(reference.search_learnings("sarah chen", namespace="global", limit=2))
    assert [row["learning_id"] for row in ours] == ["old", "e2"]
    # the scope searched (namespace "global") is filled in; the rest waits for its own first search
    for document in store.raw.agno_learnings.find({"namespace": "global"}):
        assert SEARCH_TEXT in document, document["_id"]
    assert store.raw.agno_learnings.find_one({"_id": "old"})[SEARCH_TEXT] == search_text(legacy)
    assert store.raw.agno_learnings.count_documents({SEARCH_TEXT: {"$exists": False}}) == 3  # e6, e7, p1

    store.commands.clear()
    assert same(await call(store.db.search_learnings("harbor", namespace="global"))) == same(
        reference.search_learnings("harbor", namespace="global")
    )
    assert store.commands.names == ["aggregate"]
    for query in QUERIES:  # the rest of the store, unscoped: backfilled by the first of these
        assert same(await call(store.db.search_learnings(query))) == same(reference.search_learnings(query)), query
    assert store.raw.agno_learnings.count_documents({SEARCH_TEXT: {"$exists": False}}) == 0


async def test_old_rows_crowding_a_limited_page_do_not_shorten_it(store: Store, reference: Any) -> None:
    """The newest rows lack the text and do not match: after the backfill the page is filled from
    older matching rows, exactly as agno's SQL would fill it."""
    for index in range(6):
        content = {"name": "Sarah Chen"} if index < 3 else {"name": f"other {index}"}
        await call(store.db.upsert_learning(id=f"r{index}", learning_type="t", content=content))
        reference.upsert_learning(id=f"r{index}", learning_type="t", content=content)
        stamp(store, reference, f"r{index}", 100 + index)
    store.raw.agno_learnings.update_many({}, {"$unset": {SEARCH_TEXT: ""}})
    ours = await call(store.db.search_learnings("sarah chen", limit=2))
    assert same(ours) == same(reference.search_learnings("sarah chen", limit=2))
    assert [row["learning_id"] for row in ours] == ["r2", "r1"]


def test_a_row_the_backfill_cannot_fill_is_checked_in_python() -> None:
    """If a row still has no text after the backfill (an older writer keeps rewriting it), the
    search checks its content itself: kept when it matches, dropped when not."""
    regex = ops.search_regex("sarah chen")
    assert regex is not None
    flagged = {ops.UNSEARCHED: True, "learning_type": "t", "learning_id": "x"}
    hit = {**flagged, "_id": "hit", "content": {"name": "Sarah Chen"}}
    miss = {**flagged, "_id": "miss", "content": {"name": "nobody"}}
    fresh = {"_id": "fresh", "content": {"name": "sarah_chen"}, ops.UNSEARCHED: False}
    plan = ops.search_learnings_plan({}, regex, None)
    sent: list[Command] = []
    step = next(plan)
    answer: Any = None
    try:
        while True:
            assert isinstance(step, Command)
            sent.append(step)
            if step.op == "aggregate":
                answer = [hit, fresh, miss]
            elif step.op == "find":
                answer = [hit, miss]
            else:
                answer = Written()
            step = plan.send(answer)
    except StopIteration as done:
        result = done.value
    assert [command.op for command in sent] == ["aggregate", "find", "bulk_write", "aggregate"]
    assert [row["_id"] for row in result] == ["hit", "fresh"]


async def test_agnos_entity_memory_searches_on_the_server(store: Store) -> None:
    """agno's EntityMemoryStore (LearningMachine) finds an entity by a fact behind 55 newer ones
    through ``search_learnings``, without falling back to its client-side scan of recent rows."""
    from agno.learn.config import EntityMemoryConfig
    from agno.learn.stores.entity_memory import EntityMemoryStore

    memory = EntityMemoryStore(config=EntityMemoryConfig(db=store.db, namespace="global"))
    remember = memory.aremember_about if store.is_async else memory.remember_about
    search = memory.asearch if store.is_async else memory.search
    await call(remember("Sarah Chen", "person", facts=["works on Harbor ingest"]))
    for index in range(55):
        await call(remember(f"Project {index}", "project", facts=[f"milestone {index}"]))
    store.commands.clear()
    found = await call(search("harbor  INGEST"))
    assert [entity.name for entity in found] == ["Sarah Chen"]
    assert "aggregate" in store.commands.names and not memory._degraded_search_logged
    assert [entity.name for entity in await call(search("milestone 54"))] == ["Project 54"]


async def test_a_backfill_whose_reply_is_lost_is_sent_again_harmlessly(through: SimpleNamespace) -> None:
    """The backfill's updates are conditional ``$set``s of a derived value: sent again after a lost
    reply they change nothing more, and the search answers as if nothing had happened."""
    db, proxy, raw = through.db, through.proxy, through.raw
    for index, name in enumerate(["Sarah Chen", "someone else", "sarah_chen"]):
        await call(db.upsert_learning(id=f"r{index}", learning_type="t", content={"name": name}))
        raw.agno_learnings.update_one({"_id": f"r{index}"}, {"$set": {"updated_at": 100 + index}})
    raw.agno_learnings.update_many({}, {"$unset": {SEARCH_TEXT: ""}})
    proxy.drop_next("update")
    rows = await call(db.search_learnings("sarah chen"))
    assert proxy.dropped, "the reply was not dropped"
    assert [row["learning_id"] for row in rows] == ["r2", "r0"]
    assert [d[SEARCH_TEXT] for d in raw.agno_learnings.find().sort("_id")] == [
        '{"name": "sarah chen"}',
        '{"name": "someone else"}',
        '{"name": "sarah_chen"}',
    ]


# --- the match itself, against SQLite's LIKE with agno's own patterns, without a server -----------------------

TEXT_CHARS = st.sampled_from(list("aAbBzZ _-%\\\"'.*()[]{}|^$?+#:,0129\n\té€ΣσΚKk\u212a\x00\x7f"))


@settings(max_examples=600, deadline=None)
@given(
    content=st.dictionaries(st.text(TEXT_CHARS, max_size=4), st.text(TEXT_CHARS, max_size=12), max_size=3),
    query=st.text(TEXT_CHARS, max_size=8),
)
def test_the_regex_matches_what_sqlites_like_matches(content: dict[str, str], query: str) -> None:
    from agno.db.utils import json_serializer, learning_search_patterns

    stored = json_serializer(content)
    patterns = learning_search_patterns(query)
    with sqlite3.connect(":memory:") as connection:
        expected = any(
            connection.execute("SELECT lower(?) LIKE lower(?) ESCAPE '\\'", (stored, pattern)).fetchone()[0]
            for pattern in patterns
        )
    regex = ops.search_regex(query)
    found = regex is not None and re.search(regex, search_text(content), re.DOTALL) is not None
    assert found == expected, (stored, patterns, regex)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": {"$regex": "."}}, "query"),
        ({"query": None}, "query"),
        ({"query": "x", "user_id": {"$ne": None}}, "user_id"),
        ({"query": "x", "workflow_id": {"$exists": True}}, "workflow_id"),
        ({"query": "x", "namespace": ["global"]}, "namespace"),
        ({"query": "x", "entity_type": 1}, "entity_type"),
        ({"query": "x", "limit": -1}, "limit"),
        ({"query": "x", "limit": "5"}, "limit"),
        ({"query": "\ud800"}, "query"),
    ],
)
async def test_bad_arguments_are_refused_before_any_command(store: Store, kwargs: dict[str, Any], field: str) -> None:
    await assert_refused(store, "search_learnings", kwargs, field)
