"""Traces and spans through MongoDb / AsyncMongoDb on PyMongo, PyMongo async and Motor.

Each ``store`` test runs once per client flavour against a real wire server. The end-to-end tests
switch agno's tracing on (OpenTelemetry SDK + OpenInference's Agno instrumentor + agno's
``DatabaseSpanExporter``) for real agents and workflows, and read the result back through AgentOS's
trace routes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient

pytest.importorskip("opentelemetry.sdk", reason="agno.tracing needs opentelemetry-sdk")

from agno.tracing.schemas import Span, Trace  # noqa: E402

from agno_mongo import InvalidInputError, MongoDb  # noqa: E402
from agno_mongo.ops import traces as ops  # noqa: E402
from agno_mongo.schema.traces import TraceFields  # noqa: E402
from tests.conftest import Store, assert_refused, call  # noqa: E402

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CONTEXT = ("run_id", "session_id", "user_id", "agent_id", "team_id", "workflow_id")


def at(seconds: float) -> datetime:
    """T0 plus whole milliseconds (what BSON dates keep)."""
    return T0 + timedelta(milliseconds=round(seconds * 1000))


def trace(
    trace_id: str = "t1",
    name: str = "assistant.run",
    start: float = 0,
    end: float = 5,
    status: str = "OK",
    created: float = 0,
    **context: str | None,
) -> Trace:
    return Trace(
        trace_id=trace_id,
        name=name,
        status=status,
        start_time=at(start),
        end_time=at(end),
        duration_ms=int((end - start) * 1000),
        total_spans=1,
        error_count=0,
        run_id=context.get("run_id"),
        session_id=context.get("session_id"),
        user_id=context.get("user_id"),
        agent_id=context.get("agent_id"),
        team_id=context.get("team_id"),
        workflow_id=context.get("workflow_id"),
        created_at=at(created),
    )


def span(
    span_id: str,
    trace_id: str = "t1",
    parent: str | None = None,
    start: float = 0,
    status: str = "OK",
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Span:
    return Span(
        span_id=span_id,
        trace_id=trace_id,
        parent_span_id=parent,
        name=name or f"span-{span_id}",
        span_kind="INTERNAL",
        status_code=status,
        status_message="boom" if status == "ERROR" else None,
        start_time=at(start),
        end_time=at(start + 1),
        duration_ms=1000,
        attributes={"openinference.span.kind": "TOOL", **(attributes or {})},
        created_at=at(start + 1),
    )


def root(trace_id: str = "t1", **overrides: Any) -> Trace:
    """The part of a trace that carries its root span: an agent run of alice's."""
    context = {"run_id": f"run-{trace_id}", "session_id": "s1", "user_id": "alice", "agent_id": "assistant"}
    return trace(trace_id, **{**context, **overrides})


# --- writes --------------------------------------------------------------------------------------------------


async def test_trace_seen_in_parts_merges_into_one_document(store: Store) -> None:
    # The exporter's usual order: a child batch first (no context), then the root batch.
    await call(store.db.upsert_trace(trace(name="get_weather", start=1, end=2, status="ERROR", created=2)))
    await call(store.db.upsert_trace(root(start=0, end=4, created=4)))
    await call(store.db.upsert_trace(trace(name="post_hook", start=3, end=7, created=7, session_id="other")))

    raw = store.raw.agno_traces.find_one({"_id": "t1"})
    assert raw["trace_id"] == "t1" and store.raw.agno_traces.count_documents({}) == 1
    assert raw["name"] == "assistant.run"  # the agent root outranks both children
    assert (raw["start_time"], raw["end_time"], raw["duration_ms"]) == (
        at(0).replace(tzinfo=None),
        at(7).replace(tzinfo=None),
        7000,
    )
    assert isinstance(raw["created_at"], datetime) and raw["created_at"] == at(2).replace(tzinfo=None)  # first part's
    assert raw["session_id"] == "s1" and raw["user_id"] == "alice" and raw["run_id"] == "run-t1"  # first non-null
    assert raw["status"] == "OK"  # the latest part's, as agno's adapters do
    assert "total_spans" not in raw and "error_count" not in raw  # counted from the spans on read


async def test_name_moves_up_to_more_important_roots_only(store: Store) -> None:
    await call(store.db.upsert_trace(trace(name="helper.run", agent_id="helper")))
    await call(store.db.upsert_trace(trace(name="crew.run", team_id="crew")))
    assert store.raw.agno_traces.find_one({"_id": "t1"})["name"] == "crew.run"
    await call(store.db.upsert_trace(trace(name="writer.arun", agent_id="writer")))
    await call(store.db.upsert_trace(trace(name="tool_call")))
    assert store.raw.agno_traces.find_one({"_id": "t1"})["name"] == "crew.run"
    await call(store.db.upsert_trace(trace(name="flow.arun", workflow_id="flow")))
    assert store.raw.agno_traces.find_one({"_id": "t1"})["name"] == "flow.arun"


async def test_workflow_root_after_its_child_takes_the_name(store: Store) -> None:
    # A child-only batch first (no context: create_trace_from_spans blanks it), then the root.
    # agno's own MongoDB adapter keeps "writer.run" here; its SQL adapters (and we) take "flow.run".
    await call(store.db.upsert_trace(trace(name="writer.run")))
    await call(store.db.upsert_trace(trace(name="flow.run", workflow_id="flow", user_id="carol")))
    raw = store.raw.agno_traces.find_one({"_id": "t1"})
    assert raw["name"] == "flow.run" and raw["workflow_id"] == "flow"


async def test_a_retried_part_changes_nothing(store: Store) -> None:
    await call(store.db.upsert_trace(trace(name="tool", start=1, end=2)))
    await call(store.db.upsert_trace(root()))
    before = store.raw.agno_traces.find_one({"_id": "t1"})
    await call(store.db.upsert_trace(root()))
    assert store.raw.agno_traces.find_one({"_id": "t1"}) == before


async def test_names_and_ids_are_stored_literally(store: Store) -> None:
    # A pipeline update would read "$name" as a field path; every value goes in as a literal.
    await call(store.db.upsert_trace(trace(name="$name", session_id="$user_id", user_id="$$ROOT", status="$status")))
    raw = store.raw.agno_traces.find_one({"_id": "t1"})
    assert (raw["name"], raw["session_id"], raw["user_id"], raw["status"]) == ("$name", "$user_id", "$$ROOT", "$status")


async def test_spans_are_native_documents_and_a_retried_batch_is_harmless(store: Store) -> None:
    batch = [
        span("s0", start=0, attributes={"input.value": "hi", "llm.token_count.prompt": 12, "tags": ["a", "b"]}),
        span("s1", parent="s0", start=1),
    ]
    await call(store.db.create_spans(batch))
    await call(store.db.create_spans([*batch, span("s2", parent="s0", start=2, status="ERROR")]))  # retry + one new
    await call(store.db.create_span(batch[0]))

    assert store.raw.agno_spans.count_documents({}) == 3
    raw = store.raw.agno_spans.find_one({"_id": "s0"})
    assert raw["span_id"] == "s0" and raw["trace_id"] == "t1" and isinstance(raw["start_time"], datetime)
    assert raw["attributes"] == {
        "openinference.span.kind": "TOOL",
        "input.value": "hi",
        "llm.token_count.prompt": 12,
        "tags": ["a", "b"],
    }

    loaded = await call(store.db.get_span("s0"))
    assert isinstance(loaded, Span) and loaded.attributes == raw["attributes"]
    assert loaded.start_time == at(0) and loaded.start_time.tzinfo is not None
    assert await call(store.db.get_span("missing")) is None


async def test_each_call_is_one_command(store: Store) -> None:
    await call(store.db.upsert_trace(root()))  # first use of each collection creates its indexes
    await call(store.db.create_span(span("s0")))
    store.commands.clear()

    await call(store.db.upsert_trace(root(end=9)))
    assert store.commands.names == ["update"]
    store.commands.clear()
    await call(store.db.create_spans([span(f"b{i}", parent="s0", start=i) for i in range(50)]))
    assert store.commands.names == ["insert"]
    reads: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
        ("get_trace", ("t1",), {}),
        ("get_trace", (), {"run_id": "run-t1"}),
        ("get_traces", (), {}),
        ("get_traces", (), {"user_id": "alice", "limit": 1, "page": 1}),
        ("get_trace_stats", (), {}),
        ("get_trace_stats", (), {"group_by": "agent"}),
    ]
    for method, args, kwargs in reads:
        store.commands.clear()
        await call(getattr(store.db, method)(*args, **kwargs))
        assert store.commands.names == ["aggregate"], (method, kwargs)
    for method, args in [("get_span", ("s0",)), ("get_spans", ("t1",))]:
        store.commands.clear()
        await call(getattr(store.db, method)(*args))
        assert store.commands.names == ["find"], method

    store.commands.clear()
    await call(store.db.create_spans([]))
    assert await call(store.db.get_trace()) is None
    assert store.commands.names == []


# --- reads ---------------------------------------------------------------------------------------------------


async def test_get_trace_counts_its_spans(store: Store) -> None:
    await call(store.db.upsert_trace(root()))
    await call(store.db.create_spans([span("s0"), span("s1", parent="s0", status="ERROR"), span("x", trace_id="t2")]))

    loaded = await call(store.db.get_trace("t1"))
    assert isinstance(loaded, Trace)
    assert (loaded.trace_id, loaded.name, loaded.total_spans, loaded.error_count) == ("t1", "assistant.run", 2, 1)
    assert (loaded.user_id, loaded.session_id, loaded.agent_id) == ("alice", "s1", "assistant")
    assert loaded.start_time == at(0) and loaded.end_time == at(5) and loaded.duration_ms == 5000
    assert loaded.created_at.tzinfo is not None

    by_run = await call(store.db.get_trace(run_id="run-t1"))
    assert by_run is not None and by_run.trace_id == "t1"
    assert (await call(store.db.get_trace(trace_id="t1", run_id="other"))).trace_id == "t1"  # trace_id wins
    assert await call(store.db.get_trace("missing")) is None
    assert await call(store.db.get_trace(run_id="missing")) is None

    await call(store.db.upsert_trace(trace("t3", start=10, end=11)))
    counted = await call(store.db.get_trace("t3"))
    assert counted.total_spans == 0 and counted.error_count == 0


async def test_get_trace_by_run_id_returns_the_newest(store: Store) -> None:
    await call(store.db.upsert_trace(root("old", run_id="r", start=0, end=1)))
    await call(store.db.upsert_trace(root("new", run_id="r", start=5, end=6)))
    assert (await call(store.db.get_trace(run_id="r"))).trace_id == "new"


async def seed_traces(store: Store) -> None:
    await call(store.db.upsert_trace(root("a1", start=0, end=2, created=2)))
    await call(store.db.upsert_trace(root("a2", start=10, end=12, created=12, status="ERROR", session_id="s2")))
    await call(store.db.upsert_trace(root("b1", start=20, end=30, created=30, user_id="bob", agent_id="other")))
    await call(store.db.upsert_trace(trace("c1", name="crew.run", start=30, end=31, created=31, team_id="crew")))
    await call(store.db.upsert_trace(trace("w1", name="flow.run", start=40, end=45, created=45, workflow_id="flow")))


async def test_get_traces_filters_sort_and_pagination(store: Store) -> None:
    await seed_traces(store)
    await call(store.db.create_spans([span("x", trace_id="a1", status="ERROR"), span("y", trace_id="a1")]))

    async def ids(**kwargs: Any) -> tuple[list[str], int]:
        traces, total = await call(store.db.get_traces(**kwargs))
        return [t.trace_id for t in traces], total

    assert await ids() == (["w1", "c1", "b1", "a2", "a1"], 5)  # newest start first
    assert await ids(user_id="alice") == (["a2", "a1"], 2)
    assert await ids(user_id="nobody") == ([], 0)
    assert await ids(session_id="s2") == (["a2"], 1)
    assert await ids(run_id="run-b1") == (["b1"], 1)
    assert await ids(agent_id="assistant") == (["a2", "a1"], 2)
    assert await ids(team_id="crew") == (["c1"], 1)
    assert await ids(workflow_id="flow") == (["w1"], 1)
    assert await ids(status="ERROR") == (["a2"], 1)
    assert await ids(start_time=at(10)) == (["w1", "c1", "b1", "a2"], 4)  # starts at or after
    assert await ids(end_time=at(12)) == (["a2", "a1"], 2)  # ends at or before
    assert await ids(start_time=at(10), end_time=at(30)) == (["b1", "a2"], 2)
    # A time in another zone is the same instant (agno's ISO strings would compare as text).
    assert await ids(start_time=at(10).astimezone(ZoneInfo("Asia/Kolkata"))) == (["w1", "c1", "b1", "a2"], 4)
    assert await ids(start_time=at(10).replace(tzinfo=None)) == (["w1", "c1", "b1", "a2"], 4)  # naive is UTC
    # agno's adapter ignores empty filters.
    assert await ids(agent_id="", session_id="", status="") == (["w1", "c1", "b1", "a2", "a1"], 5)

    assert await ids(limit=2, page=1) == (["w1", "c1"], 5)
    assert await ids(limit=2, page=3) == (["a1"], 5)
    assert await ids(limit=2, page=4) == ([], 5)
    assert await ids(limit=None, page=None) == (["w1", "c1", "b1", "a2", "a1"], 5)  # agno: limit or 20, page or 1
    assert await ids(limit=2, page=0) == (["w1", "c1"], 5)

    traces, _ = await call(store.db.get_traces(user_id="alice"))
    assert [(t.total_spans, t.error_count) for t in traces] == [(0, 0), (2, 1)]


async def test_a_page_larger_than_the_facet_bound_takes_a_count(store: Store) -> None:
    await seed_traces(store)
    store.commands.clear()
    traces, total = await call(store.db.get_traces(limit=ops.FACET_MAX_ROWS + 1))
    assert len(traces) == 5 and total == 5
    assert store.commands.names == ["aggregate", "aggregate"]  # the page, then count_documents


async def test_filter_expr(store: Store) -> None:
    await seed_traces(store)

    async def ids(expression: dict[str, Any]) -> list[str]:
        traces, total = await call(store.db.get_traces(filter_expr=expression))
        assert total == len(traces)
        return sorted(t.trace_id for t in traces)

    def eq(key: str, value: Any) -> dict[str, Any]:
        return {"op": "EQ", "key": key, "value": value}

    assert await ids(eq("user_id", "alice")) == ["a1", "a2"]
    assert await ids(eq("trace_id", "b1")) == ["b1"]
    assert await ids({"op": "NEQ", "key": "user_id", "value": "alice"}) == ["b1"]  # nulls match no comparison
    assert await ids({"op": "IN", "key": "status", "values": ["ERROR", "UNSET"]}) == ["a2"]
    assert await ids({"op": "CONTAINS", "key": "name", "value": "RUN"}) == ["a1", "a2", "b1", "c1", "w1"]
    assert await ids({"op": "CONTAINS", "key": "name", "value": "."}) == ["a1", "a2", "b1", "c1", "w1"]
    assert await ids({"op": "STARTSWITH", "key": "name", "value": "Crew"}) == ["c1"]
    assert await ids({"op": "STARTSWITH", "key": "name", "value": ".*"}) == []  # literal, not a regex
    assert await ids({"op": "GT", "key": "duration_ms", "value": 2000}) == ["b1", "w1"]
    assert await ids({"op": "LTE", "key": "duration_ms", "value": "1000"}) == ["c1"]
    assert await ids({"op": "GTE", "key": "created_at", "value": "2025-03-01T17:30:30+05:30"}) == ["b1", "c1", "w1"]
    assert await ids({"op": "LT", "key": "start_time", "value": "2025-03-01T12:00:10Z"}) == ["a1"]
    assert await ids({"op": "NOT", "condition": eq("user_id", "alice")}) == ["b1", "c1", "w1"]
    assert await ids({"op": "OR", "conditions": [eq("team_id", "crew"), eq("workflow_id", "flow")]}) == ["c1", "w1"]
    # AgentOS scopes a caller by AND-ing user_id into their filter.
    scoped = {"op": "AND", "conditions": [eq("user_id", "alice"), {"op": "OR", "conditions": [eq("user_id", "bob")]}]}
    assert await ids(scoped) == []
    both = await call(store.db.get_traces(user_id="alice", filter_expr=eq("user_id", "bob")))
    assert both == ([], 0)  # the argument and the expression both hold

    store.commands.clear()
    for bad in [
        eq("user_id", {"$ne": None}),  # an operator where a value belongs
        {"op": "IN", "key": "user_id", "values": [{"$gt": ""}]},
        eq("attributes", "x"),  # not a trace field
        eq("$where", "1"),
        {"op": "EQ", "key": "user_id"},
        {"op": "REGEX", "key": "name", "value": ".*"},
        {"op": "AND", "conditions": []},
        {"op": "GTE", "key": "created_at", "value": "yesterday"},
        {"op": "CONTAINS", "key": "created_at", "value": "2025"},
        "status = 'OK'",
    ]:
        with pytest.raises(InvalidInputError) as error:
            await call(store.db.get_traces(filter_expr=bad))  # type: ignore[arg-type]
        assert error.value.field == "filter_expr", bad
    deep: dict[str, Any] = eq("status", "OK")
    for _ in range(12):
        deep = {"op": "NOT", "condition": deep}
    with pytest.raises(InvalidInputError):
        await call(store.db.get_traces(filter_expr=deep))
    assert store.commands.names == []


async def test_trace_stats_by_session(store: Store) -> None:
    await seed_traces(store)
    await call(store.db.upsert_trace(root("a3", start=50, end=51, created=50)))  # alice's s1 again, latest

    rows, total = await call(store.db.get_trace_stats())
    assert [(r["session_id"], r["total_traces"]) for r in rows] == [("s1", 3), ("s2", 1)]  # latest activity first
    assert total == 2  # c1 and w1 have no session
    first = rows[0]
    assert first == {
        "session_id": "s1",
        "user_id": "bob",  # s1 holds bob's b1 too: the greatest id, deterministic
        "agent_id": "other",
        "team_id": None,
        "workflow_id": None,
        "total_traces": 3,
        "first_trace_at": at(2),
        "last_trace_at": at(50),
    }
    rows, total = await call(store.db.get_trace_stats(user_id="alice"))
    assert [(r["session_id"], r["total_traces"], r["user_id"]) for r in rows] == [
        ("s1", 2, "alice"),
        ("s2", 1, "alice"),
    ]
    assert total == 2
    rows, total = await call(store.db.get_trace_stats(user_id="alice", limit=1, page=2))
    assert [r["session_id"] for r in rows] == ["s2"] and total == 2
    rows, _ = await call(store.db.get_trace_stats(start_time=at(10), end_time=at(30)))  # on created_at
    assert sorted((r["session_id"], r["total_traces"]) for r in rows) == [("s1", 1), ("s2", 1)]
    rows, _ = await call(store.db.get_trace_stats(filter_expr={"op": "EQ", "key": "status", "value": "ERROR"}))
    assert [r["session_id"] for r in rows] == ["s2"]
    assert await call(store.db.get_trace_stats(user_id="nobody")) == ([], 0)


async def test_trace_stats_by_component(store: Store) -> None:
    for index, seconds in enumerate([1, 2, 3, 4, 10]):
        status = "ERROR" if index == 0 else "OK"
        session = f"s{index % 2}"
        await call(store.db.upsert_trace(root(f"a{index}", end=seconds, status=status, session_id=session)))
    await call(store.db.upsert_trace(root("o1", agent_id="other", session_id=None, end=7)))
    await call(store.db.upsert_trace(trace("e1", name="POST /agents", end=1)))
    await call(store.db.upsert_trace(trace("e2", name="POST /agents", end=3)))
    await call(store.db.upsert_trace(trace("m1", name="mcp", end=2)))

    rows, total = await call(store.db.get_trace_stats(group_by="agent"))
    assert total == 2
    assistant = rows[0]
    assert {key: value for key, value in assistant.items() if not key.endswith("_trace_at")} == {
        "agent_id": "assistant",
        "total_traces": 5,
        "total_sessions": 2,
        "avg_duration_ms": 4000.0,
        "p95_duration_ms": 8800.0,  # percentile_cont(0.95) of 1,2,3,4,10 s, as PostgreSQL computes it
        "max_duration_ms": 10000,
        "error_traces": 1,
    }
    assert rows[1]["agent_id"] == "other" and rows[1]["total_sessions"] == 0 and rows[1]["p95_duration_ms"] == 7000.0
    assert assistant["first_trace_at"] == at(0) and assistant["first_trace_at"].tzinfo is not None

    rows, total = await call(store.db.get_trace_stats(group_by="endpoint"))
    assert [(r["name"], r["total_traces"], r["avg_duration_ms"]) for r in rows] == [
        ("POST /agents", 2, 2000.0),
        ("mcp", 1, 2000.0),
    ]
    assert total == 2
    assert await call(store.db.get_trace_stats(group_by="team")) == ([], 0)
    rows, total = await call(store.db.get_trace_stats(group_by="agent", limit=1, page=2))
    assert [r["agent_id"] for r in rows] == ["other"] and total == 2

    store.commands.clear()
    with pytest.raises(InvalidInputError) as error:
        await call(store.db.get_trace_stats(group_by="user"))  # type: ignore[arg-type]
    assert error.value.field == "group_by" and store.commands.names == []


async def test_get_spans_filters_order_and_limit(store: Store) -> None:
    await call(
        store.db.create_spans(
            [
                span("c", parent="a", start=2),
                span("a", start=0),
                span("b", parent="a", start=1),
                span("d", parent="b", start=3),
                span("z", trace_id="t2", start=0),
            ]
        )
    )

    def names(spans: list[Span]) -> list[str]:
        return [s.span_id for s in spans]

    assert names(await call(store.db.get_spans("t1"))) == ["a", "b", "c", "d"]  # start order
    assert names(await call(store.db.get_spans(trace_id="t1", parent_span_id="a"))) == ["b", "c"]
    assert sorted(names(await call(store.db.get_spans(parent_span_id="a")))) == ["b", "c"]
    assert names(await call(store.db.get_spans("t1", limit=2))) == ["a", "b"]
    assert len(await call(store.db.get_spans())) == 5
    assert await call(store.db.get_spans("missing")) == []


# --- isolation and input checks ------------------------------------------------------------------------------


async def test_a_trace_part_naming_another_user_is_refused(store: Store) -> None:
    await call(store.db.upsert_trace(root(end=5)))
    before = store.raw.agno_traces.find_one({"_id": "t1"})
    store.commands.clear()
    await call(
        store.db.upsert_trace(trace(name="mallory.run", agent_id="m", user_id="mallory", end=99, status="ERROR"))
    )
    assert store.raw.agno_traces.find_one({"_id": "t1"}) == before
    assert store.commands.names == ["update", "update"]  # refused by the duplicate key, confirmed once

    # A part without a user (a batch of child spans) still merges into alice's trace.
    await call(store.db.upsert_trace(trace(name="tool", end=8)))
    raw = store.raw.agno_traces.find_one({"_id": "t1"})
    assert raw["user_id"] == "alice" and raw["duration_ms"] == 8000

    # An unowned trace is claimed by the first part that names its user.
    await call(store.db.upsert_trace(trace("t2", name="tool")))
    await call(store.db.upsert_trace(root("t2", user_id="bob")))
    assert store.raw.agno_traces.find_one({"_id": "t2"})["user_id"] == "bob"


@pytest.mark.parametrize(
    ("method", "kwargs", "field"),
    [
        ("get_trace", {"trace_id": {"$ne": None}}, "trace_id"),
        ("get_trace", {"run_id": {"$exists": True}}, "run_id"),
        ("get_traces", {"user_id": {"$ne": None}}, "user_id"),
        ("get_traces", {"session_id": {"$gt": ""}}, "session_id"),
        ("get_traces", {"status": {"$ne": "OK"}}, "status"),
        ("get_traces", {"start_time": {"$gt": 0}}, "start_time"),
        ("get_traces", {"end_time": "not a time"}, "end_time"),
        ("get_traces", {"limit": -1}, "limit"),
        ("get_traces", {"page": "2"}, "page"),
        ("get_trace_stats", {"user_id": {"$ne": None}}, "user_id"),
        ("get_trace_stats", {"agent_id": ["a"]}, "agent_id"),
        ("get_span", {"span_id": {"$ne": None}}, "span_id"),
        ("get_spans", {"trace_id": {"$ne": None}}, "trace_id"),
        ("get_spans", {"parent_span_id": {"$in": ["a"]}}, "parent_span_id"),
        ("get_spans", {"limit": True}, "limit"),
    ],
)
async def test_bad_arguments_are_refused_before_any_command(
    store: Store, method: str, kwargs: dict[str, Any], field: str
) -> None:
    await assert_refused(store, method, kwargs, field)


async def test_bad_traces_and_spans_are_refused_before_any_command(store: Store) -> None:
    bad_trace = trace()
    bad_trace.user_id = {"$ne": None}  # type: ignore[assignment]
    bad_span = span("s1")
    bad_span.trace_id = {"$gt": ""}  # type: ignore[assignment]
    nul_key = span("s2", attributes={"bad\0key": 1})
    store.commands.clear()
    attempts: list[tuple[Callable[[], Any], str]] = [
        (lambda: store.db.upsert_trace(bad_trace), "trace.user_id"),
        (lambda: store.db.upsert_trace({"trace_id": "t1"}), "trace"),  # type: ignore[arg-type]
        (lambda: store.db.create_span(bad_span), "span.trace_id"),
        (lambda: store.db.create_spans([span("ok"), bad_span]), "spans[1].trace_id"),
        (lambda: store.db.create_spans([nul_key]), "spans[0].attributes"),
        (lambda: store.db.create_spans(span("s3")), "spans"),  # type: ignore[arg-type]
    ]
    for coroutine, field in attempts:
        with pytest.raises(InvalidInputError) as error:
            await call(coroutine())
        assert error.value.field == field
    assert store.commands.names == []
    assert store.raw.agno_spans.count_documents({}) == 0  # a bad span stores none of its batch


async def test_blank_context_ids_are_unknown_not_refused(store: Store) -> None:
    """A blank run, session, agent, team or workflow id is "not known": a later part fills it in.
    (A blank ``user_id`` is a real owner, as in agno: see tests/test_empty_owner.py.)"""
    await call(store.db.upsert_trace(trace(session_id="", run_id="", agent_id="", team_id="", workflow_id="")))
    await call(store.db.upsert_trace(root()))
    raw = store.raw.agno_traces.find_one({"_id": "t1"})
    assert (raw["session_id"], raw["user_id"], raw["run_id"], raw["agent_id"]) == ("s1", "alice", "run-t1", "assistant")


# --- plans and the merge rule, without a server ------------------------------------------------------------


def test_component_level_matches_agnos() -> None:
    from agno.db.mongo import MongoDb as AgnoMongoDb

    agno_level = AgnoMongoDb._get_component_level
    for args in [
        (None, None, None, "x.run"),
        (None, None, "a", "a.run"),
        (None, None, "a", "a.arun"),
        (None, "t", "a", "t.run"),
        ("w", "t", "a", "w.arun"),
        ("w", None, None, "tool_call"),
        (None, None, "a", "running"),
    ]:
        assert ops.component_level(*args) == agno_level(None, *args)  # type: ignore[arg-type]


def test_upsert_is_one_filter_on_the_id_with_the_owner_check() -> None:
    command = ops.upsert_trace(TraceFields.from_trace(root()))
    assert command.op == "update_one" and command.kwargs["upsert"] is True
    assert command.kwargs["filter"] == {"_id": "t1", "user_id": {"$in": ["alice", None]}}
    child = ops.upsert_trace(TraceFields.from_trace(trace(name="tool")))
    assert child.kwargs["filter"] == {"_id": "t1"}


def reference_merge(stored: dict[str, Any] | None, part: Trace) -> dict[str, Any]:
    """The merge rules written out in Python (agno's SQL adapters' semantics)."""
    context: dict[str, Any] = {key: getattr(part, key) or None for key in CONTEXT}
    merged: dict[str, Any]
    if stored is None:
        merged = {"name": part.name, "start": part.start_time, "end": part.end_time, **context}
    else:
        stored_level = ops.component_level(stored["workflow_id"], stored["team_id"], stored["agent_id"], stored["name"])
        new_level = ops.component_level(part.workflow_id, part.team_id, part.agent_id, part.name)
        merged = {
            "name": part.name if new_level > stored_level else stored["name"],
            "start": min(stored["start"], part.start_time),
            "end": max(stored["end"], part.end_time),
            **{key: stored[key] if stored[key] is not None else context[key] for key in CONTEXT},
        }
    merged["status"] = part.status
    merged["duration_ms"] = int((merged["end"] - merged["start"]) / timedelta(milliseconds=1))
    return merged


@pytest.fixture
def sync_db(mongodb_url: str, db_name: str) -> Iterator[MongoDb]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield MongoDb(db_client=client, db_name=db_name)
    client.close()


ids_or_none = st.sampled_from([None, "", "x", "y"])
parts = st.builds(
    lambda name, start, length, status, run, session, agent, team, workflow: trace(
        "prop",
        name=name,
        start=start / 1000,
        end=(start + length) / 1000,
        status=status,
        run_id=run,
        session_id=session,
        agent_id=agent,
        team_id=team,
        workflow_id=workflow,
    ),
    st.sampled_from(["a.run", "t.arun", "w.run", "tool", "model.response", "$name"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.sampled_from(["OK", "ERROR", "UNSET"]),
    ids_or_none,
    ids_or_none,
    ids_or_none,
    ids_or_none,
    ids_or_none,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(parts, min_size=1, max_size=5))
def test_any_sequence_of_parts_merges_like_the_reference(sync_db: MongoDb, sequence: list[Trace]) -> None:
    sync_db.database.agno_traces.delete_many({"_id": "prop"})
    expected: dict[str, Any] | None = None
    for part in sequence:
        sync_db.upsert_trace(part)
        expected = reference_merge(expected, part)
    stored = sync_db.get_trace("prop")
    assert stored is not None and expected is not None
    got = {
        "name": stored.name,
        "start": stored.start_time,
        "end": stored.end_time,
        "status": stored.status,
        "duration_ms": stored.duration_ms,
        **{key: getattr(stored, key) for key in CONTEXT},
    }
    assert got == expected


def test_filter_query_translation() -> None:
    query = ops.filter_query(
        {
            "op": "AND",
            "conditions": [
                {"op": "NEQ", "key": "status", "value": "OK"},
                {"op": "STARTSWITH", "key": "name", "value": "a.b"},
                {"op": "GTE", "key": "start_time", "value": "2025-03-01T17:30:00+05:30"},
            ],
        }
    )
    assert query == {
        "$and": [
            {"status": {"$nin": ["OK", None]}},
            {"name": {"$regex": "^" + re.escape("a.b"), "$options": "i"}},
            {"start_time": {"$gte": datetime(2025, 3, 1, 12, 0, tzinfo=UTC)}},
        ]
    }


# --- end to end: agno's tracing on, real agents, AgentOS routes --------------------------------------------


@pytest.fixture
def tracing() -> Iterator[Any]:
    """What ``agno.tracing.setup_tracing(db)`` does, undone afterwards so each test traces into its own db.

    setup_tracing installs a global tracer provider once per process (OpenTelemetry refuses to
    replace it), so the tests instrument with their own provider and uninstrument at the end.
    """
    pytest.importorskip("openinference.instrumentation.agno")
    from agno.tracing.exporter import DatabaseSpanExporter
    from openinference.instrumentation.agno import AgnoInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    def start(db: Any) -> None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(DatabaseSpanExporter(db=db)))
        AgnoInstrumentor().instrument(tracer_provider=provider)

    yield start
    AgnoInstrumentor().uninstrument()


async def traces_when_exported(store: Store, expected_spans: int) -> list[Trace]:
    """The stored traces once the exporter has written ``expected_spans`` spans.

    With an async db the exporter schedules its writes as tasks on the running loop.
    """
    for _ in range(100):
        traces, _ = await call(store.db.get_traces())
        if sum(t.total_spans for t in traces) >= expected_spans:
            return list(traces)
        await asyncio.sleep(0.02)
    raise AssertionError(f"the exporter did not store {expected_spans} spans: {traces}")


async def test_traced_agent_run_is_stored_and_served_by_agentos(store: Store, tracing: Any) -> None:
    import httpx
    from agno.agent import Agent
    from agno.os.routers.traces import get_traces_router
    from fastapi import FastAPI

    from agno_mongo.testing import OfflineStandInModel

    tracing(store.db)
    agent = Agent(name="tracer", model=OfflineStandInModel(), db=store.db, user_id="alice", session_id="s1")
    run = await call(agent.arun("hello there") if store.is_async else agent.run("hello there"))

    [stored] = await traces_when_exported(store, 1)
    assert (stored.name, stored.status) == ("tracer.arun" if store.is_async else "tracer.run", "OK")
    assert (stored.run_id, stored.session_id, stored.user_id, stored.agent_id) == (run.run_id, "s1", "alice", agent.id)
    assert stored.total_spans >= 1 and stored.duration_ms >= 0
    spans = await call(store.db.get_spans(stored.trace_id))
    assert [s.parent_span_id for s in spans][0] is None
    assert spans[0].attributes["input.value"] == "hello there"
    raw = store.raw.agno_spans.find_one({"_id": spans[0].span_id})
    assert raw["attributes"]["openinference.span.kind"] == "AGENT"  # native subdocument, dotted keys as they are

    app = FastAPI()
    app.include_router(get_traces_router(dbs={store.db.id: [store.db]}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agentos") as client:
        listing = (await client.get("/traces", params={"user_id": "alice"})).json()
        assert listing["meta"]["total_count"] == 1 and listing["data"][0]["input"] == "hello there"
        detail = (await client.get(f"/traces/{stored.trace_id}")).json()
        assert detail["run_id"] == run.run_id and detail["output"] == run.content
        stats = (await client.get("/trace_session_stats")).json()
        assert stats["data"][0]["session_id"] == "s1" and stats["data"][0]["total_traces"] == 1
        search = await client.post("/traces/search", json={"filter": {"op": "EQ", "key": "user_id", "value": "bob"}})
        assert search.status_code == 200 and search.json()["meta"]["total_count"] == 0


async def test_traced_workflow_is_one_trace_named_by_its_root(store: Store, tracing: Any) -> None:
    from agno.agent import Agent
    from agno.workflow import Step, Workflow

    from agno_mongo.testing import OfflineStandInModel

    tracing(store.db)
    step = Step(name="answer", agent=Agent(name="writer", model=OfflineStandInModel()))
    workflow = Workflow(name="flow", steps=[step], db=store.db, session_id="wf-session", user_id="carol")
    await call(workflow.arun("go") if store.is_async else workflow.run("go"))

    [stored] = await traces_when_exported(store, 3)
    spans = await call(store.db.get_spans(stored.trace_id))
    assert len(spans) == stored.total_spans == 3  # workflow, step, agent
    roots = [s for s in spans if s.parent_span_id is None]
    assert len(roots) == 1 and stored.name == roots[0].name  # the workflow root, though it was exported last
    assert stored.workflow_id == workflow.id and stored.user_id == "carol"
    assert stored.start_time == min(s.start_time for s in spans)
