"""``get_span_stats`` (AgentOS's tool activity) against agno's own SQLite store, on every client flavour.

The same spans and traces are written to agno-mongo and to agno's ``SqliteDb`` / ``AsyncSqliteDb``
(the ``oracle``), and every filter, sort, page and limit agno takes is compared. agno's SQLite has
no percentile and answers ``p95_duration_ms=None``; ours is SQL's ``percentile_cont(0.95)`` (what
agno's Postgres returns), checked against the definition computed in Python.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="agno.tracing needs opentelemetry-sdk")

from agno.tracing.schemas import Span, Trace  # noqa: E402

from agno_mongo.ops import traces as ops  # noqa: E402
from tests.conftest import Store, assert_refused, call  # noqa: E402

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KIND = "openinference.span.kind"
MISSING = object()

TRACES = {  # trace id: (agent, team, workflow)
    "ta": ("agent-1", None, None),
    "tb": ("agent-2", "team-1", None),
    "tw": (None, None, "flow-1"),
    "tn": (None, None, None),
}
NAMES = ["search", "fetch", "gpt-4o", "Assistant.run"]
KINDS: list[object] = ["TOOL", "LLM", "AGENT", None, MISSING, 7]


def at(milliseconds: int) -> datetime:
    return T0 + timedelta(milliseconds=milliseconds)


def make_trace(trace_id: str) -> Trace:
    agent, team, workflow = TRACES[trace_id]
    return Trace(
        trace_id=trace_id,
        name="Assistant.run",
        status="OK",
        start_time=at(0),
        end_time=at(100_000),
        duration_ms=100_000,
        total_spans=0,
        error_count=0,
        run_id=f"run-{trace_id}",
        session_id="s1",
        user_id="alice",
        agent_id=agent,
        team_id=team,
        workflow_id=workflow,
        created_at=at(0),
    )


def make_span(index: int, trace_id: str, name: str, kind: object, duration: int, start: int, error: bool) -> Span:
    attributes: dict[str, Any] = {"input.value": "never read", "agno.x": index}
    if kind is not MISSING:
        attributes[KIND] = kind
    return Span(
        span_id=f"s{index:03d}",
        trace_id=trace_id,
        parent_span_id=None,
        name=name,
        span_kind="INTERNAL",
        status_code="ERROR" if error else "OK",
        status_message=None,
        start_time=at(start),
        end_time=at(start + duration),
        duration_ms=duration,
        attributes=attributes,
        created_at=at(start + duration),
    )


def scenario() -> list[Span]:
    """~80 spans over a few names and kinds, repeated durations (ties), some errors, some of a
    trace without component ids. (agno's SQLite refuses a span whose trace is not stored: a
    foreign key; see the orphan test for those.)"""
    rng = random.Random(7)
    spans = []
    for index in range(80):
        trace_id = rng.choice(list(TRACES))
        name = rng.choice(NAMES)
        kind = rng.choice(KINDS)
        duration = rng.choice([5, 10, 10, 40, rng.randint(1, 5000)])
        spans.append(make_span(index, trace_id, name, kind, duration, rng.randint(0, 90_000), rng.random() < 0.2))
    return spans


async def seed(db: Any, spans: list[Span]) -> None:
    for trace_id in TRACES:
        await call(db.upsert_trace(make_trace(trace_id)))
    await call(db.create_spans(spans))


def p95(durations: list[int]) -> float:
    """SQL's ``percentile_cont(0.95)``, as agno's Postgres rounds it."""
    ordered = sorted(durations)
    rank = 0.95 * (len(ordered) - 1)
    low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    return round(float(low + (rank - math.floor(rank)) * (high - low)), 1)


def kind_of(span: Span) -> object:
    return span.attributes.get(KIND)


CASES: list[dict[str, Any]] = [
    {},
    {"limit": None},
    {"limit": 3},
    {"limit": 3, "page": 2},
    {"limit": 3, "page": 4},
    {"limit": 3, "page": 0},
    {"limit": 3, "page": None},
    {"limit": 0},
    {"limit": 100, "page": 3},
    {"sort_by": "avg_duration_ms"},
    {"sort_by": "avg_duration_ms", "sort_order": "asc"},
    {"sort_by": "max_duration_ms", "sort_order": "asc", "limit": 5},
    {"sort_by": "error_count"},
    {"sort_by": "error_count", "sort_order": "asc"},
    {"sort_by": "last_called_at"},
    {"sort_by": "last_called_at", "sort_order": "asc"},
    {"sort_by": "total_calls", "sort_order": "asc"},
    {"sort_by": "no_such_field"},  # agno falls back to total_calls
    {"sort_order": "ASC"},  # agno compares with "asc" exactly: this is descending
    {"sort_order": "sideways"},
    {"span_type": "TOOL"},
    {"span_type": "LLM", "sort_by": "avg_duration_ms"},
    {"span_type": ""},  # no filter
    {"span_type": "NOPE"},
    {"name": "search"},
    {"name": ""},
    {"name": "search", "span_type": "TOOL"},
    {"start_time": at(30_000)},
    {"end_time": at(60_000)},
    {"start_time": at(20_000), "end_time": at(50_000), "sort_by": "avg_duration_ms"},
    {"start_time": at(20_000).replace(tzinfo=None)},  # naive means UTC
    {"agent_id": "agent-1"},
    {"agent_id": "agent-2", "team_id": "team-1"},
    {"team_id": "team-1", "span_type": "TOOL"},
    {"workflow_id": "flow-1"},
    {"agent_id": "agent-1", "workflow_id": "flow-1"},  # no trace has both
    {"agent_id": ""},  # no filter
    {"agent_id": "nobody"},
    {"span_type": "TOOL", "start_time": at(10_000), "sort_by": "total_calls", "limit": 10},  # AgentOSTools
]


def without_p95(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in row.items() if key != "p95_duration_ms"} for row in rows]


@pytest.mark.parametrize("kwargs", CASES, ids=[repr(case) for case in CASES])
async def test_span_stats_match_agnos_sqlite(store: Store, oracle: Any, kwargs: dict[str, Any]) -> None:
    spans = scenario()
    await seed(store.db, spans)
    await seed(oracle, spans)
    store.commands.clear()
    ours, ours_total = await call(store.db.get_span_stats(**kwargs))
    assert store.commands.names == ["aggregate"]
    theirs, theirs_total = await call(oracle.get_span_stats(**kwargs))
    assert (without_p95(ours), ours_total) == (without_p95(theirs), theirs_total)
    assert all(row["p95_duration_ms"] is None for row in theirs)  # agno's SQLite has no percentile
    for row in ours:
        members = [s for s in spans if s.name == row["name"] and kind_of(s) == row["span_type"]]
        durations = [s.duration_ms for s in members if in_scope(s, kwargs)]
        assert row["p95_duration_ms"] == p95(durations), row


def in_scope(span: Span, kwargs: dict[str, Any]) -> bool:
    """Whether ``span`` counts under ``kwargs``' time and component filters (name and type are the row's)."""
    start, end = kwargs.get("start_time"), kwargs.get("end_time")
    if start is not None and span.start_time < start.replace(tzinfo=UTC):
        return False
    if end is not None and span.start_time > end:
        return False
    wanted = [kwargs.get("agent_id"), kwargs.get("team_id"), kwargs.get("workflow_id")]
    if not any(wanted):
        return True
    if span.trace_id not in TRACES:
        return False
    return all(not want or want == have for want, have in zip(wanted, TRACES[span.trace_id], strict=True))


async def test_scenario_rows_are_what_the_spans_say(store: Store) -> None:
    """The grouped numbers themselves, worked out from the spans (not only equal to agno's)."""
    spans = scenario()
    await seed(store.db, spans)
    rows, total = await call(store.db.get_span_stats(limit=None))
    groups: dict[tuple[str, object], list[Span]] = {}
    for s in spans:
        groups.setdefault((s.name, kind_of(s)), []).append(s)
    assert total == len(groups) == len(rows)
    for row in rows:
        members = groups[(row["name"], row["span_type"])]
        durations = [s.duration_ms for s in members]
        assert row == {
            "name": row["name"],
            "span_type": row["span_type"],
            "total_calls": len(members),
            "avg_duration_ms": round(sum(durations) / len(durations), 1),
            "p95_duration_ms": p95(durations),
            "max_duration_ms": max(durations),
            "error_count": sum(s.status_code == "ERROR" for s in members),
            "last_called_at": max(s.start_time for s in members),
        }
    assert [row["total_calls"] for row in rows] == sorted((row["total_calls"] for row in rows), reverse=True)


async def test_spans_of_a_trace_never_stored_count_only_without_a_component_filter(store: Store) -> None:
    """agno-mongo has no foreign key: a span whose trace was never stored (its root part lost)
    still counts, except where a component filter needs the trace (SQL's inner join)."""
    await seed(store.db, [make_span(0, "ta", "search", "TOOL", 10, 0, False)])
    await call(store.db.create_spans([make_span(1, "orphan", "search", "TOOL", 30, 5, True)]))
    rows, _ = await call(store.db.get_span_stats())
    assert [(row["total_calls"], row["error_count"], row["max_duration_ms"]) for row in rows] == [(2, 1, 30)]
    rows, _ = await call(store.db.get_span_stats(agent_id="agent-1"))
    assert [(row["total_calls"], row["error_count"], row["max_duration_ms"]) for row in rows] == [(1, 0, 10)]


async def test_sort_by_p95_sorts_by_the_percentile(store: Store, oracle: Any) -> None:
    """agno's Postgres sorts by p95; its SQLite, which has none, sorts by total_calls instead."""
    spans = scenario()
    await seed(store.db, spans)
    await seed(oracle, spans)
    for order in ("desc", "asc"):
        ours, total = await call(store.db.get_span_stats(sort_by="p95_duration_ms", sort_order=order, limit=None))
        keys = [(row["p95_duration_ms"], row["name"], str(row["span_type"])) for row in ours]
        values = [key[0] for key in keys]
        assert values == sorted(values, reverse=order == "desc")
        theirs, theirs_total = await call(oracle.get_span_stats(sort_by="total_calls", sort_order=order, limit=None))
        assert total == theirs_total
        assert sorted(map(repr, without_p95(ours))) == sorted(map(repr, without_p95(theirs)))


async def test_p95_of_small_and_tied_groups(store: Store) -> None:
    """One span: its own duration; two: interpolated at 95 %; all equal: that value."""
    spans = [make_span(0, "ta", "one", "TOOL", 70, 0, False)]
    spans += [make_span(1, "ta", "two", "TOOL", 10, 0, False), make_span(2, "ta", "two", "TOOL", 30, 1, False)]
    spans += [make_span(3 + i, "ta", "same", "TOOL", 25, i, False) for i in range(7)]
    spans += [make_span(10 + i, "ta", "ramp", "TOOL", i, i, False) for i in range(1, 101)]
    await seed(store.db, spans)
    rows, _ = await call(store.db.get_span_stats(limit=None))
    assert {row["name"]: row["p95_duration_ms"] for row in rows} == {
        "one": 70.0,
        "two": 29.0,
        "same": 25.0,
        "ramp": 95.0,  # 95 + 0.05 x (96 - 95) = 95.05, rounded as agno rounds it (binary float)
    }


async def test_the_aggregate_is_memory_bounded_and_never_reads_attributes(store: Store) -> None:
    """No array of durations per group ($push / $addToSet), and the attributes payload is not
    carried past the first stages (only the span kind is read from it)."""
    await seed(store.db, scenario())
    store.commands.clear()
    await call(store.db.get_span_stats(agent_id="agent-1"))
    (command,) = store.commands.sent
    text = repr(command["pipeline"])
    assert "$push" not in text and "$addToSet" not in text
    project = next(stage["$project"] for stage in command["pipeline"] if "$project" in stage)
    assert "attributes" not in project and set(project) == {
        "name",
        "duration_ms",
        "status_code",
        "start_time",
        "span_type",
    }


async def test_an_empty_store_and_pages_past_the_end(store: Store, oracle: Any) -> None:
    assert await call(store.db.get_span_stats()) == await call(oracle.get_span_stats()) == ([], 0)
    spans = scenario()
    await seed(store.db, spans)
    await seed(oracle, spans)
    ours = await call(store.db.get_span_stats(limit=5, page=50))
    assert ours == await call(oracle.get_span_stats(limit=5, page=50))
    assert ours[0] == [] and ours[1] > 0


async def test_a_page_larger_than_the_facet_bound_takes_a_count(store: Store, oracle: Any) -> None:
    spans = scenario()
    await seed(store.db, spans)
    await seed(oracle, spans)
    store.commands.clear()
    ours, total = await call(store.db.get_span_stats(limit=ops.FACET_MAX_ROWS + 1, page=1))
    assert store.commands.names == ["aggregate", "aggregate"]
    theirs, theirs_total = await call(oracle.get_span_stats(limit=ops.FACET_MAX_ROWS + 1, page=1))
    assert (without_p95(ours), total) == (without_p95(theirs), theirs_total)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": {"$ne": None}}, "name"),
        ({"span_type": ["TOOL"]}, "span_type"),
        ({"agent_id": {"$ne": None}}, "agent_id"),
        ({"workflow_id": 3}, "workflow_id"),
        ({"start_time": "not a time"}, "start_time"),
        ({"end_time": 5}, "end_time"),
        ({"limit": -1}, "limit"),
        ({"limit": "20"}, "limit"),
        ({"page": -1}, "page"),
        ({"sort_by": {"$natural": 1}}, "sort_by"),
        ({"sort_order": 1}, "sort_order"),
        ({"limit": 2**62, "page": 10}, "page"),
    ],
)
async def test_bad_arguments_are_refused_before_any_command(store: Store, kwargs: dict[str, Any], field: str) -> None:
    await assert_refused(store, "get_span_stats", kwargs, field)
