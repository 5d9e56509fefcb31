"""Bad input is refused with ``InvalidInputError`` naming the argument, and malformed stored documents
raise ``CorruptDocumentError`` naming the document: never a raw ``OverflowError``,
``UnicodeEncodeError``, ``TypeError`` or Pydantic ``ValidationError`` (issue 9, item 10).

BSON holds signed 64-bit ints and UTF-8 strings only: an int of 2**63 or a string with a lone
surrogate made PyMongo fail while encoding the command. Each case below runs on every client flavour
(PyMongo, PyMongo async, Motor) and checks that no command reached the server.
"""

from __future__ import annotations

from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.schemas.evals import EvalRunRecord, EvalType
from agno.db.schemas.knowledge import KnowledgeRow
from agno.db.schemas.memory import UserMemory
from agno.session import AgentSession, WorkflowSession

from agno_mongo import CorruptDocumentError, InvalidInputError
from agno_mongo.contract.checks import check_choice, check_int, check_page, check_str, check_table_name
from agno_mongo.schema.codec import CorruptValueError
from tests.conftest import Store, assert_refused, call

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
TOO_BIG = 2**63
TOO_SMALL = -(2**63) - 1
LONE = "caf\ud800"  # a lone surrogate: a Python str, but not encodable as UTF-8
RUN = {"session_id": "s1", "run_id": "r1", "reason": "stop"}

INTS = [
    ("get_sessions", {"limit": TOO_BIG}, "limit"),
    ("get_sessions", {"limit": 10, "page": TOO_BIG}, "page"),
    ("get_sessions", {"limit": 2**62, "page": 3}, "page"),  # each fits, the skip they make does not
    ("get_sessions", {"start_timestamp": TOO_BIG}, "start_timestamp"),
    ("get_sessions", {"start_timestamp": TOO_SMALL}, "start_timestamp"),
    ("get_sessions", {"end_timestamp": TOO_SMALL}, "end_timestamp"),
    ("get_session", {"session_id": "s1", "runs_limit": TOO_BIG}, "runs_limit"),
    ("get_runs", {"limit": TOO_BIG}, "limit"),
    ("get_runs", {"limit": 10, "page": TOO_BIG}, "page"),
    ("upsert_run", {"run": {"run_id": "r1"}, "session_id": "s1", "run_index": TOO_BIG}, "run_index"),
    ("delete_orphaned_overflow", {"older_than_seconds": TOO_BIG}, "older_than_seconds"),
    ("get_user_memories", {"limit": TOO_BIG}, "limit"),
    ("get_user_memories", {"limit": 10, "page": TOO_BIG}, "page"),
    ("get_user_memory_stats", {"limit": TOO_BIG}, "limit"),
    ("get_learnings", {"limit": TOO_BIG}, "limit"),
    ("list_learnings", {"limit": TOO_BIG}, "limit"),
    ("list_learnings", {"page": TOO_BIG}, "page"),
    ("get_learnings_user_stats", {"limit": TOO_BIG}, "limit"),
    ("get_eval_runs", {"limit": TOO_BIG}, "limit"),
    ("get_eval_runs", {"limit": 10, "page": TOO_BIG}, "page"),
    ("get_knowledge_contents", {"limit": TOO_BIG}, "limit"),
    ("get_traces", {"limit": TOO_BIG}, "limit"),
    ("get_traces", {"page": TOO_BIG}, "page"),
    ("get_traces", {"limit": 2**62, "page": 3}, "page"),
    ("get_traces", {"filter_expr": {"op": "GT", "key": "duration_ms", "value": TOO_BIG}}, "filter_expr"),
    ("get_trace_stats", {"limit": TOO_BIG}, "limit"),
    ("get_trace_stats", {"page": TOO_BIG}, "page"),
    ("get_spans", {"trace_id": "t1", "limit": TOO_BIG}, "limit"),
]

TEXTS = [
    ("get_sessions", {"session_name": LONE}, "session_name"),
    ("rename_session", {"session_id": "s1", "session_type": SessionType.AGENT, "session_name": LONE}, "session_name"),
    ("cancel_pending_run", {**RUN, "reason": LONE}, "reason"),
    ("get_user_memories", {"search_content": LONE}, "search_content"),
    ("get_user_memories", {"topics": [LONE]}, "topics[0]"),
    ("get_learning", {"learning_type": LONE}, "learning_type"),
    ("get_learning", {"learning_type": "profile", "namespace": LONE}, "namespace"),
    ("get_learnings", {"entity_id": LONE}, "entity_id"),
    ("get_learnings", {"entity_type": LONE}, "entity_type"),
    ("list_learnings", {"namespace": LONE}, "namespace"),
    ("get_learnings_user_stats", {"learning_type": LONE}, "learning_type"),
    ("delete_user_learnings", {"user_id": "alice", "learning_type": LONE}, "learning_type"),
    ("upsert_learning", {"id": "l1", "learning_type": LONE, "content": {}}, "learning_type"),
    ("upsert_learning", {"id": "l1", "learning_type": "profile", "content": {}, "namespace": LONE}, "namespace"),
    ("upsert_learning", {"id": "l1", "learning_type": "profile", "content": {}, "entity_type": LONE}, "entity_type"),
    ("rename_eval_run", {"eval_run_id": "e1", "name": LONE}, "name"),
    ("get_knowledge_contents", {"linked_to": LONE}, "linked_to"),
    ("get_traces", {"status": LONE}, "status"),
    ("get_traces", {"filter_expr": {"op": "CONTAINS", "key": "name", "value": LONE}}, "filter_expr"),
    ("get_trace_stats", {"filter_expr": {"op": "EQ", "key": "status", "value": LONE}}, "filter_expr"),
    ("get_metrics", {"user_id": LONE}, "user_id"),
]

CHOICES = [
    ("cancel_pending_run", {**RUN, "expected_status": {"$ne": None}}, "expected_status"),
    ("cancel_pending_run", {**RUN, "expected_status": ["PENDING"]}, "expected_status"),
    ("cancel_pending_run", {**RUN, "expected_status": 1}, "expected_status"),
    ("cancel_pending_run", {**RUN, "expected_status": "CANCELLED"}, "expected_status"),
]

BAD_TABLE_NAMES = [{"$ne": None}, {"$regex": ".*"}, ["agno_sessions"], 5, None, "", "$cmd", "a\0b", LONE]
TABLES = [
    *[("get_latest_schema_version", {"table_name": name}, "table_name") for name in BAD_TABLE_NAMES],
    *[("upsert_schema_version", {"table_name": name, "version": "2.0.0"}, "table_name") for name in BAD_TABLE_NAMES],
    *[
        ("upsert_schema_version", {"table_name": "agno_sessions", "version": version}, "version")
        for version in [{"$set": {"version": "9"}}, 5, None, LONE]
    ],
]

RECORDS = [
    ("upsert_session", {"session": WorkflowSession(session_id="s1", workflow_name=LONE)}, "session.workflow_name"),
    ("upsert_session", {"session": AgentSession(session_id="s1", created_at=TOO_BIG)}, "session.created_at"),
    ("upsert_sessions", {"sessions": [AgentSession(session_id="s1", updated_at=TOO_SMALL)]}, "sessions[0].updated_at"),
    ("upsert_user_memory", {"memory": UserMemory(memory="m", memory_id="m1", input=LONE)}, "memory.input"),
    ("upsert_user_memory", {"memory": UserMemory(memory="m", memory_id="m1", topics=[LONE])}, "memory.topics.0"),
    ("upsert_user_memory", {"memory": UserMemory(memory="m", memory_id="m1", created_at=TOO_BIG)}, "memory.created_at"),
    ("upsert_memories", {"memories": [UserMemory(memory="m", memory_id="m1", feedback=LONE)]}, "memories[0].feedback"),
    ("upsert_knowledge_content", {"knowledge_row": KnowledgeRow(name=LONE, description="d")}, "knowledge_row.name"),
    (
        "upsert_knowledge_content",
        {"knowledge_row": KnowledgeRow(name="n", description="d", size=TOO_BIG)},
        "knowledge_row.size",
    ),
    (
        "upsert_knowledge_content",
        {"knowledge_row": KnowledgeRow(name="n", description="d", linked_to=LONE)},
        "knowledge_row.linked_to",
    ),
    (
        "create_eval_run",
        {"eval_run": EvalRunRecord(run_id="e1", eval_type=EvalType.ACCURACY, eval_data={}, name=LONE)},
        "eval_run.name",
    ),
]


@pytest.mark.parametrize(
    ("method", "kwargs", "field"),
    [pytest.param(*case, id=f"{case[0]}-{case[2]}") for case in INTS + TEXTS + CHOICES + TABLES + RECORDS],
)
async def test_bad_input_is_refused_naming_the_argument(
    store: Store, method: str, kwargs: dict[str, Any], field: str
) -> None:
    await assert_refused(store, method, kwargs, field)


@pytest.mark.parametrize(
    ("part", "change", "field"),
    [
        ("trace", {"name": LONE}, "trace.name"),
        ("trace", {"status": LONE}, "trace.status"),
        ("trace", {"duration_ms": TOO_BIG}, "trace.duration_ms"),
        ("span", {"status_message": LONE}, "span.status_message"),
        ("span", {"duration_ms": TOO_BIG}, "span.duration_ms"),
        ("spans", {"span_kind": LONE}, "spans[0].span_kind"),
    ],
)
async def test_bad_traces_and_spans_are_refused(store: Store, part: str, change: dict[str, Any], field: str) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="agno.tracing needs opentelemetry-sdk")
    from datetime import UTC, datetime

    from agno.tracing.schemas import Span, Trace

    when = datetime(2025, 3, 1, tzinfo=UTC)
    times = {"start_time": when, "end_time": when, "duration_ms": 0, "created_at": when}
    if part == "trace":
        context = dict.fromkeys(("run_id", "session_id", "user_id", "agent_id", "team_id", "workflow_id"))
        values = {"trace_id": "t1", "name": "run", "status": "OK", "total_spans": 0, "error_count": 0, **context}
        trace = Trace(**{**values, **times, **change})
        await assert_refused(store, "upsert_trace", {"trace": trace}, field)
        return
    values = {"span_id": "sp1", "trace_id": "t1", "parent_span_id": None, "name": "s", "span_kind": "INTERNAL"}
    span = Span(**{**values, "status_code": "OK", "status_message": None, "attributes": {}, **times, **change})
    if part == "span":
        await assert_refused(store, "create_span", {"span": span}, field)
    else:
        await assert_refused(store, "create_spans", {"spans": [span]}, field)


async def test_an_operator_table_name_leaves_real_stamps_alone(store: Store) -> None:
    await call(store.db.upsert_schema_version("agno_sessions", "2.0.0"))
    await assert_refused(store, "upsert_schema_version", {"table_name": {"$ne": None}, "version": "9"}, "table_name")
    assert await call(store.db.get_latest_schema_version("agno_sessions")) == "2.0.0"
    stamps = list(store.raw[store.db.versions_table_name].find({}, {"_id": False}))
    assert stamps == [{"table_name": "agno_sessions", "version": "2.0.0"}]


# --- malformed stored documents ----------------------------------------------------------------------------


def session_document(session_id: str, **fields: Any) -> dict[str, Any]:
    return {"_id": session_id, "session_id": session_id, "session_type": "agent", "runs": [], **fields}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (session_document("bad-version", schema_version="abc"), "schema_version"),
        (session_document("bad-user", user_id=123), "user_id"),
        (session_document("bad-type", session_type="bogus"), "session_type"),
        (session_document("bad-data", session_data="not a dict"), "session_data"),
        (session_document("bad-runs", runs="not a list"), "runs"),
    ],
    ids=lambda value: value["_id"] if isinstance(value, dict) else value,
)
async def test_a_malformed_session_raises_corrupt_document_error(
    store: Store, document: dict[str, Any], field: str
) -> None:
    store.raw[store.db.collection_names["sessions"]].insert_one(document)
    for read in (
        lambda: store.db.get_session(document["_id"]),
        lambda: store.db.get_session(document["_id"], deserialize=False),
        lambda: store.db.get_sessions(),
    ):
        with pytest.raises(CorruptDocumentError) as error:
            await call(read())
        assert (error.value.collection, error.value.document_id, error.value.field) == (
            "sessions",
            document["_id"],
            field,
        )
        assert repr(document["_id"]) in str(error.value) and field in str(error.value)


async def test_corrupt_codec_data_names_the_document_and_the_path(store: Store) -> None:
    document = session_document("bad-codec", session_data={"a": {"%agno": "from-the-future", "v": 1}})
    store.raw[store.db.collection_names["sessions"]].insert_one({**document, "_codec": {"session_data": 1}})
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_session("bad-codec"))
    assert isinstance(error.value, CorruptValueError)  # what decode raised before; still caught as such
    assert (error.value.document_id, error.value.field) == ("bad-codec", "session_data.a")
    assert "bad-codec" in str(error.value) and "from-the-future" in str(error.value)


@pytest.mark.parametrize(
    ("role", "document", "method", "kwargs", "field"),
    [
        ("memories", {"_id": "m1", "memory_id": "m1", "memory": 5}, "get_user_memory", {"memory_id": "m1"}, "memory"),
        (
            "learnings",
            {"_id": "l1", "learning_id": "l1", "learning_type": "profile", "content": "x"},
            "get_learning_by_id",
            {"id": "l1"},
            "content",
        ),
        (
            "evals",
            {"_id": "e1", "run_id": "e1", "eval_type": "bogus", "eval_data": {}},
            "get_eval_run",
            {"eval_run_id": "e1"},
            "eval_type",
        ),
        ("knowledge", {"_id": "k1", "name": 5, "description": "d"}, "get_knowledge_content", {"id": "k1"}, "name"),
    ],
)
async def test_other_malformed_records_raise_corrupt_document_error(
    store: Store, role: str, document: dict[str, Any], method: str, kwargs: dict[str, Any], field: str
) -> None:
    store.raw[store.db.collection_names[role]].insert_one(document)
    with pytest.raises(CorruptDocumentError) as error:
        await call(getattr(store.db, method)(**kwargs))
    assert (error.value.collection, error.value.document_id, error.value.field) == (role, document["_id"], field)


# --- the checks themselves, without a server ----------------------------------------------------------------


def test_check_int_takes_exactly_the_signed_64_bit_range() -> None:
    assert check_int("n", INT64_MAX) == INT64_MAX
    assert check_int("n", INT64_MIN) == INT64_MIN
    assert check_int("n", None) is None
    for value in (TOO_BIG, TOO_SMALL, 10**30, True, 1.0, "1"):
        with pytest.raises(InvalidInputError) as error:
            check_int("n", value)
        assert error.value.field == "n"
    with pytest.raises(InvalidInputError, match="at least 0"):
        check_int("n", -1, minimum=0)


def test_check_page_refuses_a_skip_beyond_64_bits() -> None:
    assert check_page(10, 3) == (10, 20)
    assert check_page(2**62, 2) == (2**62, 2**62)
    with pytest.raises(InvalidInputError) as error:
        check_page(2**62, 3)
    assert error.value.field == "page"


def test_check_str_takes_any_text_utf8_can_hold() -> None:
    for text in ("", "plain", "café", "日本語", "\U0001f600"):
        assert check_str("s", text) == text
    for value in (LONE, "\udfff", "ok\ud800ok", b"bytes", None, 5, {"$ne": None}):
        with pytest.raises(InvalidInputError) as error:
            check_str("s", value)
        assert error.value.field == "s"


def test_check_choice_refuses_anything_not_listed() -> None:
    allowed = {"PENDING", "RUNNING"}
    assert check_choice("expected_status", "RUNNING", allowed) == "RUNNING"
    for value in ("pending", "CANCELLED", "", None, 1, {"$ne": None}, ["PENDING"]):
        with pytest.raises(InvalidInputError) as error:
            check_choice("expected_status", value, allowed)
        assert error.value.field == "expected_status"


def test_check_table_name() -> None:
    assert check_table_name("table_name", "agno_sessions") == "agno_sessions"
    for value in BAD_TABLE_NAMES:
        with pytest.raises(InvalidInputError) as error:
            check_table_name("table_name", value)
        assert error.value.field == "table_name"


async def test_a_corrupt_stored_run_names_its_session(store: Store) -> None:
    store.raw.agno_sessions.insert_one(
        {"_id": "bad-run", "session_id": "bad-run", "session_type": "agent", "runs": [{"run_id": "r", "_codec": 99}]}
    )
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_run("r"))
    assert error.value.document_id == "bad-run"
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_runs(session_id="bad-run"))
    assert error.value.document_id == "bad-run"
