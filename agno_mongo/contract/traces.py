"""Traces and spans: agno's tracing contract as plans (check arguments, build commands, map answers).

``TraceContract`` holds what the sync and async classes share; each method has agno's signature and
returns a plan that :func:`~agno_mongo.drivers.blocking` or :func:`~agno_mongo.drivers.awaiting` runs.

Every call is one command: a trace part is merged by one pipeline upsert (agno's adapter does the
same), a batch of spans is one unordered insert (agno: one), and a read brings its span counts along
through a ``$lookup`` (agno: two ``count_documents`` per trace, so 2 + 2 x page size commands for
``get_traces``). ``get_traces`` and ``get_trace_stats`` also take agno's ``filter_expr``, which
AgentOS's trace search uses to scope a caller to their own traces, and ``get_trace_stats`` groups by
component (``agent``/``team``/``workflow``/``endpoint``) as well as by session.

Filters on run, session, agent, team, workflow and status follow agno's adapter: an empty string
means no filter. ``user_id`` filters whenever it is given (``""`` is a real owner, as in agno).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agno.utils.dttm import parse_datetime_utc

from agno_mongo.contract.checks import check_id, check_int, check_owner, check_skip, check_str
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import traces as ops
from agno_mongo.ops.aggregations import page_with_total_plan
from agno_mongo.ops.command import Plan
from agno_mongo.schema.traces import SpanFields, TraceFields, as_utc, span_out, trace_out

if TYPE_CHECKING:
    from agno.tracing.schemas import Span, Trace

LOG = logging.getLogger(__name__)
DEFAULT_TRACES_PAGE = 20
DEFAULT_SPANS_LIMIT = 1000


def optional_key(name: str, value: object) -> str | None:
    """A filter id as agno's adapter reads it: ``None`` or ``""`` is no filter; else a checked id."""
    if value is None or value == "":
        return None
    return check_id(name, value)


def check_time(name: str, value: object) -> datetime | None:
    """``None``, a ``datetime`` (naive means UTC) or an ISO 8601 string, as an aware UTC datetime."""
    if value is None:
        return None
    if not isinstance(value, datetime | str):
        raise InvalidInputError(name, f"must be a datetime, got {type(value).__name__}")
    try:
        return parse_datetime_utc(value)
    except ValueError:
        raise InvalidInputError(name, f"is not an ISO 8601 time: {value!r}") from None


def trace_page(limit: object, page: object, default: int) -> tuple[int, int]:
    """``(limit, skip)`` the way agno's adapter pages traces: ``limit or default``, ``page or 1``."""
    size = check_int("limit", limit, minimum=0) or default
    number = check_int("page", page, minimum=0) or 1
    return size, check_skip((number - 1) * size)


def filter_expr_query(filter_expr: object) -> dict[str, Any]:
    """agno's ``filter_expr`` (``FilterExpr.to_dict()``) as a query; ``None`` or ``{}`` is no filter."""
    if filter_expr is None or filter_expr == {}:
        return {}
    query = ops.filter_query(filter_expr)
    check_values("filter_expr", query)
    return query


def check_values(name: str, value: object) -> None:
    """Every string and int in a built query must be storable as BSON (UTF-8, 64 bits)."""
    if isinstance(value, dict):
        for item in value.values():
            check_values(name, item)
    elif isinstance(value, list):
        for item in value:
            check_values(name, item)
    elif isinstance(value, str):
        check_str(name, value)
    elif isinstance(value, int) and not isinstance(value, bool):
        check_int(name, value)


class TraceContract:
    """The traces and spans part of agno's ``BaseDb`` contract, as plans."""

    _names: dict[str, str]

    # --- traces ---------------------------------------------------------------------------

    def upsert_trace(self, trace: Trace) -> Plan[None]:
        """Merge a trace (or one part of it) in one command.

        A trace naming a user that belongs to another user is not changed; that is logged, not
        raised, since tracing must not break the run it traces (agno's adapters swallow errors).
        """
        fields = TraceFields.from_trace(trace)
        stored = yield from ops.upsert_trace_plan(fields)
        if not stored:
            LOG.warning("trace %r belongs to another user; not changed", fields.trace_id)
        return None

    def get_trace(self, trace_id: str | None = None, run_id: str | None = None) -> Plan[Trace | None]:
        """One trace by ``trace_id`` (or the newest of ``run_id``), with its span counts; one command.

        Unscoped by contract: AgentOS checks ``trace.user_id`` against the caller after the read.
        """
        trace_key = optional_key("trace_id", trace_id)
        run_key = None if trace_key is not None else optional_key("run_id", run_id)
        if trace_key is None and run_key is None:
            return None
        documents: list[dict[str, Any]] = yield ops.get_trace(trace_key, run_key, self._names["spans"])
        return trace_out(documents[0]) if documents else None

    def get_traces(
        self,
        run_id: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        status: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        limit: int | None = DEFAULT_TRACES_PAGE,
        page: int | None = 1,
        filter_expr: dict[str, Any] | None = None,
    ) -> Plan[tuple[list[Trace], int]]:
        """A page of traces, newest start first, and how many match; one ``aggregate``.

        ``start_time`` keeps traces that start at or after it, ``end_time`` those that end at or
        before it.
        """
        query: dict[str, Any] = {}
        for name, value in (
            ("run_id", run_id),
            ("session_id", session_id),
            ("agent_id", agent_id),
            ("team_id", team_id),
            ("workflow_id", workflow_id),
        ):
            key = optional_key(name, value)
            if key is not None:
                query[name] = key
        if user_id is not None:
            query["user_id"] = check_owner("user_id", user_id)
        if status is not None and check_str("status", status) != "":
            query["status"] = status
        query = ops.combine(
            query,
            ops.time_range("start_time", check_time("start_time", start_time), None),
            ops.time_range("end_time", None, check_time("end_time", end_time)),
            filter_expr_query(filter_expr),
        )
        size, skip = trace_page(limit, page, DEFAULT_TRACES_PAGE)
        documents, total = yield from ops.traces_page_plan(
            query, size, skip, self._names["spans"], self._names["traces"]
        )
        return [trace_out(document) for document in documents], total

    def get_trace_stats(
        self,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        limit: int | None = DEFAULT_TRACES_PAGE,
        page: int | None = 1,
        filter_expr: dict[str, Any] | None = None,
        group_by: str = "session",
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """Trace statistics per session (or per agent/team/workflow/endpoint) and the number of
        groups; one ``aggregate``.

        Times filter on the traces' ``created_at``, as agno's adapters do. With ``group_by="session"``
        each row has session_id, user_id, agent_id, team_id, workflow_id, total_traces,
        first_trace_at and last_trace_at, latest activity first. A component grouping has
        ``<group>_id`` (``name`` for ``endpoint``), total_traces, total_sessions, avg/p95/max
        duration_ms, error_traces, first_trace_at and last_trace_at, most traces first.
        """
        if group_by not in ops.GROUP_BY:
            raise InvalidInputError("group_by", f"must be one of {list(ops.GROUP_BY)}, got {group_by!r}")
        query: dict[str, Any] = {}
        if user_id is not None:
            query["user_id"] = check_owner("user_id", user_id)
        for name, value in (("agent_id", agent_id), ("team_id", team_id), ("workflow_id", workflow_id)):
            key = optional_key(name, value)
            if key is not None:
                query[name] = key
        query = ops.combine(
            query,
            ops.time_range("created_at", check_time("start_time", start_time), check_time("end_time", end_time)),
            filter_expr_query(filter_expr),
        )
        size, skip = trace_page(limit, page, DEFAULT_TRACES_PAGE)
        pipeline, groups = ops.stats_pipeline(query, group_by)
        rows, total = yield from page_with_total_plan(ops.TRACES, self._names["traces"], pipeline, groups, skip, size)
        return [stats_row(row, group_by) for row in rows], total

    # --- spans ----------------------------------------------------------------------------

    def create_span(self, span: Span) -> Plan[None]:
        """Store one span (one ``insert``); storing it again is a no-op."""
        yield from ops.insert_spans_plan([SpanFields.from_span(span).document()])
        return None

    def create_spans(self, spans: list[Span]) -> Plan[None]:
        """Store a batch of spans in ONE unordered ``insert``; spans already stored are kept as they are.

        Every span is checked before the command, so a bad one stores none of the batch.
        """
        if not isinstance(spans, list | tuple):
            raise InvalidInputError("spans", f"must be a list of Span, got {type(spans).__name__}")
        documents = [SpanFields.from_span(span, name=f"spans[{index}]").document() for index, span in enumerate(spans)]
        yield from ops.insert_spans_plan(documents)
        return None

    def get_span(self, span_id: str) -> Plan[Span | None]:
        """One span by id; one ``find``."""
        document = yield ops.get_span(check_id("span_id", span_id))
        return None if document is None else span_out(document)

    def get_spans(
        self, trace_id: str | None = None, parent_span_id: str | None = None, limit: int | None = DEFAULT_SPANS_LIMIT
    ) -> Plan[list[Span]]:
        """Spans of a trace (in start order) and/or children of a span, up to ``limit``; one ``find``."""
        trace_key = optional_key("trace_id", trace_id)
        parent_key = optional_key("parent_span_id", parent_span_id)
        size = check_int("limit", limit, minimum=0) or DEFAULT_SPANS_LIMIT
        documents: list[dict[str, Any]] = yield ops.get_spans(trace_key, parent_key, size)
        return [span_out(document) for document in documents]

    def get_span_stats(
        self,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        name: str | None = None,
        span_type: str | None = None,
        limit: int | None = 20,
        page: int | None = 1,
        sort_by: str = "total_calls",
        sort_order: str = "desc",
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """Span statistics per span name and type, and how many groups; one ``aggregate``.

        Each row has name, span_type, total_calls, avg/p95/max duration_ms, error_count and
        last_called_at, as agno's SQL stores return them. Times filter on the spans' start; agent,
        team and workflow on their traces (spans of other or unknown traces are left out). As in
        agno, an empty ``name`` / ``span_type`` / component id is no filter, an unknown ``sort_by``
        sorts by total_calls, anything but ``"asc"`` sorts descending, ties go by name then type,
        ``limit=None`` is every group and ``limit=0`` none. ``p95_duration_ms`` is SQL's
        ``percentile_cont(0.95)`` (agno's Postgres; its SQLite has none and says ``None``), and
        sorting by it sorts by it (agno's SQLite sorts by total_calls instead).
        """
        traces_match: dict[str, Any] = {}
        for field, value in (("agent_id", agent_id), ("team_id", team_id), ("workflow_id", workflow_id)):
            key = optional_key(field, value)
            if key is not None:
                traces_match[field] = key
        match = ops.time_range("start_time", check_time("start_time", start_time), check_time("end_time", end_time))
        if name is not None and check_str("name", name) != "":
            match["name"] = name
        kind = None if span_type is None or check_str("span_type", span_type) == "" else span_type
        size = check_int("limit", limit, minimum=0)
        number = check_int("page", page, minimum=0)
        skip = check_skip((number - 1) * size) if number and size else 0
        field = check_str("sort_by", sort_by)
        order = "desc" if sort_order is None else check_str("sort_order", sort_order)
        pipeline = ops.span_stats_pipeline(
            match,
            traces_match,
            kind,
            self._names["traces"],
            field if field in ops.SPAN_STAT_SORTS else "total_calls",
            1 if order == "asc" else -1,
        )
        rows, total = yield from ops.span_stats_plan(pipeline, size, skip, self._names["spans"])
        return [span_stats_row(row) for row in rows], total


def stats_row(row: dict[str, Any], group_by: str) -> dict[str, Any]:
    """One aggregated group in the shape agno's adapters return (times as aware UTC datetimes)."""
    first, last = row.get("first_trace_at"), row.get("last_trace_at")
    times = {
        "first_trace_at": as_utc(first) if isinstance(first, datetime) else first,
        "last_trace_at": as_utc(last) if isinstance(last, datetime) else last,
    }
    if group_by == "session":
        return {
            "session_id": row["_id"],
            "user_id": row.get("user_id"),
            "agent_id": row.get("agent_id"),
            "team_id": row.get("team_id"),
            "workflow_id": row.get("workflow_id"),
            "total_traces": row["total_traces"],
            **times,
        }
    average, p95 = row.get("avg_duration_ms"), row.get("p95_duration_ms")
    return {
        "name" if group_by == "endpoint" else f"{group_by}_id": row["_id"],
        "total_traces": row["total_traces"],
        "total_sessions": row.get("total_sessions", 0),
        "avg_duration_ms": None if average is None else round(float(average), 1),
        "p95_duration_ms": None if p95 is None else round(float(p95), 1),
        "max_duration_ms": row.get("max_duration_ms"),
        "error_traces": row.get("error_traces", 0),
        **times,
    }


def span_stats_row(row: dict[str, Any]) -> dict[str, Any]:
    """One span group in the shape agno's SQL stores return (``last_called_at`` an aware UTC datetime)."""
    key = row["_id"]
    average, p95, longest, last = (
        row.get("avg_duration_ms"),
        row.get("p95_duration_ms"),
        row.get("max_duration_ms"),
        row.get("last_called_at"),
    )
    return {
        "name": key.get("name"),
        "span_type": key.get("span_type"),
        "total_calls": int(row["total_calls"]),
        "avg_duration_ms": None if average is None else round(float(average), 1),
        "p95_duration_ms": None if p95 is None else round(float(p95), 1),
        "max_duration_ms": None if longest is None else int(longest),
        "error_count": int(row.get("error_count") or 0),
        "last_called_at": as_utc(last) if isinstance(last, datetime) else last,
    }
