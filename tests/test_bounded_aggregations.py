"""Every aggregation is bounded in memory and in output size on MongoDB 6.0+ (issue 12, part 5).

The embedded test server never refuses what a real MongoDB 6.0-8.0 refuses: a ``$sort`` / ``$group``
past 100 MB without ``allowDiskUse``, a ``$push`` / ``$addToSet`` array past 100 MB (those
accumulators cannot spill: ``ExceededMemoryLimit``, code 146), any single result document past
16 MiB (a ``$facet`` or ``distinct`` answer, a grouped array, a ``$lookup`` array holding many
large documents), an operator newer than 6.0. So the first part of this file walks every plan of
the contract without a server (the same walk as ``tests/test_shard_targeting.py``, plus arguments
that reach the paged, grouped, overflow and windowed paths) and checks every command against
these rules:

1. no ``distinct`` command (its answer is one document): a cursor instead;
2. no ``$facet`` stage (its answer is one document, its branches buffered in memory);
3. ``allowDiskUse: True`` on every ``aggregate`` that sorts, groups or windows, at any depth;
4. no ``$push`` / ``$addToSet`` accumulator in ``$group`` / ``$bucket`` / ``$setWindowFields``,
   unless :data:`BOUNDED_ARRAYS` names it with the reason its array is bounded per output
   document (the group key bounds it, e.g. at most one value per key) — none is needed today;
5. every ``$lookup`` brings at most one document, or a bounded answer, into a pipeline document:
   its ``as`` array is unwound by the very next stage (the server then never builds the array),
   its sub-pipeline ends in a bounded stage (``$group`` on a constant, ``$limit``, ``$count``), or
   it joins a scalar to a unique ``_id`` (:data:`SCALAR_LOCAL_FIELDS`, each with its reason);
6. no operator of MongoDB 7.0 or later (:data:`NEWER_THAN_6_0`).

The second part runs the rewritten aggregations on a real wire server (every client flavour) and
compares them with agno's own SQLite store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agno.db.schemas.memory import UserMemory
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

from agno_mongo.domains import plans
from agno_mongo.ops import traces as trace_ops
from agno_mongo.ops.command import Command
from agno_mongo.ops.runs import runs_pipeline
from tests.conftest import Store, call
from tests.test_shard_targeting import arguments, collect, contract_self, plain, policies

# --- the rules -------------------------------------------------------------------------------------------

SPILLING = {"$sort", "$group", "$setWindowFields", "$bucket", "$bucketAuto", "$sortByCount"}
"""Stages that hold many documents in memory, and spill them to disk only with ``allowDiskUse``."""

ARRAY_ACCUMULATORS = {"$push", "$addToSet"}
BOUNDED_ARRAYS: dict[tuple[str, str], str] = {}
"""(collection role, accumulated field) -> why that array is bounded per output document. Empty:
every grouping counts with ``$sum`` and picks with ``$min`` / ``$max`` / ``$first``."""

SCALAR_LOCAL_FIELDS: dict[str, str] = {
    "trace_id": "a span's one trace id, joined to the traces' unique _id (one trace, no payload)",
    "part.c": "the chunk id of ONE spilled entry (the parts are unwound first): one chunk, <= 16 MiB",
}
"""``$lookup`` local fields that hold one value per pipeline document, joined to ``_id``."""

NEWER_THAN_6_0 = {
    "$percentile": "7.0",
    "$median": "7.0",
    "$bitAnd": "7.0 (6.3 rapid release)",
    "$bitOr": "7.0 (6.3 rapid release)",
    "$bitXor": "7.0 (6.3 rapid release)",
    "$bitNot": "7.0 (6.3 rapid release)",
    "$toUUID": "8.0",
    "$changeStreamSplitLargeEvent": "7.0",
    "$queryStats": "7.1",
}
"""Operators a MongoDB 6.0 server refuses. (``$topN``/``$bottomN``/``$firstN``/``$sortArray`` are
5.2, ``$setWindowFields``/``$documentNumber``/``$getField`` 5.0: allowed.)"""

BOUNDING_SUB_STAGES = {"$limit", "$count"}


def sub_pipelines(stage: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The pipelines nested in one stage: ``$lookup`` / ``$unionWith`` pipelines, ``$facet`` branches."""
    (name, body), *_ = stage.items()
    if name in ("$lookup", "$unionWith") and isinstance(body, dict) and isinstance(body.get("pipeline"), list):
        yield body["pipeline"]
    if name == "$facet" and isinstance(body, dict):
        yield from (branch for branch in body.values() if isinstance(branch, list))


def all_stages(pipeline: list[dict[str, Any]]) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Every stage at any depth, as (its pipeline, its index)."""
    for index, stage in enumerate(pipeline):
        yield pipeline, index
        for inner in sub_pipelines(stage):
            yield from all_stages(inner)


def operators(value: Any) -> Iterator[str]:
    """Every ``$`` key anywhere in ``value`` (stage names and expression operators)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str) and key.startswith("$"):
                yield key
            yield from operators(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from operators(inner)


def bounded_sub_pipeline(pipeline: list[dict[str, Any]]) -> bool:
    last = pipeline[-1] if pipeline else {}
    if BOUNDING_SUB_STAGES & last.keys():
        return True
    group = last.get("$group")
    return isinstance(group, dict) and not isinstance(group.get("_id"), str | dict)


def lookup_problem(pipeline: list[dict[str, Any]], index: int) -> str | None:
    body = pipeline[index]["$lookup"]
    following = pipeline[index + 1] if index + 1 < len(pipeline) else {}
    unwound = following.get("$unwind")
    path = unwound.get("path") if isinstance(unwound, dict) else unwound
    if path == f"${body.get('as')}":
        return None
    if isinstance(body.get("pipeline"), list) and bounded_sub_pipeline(body["pipeline"]):
        return None
    if body.get("foreignField") == "_id" and body.get("localField") in SCALAR_LOCAL_FIELDS:
        return None
    return f"$lookup {body.get('localField')} -> {body.get('foreignField')} may gather many documents into one"


def accumulator_problems(role: str, stage: dict[str, Any]) -> list[str]:
    (name, body), *_ = stage.items()
    if name in ("$group", "$bucket", "$bucketAuto"):
        fields = body.get("output", body) if name != "$group" else body
    elif name == "$setWindowFields":
        fields = body.get("output", {})
    else:
        return []
    problems = []
    for field, accumulator in fields.items():
        if field == "_id" or not isinstance(accumulator, dict):
            continue
        used = ARRAY_ACCUMULATORS & accumulator.keys()
        if used and (role, field) not in BOUNDED_ARRAYS:
            problems.append(f"{name} accumulates {sorted(used)} into {field!r}: an unbounded array")
    return problems


def problems(command: Command) -> list[str]:
    """What a MongoDB 6.0-8.0 server could refuse in ``command`` on a large collection."""
    if command.op == "distinct":
        return [f"distinct on {command.collection}: a one-document answer, refused past 16 MiB"]
    if command.op != "aggregate":
        return []
    pipeline = command.kwargs["pipeline"]
    found: list[str] = []
    stages = [(inner, index) for inner, index in all_stages(pipeline)]
    names = {next(iter(inner[index])) for inner, index in stages}
    if "$facet" in names:
        found.append("$facet: a one-document answer, its branches buffered in memory")
    if SPILLING & names and command.kwargs.get("allowDiskUse") is not True:
        found.append(f"{sorted(SPILLING & names)} without allowDiskUse: refused past 100 MB")
    for inner, index in stages:
        found += accumulator_problems(command.collection, inner[index])
        if "$lookup" in inner[index] and (problem := lookup_problem(inner, index)):
            found.append(problem)
    found += [f"{op} needs MongoDB {NEWER_THAN_6_0[op]}" for op in set(operators(pipeline)) & NEWER_THAN_6_0.keys()]
    return found


# --- the walk --------------------------------------------------------------------------------------------

BIG = trace_ops.FACET_MAX_ROWS + 1
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "get_runs": [
        {"session_id": "s"},
        {"session_id": "s", "sort_by": "created_at", "sort_order": "desc"},
        {"limit": 2, "page": 2, "deserialize": False},
        {"agent_id": "a", "status": RunStatus.completed, "deserialize": False, "limit": 1},
    ],
    "get_trace": [{"run_id": "r"}],
    "get_traces": [{"limit": BIG}, {"user_id": "u", "limit": 2, "page": 3}],
    "get_trace_stats": [{"group_by": g} for g in trace_ops.GROUP_BY] + [{"group_by": "agent", "limit": BIG}],
    "get_span_stats": [{"limit": None}, {"limit": 0}, {"limit": BIG}, {"agent_id": "a", "span_type": "TOOL"}],
    "get_user_memory_stats": [{"limit": 2, "page": 2}, {"limit": BIG, "page": 1}, {"user_id": "u"}],
    "get_learnings_user_stats": [{"limit": 2, "page": 2}, {"limit": BIG, "page": 1}],
    "get_all_memory_topics": [{"user_id": "u"}],
    "list_authz_users": [{"sort_by": "email"}, {"sort_by": "name", "order": "asc", "offset": 3}],
    "count_authz_users_by_day": [{"starting_at": 0, "ending_before": 86400 * 3}],
    "get_session": [{"session_id": "s", "session_type": "agent"}],
}


def rows(command: Command) -> Any:
    """Aggregates answer a grouped row with spilled sessions (metrics then reads the overflow);
    everything else as when everything matches."""
    if command.op == "aggregate":
        return [{"_id": {"day": 1, "owner": "", "kind": "agent"}, "count": 1, "runs": 1, "spilled": 1}]
    return plain(command, matched=1)


def answerers() -> dict[str, Callable[[], Callable[[Command], Any]]]:
    return {**policies(), "grouped rows": lambda: rows}


def walk() -> Iterator[tuple[str, Command]]:
    """(method, command) for every command every contract plan sends under every answer policy."""
    for name, function in plans():
        base = arguments(name, function)
        for variant in [{}, *VARIANTS.get(name, [])]:
            for make in answerers().values():
                try:
                    plan = function(contract_self(), **{**base, **variant})
                except Exception:  # a variant a method refuses up front sends nothing
                    continue
                commands, _ = collect(plan, make())
                for command in commands:
                    yield name, command


WALKED = list(walk())

AGGREGATING = {
    "get_runs",
    "get_trace",
    "get_traces",
    "get_trace_stats",
    "get_span_stats",
    "get_user_memory_stats",
    "get_all_memory_topics",
    "get_learnings_user_stats",
    "search_learnings",
    "calculate_metrics",
    "list_authz_roles",
    "list_authz_users",
    "count_authz_users_by_status",
    "count_authz_users_by_day",
    "list_transcript_sessions",
    "list_transcript_subpaths",
    "get_product_counts",
    "get_project_counts",
}
"""Methods that must have been seen sending an aggregate (else the walk proves little)."""


def test_every_aggregation_of_the_contract_is_bounded_on_mongodb_6() -> None:
    found = [f"{name}: {problem}" for name, command in WALKED for problem in problems(command)]
    assert found == []


def test_the_walk_reaches_every_aggregation() -> None:
    sent = {name for name, command in WALKED if command.op == "aggregate"}
    assert sent >= AGGREGATING, f"never aggregated: {AGGREGATING - sent}"
    pipelines = [str(command.kwargs["pipeline"]) for _, command in WALKED if command.op == "aggregate"]
    for shape in ("$unionWith", "$setWindowFields", "'from': 'collection', 'localField': 'entry.c'", "'part.c'"):
        assert any(shape in text for text in pipelines), shape  # pages with totals, p95, overflow reads
    assert not any(command.op == "distinct" for _, command in WALKED)


def test_the_rules_refuse_what_a_real_server_refuses() -> None:
    """The shapes issue 12 found, each refused, and their bounded counterparts allowed."""

    def agg(pipeline: list[dict[str, Any]], disk: bool = True) -> Command:
        return Command("traces", "aggregate", {"pipeline": pipeline, **({"allowDiskUse": True} if disk else {})})

    old_trace_stats = agg(
        [
            {"$group": {"_id": "$agent_id", "sessions": {"$addToSet": "$session_id"}, "d": {"$push": "$duration_ms"}}},
            {"$sort": {"_id": 1}},
            {"$facet": {"rows": [{"$limit": 20}], "total": [{"$count": "n"}]}},
        ]
    )
    assert len(problems(old_trace_stats)) == 3
    assert problems(agg([{"$sort": {"a": 1}}], disk=False))
    assert problems(agg([{"$lookup": {"from": "x", "as": "y", "pipeline": [{"$sort": {"a": 1}}]}}], disk=False))
    assert problems(Command("memories", "distinct", {"key": "topics"}))
    assert problems(agg([{"$group": {"_id": "$k", "p": {"$percentile": {"input": "$d", "p": [0.95]}}}}]))
    assert problems(agg([{"$setWindowFields": {"output": {"all": {"$push": "$d"}}}}]))
    every_chunk = {"$lookup": {"from": "o", "localField": "spilled.c", "foreignField": "_id", "as": "_chunks"}}
    assert problems(agg([every_chunk]))  # the old get_runs: all of a session's chunks in one document
    assert problems(agg([every_chunk, {"$unwind": "$_chunks"}])) == []
    two_stage = [
        {"$group": {"_id": {"k": "$agent_id", "s": "$session_id"}, "n": {"$sum": 1}}},
        {"$group": {"_id": "$_id.k", "sessions": {"$sum": 1}}},
    ]
    assert problems(agg(two_stage)) == []
    assert problems(agg(two_stage, disk=False))
    assert (
        problems(agg([{"$group": {"_id": "$k", "top": {"$topN": {"n": 3, "sortBy": {"d": 1}, "output": "$d"}}}}])) == []
    )


def test_one_sessions_runs_in_their_own_order_need_no_sort() -> None:
    """get_runs(session_id=...) streams the runs in the session's order: memory of one chunk, no
    global sort; across sessions (or in another order) the sort spills to disk."""

    def stages(**kwargs: Any) -> set[str]:
        base: dict[str, Any] = {"overflow_collection": "o", "user_id": None, "run_filter": {}, "skip": 0, "limit": None}
        return {next(iter(stage)) for stage in runs_pipeline(**{**base, **kwargs})}

    assert "$sort" not in stages(session_id="s", sort=[("_seq", 1), ("run_index", 1)])
    assert "$sort" in stages(session_id="s", sort=[("runs.created_at", -1), ("_id", -1), ("run_index", -1)])
    assert "$sort" in stages(session_id=None, sort=[("runs.created_at", 1), ("_id", 1), ("run_index", 1)])


# --- the same answers as agno's SQLite, on a real wire server ---------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(milliseconds=round(seconds * 1000))


def make_trace(index: int) -> Any:
    from agno.tracing.schemas import Trace

    agent = [None, "a1", "a2", "a1"][index % 4]
    team = "t1" if index % 5 == 0 else None
    workflow = "w1" if index % 7 == 0 else None
    duration = [100, 250, 250, 4000, 10, 999][index % 6] * (1 + index % 3)
    return Trace(
        trace_id=f"tr{index:02d}",
        name="Agent.run" if agent or team or workflow else ["POST /x", "GET /y"][index % 2],
        status="ERROR" if index % 6 == 1 else "OK",
        start_time=at(index),
        end_time=at(index + duration / 1000),
        duration_ms=duration,
        total_spans=0,
        error_count=0,
        run_id=f"r{index}",
        session_id=None if index % 9 == 4 else f"s{index % 4}",
        user_id=["alice", "bob", None][index % 3],
        agent_id=agent,
        team_id=team,
        workflow_id=workflow,
        created_at=at(index * 10),
    )


def percentile_cont(values: list[int], fraction: float = 0.95) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    return low + (rank - math.floor(rank)) * (high - low)


def as_aware(value: Any) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value).astimezone(UTC)
    return value


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without p95 (agno's SQLite has none), times as aware datetimes, averages rounded."""
    out = []
    for row in rows:
        row = {key: value for key, value in row.items() if key != "p95_duration_ms"}
        for key in ("first_trace_at", "last_trace_at"):
            if key in row:
                row[key] = as_aware(row[key])
        if isinstance(row.get("avg_duration_ms"), float):
            row["avg_duration_ms"] = round(row["avg_duration_ms"], 6)
        out.append(row)
    return out


STATS_CASES: list[dict[str, Any]] = [
    *({"group_by": g} for g in trace_ops.GROUP_BY),
    {"group_by": "agent", "limit": 1, "page": 2},
    {"group_by": "session", "limit": 2, "page": 2},
    {"group_by": "session", "limit": 3, "page": 9},
    {"group_by": "endpoint", "user_id": "alice"},
]


@pytest.mark.parametrize("kwargs", STATS_CASES, ids=[repr(case) for case in STATS_CASES])
async def test_trace_stats_match_agnos_sqlite(store: Store, oracle: Any, kwargs: dict[str, Any]) -> None:
    traces = [make_trace(index) for index in range(30)]
    for db in (store.db, oracle):
        for item in traces:
            await call(db.upsert_trace(item))
    store.commands.clear()
    ours, ours_total = await call(store.db.get_trace_stats(**kwargs))
    assert store.commands.names == ["aggregate"]  # the page and its total in one cursor
    theirs, theirs_total = await call(oracle.get_trace_stats(**kwargs))
    assert (comparable(ours), ours_total) == (comparable(theirs), theirs_total)
    group_by = kwargs["group_by"]
    if group_by != "session":  # our p95 is SQL's percentile_cont(0.95) of the group's durations
        key = "name" if group_by == "endpoint" else f"{group_by}_id"
        for row in ours:
            members = [t for t in traces if getattr(t, key) == row[key] and (group_by != "endpoint" or not t.agent_id)]
            members = [t for t in members if group_by != "endpoint" or not (t.team_id or t.workflow_id)]
            members = [t for t in members if kwargs.get("user_id") in (None, t.user_id)]
            expected = percentile_cont([t.duration_ms for t in members])
            assert expected is not None and row["p95_duration_ms"] == round(expected, 1)  # rounded as agno's


def memory(index: int) -> UserMemory:
    return UserMemory(
        memory_id=f"m{index:02d}",
        memory=f"fact {index}",
        user_id=["alice", "bob", "carol", None][index % 4],
        topics=[["tea", "food"], ["sport"], [], ["tea"]][index % 4] + ([f"t{index % 3}"] if index % 2 else []),
        updated_at=1_700_000_000 + index * 7 % 23,
    )


def by_user(rows: list[dict[str, Any]], masked: str) -> list[dict[str, Any]]:
    """Rows in user order with one time field masked: the stores write ``updated_at`` themselves
    (the clock's second), so rows tied on it may come in either order (agno's SQL has no
    tie-breaker; ours is the user id)."""
    return sorted(({**row, masked: "<time>"} for row in rows), key=lambda row: str(row["user_id"]))


async def test_memory_stats_and_topics_match_agnos_sqlite(store: Store, oracle: Any) -> None:
    for db in (store.db, oracle):
        for index in range(20):
            await call(db.upsert_user_memory(memory(index)))
    store.commands.clear()
    ours, total = await call(store.db.get_user_memory_stats())
    assert store.commands.names == ["aggregate"]
    theirs, theirs_total = await call(oracle.get_user_memory_stats())
    field = "last_memory_updated_at"
    assert (by_user(ours, field), total) == (by_user(theirs, field), theirs_total) and total == 3
    assert [row[field] for row in ours] == sorted((row[field] for row in ours), reverse=True)
    pages = []
    for page in (1, 2, 3):
        store.commands.clear()
        rows, page_total = await call(store.db.get_user_memory_stats(limit=2, page=page))
        assert store.commands.names == ["aggregate"] and page_total == 3  # the page and the total, one cursor
        theirs_rows, theirs_page_total = await call(oracle.get_user_memory_stats(limit=2, page=page))
        assert len(rows) == len(theirs_rows)
        # agno's SQLite answers a page past the end with ([], 0); every other page with the total.
        assert theirs_page_total == (3 if theirs_rows else 0)
        pages += rows
    assert pages == ours
    for user_id in (None, "alice", "nobody"):
        ours_topics = await call(store.db.get_all_memory_topics(user_id=user_id))
        assert sorted(ours_topics) == sorted(await call(oracle.get_all_memory_topics(user_id=user_id)))
        assert len(ours_topics) == len(set(ours_topics))


LEARNING_CASES: list[dict[str, Any]] = [
    {"sort_by": "user_id", "sort_order": "asc"},
    {"sort_by": "user_id", "sort_order": "desc", "limit": 1, "page": 2},
    {"sort_by": "user_id", "sort_order": "asc", "limit": 3, "page": 2},
    {"sort_by": "user_id", "sort_order": "asc", "limit": 2, "page": 1, "learning_type": "user_profile"},
]


@pytest.mark.parametrize("kwargs", LEARNING_CASES, ids=[repr(case) for case in LEARNING_CASES])
async def test_learning_stats_match_agnos_sqlite(store: Store, oracle: Any, kwargs: dict[str, Any]) -> None:
    users = ["alice", "bob", "carol", None, "dave"]
    for db in (store.db, oracle):
        for index in range(12):
            kind = "user_profile" if index % 2 else "entity_memory"
            await call(db.upsert_learning(f"l{index}", kind, {"n": index}, user_id=users[index % 5]))
    store.commands.clear()
    ours, total = await call(store.db.get_learnings_user_stats(**kwargs))
    assert store.commands.names == ["aggregate"]
    theirs, theirs_total = await call(oracle.get_learnings_user_stats(**kwargs))
    field = "last_learning_updated_at"
    assert [{**row, field: "<time>"} for row in ours] == [{**row, field: "<time>"} for row in theirs]
    assert total == theirs_total


async def test_a_long_sessions_runs_come_in_order_through_every_chunk(store: Store) -> None:
    """get_runs of one session reads its overflow one chunk per pipeline document (never all of a
    long session's chunks in one), in the session's order, with run_index its place."""
    db = type(store.db)(db_client=store.db.db_client, db_name=store.db.db_name, max_runs_bytes=32 * 1024)
    await call(db.upsert_session(AgentSession(session_id="long", agent_id="a", user_id="u")))
    for i in range(40):
        run = RunOutput(run_id=f"r{i:02d}", agent_id="a", session_id="long", content=f"{i}:" + "x" * 3000)
        run.status = RunStatus.error if i % 5 == 0 else RunStatus.completed
        await call(db.upsert_run(run, "long", "u"))
    assert store.raw.agno_sessions_overflow.count_documents({"session_id": "long"}) >= 3
    rows, total = await call(db.get_runs(session_id="long", deserialize=False))
    assert [row["run_id"] for row in rows] == [f"r{i:02d}" for i in range(40)] and total == 40
    assert [row["run_index"] for row in rows] == list(range(40))
    failed, total = await call(db.get_runs(session_id="long", status=RunStatus.error, deserialize=False))
    assert [(row["run_id"], row["run_index"]) for row in failed] == [(f"r{i:02d}", i) for i in range(0, 40, 5)]
    page, total = await call(db.get_runs(limit=7, page=3, deserialize=False))
    assert [row["run_id"] for row in page] == [f"r{i:02d}" for i in range(14, 21)] and total == 40
