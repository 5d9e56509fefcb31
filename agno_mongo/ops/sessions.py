"""Pure command builders and plans for the sessions collection (one document per session).

Nothing here does I/O. Each function returns a :class:`Command` or a plan (a generator of commands);
the drivers in :mod:`agno_mongo.drivers` run them on PyMongo, PyMongo async or Motor.

Ownership: a write filters on ``user_id`` being the caller's or null, inside the same command. A
session owned by someone else then does not match, the upsert tries to insert a second document with
the same ``_id`` and MongoDB refuses it with a duplicate key error: that error *is* the refusal, with
no read before the write. Reads and deletes follow agno's contract: ``user_id=None`` means unscoped.
"""

from __future__ import annotations

import re
from typing import Any

from agno.db.utils import HISTORY_SKIP_STATUSES
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import SessionOwnershipError
from agno_mongo.ops.command import Command, Plan
from agno_mongo.schema.session import SCHEMA_VERSION, SessionFields

SESSIONS = "sessions"

ACTIVE_RUN_STATUSES = ["PENDING", "RUNNING", "PAUSED"]
"""A session with a run in one of these states is not idle and cannot change owner."""

SESSION_INDEXES = [
    # get_run / delete_run / cancel_pending_run find a run by id across sessions.
    IndexModel([("runs.run_id", ASCENDING)], name="runs_run_id"),
    # get_sessions: by user, by type, by component; newest first.
    IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_created"),
    IndexModel([("session_type", ASCENDING), ("created_at", DESCENDING)], name="type_created"),
    IndexModel([("agent_id", ASCENDING), ("created_at", DESCENDING)], name="agent_created"),
    IndexModel([("team_id", ASCENDING), ("created_at", DESCENDING)], name="team_created"),
    IndexModel([("workflow_id", ASCENDING), ("created_at", DESCENDING)], name="workflow_created"),
]

# A run belongs in the agent's context when it is top-level and not cancelled/errored: the same
# rule as agno.db.utils.filter_context_runs, evaluated by the server.
_CONTEXT_RUN = {
    "$and": [
        {"$eq": [{"$ifNull": ["$$run.parent_run_id", None]}, None]},
        {"$eq": [{"$in": [{"$ifNull": ["$$run.status", None]}, HISTORY_SKIP_STATUSES]}, False]},
    ]
}


def owner_filter(user_id: str | None) -> dict[str, Any]:
    """Match a session the caller may write: theirs, or one nobody owns yet."""
    return {"user_id": {"$in": [None] if user_id is None else [user_id, None]}}


def scope_filter(user_id: str | None) -> dict[str, Any]:
    """Match what the caller may read or delete: their sessions, or all when unscoped (None)."""
    return {} if user_id is None else {"user_id": user_id}


def recent_runs(limit: int) -> dict[str, Any]:
    """Aggregation expression: the latest ``limit`` context runs, oldest first."""
    if limit == 0:
        return {"$literal": []}
    context = {"$filter": {"input": {"$ifNull": ["$runs", []]}, "as": "run", "cond": _CONTEXT_RUN}}
    return {"$slice": [context, -limit]}


# --- sessions -------------------------------------------------------------------------------


def upsert_session(fields: SessionFields, now: int, *, preserve_updated_at: bool = False) -> Command:
    """One ``findAndModify``: ``$set`` what came in, ``$setOnInsert`` the birth fields.

    The stored document comes back without its runs (the caller already holds them).
    """
    updated_at = fields.updated_at if preserve_updated_at and fields.updated_at is not None else now
    return Command(
        SESSIONS,
        "find_one_and_update",
        {
            "filter": {"_id": fields.session_id, **owner_filter(fields.user_id)},
            "update": {
                "$set": {
                    **fields.stored_fields(),
                    "session_id": fields.session_id,
                    "updated_at": updated_at,
                    "schema_version": SCHEMA_VERSION,
                },
                "$setOnInsert": {"created_at": fields.created_at or now, "runs": []},
            },
            "upsert": True,
            "return_document": ReturnDocument.AFTER,
            "projection": {"runs": False},
        },
    )


def upsert_session_plan(fields: SessionFields, now: int) -> Plan[dict[str, Any] | None]:
    """Upsert one session; ``None`` when another user owns it (agno's contract for a refusal)."""
    try:
        document: dict[str, Any] | None = yield upsert_session(fields, now)
    except DuplicateKeyError:
        return None
    return document


def bulk_upsert_sessions(items: list[SessionFields], now: int, *, preserve_updated_at: bool) -> Command:
    """One ``update`` command carrying every session, unordered, each with its owner check."""
    from pymongo import UpdateOne

    requests = []
    for fields in items:
        command = upsert_session(fields, now, preserve_updated_at=preserve_updated_at).kwargs
        requests.append(UpdateOne(command["filter"], command["update"], upsert=True))
    return Command(SESSIONS, "bulk_write", {"requests": requests, "ordered": False})


def upsert_sessions_plan(
    items: list[SessionFields], now: int, *, preserve_updated_at: bool
) -> Plan[list[dict[str, Any]]]:
    """Bulk upsert, then read back the sessions that were accepted (two commands for any number).

    Sessions owned by another user fail with a duplicate key inside the bulk write and are left
    out of the result; the rest land.
    """
    from pymongo.errors import BulkWriteError

    if not items:
        return []
    refused: set[int] = set()
    try:
        yield bulk_upsert_sessions(items, now, preserve_updated_at=preserve_updated_at)
    except BulkWriteError as error:
        for write_error in error.details.get("writeErrors", []):
            if write_error.get("code") != 11000:
                raise
            refused.add(write_error["index"])
    accepted = [fields.session_id for index, fields in enumerate(items) if index not in refused]
    if not accepted:
        return []
    documents: list[dict[str, Any]] = yield Command(
        SESSIONS, "find", {"filter": {"_id": {"$in": accepted}}, "projection": {"runs": False}}
    )
    by_id = {document["_id"]: document for document in documents}
    return [by_id[session_id] for session_id in dict.fromkeys(accepted) if session_id in by_id]


def get_session(session_id: str, user_id: str | None, runs_limit: int | None) -> Plan[dict[str, Any] | None]:
    """One command: ``find`` for the whole session, or ``aggregate`` trimming runs on the server."""
    match = {"_id": session_id, **scope_filter(user_id)}
    if runs_limit is None:
        document: dict[str, Any] | None = yield Command(SESSIONS, "find_one", {"filter": match})
        return document
    documents: list[dict[str, Any]] = yield Command(
        SESSIONS, "aggregate", {"pipeline": [{"$match": match}, {"$set": {"runs": recent_runs(runs_limit)}}]}
    )
    return documents[0] if documents else None


def session_list_filter(
    *,
    session_type: str | None,
    user_id: str | None,
    component_id: str | None,
    session_name: str | None,
    start_timestamp: int | None,
    end_timestamp: int | None,
) -> dict[str, Any]:
    """The ``get_sessions`` filter; every value has been checked to be a plain string or int."""
    query: dict[str, Any] = {**scope_filter(user_id)}
    if session_type is not None:
        query["session_type"] = session_type
    if component_id is not None:
        if session_type is not None:
            query[f"{session_type}_id"] = component_id
        else:
            query["$or"] = [{"agent_id": component_id}, {"team_id": component_id}, {"workflow_id": component_id}]
    created: dict[str, int] = {}
    if start_timestamp is not None:
        created["$gte"] = start_timestamp
    if end_timestamp is not None:
        created["$lte"] = end_timestamp
    if created:
        query["created_at"] = created
    if session_name is not None:
        query["session_data.session_name"] = {"$regex": re.escape(session_name), "$options": "i"}
    return query


def page_of(
    collection: str,
    query: dict[str, Any],
    sort: list[tuple[str, int]],
    limit: int | None,
    skip: int,
    projection: dict[str, Any] | None,
    *,
    count: bool,
) -> Plan[tuple[list[dict[str, Any]], int | None]]:
    """A page of documents and, when asked, the total: one ``find``, plus a count only if needed.

    A page shorter than ``limit`` already tells the total, so the count command is skipped then.
    """
    kwargs: dict[str, Any] = {"filter": query, "sort": sort, "skip": skip}
    if limit is not None:
        kwargs["limit"] = limit
    if projection is not None:
        kwargs["projection"] = projection
    documents: list[dict[str, Any]] = yield Command(collection, "find", kwargs)
    if not count:
        return documents, None
    if limit is None or (len(documents) < limit and (documents or skip == 0)):
        return documents, skip + len(documents)
    total: int = yield Command(collection, "count_documents", {"filter": query})
    return documents, total


def rename_session(
    session_id: str, user_id: str | None, session_type: str | None, session_name: str, now: int
) -> Command:
    """One ``findAndModify`` with a pipeline update, so a null ``session_data`` is fine too."""
    query: dict[str, Any] = {"_id": session_id, **scope_filter(user_id)}
    if session_type is not None:
        query["session_type"] = session_type
    merged = {"$mergeObjects": [{"$ifNull": ["$session_data", {}]}, {"session_name": {"$literal": session_name}}]}
    return Command(
        SESSIONS,
        "find_one_and_update",
        {
            "filter": query,
            "update": [{"$set": {"session_data": merged, "updated_at": {"$literal": now}}}],
            "return_document": ReturnDocument.AFTER,
        },
    )


def delete_sessions(session_ids: list[str], user_id: str | None) -> Command:
    """Delete sessions, and their runs with them (they live inside the document)."""
    if len(session_ids) == 1:
        return Command(SESSIONS, "delete_one", {"filter": {"_id": session_ids[0], **scope_filter(user_id)}})
    return Command(SESSIONS, "delete_many", {"filter": {"_id": {"$in": session_ids}, **scope_filter(user_id)}})


def reassign_session_owner(session_id: str, previous_user_id: str, user_id: str | None, now: int) -> Command:
    """Change the owner only if it is still ``previous_user_id`` and no run is in flight."""
    return Command(
        SESSIONS,
        "update_one",
        {
            "filter": {"_id": session_id, "user_id": previous_user_id, "runs.status": {"$nin": ACTIVE_RUN_STATUSES}},
            "update": {"$set": {"user_id": user_id, "updated_at": now}},
        },
    )


# --- runs (embedded in the session document) ------------------------------------------------


def set_run(session_id: str, user_id: str | None, run: dict[str, Any], now: int) -> Command:
    """Replace one existing run in place: positional ``$set`` of ``runs.$``."""
    return Command(
        SESSIONS,
        "update_one",
        {
            "filter": {"_id": session_id, **owner_filter(user_id), "runs.run_id": run["run_id"]},
            "update": {"$set": {"runs.$": run, "updated_at": now}},
        },
    )


def push_run(session_id: str, user_id: str | None, run: dict[str, Any], run_type: str, now: int) -> Command:
    """Append a new run, creating the session if needed; a retry of the same run matches nothing."""
    on_insert: dict[str, Any] = {
        "session_id": session_id,
        "session_type": run_type,
        "user_id": user_id,
        "created_at": now,
        "schema_version": SCHEMA_VERSION,
    }
    component_id = run.get(f"{run_type}_id")
    if component_id is not None:
        on_insert[f"{run_type}_id"] = component_id
    return Command(
        SESSIONS,
        "update_one",
        {
            "filter": {"_id": session_id, **owner_filter(user_id), "runs.run_id": {"$ne": run["run_id"]}},
            "update": {"$push": {"runs": run}, "$set": {"updated_at": now}, "$setOnInsert": on_insert},
            "upsert": True,
        },
    )


def upsert_run_plan(
    session_id: str, user_id: str | None, run: dict[str, Any], run_type: str, now: int, *, likely_exists: bool
) -> Plan[bool]:
    """Insert or replace one run; returns True if it was new.

    One command in the common case: ``$push`` for a run this process has not written before,
    positional ``$set`` for one it has. A wrong guess costs one more command, never a duplicate.
    A duplicate key on the push means the run is already there, or the session is someone else's;
    the positional ``$set`` that follows tells which.
    """
    replace = set_run(session_id, user_id, run, now)
    if likely_exists:
        result = yield replace
        if result.matched_count:
            return False
    try:
        yield push_run(session_id, user_id, run, run_type, now)
        return True
    except DuplicateKeyError:
        pass
    result = yield replace
    if result.matched_count:
        return False
    raise SessionOwnershipError(session_id, user_id)


def get_run(run_id: str) -> Command:
    """The session holding the run, with only that run projected."""
    return Command(
        SESSIONS,
        "find_one",
        {
            "filter": {"runs.run_id": run_id},
            "projection": {"runs": {"$elemMatch": {"run_id": run_id}}, "user_id": True, "session_type": True},
        },
    )


def delete_runs(run_ids: list[str], now: int) -> Command:
    """``$pull`` the runs from whichever sessions hold them."""
    selector: Any = run_ids[0] if len(run_ids) == 1 else {"$in": run_ids}
    return Command(
        SESSIONS,
        "update_one" if len(run_ids) == 1 else "update_many",
        {
            "filter": {"runs.run_id": selector},
            "update": {"$pull": {"runs": {"run_id": selector}}, "$set": {"updated_at": now}},
        },
    )


RUN_SORT_FIELDS = {"created_at", "updated_at", "status", "run_id", "agent_id", "team_id", "workflow_id", "run_index"}


def runs_pipeline(
    *,
    session_id: str | None,
    user_id: str | None,
    run_filter: dict[str, Any],
    sort: list[tuple[str, int]],
    skip: int,
    limit: int | None,
) -> list[dict[str, Any]]:
    """Runs across sessions as rows: match sessions, unwind runs, match runs, sort, page."""
    session_match: dict[str, Any] = {**scope_filter(user_id)}
    if session_id is not None:
        session_match["_id"] = session_id
    if run_filter:
        session_match["runs"] = {"$elemMatch": run_filter}
    pipeline: list[dict[str, Any]] = [
        {"$match": session_match},
        {"$unwind": {"path": "$runs", "includeArrayIndex": "run_index"}},
    ]
    if run_filter:
        pipeline.append({"$match": {f"runs.{key}": value for key, value in run_filter.items()}})
    pipeline.append({"$sort": dict(sort)})
    if skip:
        pipeline.append({"$skip": skip})
    if limit is not None:
        pipeline.append({"$limit": limit})
    pipeline.append(
        {"$project": {"_id": 0, "session_id": "$_id", "user_id": 1, "run_index": 1, "run_data": "$runs"}}
    )
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
    head = [stage for stage in pipeline if not {"$sort", "$skip", "$limit", "$project"} & stage.keys()]
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
