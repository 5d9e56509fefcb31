"""Every listing's filter and sort is served by a declared index, tie-breaker included (issue 12). No server.

A real MongoDB sorts in memory whatever no index orders: it spills to disk on a self-managed server
and fails where disk use is not allowed (Atlas shared tiers: error 292,
QueryExceededMemoryLimitNoDiskUseAllowed, past the 100 MB in-memory sort limit). With runs included a
session listing would hold whole sessions in that sort. So each listing plan is driven here with
canned answers, and every ``find`` / ``find_one`` it sends with a sort, and every ``aggregate``'s
leading ``$match`` + ``$sort``, is checked against the indexes its collection role declares
(:data:`agno_mongo.domains.INDEXES`; sparse and partial indexes are not counted).

The rule (MongoDB's, as its query planner applies it; Equality, Sort, Range):

* The query's equality predicates (``field: value``, ``{"$eq": value}``) bind fields to one value;
  an ``$in`` of a few scalars binds a field to a few values (the planner scans each and merges them
  in sort order, ``SORT_MERGE``, up to 200 scans). A sort key bound to one value is constant and
  drops out of the sort.
* An index serves the sort when its key starts with bound fields only (any of them, any order), and
  then has the remaining sort keys in order, their directions all equal to the sort's or all reversed
  (``_id``, the tie-breaker, included). Fields bound to one value may sit between the sort keys.
  Whatever follows, and every other predicate (ranges, ``$ne``, ``$exists``, a ``$regex`` name
  search, the equalities the prefix does not hold), is a filter on the walked range: the results
  stream in index order, nothing is sorted in memory.
* A top-level ``$or`` is served either as such a filter, or branch by branch (each branch with the
  rest of the query served by an index: the planner merges the branches in sort order).
* Targeted: when the query binds a selective field (an id, an owner: anything but the low-cardinality
  fields in :data:`LOW_CARDINALITY`), the index prefix must hold at least one of them, so the scan
  covers that owner's / component's documents, not the whole collection. A served but untargeted
  combination (a residual scan) is allowed only where :data:`RESIDUAL` names it, with the reason.

Combinations deliberately left to an in-memory sort are listed in :data:`UNSERVED`, each with its
reason. docs/indexes.md explains each index and which combinations are residual.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from agno.db.base import SessionType
from agno.db.schemas.evals import EvalFilterType, EvalType

from agno_mongo.domains import INDEXES, plans
from agno_mongo.ops.command import Command
from tests.test_shard_targeting import arguments, collect, contract_self, plain

LOW_CARDINALITY = {
    "session_type",
    "learning_type",
    "namespace",
    "entity_type",
    "eval_type",
    "status",
    "enabled",
    "component_type",
    "deleted_at",
    "archived",
    "completed",
    "model_provider",
    "approval_type",
    "pause_type",
    "source_type",
}
"""Fields with a handful of values: binding one of them does not make a scan small."""

MAX_MERGED_SCANS = 200
"""MongoDB explodes an ``$in`` prefix into at most this many index scans merged in sort order."""


# --- reading a query --------------------------------------------------------------------------------------


@dataclass
class Shape:
    """What the planner sees in a query: bound fields (with how many values), ``$or`` branches."""

    bound: dict[str, int]
    ors: list[list[dict[str, Any]]]


def is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def shape(query: dict[str, Any]) -> Shape:
    """The bound fields of ``query`` (``$and`` flattened) and its top-level ``$or`` lists."""
    out = Shape({}, [])
    for key, value in query.items():
        if key == "$and":
            for part in value:
                inner = shape(part)
                out.bound.update(inner.bound)
                out.ors.extend(inner.ors)
        elif key == "$or":
            out.ors.append(list(value))
        elif key.startswith("$"):
            continue  # $expr, $nor, $text ...: a filter, binds nothing
        elif is_scalar(value):
            out.bound[key] = 1
        elif isinstance(value, dict) and set(value) == {"$eq"} and is_scalar(value["$eq"]):
            out.bound[key] = 1
        elif (
            isinstance(value, dict)
            and set(value) == {"$in"}
            and value["$in"]
            and all(is_scalar(item) for item in value["$in"])
        ):
            out.bound[key] = len(value["$in"])
    return out


def conjuncts(query: dict[str, Any]) -> list[dict[str, Any]]:
    """``query`` as a list of one-key predicates, ``$and`` flattened."""
    out: list[dict[str, Any]] = []
    for key, value in query.items():
        if key == "$and":
            for part in value:
                out.extend(conjuncts(part))
        else:
            out.append({key: value})
    return out


def normal_sort(sort: Any) -> list[tuple[str, int]]:
    if isinstance(sort, dict):
        return [(str(k), int(v)) for k, v in sort.items()]
    return [(str(k), int(v)) for k, v in sort]


def index_keys(role: str) -> list[tuple[str, list[tuple[str, int]]]]:
    """(name, key) of each declared index of ``role``, and ``_id``'s own index."""
    keys = [("_id_", [("_id", 1)])]
    for model in INDEXES.get(role, []):
        document = model.document
        if document.get("partialFilterExpression") or document.get("sparse"):
            continue  # only serves queries implying its filter: none of the listings here
        keys.append((document["name"], [(str(k), int(v)) for k, v in document["key"].items()]))
    return keys


def prefix_serving(key: list[tuple[str, int]], bound: dict[str, int], sort: list[tuple[str, int]]) -> set[str] | None:
    """The bound fields an index's prefix holds if the index serves ``sort`` under ``bound``, else None."""
    wanted = [(f, d) for f, d in sort if bound.get(f) != 1]
    best: set[str] | None = None
    for cut in range(len(key) + 1):  # the prefix: key[:cut], bound fields only
        prefix = key[:cut]
        if any(field not in bound for field, _ in prefix):
            break
        scans = 1
        for field, _ in prefix:
            scans *= bound[field]
        if scans > MAX_MERGED_SCANS:
            break
        # A sort led by prefix fields is what one scan of their intervals yields, in index order.
        lead: list[tuple[tuple[str, int], tuple[str, int]]] = []
        want = list(wanted)
        for field, direction in prefix:
            if want and want[0][0] == field:
                lead.append(((field, direction), want.pop(0)))
        rest = [(f, d) for f, d in key[cut:]]
        matched: list[tuple[str, int]] = []
        for field, direction in rest:
            if len(matched) == len(want):
                break
            if field == want[len(matched)][0]:
                matched.append((field, direction))
            elif bound.get(field) == 1:
                continue  # constant: does not disturb the order
            else:
                break
        if len(matched) != len(want):
            continue
        pairs = [*lead, *zip(matched, want, strict=True)]
        signs = {d * w for (_, d), (_, w) in pairs}
        if len(signs) > 1:
            continue
        held = {field for field, _ in prefix}
        if best is None or len(held) > len(best):
            best = held
    return best


@dataclass
class Verdict:
    served: bool
    targeted: bool
    index: str | None


def selective(bound: dict[str, int]) -> set[str]:
    return {field for field in bound if field not in LOW_CARDINALITY}


def judge(
    role: str,
    query: dict[str, Any],
    sort: list[tuple[str, int]],
    keys: list[tuple[str, list[tuple[str, int]]]] | None = None,
) -> Verdict:
    """Whether some index of ``role`` (or of ``keys``) serves ``query`` sorted by ``sort``, and
    whether it is targeted."""
    found = shape(query)
    keys = index_keys(role) if keys is None else keys
    wanted = selective(found.bound)
    or_selective = any(selective(shape(branch).bound) for branches in found.ors for branch in branches)
    best: Verdict = Verdict(False, False, None)
    for name, key in keys:
        held = prefix_serving(key, found.bound, sort)
        if held is None:
            continue
        targeted = bool(held & wanted) if wanted else not or_selective
        if not best.served or (targeted and not best.targeted):
            best = Verdict(True, targeted, name)
    if best.served and best.targeted:
        return best
    parts = conjuncts(query)
    for i, part in enumerate(parts):  # an $or branch by branch, each with the rest of the query
        if "$or" not in part:
            continue
        rest: dict[str, Any] = {"$and": parts[:i] + parts[i + 1 :]}
        verdicts = [judge(role, {"$and": [rest, branch]}, sort, keys) for branch in part["$or"]]
        if all(v.served for v in verdicts):
            merged = Verdict(True, all(v.targeted for v in verdicts), "+".join(str(v.index) for v in verdicts))
            if not best.served or (merged.targeted and not best.targeted):
                best = merged
    return best


def sorted_reads(command: Command) -> Iterator[tuple[dict[str, Any], list[tuple[str, int]]]]:
    """The (filter, sort) of a command that reads documents in an order."""
    if command.op in ("find", "find_one") and command.kwargs.get("sort"):
        yield command.kwargs.get("filter") or {}, normal_sort(command.kwargs["sort"])
    elif command.op == "aggregate":
        query: dict[str, Any] = {}
        for stage in command.kwargs["pipeline"]:
            if "$match" in stage:
                query = {"$and": [query, stage["$match"]]} if query else dict(stage["$match"])
                continue
            if "$sort" in stage:
                yield query, normal_sort(stage["$sort"])
            break


def derived_sorts(command: Command) -> list[dict[str, Any]]:
    """The ``$sort`` stages of an aggregate that come after a stage other than ``$match``: they
    order computed rows, which no index can (listed, so each is a decision, see :data:`UNSERVED`)."""
    if command.op != "aggregate":
        return []
    pipeline = command.kwargs["pipeline"]
    head = next((i for i, stage in enumerate(pipeline) if "$match" not in stage), len(pipeline))
    if head < len(pipeline) and "$sort" in pipeline[head]:
        head += 1
    return [stage for stage in pipeline[head:] if "$sort" in stage]


# --- driving every plan -------------------------------------------------------------------------------------

FILTER_VALUES: dict[str, list[Any]] = {
    "session_type": [SessionType.AGENT, SessionType.TEAM, SessionType.WORKFLOW],
    "session_name": ["trip"],
    "search_content": ["tea"],
    "query": ["tea"],
    "start_timestamp": [100],
    "end_timestamp": [200],
    "topics": [["food"]],
    "eval_type": [[EvalType.ACCURACY], [EvalType.ACCURACY, EvalType.PERFORMANCE]],
    "filter_type": list(EvalFilterType),
    "include_global": [True],
}
"""Values for filter parameters whose names say little; an id-like parameter gets ``<name>-1``."""

NOT_FILTERS = {"limit", "page", "sort_by", "sort_order", "deserialize", "include_runs", "order", "offset"}
SORT_FIELDS = [
    "created_at",
    "updated_at",
    "session_id",
    "user_id",
    "session_type",
    "agent_id",
    "team_id",
    "workflow_id",
    "session_name",
    "memory_id",
    "memory",
    "topics",
    "run_id",
    "name",
    "eval_type",
    "model_id",
    "model_provider",
    "approval_type",
    "pause_type",
    "source_type",
    "evaluated_component_name",
    "id",
    "description",
    "type",
    "size",
    "linked_to",
    "access_count",
    "status",
    "status_message",
    "external_id",
    "learning_id",
    "learning_type",
    "namespace",
    "entity_id",
    "entity_type",
    "last_memory_updated_at",
    "last_learning_updated_at",
    "start_time",
    "duration_ms",
]


def filter_values(parameter: inspect.Parameter) -> list[Any]:
    if parameter.name in FILTER_VALUES:
        return FILTER_VALUES[parameter.name]
    annotation = str(parameter.annotation)
    if parameter.name.endswith("_id") or parameter.name in ("linked_to", "name"):
        return [f"{parameter.name}-1"]
    if annotation.startswith(("int", "Optional[int]")) or annotation in ("int | None",):
        return [100]
    if "str" in annotation:
        return [f"{parameter.name}-1"]
    return []


def listing_calls(name: str, function: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    """Argument sets for one contract method: its filters none, one, two or three at a time, each
    with no sort and each known sort field, both orders (methods without a sort: the filters only)."""
    base = arguments(name, function)
    parameters = list(inspect.signature(function).parameters.values())[1:]
    names = {p.name for p in parameters}
    filters = [
        (p.name, filter_values(p))
        for p in parameters
        if p.default is not p.empty and p.default is None and p.name not in NOT_FILTERS and filter_values(p)
    ]
    has_sort = "sort_by" in names
    sorts: list[dict[str, Any]] = [{}]
    if has_sort:
        sorts += [{"sort_by": f, "sort_order": o} for f in SORT_FIELDS for o in ("asc", "desc")]
    extra: list[dict[str, Any]] = [{}]
    if "include_runs" in names:
        extra = [{"include_runs": True}, {"include_runs": False}]
    if "limit" in names:
        extra = [{**e, "limit": 20, "page": 2} for e in extra] + extra
    seen: set[str] = set()
    for size in range(4):
        for chosen in itertools.combinations(filters, size):
            for values in itertools.product(*(v for _, v in chosen)):
                picked = dict(zip((n for n, _ in chosen), values, strict=True))
                for sort in sorts:
                    for more in extra:
                        kwargs = {**base, **picked, **sort, **more}
                        key = repr(sorted(kwargs.items(), key=lambda item: item[0]))
                        if key not in seen:
                            seen.add(key)
                            yield kwargs


@dataclass(frozen=True)
class Read:
    method: str
    kwargs: dict[str, Any]
    command: Command


def every_sorted_read() -> Iterator[Read]:
    """Every command with a sort that every contract method sends, over its argument sets, with
    reads answered by a full page of documents (so a count or a second page is asked for too)."""
    self = contract_self()

    def answer(command: Command) -> Any:
        if command.op in ("find", "aggregate"):
            return [{"_id": f"d{i}", "user_id": "u"} for i in range(20)]
        return plain(command, matched=1)

    for name, function in plans():
        for kwargs in listing_calls(name, function):
            try:
                plan = function(self, **kwargs)
            except Exception:  # refused arguments: nothing is sent
                continue
            if not inspect.isgenerator(plan):
                continue
            commands, _ = collect(cast(Any, plan), answer)
            for command in commands:
                if command.op in ("find", "find_one", "aggregate"):
                    yield Read(name, kwargs, command)


READS = list(every_sorted_read())


# --- the decisions ------------------------------------------------------------------------------------------

TIME_SORTS = {None, "created_at", "updated_at"}
"""The sorts every listing serves from an index (``None``: the listing's default order). The id
columns (``session_id``, ``memory_id``, ``run_id``, ``id``, ``learning_id``, stored as ``_id``) sort
by ``_id`` alone and are served by the ``_id`` index."""
ID_SORTS = {
    "get_sessions": "session_id",
    "get_user_memories": "memory_id",
    "get_eval_runs": "run_id",
    "get_knowledge_contents": "id",
    "list_learnings": "learning_id",
}


@dataclass(frozen=True)
class Decision:
    """Combinations of ``methods`` left to a residual scan (or an in-memory sort): those whose
    selective equality fields are all in ``fields`` (any, when ``fields`` is None) and whose
    ``sort_by`` passes ``sort``."""

    methods: frozenset[str]
    fields: frozenset[str] | None
    sort: Callable[[str, Any], bool]
    """Takes the method and its ``sort_by``."""
    reason: str

    def covers(self, method: str, kwargs: dict[str, Any], bound: set[str]) -> bool:
        if method not in self.methods or not self.sort(method, kwargs.get("sort_by")):
            return False
        return self.fields is None or bound <= self.fields


def _methods(*names: str) -> frozenset[str]:
    return frozenset(names)


def _any(method: str, sort_by: Any) -> bool:
    return True


def _by_id(method: str, sort_by: Any) -> bool:
    return sort_by is not None and sort_by == ID_SORTS.get(method)


def _by_column(method: str, sort_by: Any) -> bool:
    return sort_by not in TIME_SORTS and not _by_id(method, sort_by)


LISTINGS = _methods("get_sessions", "get_user_memories", "get_eval_runs", "get_knowledge_contents", "list_learnings")
LEARNING_READS = _methods("get_learning", "get_learnings", "search_learnings", "list_learnings")

UNSERVED: list[Decision] = [
    Decision(
        LISTINGS,
        None,
        _by_column,
        "a sort on another column (name, type, owner, component, size...): agno's routes pass any column "
        "through from the query string, but no agno caller or UI default sends one; indexing each would "
        "double the indexes. A page is a top-k sort holding skip + limit documents only",
    ),
    Decision(
        _methods("get_eval_runs"),
        None,
        lambda method, sort_by: sort_by == "updated_at",
        "eval runs by updated_at: it changes only on a rename; AgentOS sorts its eval page by created_at",
    ),
    Decision(
        _methods("list_learnings"),
        None,
        lambda method, sort_by: sort_by == "created_at",
        "learnings by created_at: AgentOS's default and every agno store read is updated_at (served)",
    ),
    Decision(
        _methods("get_dependents", "delete_component"),
        None,
        _any,
        "a component's dependents: the link_child index selects the few configs pinning it; they are sorted in memory",
    ),
]
"""Combinations deliberately sorted in memory."""

RESIDUAL: list[Decision] = [
    Decision(
        LISTINGS,
        None,
        lambda method, sort_by: _by_id(method, sort_by) or _by_column(method, sort_by),
        "a sort on the id (or on a column bound by the filter, which leaves the id): the _id index "
        "walked with the filters applied; pages of ids are what a migration walks, unfiltered",
    ),
    Decision(
        _methods("get_sessions"),
        frozenset({"agent_id", "team_id", "workflow_id"}),
        lambda method, sort_by: sort_by == "updated_at",
        "a component's sessions by last update without an owner: updated_id walked and filtered. agno's "
        "callers list a component's sessions by created_at (the <kind>_created_id indexes) and WhatsApp's "
        "updated_at lookup binds the user (user_updated_id)",
    ),
    Decision(
        _methods("get_user_memories"),
        frozenset({"agent_id", "team_id", "topics"}),
        _any,
        "memories of an agent or team, or with a topic, across users: the agents read one user's "
        "memories and AgentOS's page is scoped by user; unscoped, created_id / updated_id are walked",
    ),
    Decision(
        _methods("get_eval_runs"),
        frozenset({"model_id"}),
        _any,
        "eval runs of one model across components: an AgentOS filter on a small collection (one "
        "document per eval run); created_id walked and filtered",
    ),
    Decision(
        _methods("get_knowledge_contents"),
        frozenset({"user_id"}),
        _any,
        "the owner scope is the caller's rows plus the shared ones ($in [user, null]), most of a "
        "knowledge base: filtered while walking linked_*_id (or created_id / updated_id)",
    ),
    Decision(
        LEARNING_READS,
        frozenset({"agent_id", "team_id", "session_id", "workflow_id", "entity_id"}),
        _any,
        "the decision log's agent / session filters and AgentOS's optional ones: walked under "
        "learning_type (or unfiltered) newest first; agno's stores bind learning_type with the owner, "
        "namespace or entity, which lead an index",
    ),
    Decision(
        _methods("list_components"),
        None,
        _any,
        "catalog visibility is an $or of owner, shared and published: a catalog holds few components, "
        "walked newest first",
    ),
    Decision(
        _methods("delete_product"),
        frozenset({"product_id"}),
        _any,
        "the refusal check lists a product's open tasks (few) by id; the planner may as well take the "
        "product_id indexes and sort the few in memory",
    ),
]
"""Combinations served without an in-memory sort but by a scan wider than their selective filters."""

DERIVED: dict[str, str] = {
    "get_runs": "runs live inside their sessions: a listing across sessions sorts the unwound runs "
    "(matched sessions only; with session_id, one session's runs)",
    "get_user_memory_stats": "sorts one row per user, after $group",
    "get_learnings_user_stats": "sorts one row per user, after $group",
    "get_trace_stats": "sorts one row per session, after $group",
    "get_span_stats": "sorts one row per (name, span type), after $group",
    "calculate_metrics": "sorts one row per (day, user), after $group",
    "count_authz_users_by_day": "sorts one row per day, after $group",
    "get_all_memory_topics": "sorts the distinct topics, after $group",
    "list_transcript_sessions": "sorts one row per session, after $group",
    "list_transcript_subpaths": "sorts a session's distinct subagent paths, after $group",
}
"""Aggregations whose ``$sort`` orders computed rows (after ``$group`` / ``$unwind``): no index can
serve those; their input is matched by an index, and the number of rows is bounded by the groups."""


def decision(decisions: list[Decision], read: Read, query: dict[str, Any]) -> Decision | None:
    bound = selective(shape(query).bound)
    for branches in shape(query).ors:
        for branch in branches:
            bound |= selective(shape(branch).bound)
    return next((d for d in decisions if d.covers(read.method, read.kwargs, bound)), None)


def describe(read: Read, query: dict[str, Any], sort: list[tuple[str, int]]) -> str:
    return f"{read.method}({read.kwargs}) on {read.command.collection}: filter {query}, sort {sort}"


# --- the tests ----------------------------------------------------------------------------------------------


def test_the_sweep_reaches_every_listing() -> None:
    """The argument sets reach each listing with each filter, so a new filter cannot go unchecked."""
    methods = {read.method for read in READS for _ in sorted_reads(read.command)}
    assert LISTINGS | LEARNING_READS | {"get_traces", "get_approvals", "get_schedules"} <= methods
    sessions = [read.kwargs for read in READS if read.method == "get_sessions"]
    for name in ("session_type", "user_id", "component_id", "session_name", "start_timestamp", "end_timestamp"):
        assert any(name in kwargs for kwargs in sessions), name


def test_every_sorted_read_is_served_by_an_index() -> None:
    """No blocking sort: each (filter, sort) some plan sends is served by an index of its role."""
    problems: list[str] = []
    used: set[str] = set()
    for read in READS:
        for query, sort in sorted_reads(read.command):
            if judge(read.command.collection, query, sort).served:
                continue
            exempt = decision(UNSERVED, read, query)
            if exempt is None:
                problems.append(describe(read, query, sort))
            else:
                used.add(exempt.reason)
    assert problems == [], "\n".join(problems[:20])
    assert used == {d.reason for d in UNSERVED}, "an UNSERVED entry no longer matches anything"


def test_every_sorted_read_scans_only_what_its_selective_filters_select() -> None:
    """A listing bound to an owner or a component walks an index led by one of them, unless RESIDUAL
    names the combination."""
    problems: list[str] = []
    used: set[str] = set()
    for read in READS:
        for query, sort in sorted_reads(read.command):
            verdict = judge(read.command.collection, query, sort)
            if not verdict.served or verdict.targeted:
                continue
            allowed = decision(RESIDUAL, read, query)
            if allowed is None:
                problems.append(f"{describe(read, query, sort)} (walks {verdict.index})")
            else:
                used.add(allowed.reason)
    assert problems == [], "\n".join(problems[:20])
    assert used == {d.reason for d in RESIDUAL}, "a RESIDUAL entry no longer matches anything"


def test_sorts_of_computed_rows_are_the_listed_ones() -> None:
    """An aggregation sorting rows it computed is a decision too: DERIVED names each, and why."""
    found = {read.method for read in READS if derived_sorts(read.command)}
    assert found == set(DERIVED)


def test_the_rule_itself() -> None:
    """The checker refuses what MongoDB would sort in memory (so the tests above can fail)."""
    keys = [
        ("by_user", [("user_id", 1), ("created_at", -1), ("_id", -1)]),
        ("by_time", [("created_at", -1), ("_id", -1)]),
    ]
    newest, oldest = [("created_at", -1), ("_id", -1)], [("created_at", 1), ("_id", 1)]

    def verdict(query: dict[str, Any], sort: list[tuple[str, int]]) -> tuple[bool, bool, str | None]:
        found = judge("none", query, sort, keys)
        return found.served, found.targeted, found.index

    assert verdict({"user_id": "u"}, newest) == (True, True, "by_user")
    assert verdict({"user_id": "u"}, oldest) == (True, True, "by_user")  # walked backwards
    assert verdict({"user_id": {"$in": ["u", None]}}, newest) == (True, True, "by_user")  # merged scans
    assert verdict({}, newest) == (True, True, "by_time")
    assert verdict({"user_id": "u", "created_at": {"$gte": 5}}, newest)[:2] == (True, True)  # range on the sort key
    assert verdict({"agent_id": "a"}, newest) == (True, False, "by_time")  # residual scan
    assert verdict({"session_type": "agent"}, newest) == (True, True, "by_time")  # low cardinality
    assert not verdict({"user_id": "u"}, [("created_at", -1), ("_id", 1)])[0]  # mixed directions
    assert not verdict({"user_id": "u"}, [("created_at", -1)] + [("name", 1)])[0]  # tie-breaker not indexed
    assert verdict({"user_id": {"$gt": "a"}}, newest) == (True, True, "by_time")  # a range binds nothing
    assert not verdict({}, [("updated_at", -1), ("_id", -1)])[0]
    either = {"$or": [{"user_id": "u"}, {"user_id": "v"}]}
    assert verdict(either, newest) == (True, True, "by_user+by_user")  # each branch, merged
    assert verdict({"$or": [{"user_id": "u"}, {"agent_id": "a"}]}, newest)[:2] == (True, False)
    assert verdict({"user_id": "u"}, [("user_id", 1), ("created_at", -1), ("_id", -1)])[:2] == (True, True)
    assert not verdict({"user_id": {"$in": [str(i) for i in range(201)]}}, newest)[1]  # too many scans


AGENT, TEAM, WORKFLOW = SessionType.AGENT, SessionType.TEAM, SessionType.WORKFLOW
PAGE = {"limit": 20, "page": 1, "deserialize": False}
ROUTE = {**PAGE, "sort_by": "created_at", "sort_order": "desc"}
CALLERS: list[tuple[str, str, dict[str, Any]]] = [
    # agno/agent and agno/team _default_tools.search_past_sessions; agno/utils/streamlit
    (
        "past sessions tool",
        "get_sessions",
        {"session_type": AGENT, "user_id": "u", "limit": 20, "sort_by": "created_at"},
    ),
    ("past sessions tool, no user", "get_sessions", {"session_type": TEAM, "limit": 20, "sort_by": "created_at"}),
    ("streamlit selector", "get_sessions", {"session_type": AGENT, "sort_by": "created_at", "sort_order": "desc"}),
    # AgentOS GET /sessions and the MCP get_sessions tool (get_sessions_page), scoped or not
    ("AgentOS sessions", "get_sessions", ROUTE),
    ("AgentOS sessions by type", "get_sessions", {**ROUTE, "session_type": WORKFLOW}),
    ("AgentOS sessions by agent", "get_sessions", {**ROUTE, "session_type": AGENT, "component_id": "a"}),
    ("AgentOS sessions by team", "get_sessions", {**ROUTE, "session_type": TEAM, "component_id": "t"}),
    ("AgentOS sessions by workflow", "get_sessions", {**ROUTE, "session_type": WORKFLOW, "component_id": "w"}),
    ("AgentOS sessions by component", "get_sessions", {**ROUTE, "component_id": "a"}),
    ("AgentOS sessions scoped", "get_sessions", {**ROUTE, "user_id": "u"}),
    ("AgentOS sessions scoped by type", "get_sessions", {**ROUTE, "user_id": "u", "session_type": AGENT}),
    (
        "AgentOS sessions scoped by agent",
        "get_sessions",
        {**ROUTE, "user_id": "u", "session_type": AGENT, "component_id": "a"},
    ),
    ("AgentOS sessions by name", "get_sessions", {**ROUTE, "session_type": AGENT, "session_name": "trip"}),
    ("AgentOS sessions by update", "get_sessions", {**ROUTE, "sort_by": "updated_at"}),
    ("AgentOS sessions scoped by update", "get_sessions", {**ROUTE, "sort_by": "updated_at", "user_id": "u"}),
    (
        "AgentOS sessions by update, oldest first",
        "get_sessions",
        {**ROUTE, "sort_by": "updated_at", "sort_order": "asc"},
    ),
    # agno/os/interfaces: telegram (latest sessions of a chat), whatsapp (latest session)
    ("telegram", "get_sessions", {**ROUTE, "limit": 50, "session_type": AGENT, "user_id": "u", "component_id": "a"}),
    (
        "whatsapp",
        "get_sessions",
        {
            "session_type": TEAM,
            "user_id": "u",
            "component_id": "t",
            "limit": 1,
            "sort_by": "updated_at",
            "sort_order": "desc",
        },
    ),
    # agno-mongo's dashboard and CLI
    ("dashboard", "get_sessions", {**PAGE, "sort_by": "updated_at", "sort_order": "desc", "include_runs": False}),
    ("dashboard by user", "get_sessions", {**PAGE, "user_id": "u", "sort_by": "updated_at", "include_runs": False}),
    (
        "dashboard search",
        "get_sessions",
        {**PAGE, "session_name": "trip", "sort_by": "updated_at", "include_runs": False},
    ),
    (
        "CLI export",
        "get_sessions",
        {"limit": 100, "page": 3, "sort_by": "created_at", "sort_order": "asc", "start_timestamp": 5},
    ),
    (
        "CLI export of an agent",
        "get_sessions",
        {"session_type": AGENT, "component_id": "a", "sort_by": "created_at", "sort_order": "asc"},
    ),
    # memories: the agents and the memory manager (default order), AgentOS GET /memories
    ("agent memories", "get_user_memories", {"user_id": "u"}),
    ("memory manager, all users", "get_user_memories", {}),
    ("AgentOS memories", "get_user_memories", {**PAGE, "sort_by": "updated_at", "sort_order": "desc"}),
    (
        "AgentOS memories scoped",
        "get_user_memories",
        {**PAGE, "user_id": "u", "sort_by": "updated_at", "sort_order": "desc"},
    ),
    (
        "AgentOS memories scoped, by agent",
        "get_user_memories",
        {**PAGE, "user_id": "u", "agent_id": "a", "sort_by": "updated_at"},
    ),
    (
        "AgentOS memories scoped, search",
        "get_user_memories",
        {**PAGE, "user_id": "u", "search_content": "tea", "sort_by": "updated_at"},
    ),
    # evals: AgentOS GET /eval-runs and the AgentOS tool
    ("AgentOS evals", "get_eval_runs", ROUTE),
    ("AgentOS evals by agent", "get_eval_runs", {**ROUTE, "agent_id": "a"}),
    ("AgentOS evals by team", "get_eval_runs", {**ROUTE, "team_id": "t"}),
    ("AgentOS evals by workflow", "get_eval_runs", {**ROUTE, "workflow_id": "w"}),
    (
        "AgentOS evals by kind",
        "get_eval_runs",
        {**ROUTE, "filter_type": EvalFilterType.AGENT, "eval_type": [EvalType.ACCURACY]},
    ),
    ("AgentOS evals scoped", "get_eval_runs", {**ROUTE, "user_id": "u"}),
    ("AgentOS tool evals", "get_eval_runs", {"limit": 20, "page": 1, "deserialize": False}),
    # knowledge: Knowledge.get_content (AgentOS GET /knowledge/content)
    (
        "knowledge content",
        "get_knowledge_contents",
        {"limit": 20, "page": 1, "sort_by": "created_at", "sort_order": "desc", "linked_to": "kb"},
    ),
    (
        "knowledge content by update",
        "get_knowledge_contents",
        {"sort_by": "updated_at", "sort_order": "asc", "linked_to": "kb"},
    ),
    ("knowledge content, unnamed base", "get_knowledge_contents", {"limit": 20, "page": 1, "sort_by": "created_at"}),
    ("knowledge content, default order", "get_knowledge_contents", {"linked_to": "kb"}),
    (
        "knowledge content scoped",
        "get_knowledge_contents",
        {"sort_by": "created_at", "linked_to": "kb", "user_id": "u"},
    ),
    # learnings: agno/learn stores, the Company decision log, AgentOS GET /learnings, the migration
    ("user profile", "get_learning", {"learning_type": "user_profile", "user_id": "u"}),
    ("entity memory, recent", "get_learnings", {"learning_type": "entity", "namespace": "global", "limit": 20}),
    (
        "entity memory, user namespace",
        "get_learnings",
        {"learning_type": "entity", "namespace": "user", "user_id": "u"},
    ),
    (
        "entity memory, one entity",
        "get_learnings",
        {"learning_type": "entity", "entity_id": "e", "namespace": "global"},
    ),
    (
        "entity memory, one entity of a user",
        "get_learnings",
        {"learning_type": "entity", "entity_id": "e", "namespace": "user", "user_id": "u"},
    ),
    (
        "entity memory, by kind",
        "get_learnings",
        {"learning_type": "entity", "entity_type": "person", "namespace": "global", "limit": 30},
    ),
    (
        "entity memory search",
        "search_learnings",
        {"query": "sarah", "learning_type": "entity", "namespace": "global", "limit": 20},
    ),
    (
        "entity memory search, user",
        "search_learnings",
        {"query": "sarah", "learning_type": "entity", "namespace": "user", "user_id": "u"},
    ),
    ("decision log, by id", "get_learnings", {"learning_type": "decision_log", "limit": 100}),
    ("Company decisions", "get_learnings", {"learning_type": "decision", "namespace": "company"}),
    ("AgentOS learnings", "list_learnings", {"limit": 20, "page": 1}),
    ("AgentOS learnings scoped", "list_learnings", {"user_id": "u", "include_global": True, "limit": 20, "page": 1}),
    (
        "AgentOS learnings scoped by type",
        "list_learnings",
        {"user_id": "u", "include_global": True, "learning_type": "entity"},
    ),
    ("AgentOS learnings by type", "list_learnings", {"learning_type": "entity", "sort_order": "asc"}),
    (
        "learnings migration",
        "list_learnings",
        {"learning_type": "entity", "namespace": "user", "sort_by": "learning_id", "sort_order": "asc"},
    ),
]
"""The listings agno's own callers send (grep agno/os/routers, agno/agent, agno/team, agno/learn,
agno/os/interfaces) and the dashboard's / CLI's: each must be served by an index led by its selective
filter. Only the knowledge owner scope may be residual (see :data:`RESIDUAL`)."""

CALLERS_RESIDUAL = {"knowledge content scoped"}
"""The owner scope of knowledge is its caller's rows and the shared ones: a filter on linked_created_id."""


@pytest.mark.parametrize(("label", "method", "kwargs"), CALLERS, ids=[c[0] for c in CALLERS])
def test_agnos_own_listings_are_served_and_targeted(label: str, method: str, kwargs: dict[str, Any]) -> None:
    function = dict(plans())[method]
    plan = function(contract_self(), **{**arguments(method, function), **kwargs})
    commands, error = collect(plan, lambda command: plain(command, matched=0))
    assert error is None, error
    checked = 0
    for command in commands:
        for query, sort in sorted_reads(command):
            verdict = judge(command.collection, query, sort)
            targeted = verdict.targeted or label in CALLERS_RESIDUAL
            assert verdict.served and targeted, f"{label}: filter {query}, sort {sort}: {verdict}"
            checked += 1
    assert checked, f"{label}: no sorted read"
