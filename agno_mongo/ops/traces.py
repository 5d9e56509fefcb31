"""Pure command builders and plans for traces and spans; no I/O.

A trace arrives in parts: agno's exporter turns every batch of finished spans into a ``Trace`` and
upserts it, so one trace is written several times (children usually end before the root). The
merge is one pipeline ``update`` keyed on ``_id`` (the ``trace_id``), the same rules as agno's
adapters: the earliest start and the latest end win, the duration follows from them, context ids
(run, session, user, agent, team, workflow) keep the first non-null value, the name moves up only to
a more important root span (workflow > team > agent > child; see :func:`upsert_trace` for the one
place where this follows agno's SQL adapters rather than its MongoDB one), and the status is the
latest part's.
Each rule is idempotent, so the command can be sent again after a cut connection.

A trace that names its user is written only if it is that user's or nobody's yet (owner check in
the filter; the duplicate key on ``_id`` that follows is the refusal). A part without a user (a batch
of child spans) merges into any trace: it cannot change the owner, since context ids keep their
first value.

Spans are immutable once exported: they are inserted under their ``span_id``, one unordered
``insert`` for a whole batch; a duplicate key means that span is already stored (a retry), so it is
not an error. Span counts per trace are not kept in the trace: reads count them with a ``$lookup``
on the spans' ``trace_id`` index, in the same command as the trace itself.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from agno.utils.dttm import parse_datetime_utc
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from agno_mongo.errors import InvalidInputError
from agno_mongo.ops.aggregations import LARGE_PAGE, aggregate, page_with_total_plan, split_total, with_total
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import DUPLICATE_KEY
from agno_mongo.schema.traces import CONTEXT_FIELDS, SCHEMA_VERSION, TraceFields

TRACES = "traces"
SPANS = "spans"

GroupBy = Literal["session", "agent", "team", "workflow", "endpoint"]
GROUP_BY: tuple[GroupBy, ...] = ("session", "agent", "team", "workflow", "endpoint")

FACET_MAX_ROWS = LARGE_PAGE
"""Pages up to this size come back with their total in one ``aggregate`` (the rows, then the count
a ``$unionWith`` appends; no ``$facet``); larger pages take a second command for the count."""

NEWEST_FIRST = {"start_time": DESCENDING, "_id": DESCENDING}

TRACE_INDEXES = [
    # get_traces unfiltered (AgentOS trace list), newest first.
    IndexModel([("start_time", DESCENDING), ("_id", DESCENDING)], name="start"),
    # get_traces(user_id=...): a scoped AgentOS caller's list.
    IndexModel([("user_id", ASCENDING), ("start_time", DESCENDING), ("_id", DESCENDING)], name="user_start"),
    # get_traces(session_id=...): the traces of one session.
    IndexModel([("session_id", ASCENDING), ("start_time", DESCENDING), ("_id", DESCENDING)], name="session_start"),
    # get_trace(run_id=...) and get_traces(run_id=...).
    IndexModel([("run_id", ASCENDING), ("start_time", DESCENDING), ("_id", DESCENDING)], name="run_start"),
    # get_traces(agent_id= / team_id= / workflow_id=...): AgentOS's trace list filtered by component.
    IndexModel([("agent_id", ASCENDING), ("start_time", DESCENDING), ("_id", DESCENDING)], name="agent_start"),
    IndexModel([("team_id", ASCENDING), ("start_time", DESCENDING), ("_id", DESCENDING)], name="team_start"),
    IndexModel([("workflow_id", ASCENDING), ("start_time", DESCENDING), ("_id", DESCENDING)], name="workflow_start"),
]

SPAN_INDEXES = [
    # get_spans(trace_id=...) in start order, and the span counts of a trace ($lookup on trace_id).
    IndexModel([("trace_id", ASCENDING), ("start_time", ASCENDING), ("_id", ASCENDING)], name="trace_start"),
    # get_span_stats over a time window (AgentOS's tool activity: the last N days).
    IndexModel([("start_time", ASCENDING)], name="start"),
]


def _literal(value: Any) -> dict[str, Any]:
    """A value inside a pipeline update: a name such as ``"$x"`` must not be read as a field path."""
    return {"$literal": value}


def component_level(workflow_id: str | None, team_id: str | None, agent_id: str | None, name: str) -> int:
    """How important a trace's name is (agno's ``_get_component_level``): 3 workflow root, 2 team
    root, 1 agent root, 0 anything else."""
    if ".run" not in name and ".arun" not in name:
        return 0
    if workflow_id:
        return 3
    if team_id:
        return 2
    if agent_id:
        return 1
    return 0


def _is_root_name(expression: Any) -> dict[str, Any]:
    name = {"$ifNull": [expression, ""]}
    return {
        "$or": [
            {"$regexMatch": {"input": name, "regex": r"\.run"}},
            {"$regexMatch": {"input": name, "regex": r"\.arun"}},
        ]
    }


def _is_set(field: str) -> dict[str, Any]:
    return {"$ne": [{"$ifNull": [f"${field}", None]}, None]}


_STORED_LEVEL = {
    "$switch": {
        "branches": [
            # $eq to False, not $not: the embedded test server lacks the $not expression.
            {"case": {"$eq": [_is_root_name("$name"), False]}, "then": 0},
            {"case": _is_set("workflow_id"), "then": 3},
            {"case": _is_set("team_id"), "then": 2},
            {"case": _is_set("agent_id"), "then": 1},
        ],
        "default": 0,
    }
}
"""The stored trace's level, from its name and its own context (before this part is merged in)."""


def trace_filter(trace_id: str, user_id: str | None) -> dict[str, Any]:
    """The trace, if this part may write it: a part naming a user needs the trace to be theirs or unowned."""
    if user_id is None:
        return {"_id": trace_id}
    return {"_id": trace_id, "user_id": {"$in": [user_id, None]}}


def upsert_trace(fields: TraceFields) -> Command:
    """One pipeline ``update`` (upsert) that merges this part of a trace into the stored one.

    The first stage reads only the stored values (every ``$field`` in one ``$set`` is the document
    as it was), so the name is compared with the stored trace's own level, as agno's SQL adapters
    do. agno's MongoDB adapter computes that level after merging the new context in, so a workflow
    root that arrives after its agent (the usual order: children end first) keeps the agent's name;
    here it takes the workflow's. The second stage derives the duration from the merged times.
    """
    level = component_level(fields.workflow_id, fields.team_id, fields.agent_id, fields.name)
    name = _literal(fields.name)
    merge: dict[str, Any] = {
        "trace_id": _literal(fields.trace_id),
        "name": {
            "$cond": {
                "if": {"$eq": [{"$type": "$name"}, "missing"]},
                "then": name,
                "else": {"$cond": {"if": {"$gt": [level, _STORED_LEVEL]}, "then": name, "else": "$name"}},
            }
        },
        "status": _literal(fields.status),
        "created_at": {"$ifNull": ["$created_at", _literal(fields.created_at)]},
        # $min / $max ignore a missing field, so the first part sets both times.
        "start_time": {"$min": ["$start_time", _literal(fields.start_time)]},
        "end_time": {"$max": ["$end_time", _literal(fields.end_time)]},
        "schema_version": _literal(SCHEMA_VERSION),
    }
    for key in CONTEXT_FIELDS:
        merge[key] = {"$ifNull": [f"${key}", _literal(getattr(fields, key))]}
    # Milliseconds since the epoch, subtracted: exact. (The embedded test server's date - date goes
    # through float seconds and can come out a millisecond short.)
    derive = {"duration_ms": {"$subtract": [{"$toLong": "$end_time"}, {"$toLong": "$start_time"}]}}
    return Command(
        TRACES,
        "update_one",
        {
            "filter": trace_filter(fields.trace_id, fields.user_id),
            "update": [{"$set": merge}, {"$set": derive}],
            "upsert": True,
        },
    )


def upsert_trace_plan(fields: TraceFields) -> Plan[bool]:
    """Merge one part of a trace; ``False`` if the trace belongs to another user (nothing changed).

    A duplicate key is sent once more before it counts as a refusal: two first parts of one trace
    racing to insert it collide the same way, and the second attempt then finds and merges it.
    """
    command = upsert_trace(fields)
    for attempt in range(2):
        try:
            yield command
        except DuplicateKeyError:
            if attempt == 1:
                return False
            continue
        return True
    return False  # unreachable


def span_counts_lookup(spans_collection: str) -> dict[str, Any]:
    """``$lookup`` stage: how many spans the trace has and how many ended in ERROR, as ``span_counts``."""
    return {
        "$lookup": {
            "from": spans_collection,
            "localField": "_id",
            "foreignField": "trace_id",
            "pipeline": [
                {
                    "$group": {
                        "_id": None,
                        "total": {"$sum": 1},
                        "errors": {"$sum": {"$cond": [{"$eq": ["$status_code", "ERROR"]}, 1, 0]}},
                    }
                }
            ],
            "as": "span_counts",
        }
    }


def get_trace(trace_id: str | None, run_id: str | None, spans_collection: str) -> Command:
    """One ``aggregate``: the trace by id (or the newest for a run) with its span counts."""
    stages: list[dict[str, Any]]
    if trace_id is not None:
        stages = [{"$match": {"_id": trace_id}}]
    else:
        stages = [{"$match": {"run_id": run_id}}, {"$sort": NEWEST_FIRST}]
    stages += [{"$limit": 1}, span_counts_lookup(spans_collection)]
    return aggregate(TRACES, stages)


def time_range(field: str, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    """``{field: {$gte: start, $lte: end}}`` with whichever bounds are given."""
    bounds: dict[str, Any] = {}
    if start is not None:
        bounds["$gte"] = start
    if end is not None:
        bounds["$lte"] = end
    return {field: bounds} if bounds else {}


def combine(*queries: dict[str, Any]) -> dict[str, Any]:
    """AND several queries; each keeps its own keys, so two conditions on one field both hold."""
    parts = [query for query in queries if query]
    if not parts:
        return {}
    if len(parts) == 1:
        return parts[0]
    return {"$and": parts}


def traces_page_plan(
    query: dict[str, Any], limit: int, skip: int, spans_collection: str, traces_collection: str = TRACES
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """A page of traces (newest first, with span counts) and the total, in one ``aggregate``: the
    page's documents, then the count appended by a ``$unionWith`` (no ``$facet``: each trace is its
    own document through the cursor). A page over :data:`FACET_MAX_ROWS` is counted by
    ``count_documents`` of its own."""
    head: list[dict[str, Any]] = [{"$match": query}, {"$sort": NEWEST_FIRST}]
    rows: list[dict[str, Any]] = [{"$skip": skip}, {"$limit": limit}, span_counts_lookup(spans_collection)]
    if limit > FACET_MAX_ROWS:
        documents: list[dict[str, Any]] = yield aggregate(TRACES, [*head, *rows])
        total: int = yield Command(TRACES, "count_documents", {"filter": query})
        return documents, total
    answer: list[dict[str, Any]] = yield aggregate(
        TRACES, with_total([*head, *rows], traces_collection, [{"$match": query}])
    )
    return split_total(answer)


def _non_null(array: Any, condition: dict[str, Any]) -> dict[str, Any]:
    return {"$filter": {"input": array, "as": "v", "cond": condition}}


def stats_pipeline(match: dict[str, Any], group_by: GroupBy) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``get_trace_stats`` aggregation, unpaged, and the pipeline yielding one document per group
    (to count the groups).

    ``session``: per session its owner and component ids, trace count and first/last trace,
    latest activity first. A component grouping (``agent``/``team``/``workflow``, or ``endpoint``:
    traces with no component id, by name) adds sessions, durations (avg, p95, max) and error
    traces, most traces first.

    Bounded in memory: every accumulator is a ``$sum`` / ``$min`` / ``$max`` (they spill to disk),
    never an array. Distinct sessions are counted by grouping twice, by (group, session) and then by
    group. The p95 is SQL's ``percentile_cont(0.95)`` over the numeric durations, computed as
    :func:`span_stats_pipeline` does: two ``$setWindowFields`` number each trace within its group in
    ascending and descending duration order, so each knows its rank and the group's size, and the
    group keeps only the one or two durations at the interpolated rank.
    """
    times = {"first_trace_at": {"$min": "$created_at"}, "last_trace_at": {"$max": "$created_at"}}
    if group_by == "session":
        scope: dict[str, Any] = {"session_id": {"$ne": None}}
        group: dict[str, Any] = {
            "_id": "$session_id",
            # $max, not $first: a session's traces may disagree (a null beside an id); take the id.
            **{key: {"$max": f"${key}"} for key in ("user_id", "agent_id", "team_id", "workflow_id")},
            "total_traces": {"$sum": 1},
            **times,
        }
        head = [{"$match": combine(scope, match)}]
        return [*head, {"$group": group}, {"$sort": {"last_trace_at": DESCENDING, "_id": ASCENDING}}], [
            *head,
            {"$group": {"_id": "$session_id"}},
        ]
    if group_by == "endpoint":
        scope = {"agent_id": None, "team_id": None, "workflow_id": None}
        key = "$name"
    else:
        scope = {f"{group_by}_id": {"$ne": None}}
        key = f"${group_by}_id"
    head = [{"$match": combine(scope, match)}]
    numeric = {"$isNumber": "$duration_ms"}
    partition = {"k": "$_k", "n": "$_n"}
    rank = {"$subtract": ["$up", 1]}  # 0-based position in ascending duration order
    at = {"$cond": ["$_n", "$r", None]}

    def at_rank(bound: str) -> dict[str, Any]:
        return {"$max": {"$cond": [{"$and": ["$_n", {"$eq": [rank, {bound: "$r"}]}]}, "$duration_ms", None]}}

    def total(field: str) -> dict[str, Any]:
        return {"$sum": f"${field}"}

    stages: list[dict[str, Any]] = [
        *head,
        {
            "$project": {
                "_k": key,
                "_n": numeric,
                "s": {"$ifNull": ["$session_id", None]},
                "duration_ms": True,
                "status": True,
                "created_at": True,
            }
        },
        {
            "$setWindowFields": {
                "partitionBy": partition,
                "sortBy": {"duration_ms": ASCENDING, "_id": ASCENDING},
                "output": {"up": {"$documentNumber": {}}},
            }
        },
        {
            "$setWindowFields": {
                "partitionBy": partition,
                "sortBy": {"duration_ms": DESCENDING, "_id": DESCENDING},
                "output": {"down": {"$documentNumber": {}}},
            }
        },
        # up + down - 1 is the size of the group's numeric durations; r the rank percentile_cont uses.
        {"$set": {"r": {"$multiply": [0.95, {"$subtract": [{"$add": ["$up", "$down"]}, 2]}]}}},
        {
            "$group": {
                "_id": {"k": "$_k", "s": "$s"},
                "traces": {"$sum": 1},
                "sum": {"$sum": {"$cond": ["$_n", "$duration_ms", 0]}},
                "count": {"$sum": {"$cond": ["$_n", 1, 0]}},
                "max_duration_ms": {"$max": "$duration_ms"},
                "error_traces": {"$sum": {"$cond": [{"$eq": ["$status", "ERROR"]}, 1, 0]}},
                **times,
                "r": {"$max": at},
                "low": at_rank("$floor"),
                "high": at_rank("$ceil"),
            }
        },
        {
            "$group": {
                "_id": "$_id.k",
                "total_traces": total("traces"),
                "total_sessions": {"$sum": {"$cond": [{"$eq": ["$_id.s", None]}, 0, 1]}},
                "sum": total("sum"),
                "count": total("count"),
                "max_duration_ms": {"$max": "$max_duration_ms"},
                "error_traces": total("error_traces"),
                "first_trace_at": {"$min": "$first_trace_at"},
                "last_trace_at": {"$max": "$last_trace_at"},
                "r": {"$max": "$r"},
                "low": {"$max": "$low"},
                "high": {"$max": "$high"},
            }
        },
        {
            "$set": {
                "avg_duration_ms": {"$cond": [{"$gt": ["$count", 0]}, {"$divide": ["$sum", "$count"]}, None]},
                "p95_duration_ms": {
                    "$add": [
                        "$low",
                        {"$multiply": [{"$subtract": ["$r", {"$floor": "$r"}]}, {"$subtract": ["$high", "$low"]}]},
                    ]
                },
            }
        },
        {"$unset": ["sum", "count", "r", "low", "high"]},
        {"$sort": {"total_traces": DESCENDING, "_id": ASCENDING}},
    ]
    return stages, [*head, {"$group": {"_id": key}}]


# --- FilterExpr ----------------------------------------------------------------------------------------------

TRACE_FIELDS = {
    "trace_id",
    "name",
    "status",
    "start_time",
    "end_time",
    "duration_ms",
    "run_id",
    "session_id",
    "user_id",
    "agent_id",
    "team_id",
    "workflow_id",
    "created_at",
}
"""What a ``filter_expr`` may name (agno's ``TRACE_COLUMNS``)."""

DATETIME_FIELDS = {"start_time", "end_time", "created_at"}
MAX_FILTER_DEPTH = 10
_COMPARE = {"EQ": "$eq", "GT": "$gt", "GTE": "$gte", "LT": "$lt", "LTE": "$lte"}
_FIELD_OPS = {*_COMPARE, "NEQ", "CONTAINS", "STARTSWITH"}


def _filter_error(message: str) -> InvalidInputError:
    return InvalidInputError("filter_expr", message)


def _filter_value(key: str, value: object) -> Any:
    """A comparison value: a plain scalar (never a dict: it would be read as operators); times as dates."""
    if key in DATETIME_FIELDS:
        try:
            return parse_datetime_utc(value)
        except (TypeError, ValueError):
            raise _filter_error(f"{key} needs an ISO 8601 time, got {value!r}") from None
    if key == "duration_ms" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise _filter_error(f"duration_ms needs a number, got {value!r}") from None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    raise _filter_error(f"{key} needs a string or number, got {type(value).__name__}")


def _filter_key(expression: dict[str, Any], op: str) -> str:
    key = expression.get("key")
    if not isinstance(key, str) or key not in TRACE_FIELDS:
        raise _filter_error(f"{op} on {key!r}: the field must be one of {sorted(TRACE_FIELDS)}")
    return key


def filter_query(expression: object, depth: int = 0) -> dict[str, Any]:
    """agno's ``FilterExpr`` dict (``AND``/``OR``/``NOT``, ``EQ``, ``NEQ``, ``GT(E)``, ``LT(E)``, ``IN``,
    ``CONTAINS``, ``STARTSWITH``) as a MongoDB query on the trace fields, with SQL's meaning:
    a null field matches no comparison (so ``NEQ`` skips nulls), ``CONTAINS`` / ``STARTSWITH`` are
    case-insensitive and literal. ``NOT`` is ``$nor``, so unlike SQL it does match a null field.
    Anything else is refused, naming ``filter_expr``.
    """
    if depth > MAX_FILTER_DEPTH:
        raise _filter_error(f"nests deeper than {MAX_FILTER_DEPTH} levels")
    if not isinstance(expression, dict) or not isinstance(expression.get("op"), str):
        raise _filter_error(f"each condition must be a dict with an 'op', got {expression!r}")
    op = expression["op"]
    if op in _FIELD_OPS:
        key = _filter_key(expression, op)
        if expression.get("value") is None:
            raise _filter_error(f"{op} needs 'key' and 'value'")
        field = "_id" if key == "trace_id" else key
        if op in ("CONTAINS", "STARTSWITH"):
            if key in DATETIME_FIELDS:
                raise _filter_error(f"{op} does not apply to the time field {key}; use GTE/LTE")
            pattern = re.escape(str(_filter_value(key, expression["value"])))
            return {field: {"$regex": pattern if op == "CONTAINS" else f"^{pattern}", "$options": "i"}}
        value = _filter_value(key, expression["value"])
        if op == "NEQ":
            return {field: {"$nin": [value, None]}}
        return {field: {_COMPARE[op]: value}}
    if op == "IN":
        key = _filter_key(expression, op)
        values = expression.get("values")
        if not isinstance(values, list | tuple):
            raise _filter_error("IN needs 'key' and a list of 'values'")
        return {"_id" if key == "trace_id" else key: {"$in": [_filter_value(key, value) for value in values]}}
    if op in ("AND", "OR"):
        conditions = expression.get("conditions")
        if not isinstance(conditions, list | tuple) or not conditions:
            raise _filter_error(f"{op} needs a non-empty list of 'conditions'")
        return {f"${op.lower()}": [filter_query(condition, depth + 1) for condition in conditions]}
    if op == "NOT":
        condition = expression.get("condition")
        if not condition:
            raise _filter_error("NOT needs a 'condition'")
        return {"$nor": [filter_query(condition, depth + 1)]}
    raise _filter_error(f"unknown operator {op!r}")


# --- spans ---------------------------------------------------------------------------------------------------


def insert_spans(documents: list[dict[str, Any]]) -> Command:
    """One ``insert``: ``insert_one`` for one span, an unordered ``insert_many`` for a batch."""
    if len(documents) == 1:
        return Command(SPANS, "insert_one", {"document": documents[0]})
    return Command(SPANS, "insert_many", {"documents": documents, "ordered": False})


def insert_spans_plan(documents: list[dict[str, Any]]) -> Plan[None]:
    """Insert spans; those already stored (same ``span_id``: a retried batch) are left as they are."""
    if not documents:
        return None
    try:
        yield insert_spans(documents)
    except DuplicateKeyError:
        pass
    except BulkWriteError as error:
        if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
            raise
        if error.details.get("writeConcernErrors"):
            raise
    return None


def get_span(span_id: str) -> Command:
    """One ``find`` by ``_id``."""
    return Command(SPANS, "find_one", {"filter": {"_id": span_id}})


def get_spans(trace_id: str | None, parent_span_id: str | None, limit: int) -> Command:
    """One ``find``; the spans of a trace come back in start order (the ``trace_start`` index)."""
    query: dict[str, Any] = {}
    if trace_id is not None:
        query["trace_id"] = trace_id
    if parent_span_id is not None:
        query["parent_span_id"] = parent_span_id
    kwargs: dict[str, Any] = {"filter": query, "limit": limit}
    if trace_id is not None:
        kwargs["sort"] = [("start_time", ASCENDING), ("_id", ASCENDING)]
    return Command(SPANS, "find", kwargs)


# --- span statistics -----------------------------------------------------------------------------------------

SPAN_KIND = "openinference.span.kind"
"""The span attribute agno reads as a span's type (``AGENT``, ``LLM``, ``TOOL``, ``CHAIN``, ...)."""

SPAN_STAT_SORTS = {
    "total_calls",
    "avg_duration_ms",
    "p95_duration_ms",
    "max_duration_ms",
    "error_count",
    "last_called_at",
}


def span_stats_pipeline(
    match: dict[str, Any],
    traces_match: dict[str, Any],
    span_type: str | None,
    traces_collection: str,
    sort_by: str,
    direction: int,
) -> list[dict[str, Any]]:
    """Spans grouped by name and span type (the ``openinference.span.kind`` attribute), ordered by
    ``sort_by`` then name and type: calls, average / p95 / max duration, errors, last start.

    ``traces_match`` (agent, team, workflow) keeps the spans whose trace matches, through a
    ``$lookup`` by ``_id`` per span. Only name, duration, status and start are carried past the
    first stage (never the attributes payload). The p95 is SQL's ``percentile_cont(0.95)``, computed
    in constant memory per group: two ``$setWindowFields`` number each span within its group in
    ascending and in descending duration order (sorts the server spills to disk), so every span
    knows its rank and the group's size, and the group keeps only the one or two durations at the
    interpolated rank. No array of durations is ever built.
    """
    stages: list[dict[str, Any]] = [{"$match": match}]
    if traces_match:
        stages += [
            {
                "$lookup": {
                    "from": traces_collection,
                    "localField": "trace_id",
                    "foreignField": "_id",
                    "pipeline": [{"$match": traces_match}, {"$project": {"_id": True}}],
                    "as": "trace",
                }
            },
            {"$match": {"trace": {"$ne": []}}},
        ]
    kind = {"$getField": {"field": {"$literal": SPAN_KIND}, "input": "$attributes"}}
    stages.append(
        {
            "$project": {
                "name": True,
                "duration_ms": True,
                "status_code": True,
                "start_time": True,
                "span_type": {"$ifNull": [kind, None]},
            }
        }
    )
    if span_type is not None:
        stages.append({"$match": {"span_type": span_type}})
    group_key = {"name": "$name", "span_type": "$span_type"}
    rank = {"$subtract": ["$up", 1]}  # 0-based position in ascending duration order
    stages += [
        {
            "$setWindowFields": {
                "partitionBy": group_key,
                "sortBy": {"duration_ms": ASCENDING, "_id": ASCENDING},
                "output": {"up": {"$documentNumber": {}}},
            }
        },
        {
            "$setWindowFields": {
                "partitionBy": group_key,
                "sortBy": {"duration_ms": DESCENDING, "_id": DESCENDING},
                "output": {"down": {"$documentNumber": {}}},
            }
        },
        # up + down - 1 is the group's size; r the fractional rank percentile_cont interpolates at.
        {"$set": {"r": {"$multiply": [0.95, {"$subtract": [{"$add": ["$up", "$down"]}, 2]}]}}},
        {
            "$group": {
                "_id": group_key,
                "total_calls": {"$sum": 1},
                "avg_duration_ms": {"$avg": "$duration_ms"},
                "max_duration_ms": {"$max": "$duration_ms"},
                "error_count": {"$sum": {"$cond": [{"$eq": ["$status_code", "ERROR"]}, 1, 0]}},
                "last_called_at": {"$max": "$start_time"},
                "r": {"$first": "$r"},
                "low": {"$max": {"$cond": [{"$eq": [rank, {"$floor": "$r"}]}, "$duration_ms", None]}},
                "high": {"$max": {"$cond": [{"$eq": [rank, {"$ceil": "$r"}]}, "$duration_ms", None]}},
            }
        },
        {
            "$set": {
                "p95_duration_ms": {
                    "$add": [
                        "$low",
                        {"$multiply": [{"$subtract": ["$r", {"$floor": "$r"}]}, {"$subtract": ["$high", "$low"]}]},
                    ]
                }
            }
        },
        {"$sort": {sort_by: direction, "_id.name": ASCENDING, "_id.span_type": ASCENDING}},
    ]
    return stages


def span_stats_plan(
    pipeline: list[dict[str, Any]], limit: int | None, skip: int, spans_collection: str = SPANS
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """A page of groups and how many groups there are: one ``aggregate``.

    Without a limit every group comes back (agno then skips none) and their number is the total;
    a page up to :data:`FACET_MAX_ROWS` is followed in the same cursor by the number of groups (a
    ``$unionWith`` grouping the matched spans by name and type only, without the duration
    windows); ``limit=0`` (an empty page, as SQL's ``LIMIT 0``) and a larger page count the groups
    in an ``aggregate`` of its own. ``spans_collection`` is the spans' real collection name.
    """
    windows = next(i for i, stage in enumerate(pipeline) if "$setWindowFields" in stage)
    counting = [*pipeline[:windows], {"$group": {"_id": {"name": "$name", "span_type": "$span_type"}}}]
    result = yield from page_with_total_plan(SPANS, spans_collection, pipeline, counting, skip, limit)
    return result
