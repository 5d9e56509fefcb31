"""Pure command builders and plans for runs: embedded in their session, the oldest in overflow chunks.

The layout, and why no acknowledged run is lost, duplicated or resurrected (``docs/integrity.md``
says it at length):

- ``runs`` holds the session's newest runs, oldest first. Every write of a run stamps it with a fresh
  token ``_w``, so one *version* of a run can be named exactly.
- ``spilled`` is the ordered list ``[{"c": chunk_id, "ids": [run_id, ...]}, ...]`` of the runs that
  moved out, before ``runs``. It is the only authority on them: a chunk is read only through an entry
  that names it, and only the ids the entry lists. ``spill_rev`` counts changes to ``spilled``.
- ``inc`` (the incarnation) is a token set when the session document is created. Every overflow
  commit is conditioned on it, so a session that was deleted, expired or re-created under the same id
  never reaches the chunks of an earlier one.
- A chunk (``<sessions>_overflow``: ``{_id: token, session_id, inc, runs, created_at}``) is written
  once, before anything references it, and never changed. Ownership lives on the session document
  alone; chunks have no owner.

Writes: a new run is one guarded ``$push`` (``runs.run_id`` and ``spilled.ids`` both ``$ne``), a changed
run one positional ``$set``; both carry the owner check and the size guard. When neither lands the
plan reads the session once and either refuses (another owner), spills (copy the oldest runs to a new
chunk, then one conditional update of the session that pulls exactly the copied versions and appends
the entry), or rewrites an overflowed run (a new one-run chunk, then a compare-and-set of
``spilled`` on ``spill_rev``). A commit that does not match changes nothing and leaves only an
unreferenced chunk, which is deleted (or collected later, see
:func:`agno_mongo.ops.sessions.delete_orphaned_overflow_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import bson
from bson import Int64
from bson.raw_bson import RawBSONDocument
from pymongo import UpdateMany
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import (
    InvalidInputError,
    RunTooLargeError,
    SessionFullError,
    SessionOwnershipError,
    WriteContentionError,
)
from agno_mongo.ops.aggregations import aggregate
from agno_mongo.ops.command import Command, Plan, ReplyLost, Written, backoff
from agno_mongo.ops.common import new_token, owner_filter, scope_filter
from agno_mongo.ops.sessions import (
    BUMP,
    DEFAULT_RUNS_BUDGET,
    OVERFLOW,
    REV,
    SESSIONS,
    TOUCHED_AT,
    below,
    birth_fields,
    next_revision,
    reshaped,
    stamped_plan,
)
from agno_mongo.schema.base import SCHEMA_VERSION
from agno_mongo.schema.codec import RUN_REV, WRITE_TOKEN

Outcome = Literal["saved", "progress", "missed"]
"""What one round of the slow path did: saved the run, made room (try again), or missed a race."""

MAX_ROUNDS = 32
"""Rounds of an ``upsert_run`` under contention (each re-reads the session) before
:class:`~agno_mongo.errors.WriteContentionError`; with backoff that is several seconds of trying."""


def bson_size(document: dict[str, Any]) -> int:
    """Encoded size of one document as MongoDB will store it."""
    return len(bson.encode(document))


def encoded(run: dict[str, Any], revision: int) -> RawBSONDocument:
    """The run with a fresh write token and the revision it is written at, encoded once: its size is
    known and these bytes are sent (the revision is an Int64, so the size never depends on it)."""
    return RawBSONDocument(bson.encode({**run, WRITE_TOKEN: new_token(), RUN_REV: Int64(revision)}))


def fits(budget: int, size: int) -> dict[str, Any]:
    """Filter clause: the session's runs plus ``size`` more bytes stay within ``budget``."""
    return {"runs_bytes": {"$not": {"$gt": budget - size}}}


NEXT_REV: dict[str, Any] = {"$add": [f"${REV}", 1]}
"""Aggregation expression: the session's revision plus one."""


def set_run(
    session_id: str,
    user_id: str | None,
    run_id: str,
    run: RawBSONDocument,
    now: int,
    size: int,
    budget: int,
) -> Command:
    """Replace one run held in the session document, in place: a pipeline update.

    It advances the session's revision (to the writer's proposed one if that is higher, else by 1)
    and stamps the run with the result (``_r``), so the write needs no condition on the revision:
    it lands on the first send, and a resend after a lost reply lands again, changing nothing a
    reader can see but the revision. The run is sent once, as a literal.

    ``runs_bytes`` grows by the new size without subtracting the old one: an overestimate, which
    only makes the next spill come a little early (a spill recounts exactly).
    """
    proposed = Int64(run[RUN_REV])
    stamped_run = {"$mergeObjects": [{"$literal": run}, {RUN_REV: f"${REV}"}]}
    return Command(
        SESSIONS,
        "update_one",
        {
            "filter": {"_id": session_id, **owner_filter(user_id), "runs.run_id": run_id, **fits(budget, size)},
            "update": [
                {"$set": {REV: {"$cond": [{"$lt": [{"$ifNull": [f"${REV}", 0]}, proposed]}, proposed, NEXT_REV]}}},
                {
                    "$set": {
                        "runs": {
                            "$map": {
                                "input": "$runs",
                                "as": "run",
                                "in": {"$cond": [{"$eq": ["$$run.run_id", run_id]}, stamped_run, "$$run"]},
                            }
                        },
                        "updated_at": {"$literal": now},
                        "runs_bytes": {"$add": [{"$ifNull": ["$runs_bytes", 0]}, size]},
                        TOUCHED_AT: "$$NOW",
                    }
                },
            ],
        },
    )


def push_run(
    session_id: str,
    user_id: str | None,
    run_id: str,
    run: RawBSONDocument,
    component_id: str | None,
    run_type: str,
    now: int,
    size: int,
    budget: int,
    revision: int,
    place: Placement | None = None,
) -> Command:
    """Append a new run, creating the session if needed; a resend, or a run already stored (here or
    in overflow), matches nothing.

    With ``place``, the run goes to that index of ``runs`` instead of the end, guarded so the
    overflow index (which holds the runs before ``runs``) is the one the index was computed from.
    """
    on_insert: dict[str, Any] = {
        **birth_fields(),
        "session_id": session_id,
        "session_type": run_type,
        "user_id": user_id,
        "created_at": now,
        "schema_version": SCHEMA_VERSION,
    }
    if component_id is not None:
        on_insert[f"{run_type}_id"] = component_id
    moves = reshaped() if place is not None and place.position is not None else {}
    for key in moves:
        on_insert.pop(key)  # set by ``$set`` instead: one path may not be in both
    return Command(
        SESSIONS,
        "update_one",
        {
            "filter": {
                "_id": session_id,
                **owner_filter(user_id),
                "runs.run_id": {"$ne": run_id},
                "spilled.ids": {"$ne": run_id},
                **fits(budget, size),
                **below(revision),
                **(place.guard if place else {}),
            },
            "update": {
                "$push": {"runs": run if place is None or place.position is None else positioned(run, place.position)},
                "$set": {
                    "updated_at": now,
                    REV: Int64(revision),
                    **moves,
                },
                "$inc": {"runs_bytes": size},
                "$setOnInsert": on_insert,
                "$currentDate": {TOUCHED_AT: True},
            },
            "upsert": True,
        },
    )


@dataclass(frozen=True)
class Placement:
    """Where a new run goes in ``runs`` when agno names its index (``upsert_run(run_index=...)``).

    ``position`` ``None`` means "append, if the index is at or past the end": the common case,
    decided inside the filter, so it costs one command even for an overflowed session.
    """

    position: int | None
    guard: dict[str, Any]

    @classmethod
    def at_end(cls, run_index: int) -> Placement:
        """Append only if the session holds at most ``run_index`` runs (spilled ones included)."""
        return cls(None, {"$expr": {"$lte": [RUN_COUNT, run_index]}})

    @classmethod
    def of(cls, run_index: int, state: dict[str, Any]) -> Placement:
        """``run_index`` counts every run of the session; the spilled runs come first, so the
        position in ``runs`` is the index less their number (at least 0). Guarded on ``spill_rev``
        (or on nothing spilled yet) so that number cannot change under the push."""
        count = sum(len(entry.get("ids") or ()) for entry in state.get("spilled") or [])
        revision = state.get("spill_rev")
        guard = {"spill_rev": revision} if revision is not None else {"spilled.0": {"$exists": False}}
        return cls(max(0, run_index - count), guard)


RUN_COUNT: dict[str, Any] = {
    "$add": [
        {"$size": {"$ifNull": ["$runs", []]}},
        {
            "$reduce": {
                "input": {"$ifNull": ["$spilled", []]},
                "initialValue": 0,
                "in": {"$add": ["$$value", {"$size": {"$ifNull": ["$$this.ids", []]}}]},
            }
        },
    ]
}
"""Aggregation expression: how many runs the session holds, embedded and spilled."""


STATE_FIELDS = {
    REV: True,
    "user_id": True,
    "inc": True,
    "runs": True,
    "runs_bytes": True,
    "spilled": True,
    "spill_rev": True,
}


def positioned(run: RawBSONDocument, position: int) -> dict[str, Any]:
    """``$push`` modifier: insert ``run`` at ``position`` of the array."""
    return {"$each": [run], "$position": position}


def read_state(session_id: str) -> Command:
    """What a spill or a rewrite decides from: owner, incarnation, runs, the overflow index."""
    return Command(SESSIONS, "find_one", {"filter": {"_id": session_id}, "projection": STATE_FIELDS})


def upsert_run_plan(
    session_id: str,
    user_id: str | None,
    run: dict[str, Any],
    run_type: str,
    now: int,
    *,
    budget: int,
    likely_exists: bool,
    run_index: int | None = None,
    known_revision: int | None = None,
) -> Plan[bool]:
    """Insert or replace one run; returns True if it was new.

    One command in the common case: ``$push`` for a run this process has not written before,
    positional ``$set`` for one it has. A wrong guess costs one more command, never a duplicate.
    When neither lands, one read tells why: another owner (refused, nothing written), the run lives
    in overflow (rewritten there), or the session is full (old runs move out, then try again).

    The run is written at a revision past ``known_revision`` (what a cached read last saw, see
    :mod:`agno_mongo.session_cache`); if the session has moved past it, the read tells by how much
    and the run is sent again at a later one.
    """
    run_id = run["run_id"]
    revision = next_revision(known_revision)
    body = encoded(run, revision)
    size = len(body.raw)
    if size > budget:
        raise RunTooLargeError(f"run {run_id!r} is {size} bytes; one session document holds at most {budget}")
    replace = set_run(session_id, user_id, run_id, body, now, size, budget)
    if likely_exists and (yield replace).matched_count:
        return False
    component_id = run.get(f"{run_type}_id")
    place = None if run_index is None else Placement.at_end(run_index)
    push = push_run(session_id, user_id, run_id, body, component_id, run_type, now, size, budget, revision, place)
    for round_number in range(MAX_ROUNDS):
        try:
            yield push
            return True
        except DuplicateKeyError:
            pass  # not matched: another owner, already stored, full, or a racing create
        if (yield replace).matched_count:
            return False
        state: dict[str, Any] | None = yield read_state(session_id)
        if state is None:
            continue  # deleted since: the next push creates it again
        if state.get("user_id") not in (None, user_id):
            raise SessionOwnershipError(session_id, user_id)
        stored_revision = int(state.get(REV) or 0)
        moved_on = stored_revision >= revision
        if moved_on:  # a write at a later revision (another clock) landed first: go past it
            revision = next_revision(stored_revision)
            body = encoded(run, revision)
            replace = set_run(session_id, user_id, run_id, body, now, size, budget)
        if run_index is not None:  # the next push places it against the overflow index just read
            place = Placement.of(run_index, state)
        if moved_on or run_index is not None:
            push = push_run(
                session_id, user_id, run_id, body, component_id, run_type, now, size, budget, revision, place
            )
        if moved_on:
            continue
        outcome: Outcome = "missed"
        if entry_of(state, run_id) is not None:
            outcome = yield from rewrite_spilled_plan(session_id, user_id, state, run_id, body, now, budget)
        elif int(state.get("runs_bytes") or 0) + size > budget:
            carry = (run_id, body) if any(r.get("run_id") == run_id for r in state.get("runs") or []) else None
            outcome = yield from spill_plan(session_id, user_id, state, budget, now, pending=size, carry=carry)
        if outcome == "saved":
            return False
        if outcome == "missed":
            yield backoff(round_number)
    raise WriteContentionError(f"run {run_id!r} of session {session_id!r}: the session kept changing; not saved")


def entry_of(state: dict[str, Any], run_id: str) -> int | None:
    """Index of the ``spilled`` entry that lists ``run_id``, if any."""
    for index, entry in enumerate(state.get("spilled") or []):
        if run_id in entry.get("ids", ()):
            return index
    return None


def chunk_write(session_id: str, inc: Any, chunk_id: str, runs: list[Any], now: int) -> Command:
    """Write a new chunk (an upsert on its fresh ``_id``: a resend changes nothing)."""
    document = {"session_id": session_id, "inc": inc, "runs": runs, "created_at": now}
    return Command(
        OVERFLOW, "update_one", {"filter": {"_id": chunk_id}, "update": {"$setOnInsert": document}, "upsert": True}
    )


def drop_chunk(chunk_id: str) -> Command:
    """Delete a chunk that a commit definitely did not reference (its only send answered "no match")."""
    return Command(OVERFLOW, "delete_one", {"filter": {"_id": chunk_id}})


def commit_plan(filter_: dict[str, Any], update: dict[str, Any], chunk_id: str | None) -> Plan[bool]:
    """Send an overflow commit once; after a lost reply, read whether it landed (it names ``chunk_id``).

    A definite "no match" deletes the unreferenced chunk. After a lost reply the chunk is left for
    :func:`~agno_mongo.ops.sessions.delete_orphaned_overflow_plan`: a command whose connection broke may
    still be applied late, so the chunk is never deleted on a guess.
    """
    try:
        result: Written = yield Command(SESSIONS, "update_one", {"filter": filter_, "update": update}, resend=False)
    except ReplyLost:
        if chunk_id is None:
            return False  # a recount only: the caller re-reads the session either way
        found = yield Command(
            SESSIONS, "find_one", {"filter": {"_id": filter_["_id"], "spilled.c": chunk_id}, "projection": {"_id": 1}}
        )
        return found is not None
    if result.matched_count:
        return True
    if chunk_id is not None:
        yield drop_chunk(chunk_id)
    return False


def spill_plan(
    session_id: str,
    user_id: str | None,
    state: dict[str, Any],
    budget: int,
    now: int,
    *,
    pending: int,
    carry: tuple[str, RawBSONDocument] | None,
) -> Plan[Outcome]:
    """Move the oldest runs to a new chunk until ``pending`` more bytes fit in half the budget.

    Two commands: write the chunk, then one update of the session conditioned on its incarnation, on
    ``spill_rev`` and on every copied version still being there (each ``{run_id, _w}`` pair); it
    pulls exactly those versions and appends the entry. An update or delete of a copied run in
    between makes the commit miss: nothing is lost, the caller reads again. ``carry`` is the run
    being saved and its new body: if it is among the moved runs the chunk holds the new version and
    the run is saved by the commit ("saved").
    """
    runs: list[dict[str, Any]] = state.get("runs") or []
    sizes = [bson_size(run) for run in runs]
    stored_bytes = int(state.get("runs_bytes") or 0)
    index_bytes = bson_size({"spilled": state.get("spilled") or []})
    over = max(0, stored_bytes - sum(sizes) - index_bytes)
    carry_id, carry_body = carry if carry is not None else (None, None)
    count, remaining = 0, sum(sizes) + index_bytes
    while count < len(runs) and remaining + pending > budget // 2:
        remaining -= sizes[count]
        if runs[count].get("run_id") == carry_id:
            pending = 0  # it leaves with the moved runs
        count += 1
    if remaining + pending > budget:
        raise SessionFullError(f"session {session_id!r} lists too many overflowed runs to take more")
    moved = runs[:count]
    base = {"_id": session_id, "inc": state.get("inc"), "spill_rev": state.get("spill_rev"), **owner_filter(user_id)}
    if not moved:
        if not over:
            return "missed"  # it fits now: the session changed since the failed write
        recount = {"$inc": {"runs_bytes": -over, "spill_rev": 1}}  # the stored count ran over: correct it
        return "progress" if (yield from commit_plan(base, recount, None)) else "missed"
    carried = carry_body is not None and any(run.get("run_id") == carry_id for run in moved)
    chunk_runs: list[Any] = [carry_body if carried and run.get("run_id") == carry_id else run for run in moved]
    if carried and sum(bson_size(run) if isinstance(run, dict) else len(run.raw) for run in chunk_runs) > budget:
        carried, chunk_runs = False, list(moved)  # too big together: move the old version, rewrite it next
    chunk_id = new_token()
    entry = {"c": chunk_id, "ids": [run.get("run_id") for run in moved]}
    pairs = [{"run_id": run.get("run_id"), WRITE_TOKEN: run.get(WRITE_TOKEN)} for run in moved]
    yield chunk_write(session_id, state.get("inc"), chunk_id, chunk_runs, now)
    update: dict[str, Any] = {
        "$pull": {"runs": {"$or": pairs}},
        "$push": {"spilled": entry},
        "$inc": {"spill_rev": 1, "runs_bytes": bson_size({"e": entry}) - sum(sizes[:count]) - over, **BUMP},
        "$set": reshaped(),
    }
    if carried:
        update["$set"]["updated_at"] = now
        update["$currentDate"] = {TOUCHED_AT: True}
    every_copy = {"runs": {"$all": [{"$elemMatch": pair} for pair in pairs]}}
    if not (yield from commit_plan({**base, **every_copy}, update, chunk_id)):
        return "missed"
    return "saved" if carried else "progress"


def rewrite_spilled_plan(
    session_id: str,
    user_id: str | None,
    state: dict[str, Any],
    run_id: str,
    body: RawBSONDocument,
    now: int,
    budget: int,
) -> Plan[Outcome]:
    """Replace a run that lives in overflow: a new one-run chunk, then a compare-and-set of ``spilled``.

    The run's entry is split around it, so the new version keeps the run's place. The commit is
    conditioned on ``spill_rev`` (any other change to ``spilled`` since the read makes it miss), the
    incarnation and the owner; the old version stays in its chunk, no longer listed.
    """
    spilled: list[dict[str, Any]] = list(state.get("spilled") or [])
    index = entry_of(state, run_id)
    assert index is not None
    entry = spilled[index]
    ids: list[str] = list(entry["ids"])
    at = ids.index(run_id)
    chunk_id = new_token()
    pieces = [
        {"c": entry["c"], "ids": ids[:at]},
        {"c": chunk_id, "ids": [run_id]},
        {"c": entry["c"], "ids": ids[at + 1 :]},
    ]
    rewritten = [*spilled[:index], *(piece for piece in pieces if piece["ids"]), *spilled[index + 1 :]]
    grown = bson_size({"spilled": rewritten}) - bson_size({"spilled": spilled})
    if int(state.get("runs_bytes") or 0) + grown > budget:
        return (yield from spill_plan(session_id, user_id, state, budget, now, pending=grown, carry=None))
    yield chunk_write(session_id, state.get("inc"), chunk_id, [body], now)
    filter_ = {"_id": session_id, "inc": state.get("inc"), "spill_rev": state.get("spill_rev"), **owner_filter(user_id)}
    update = {
        "$set": {"spilled": rewritten, "updated_at": now, **reshaped()},
        "$inc": {"spill_rev": 1, "runs_bytes": grown, **BUMP},
        "$currentDate": {TOUCHED_AT: True},
    }
    return "saved" if (yield from commit_plan(filter_, update, chunk_id)) else "missed"


def get_run_plan(run_id: str) -> Plan[dict[str, Any] | None]:
    """The session holding the run, with only that run: from its own ``runs`` or through its entry."""
    projection = {"runs": {"$elemMatch": {"run_id": run_id}}, "user_id": True, "session_type": True, "session_id": True}
    for _ in range(4):
        found: dict[str, Any] | None = yield Command(
            SESSIONS, "find_one", {"filter": {"runs.run_id": run_id}, "projection": projection}
        )
        if found is not None:
            return found
        owner: dict[str, Any] | None = yield Command(
            SESSIONS,
            "find_one",
            {
                "filter": {"spilled.ids": run_id},
                "projection": {"spilled": {"$elemMatch": {"ids": run_id}}, "user_id": True, "session_type": True},
            },
        )
        if owner is None:
            return None
        chunk: dict[str, Any] | None = yield Command(
            OVERFLOW,
            "find_one",
            {"filter": {"_id": owner["spilled"][0]["c"]}, "projection": {"runs": {"$elemMatch": {"run_id": run_id}}}},
        )
        if chunk is not None and chunk.get("runs"):
            return {**owner, "runs": chunk["runs"]}
    return None


def delete_runs_plan(run_ids: list[str], now: int) -> Plan[int]:
    """Remove runs wherever they are (a session's ``runs``, or its overflow index): one command.

    Two unordered statements in one ``update``: pull from ``runs``, and pull the ids from every
    ``spilled`` entry (advancing ``spill_rev``, so an overflow commit computed before the delete
    misses instead of putting the run back). Multi-document updates: no shard key needed. The
    answer is the number of sessions changed; after a lost reply a token stamped on each changed
    session tells (see :func:`agno_mongo.ops.sessions.stamped_plan`).
    """
    selector: Any = run_ids[0] if len(run_ids) == 1 else {"$in": run_ids}
    token = new_token()
    stamp = {"$push": {"_ops": {"$each": [token], "$slice": -8}}}
    requests = [
        UpdateMany(
            {"runs.run_id": selector},
            {"$pull": {"runs": {"run_id": selector}}, "$set": {"updated_at": now, **reshaped()}, "$inc": BUMP, **stamp},
        ),
        UpdateMany(
            {"spilled.ids": selector},
            {
                "$pull": {"spilled.$[].ids": selector},
                "$inc": {"spill_rev": 1, **BUMP},
                "$set": {"updated_at": now, **reshaped()},
                **stamp,
            },
        ),
    ]
    command = Command(SESSIONS, "bulk_write", {"requests": requests, "ordered": False}, resend=False)
    result = yield from stamped_plan(command, token, {"_ops": token})
    return 1 if result is True else result.modified_count


RUN_SORT_FIELDS = {"created_at", "updated_at", "status", "run_id", "agent_id", "team_id", "workflow_id", "run_index"}


def session_parts_expression() -> dict[str, Any]:
    """Aggregation expression: the session's runs as parts in order, one per ``spilled`` entry
    (``{c, ids, o}``: the chunk, the run ids it lists, the place of its first run) and last the
    document's own runs (``{runs, o}``). Each part is unwound on its own, so each pipeline document
    holds one chunk at most: a ``$lookup`` of all of a long session's chunks into one document
    would pass 16 MiB."""
    entries = {
        "$reduce": {
            "input": {"$ifNull": ["$spilled", []]},
            "initialValue": {"o": 0, "parts": []},
            "in": {
                "o": {"$add": ["$$value.o", {"$size": {"$ifNull": ["$$this.ids", []]}}]},
                "parts": {
                    "$concatArrays": [
                        "$$value.parts",
                        [{"c": "$$this.c", "ids": {"$ifNull": ["$$this.ids", []]}, "o": "$$value.o"}],
                    ]
                },
            },
        }
    }
    return {
        "$let": {
            "vars": {"e": entries},
            "in": {"$concatArrays": ["$$e.parts", [{"runs": {"$ifNull": ["$runs", []]}, "o": "$$e.o"}]]},
        }
    }


def part_runs_expression() -> dict[str, Any]:
    """Aggregation expression: the runs of one part, in order; a listed run is picked out of the
    part's chunk (``_chunk``, looked up by ``c``) by its id."""
    chunk_runs = {"$ifNull": [{"$arrayElemAt": ["$_chunk.runs", 0]}, []]}
    picked = {
        "$map": {
            "input": "$part.ids",
            "as": "id",
            "in": {
                "$arrayElemAt": [
                    {"$filter": {"input": chunk_runs, "as": "r", "cond": {"$eq": ["$$r.run_id", "$$id"]}}},
                    0,
                ]
            },
        }
    }
    return {"$cond": [{"$eq": [{"$type": "$part.c"}, "missing"]}, "$part.runs", picked]}


IN_SESSION_ORDER = {"_id", "_seq", "run_index"}
"""Sort keys (ascending) whose order one session's runs already come in: the session's own fields
and the run's place in it."""


def runs_pipeline(
    *,
    overflow_collection: str,
    session_id: str | None,
    user_id: str | None,
    run_filter: dict[str, Any],
    sort: list[tuple[str, int]],
    skip: int,
    limit: int | None,
) -> list[dict[str, Any]]:
    """Runs across sessions as rows: match sessions, split each into parts (its ``spilled`` entries,
    then its own runs), unwind them, look up each entry's chunk, unwind the runs, match, sort, page.

    Overflowed runs are reached only through the session's own ``spilled`` entries (``$lookup`` by
    chunk id, one chunk per pipeline document), so they carry the session's current owner and
    incarnation. ``run_index`` is the run's place in its session, oldest first. One session's runs
    in its own order need no ``$sort`` (they stream in that order, memory bounded by one chunk);
    any other order is a ``$sort`` over every matched run, which spills to disk (``allowDiskUse``).
    """
    match: dict[str, Any] = {**scope_filter(user_id)}
    if session_id is not None:
        match["_id"] = session_id
    if run_filter:
        match["$or"] = [{"runs": {"$elemMatch": run_filter}}, {"spilled.0": {"$exists": True}}]
    pipeline: list[dict[str, Any]] = [
        {"$match": match},
        {"$project": {"user_id": 1, "part": session_parts_expression()}},
        {"$unwind": "$part"},
        {"$lookup": {"from": overflow_collection, "localField": "part.c", "foreignField": "_id", "as": "_chunk"}},
        {"$project": {"user_id": 1, "o": "$part.o", "runs": part_runs_expression()}},
        {"$unwind": {"path": "$runs", "includeArrayIndex": "i"}},
        {"$set": {"run_index": {"$add": ["$o", "$i"]}}},
    ]
    if run_filter:
        pipeline.append({"$match": {f"runs.{key}": value for key, value in run_filter.items()}})
    if session_id is None or any(key not in IN_SESSION_ORDER or direction != 1 for key, direction in sort):
        pipeline.append({"$sort": dict(sort)})
    if skip:
        pipeline.append({"$skip": skip})
    if limit is not None:
        pipeline.append({"$limit": limit})
    pipeline.append({"$project": {"_id": 0, "session_id": "$_id", "user_id": 1, "run_index": 1, "run_data": "$runs"}})
    return pipeline


def runs_plan(
    pipeline: list[dict[str, Any]], skip: int, limit: int | None, *, count: bool
) -> Plan[tuple[list[dict[str, Any]], int | None]]:
    """Run the rows pipeline; count the matches only when the page does not already tell."""
    rows: list[dict[str, Any]] = yield aggregate(SESSIONS, pipeline)
    if not count:
        return rows, None
    if limit is None or (len(rows) < limit and (rows or skip == 0)):
        return rows, skip + len(rows)
    head = [stage for stage in pipeline if not {"$sort", "$skip", "$limit"} & stage.keys()][:-1]
    counted: list[dict[str, Any]] = yield aggregate(SESSIONS, [*head, {"$count": "n"}])
    return rows, counted[0]["n"] if counted else 0


MAX_REASON_BYTES = 64 * 1024
"""The largest cancellation reason: it becomes the run's content, inside the session document."""
CANCEL_HEADROOM = 512 * 1024
"""How far past the runs budget a cancellation that writes its reason may take ``runs_bytes`` (the
next run write then spills); the 16 MiB limit leaves about 1 MiB beside the budget and the fields."""


def cancel_pending_run_plan(
    session_id: str,
    run_id: str,
    user_id: str | None,
    reason: str,
    expected_status: str,
    now: int,
    *,
    budget: int = DEFAULT_RUNS_BUDGET,
) -> Plan[bool]:
    """Cancel a run only while it is still ``expected_status``: conditional, atomic updates.

    The reason becomes the run's content when the run has none yet; otherwise only the status
    changes. Each update gives the run a new write token (a spill that copied the old version then
    misses) and stamps the session, so a lost reply is answered by a read, not by a guess.

    Sized: a reason over :data:`MAX_REASON_BYTES` is refused before anything is sent; writing it
    adds its bytes to ``runs_bytes`` and is guarded to stay within the budget plus
    :data:`CANCEL_HEADROOM`. A session past that is cancelled by the status-only update (the answer
    stays exact; the content stays empty).
    """
    reason_bytes = len(bson.encode({"content": reason}))
    if reason_bytes > MAX_REASON_BYTES:
        raise InvalidInputError("reason", f"takes {reason_bytes} bytes; at most {MAX_REASON_BYTES} are stored")
    base = {"_id": session_id, **owner_filter(user_id)}
    empty_content = {"run_id": run_id, "status": expected_status, "content": {"$in": [None, ""]}}
    for match, changes, grows in (
        (empty_content, {"runs.$.status": "CANCELLED", "runs.$.content": reason}, reason_bytes),
        ({"run_id": run_id, "status": expected_status}, {"runs.$.status": "CANCELLED"}, 0),
    ):
        token = new_token()
        update: dict[str, Any] = {
            "$set": {**changes, f"runs.$.{WRITE_TOKEN}": new_token(), "updated_at": now, **reshaped()},
            "$inc": dict(BUMP),
            "$push": {"_ops": {"$each": [token], "$slice": -8}},
        }
        sized: dict[str, Any] = {}
        if grows:
            update["$inc"]["runs_bytes"] = grows
            sized = fits(budget + CANCEL_HEADROOM, grows)
        command = Command(
            SESSIONS,
            "update_one",
            {"filter": {**base, "runs": {"$elemMatch": match}, **sized}, "update": update},
            resend=False,
        )
        result = yield from stamped_plan(command, token, {"_id": session_id, "_ops": token})
        if result is True or result.modified_count:
            return True
    return False
