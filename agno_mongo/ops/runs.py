"""Pure command builders and plans for runs, which live inside their session document.

A run is appended with ``$push`` (guarded by ``runs.run_id: {$ne: id}``, so a retry adds nothing) and
replaced with a positional ``$set`` of ``runs.$``. Both carry the owner check and a size guard:
the session keeps ``runs_bytes``, the BSON size of its runs, and a write that would take it past the
budget matches nothing. The plan then moves the oldest runs into an overflow document
(``{session}_overflow`` collection, one document per move, ``seq`` ordered) and tries again, so a
session keeps growing past MongoDB's 16 MiB document limit while recent runs stay one read away.
"""

from __future__ import annotations

from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import RunTooLargeError, SessionOwnershipError
from agno_mongo.ops.command import Command, Op, Plan
from agno_mongo.ops.sessions import OVERFLOW, SESSIONS, TOUCHED_AT, owner_filter, scope_filter
from agno_mongo.schema.session import SCHEMA_VERSION

MAX_ROUNDS = 4
"""Push attempts per upsert_run; each failed round moves old runs out, so a few always suffice."""


def bson_size(document: dict[str, Any]) -> int:
    """Encoded size of one run as MongoDB will store it."""
    return len(bson.encode(document))


def encoded(run: dict[str, Any]) -> RawBSONDocument:
    """The run encoded once: its size is known and the driver sends these bytes as they are."""
    return RawBSONDocument(bson.encode(run))


def fits(budget: int, size: int) -> dict[str, Any]:
    """Filter clause: the session's runs plus ``size`` more bytes stay within ``budget``."""
    return {"runs_bytes": {"$not": {"$gt": budget - size}}}


def set_run(
    session_id: str,
    user_id: str | None,
    run_id: str,
    run: dict[str, Any] | RawBSONDocument,
    now: int,
    size: int,
    budget: int,
) -> Command:
    """Replace one existing run in place: positional ``$set`` of ``runs.$``.

    ``runs_bytes`` grows by the new size without subtracting the old one: an overestimate, which
    only makes the next move of old runs come a little early (the move recounts exactly).
    """
    return Command(
        SESSIONS,
        "update_one",
        {
            "filter": {"_id": session_id, **owner_filter(user_id), "runs.run_id": run_id, **fits(budget, size)},
            "update": {
                "$set": {"runs.$": run, "updated_at": now},
                "$inc": {"runs_bytes": size},
                "$currentDate": {TOUCHED_AT: True},
            },
        },
    )


def push_run(
    session_id: str,
    user_id: str | None,
    run_id: str,
    run: dict[str, Any] | RawBSONDocument,
    component_id: str | None,
    run_type: str,
    now: int,
    size: int,
    budget: int,
) -> Command:
    """Append a new run, creating the session if needed; a retry of the same run matches nothing."""
    on_insert: dict[str, Any] = {
        "session_id": session_id,
        "session_type": run_type,
        "user_id": user_id,
        "created_at": now,
        "schema_version": SCHEMA_VERSION,
    }
    if component_id is not None:
        on_insert[f"{run_type}_id"] = component_id
    return Command(
        SESSIONS,
        "update_one",
        {
            "filter": {
                "_id": session_id,
                **owner_filter(user_id),
                "runs.run_id": {"$ne": run_id},
                **fits(budget, size),
            },
            "update": {
                "$push": {"runs": run},
                "$set": {"updated_at": now},
                "$inc": {"runs_bytes": size},
                "$setOnInsert": on_insert,
                "$currentDate": {TOUCHED_AT: True},
            },
            "upsert": True,
        },
    )


def upsert_run_plan(
    session_id: str,
    user_id: str | None,
    run: dict[str, Any],
    run_type: str,
    now: int,
    *,
    budget: int,
    likely_exists: bool,
) -> Plan[bool]:
    """Insert or replace one run; returns True if it was new.

    One command in the common case: ``$push`` for a run this process has not written before,
    positional ``$set`` for one it has. A wrong guess costs one more command, never a duplicate.
    When neither lands, one read tells why: another owner (refused), the run lives in an overflow
    document (replaced there), or the session is full (old runs move out, then try again).
    """
    run_id = run["run_id"]
    body = encoded(run)
    size = len(body.raw)
    if size > budget:
        raise RunTooLargeError(f"run {run_id!r} is {size} bytes; one session document holds at most {budget}")
    replace = set_run(session_id, user_id, run_id, body, now, size, budget)
    if likely_exists and (yield replace).matched_count:
        return False
    for _ in range(MAX_ROUNDS):
        try:
            yield push_run(session_id, user_id, run_id, body, run.get(f"{run_type}_id"), run_type, now, size, budget)
            return True
        except DuplicateKeyError:
            pass
        if (yield replace).matched_count:
            return False
        state: dict[str, Any] | None = yield Command(
            SESSIONS,
            "find_one",
            {
                "filter": {"_id": session_id},
                "projection": {"user_id": True, "runs": True, "runs_bytes": True, "overflow": True},
            },
        )
        if state is None:
            continue  # deleted meanwhile: the next push creates it again
        if state.get("user_id") not in (None, user_id):
            raise SessionOwnershipError(session_id, user_id)
        if state.get("overflow"):
            moved = yield Command(
                OVERFLOW,
                "update_one",
                {
                    "filter": {"session_id": session_id, "runs.run_id": run_id},
                    "update": {"$set": {"runs.$": body}},
                },
            )
            if moved.matched_count:
                return False
        yield from spill(session_id, state, size, budget, keep=run_id)
    raise RuntimeError(f"run {run_id!r} could not be saved in session {session_id!r} after {MAX_ROUNDS} rounds")


def spill(session_id: str, state: dict[str, Any], incoming: int, budget: int, *, keep: str) -> Plan[None]:
    """Move the oldest runs to a new overflow document until half the budget is free.

    Two commands: copy the runs out (``$addToSet``, so repeating it adds nothing), then pull them
    from the session and recount ``runs_bytes`` exactly, only if no other writer moved runs since
    (``overflow`` still has the count we read). A stop between the two leaves a run in both
    places, never in neither; reads keep one copy.
    """
    runs: list[dict[str, Any]] = state.get("runs") or []
    sizes = [bson_size(run) for run in runs]
    remaining = sum(sizes)
    count = 0
    while count < len(runs) and remaining + incoming > budget // 2 and runs[count].get("run_id") != keep:
        remaining -= sizes[count]
        count += 1
    seq = int(state.get("overflow") or 0)
    moved = runs[:count]
    if moved:
        yield Command(
            OVERFLOW,
            "update_one",
            {
                "filter": {"_id": f"{session_id}:{seq:06d}"},
                "update": {
                    "$setOnInsert": {"session_id": session_id, "seq": seq},
                    "$set": {"user_id": state.get("user_id")},
                    "$addToSet": {"runs": {"$each": moved}},
                },
                "upsert": True,
            },
        )
    same_count: Any = seq if seq else {"$in": [0, None]}
    yield Command(
        SESSIONS,
        "update_one",
        {
            "filter": {"_id": session_id, "overflow": same_count},
            "update": {
                "$pull": {"runs": {"run_id": {"$in": [run.get("run_id") for run in moved]}}},
                "$inc": {"runs_bytes": remaining - int(state.get("runs_bytes") or 0), "overflow": 1 if moved else 0},
            },
        },
    )
    return None


def get_run(run_id: str) -> Plan[dict[str, Any] | None]:
    """The session (or overflow document) holding the run, with only that run projected."""
    projection = {"runs": {"$elemMatch": {"run_id": run_id}}, "user_id": True, "session_type": True, "session_id": True}
    found: dict[str, Any] | None = yield Command(
        SESSIONS, "find_one", {"filter": {"runs.run_id": run_id}, "projection": projection}
    )
    if found is None:
        found = yield Command(OVERFLOW, "find_one", {"filter": {"runs.run_id": run_id}, "projection": projection})
        if found is not None:
            found["_id"] = found.get("session_id")
    return found


def delete_runs(run_ids: list[str], now: int) -> Plan[int]:
    """``$pull`` the runs from whichever sessions (and overflow documents) hold them."""
    selector: Any = run_ids[0] if len(run_ids) == 1 else {"$in": run_ids}
    op: Op = "update_one" if len(run_ids) == 1 else "update_many"
    result = yield Command(
        SESSIONS,
        op,
        {
            "filter": {"runs.run_id": selector},
            "update": {"$pull": {"runs": {"run_id": selector}}, "$set": {"updated_at": now}},
        },
    )
    if len(run_ids) == 1 and result.modified_count:
        return 1
    older = yield Command(
        OVERFLOW, op, {"filter": {"runs.run_id": selector}, "update": {"$pull": {"runs": {"run_id": selector}}}}
    )
    return int(result.modified_count) + int(older.modified_count)


RUN_SORT_FIELDS = {"created_at", "updated_at", "status", "run_id", "agent_id", "team_id", "workflow_id", "run_index"}


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
    """Runs across sessions as rows: match sessions (and their overflow), unwind, match runs, sort, page.

    ``_seq`` orders a session's overflow documents before the session itself, so within one session
    (``_seq``, ``run_index``) is the order runs were first saved.
    """
    match: dict[str, Any] = {**scope_filter(user_id)}
    if run_filter:
        match["runs"] = {"$elemMatch": run_filter}
    session_match = dict(match, **({"_id": session_id} if session_id is not None else {}))
    overflow_match = dict(match, **({"session_id": session_id} if session_id is not None else {}))
    pipeline: list[dict[str, Any]] = [
        {"$match": session_match},
        {"$project": {"user_id": 1, "runs": 1, "_seq": {"$literal": 1 << 30}}},
        {
            "$unionWith": {
                "coll": overflow_collection,
                "pipeline": [
                    {"$match": overflow_match},
                    {"$project": {"_id": "$session_id", "user_id": 1, "runs": 1, "_seq": "$seq"}},
                ],
            }
        },
        {"$unwind": {"path": "$runs", "includeArrayIndex": "run_index"}},
    ]
    if run_filter:
        pipeline.append({"$match": {f"runs.{key}": value for key, value in run_filter.items()}})
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
    rows: list[dict[str, Any]] = yield Command(SESSIONS, "aggregate", {"pipeline": pipeline})
    if not count:
        return rows, None
    if limit is None or (len(rows) < limit and (rows or skip == 0)):
        return rows, skip + len(rows)
    head = [stage for stage in pipeline if not {"$sort", "$skip", "$limit"} & stage.keys()][:-1]
    counted: list[dict[str, Any]] = yield Command(SESSIONS, "aggregate", {"pipeline": [*head, {"$count": "n"}]})
    return rows, counted[0]["n"] if counted else 0


def cancel_pending_run_plan(
    session_id: str, run_id: str, user_id: str | None, reason: str, expected_status: str, now: int
) -> Plan[bool]:
    """Cancel a run only while it is still ``expected_status``: conditional, atomic updates.

    The reason becomes the run's content when the run has none yet; otherwise only the status changes.
    """
    base = {"_id": session_id, **owner_filter(user_id)}
    empty_content = {"run_id": run_id, "status": expected_status, "content": {"$in": [None, ""]}}
    result = yield Command(
        SESSIONS,
        "update_one",
        {
            "filter": {**base, "runs": {"$elemMatch": empty_content}},
            "update": {"$set": {"runs.$.status": "CANCELLED", "runs.$.content": reason, "updated_at": now}},
        },
    )
    if result.modified_count:
        return True
    result = yield Command(
        SESSIONS,
        "update_one",
        {
            "filter": {**base, "runs": {"$elemMatch": {"run_id": run_id, "status": expected_status}}},
            "update": {"$set": {"runs.$.status": "CANCELLED", "updated_at": now}},
        },
    )
    return bool(result.modified_count)
