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

from agno_mongo.ops.command import Command, Plan
from agno_mongo.schema.session import SCHEMA_VERSION, SessionFields

SESSIONS = "sessions"
OVERFLOW = "overflow"
"""Role of the collection that holds a long session's oldest runs (see :mod:`agno_mongo.ops.runs`)."""

DEFAULT_RUNS_BUDGET = 12 * 1024 * 1024
"""Bytes of runs one session document may hold before the oldest move to overflow documents.

MongoDB refuses documents over 16 MiB; the rest is room for the session's own fields (``SessionFields``
are refused above ``MAX_FIELDS_BYTES``) and for BSON overhead.
"""
MAX_FIELDS_BYTES = 3 * 1024 * 1024

TOUCHED_AT = "touched_at"
"""Server time (a BSON date) of the last write to a session, set with ``$currentDate``: what the
optional TTL index (``session_ttl_seconds``) expires on, since ``updated_at`` is an int for agno."""


def ttl_index(seconds: int) -> IndexModel:
    """Expire sessions ``seconds`` after their last write."""
    return IndexModel([(TOUCHED_AT, ASCENDING)], name="ttl_touched_at", expireAfterSeconds=seconds)


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

OVERFLOW_INDEXES = [
    IndexModel([("session_id", ASCENDING), ("seq", ASCENDING)], name="session_seq"),
    IndexModel([("runs.run_id", ASCENDING)], name="runs_run_id"),
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
                "$currentDate": {TOUCHED_AT: True},
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


def merge_runs(older: list[dict[str, Any]], newer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs from overflow documents (oldest first) then the session's own, each run once.

    A run can sit in two places for a moment if a writer stopped between copying runs out and
    pulling them from the session; the later copy wins and the first position is kept.
    """
    order: dict[str, dict[str, Any]] = {}
    for run in [*older, *newer]:
        order[run.get("run_id", "")] = run
    return list(order.values())


def attach_overflow(documents: list[dict[str, Any]]) -> Plan[list[dict[str, Any]]]:
    """Put back the overflowed runs of the listed sessions that have any: one command for the page."""
    spilled = [document["_id"] for document in documents if document.get("overflow") and "runs" in document]
    if not spilled:
        return documents
    parts: list[dict[str, Any]] = yield Command(
        OVERFLOW,
        "find",
        {"filter": {"session_id": {"$in": spilled}}, "sort": [("session_id", ASCENDING), ("seq", ASCENDING)]},
    )
    older: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        older.setdefault(part["session_id"], []).extend(part.get("runs", []))
    for document in documents:
        if document["_id"] in older:
            document["runs"] = merge_runs(older[document["_id"]], document.get("runs") or [])
    return documents


def overflow_runs(session_id: str) -> Plan[list[dict[str, Any]]]:
    """All runs moved out of a session, oldest first (only read when the session has overflowed)."""
    documents: list[dict[str, Any]] = yield Command(
        OVERFLOW, "find", {"filter": {"session_id": session_id}, "sort": [("seq", ASCENDING)]}
    )
    return [run for document in documents for run in document.get("runs", [])]


def get_session(session_id: str, user_id: str | None, runs_limit: int | None) -> Plan[dict[str, Any] | None]:
    """One command: ``find`` for the whole session, or ``aggregate`` trimming runs on the server.

    A session whose oldest runs overflowed costs one more command for a full read, and for a
    ``runs_limit`` read only when its own document holds fewer than ``runs_limit`` context runs.
    """
    match = {"_id": session_id, **scope_filter(user_id)}
    document: dict[str, Any] | None
    if runs_limit is None:
        document = yield Command(SESSIONS, "find_one", {"filter": match})
    else:
        documents: list[dict[str, Any]] = yield Command(
            SESSIONS, "aggregate", {"pipeline": [{"$match": match}, {"$set": {"runs": recent_runs(runs_limit)}}]}
        )
        document = documents[0] if documents else None
    if document is None or not document.get("overflow"):
        return document
    if runs_limit is not None and len(document.get("runs") or []) >= runs_limit:
        return document
    older = yield from overflow_runs(session_id)
    if runs_limit is None:
        document["runs"] = merge_runs(older, document.get("runs") or [])
        return document
    whole: dict[str, Any] = yield Command(SESSIONS, "find_one", {"filter": match, "projection": {"runs": True}})
    context = [run for run in merge_runs(older, (whole or {}).get("runs") or []) if is_context_run(run)]
    document["runs"] = context[-runs_limit:] if runs_limit else []
    return document


def is_context_run(run: dict[str, Any]) -> bool:
    """Python twin of the server-side context filter, for the rare overflowed read."""
    return run.get("parent_run_id") is None and run.get("status") not in HISTORY_SKIP_STATUSES


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


def delete_sessions(session_ids: list[str], user_id: str | None) -> Plan[int]:
    """Delete sessions with their runs; returns how many sessions went.

    One command when a single session never overflowed (``findAndModify`` tells); otherwise the
    overflow documents of the deleted sessions go in a second command.
    """
    if len(session_ids) == 1:
        gone: dict[str, Any] | None = yield Command(
            SESSIONS,
            "find_one_and_delete",
            {"filter": {"_id": session_ids[0], **scope_filter(user_id)}, "projection": {"overflow": True}},
        )
        if gone is None:
            return 0
        if gone.get("overflow"):
            yield Command(OVERFLOW, "delete_many", {"filter": {"session_id": session_ids[0]}})
        return 1
    result = yield Command(SESSIONS, "delete_many", {"filter": {"_id": {"$in": session_ids}, **scope_filter(user_id)}})
    if user_id is None:
        yield Command(OVERFLOW, "delete_many", {"filter": {"session_id": {"$in": session_ids}}})
    else:
        yield Command(OVERFLOW, "delete_many", {"filter": {"session_id": {"$in": session_ids}, "user_id": user_id}})
    return int(result.deleted_count)


def reassign_session_owner(session_id: str, previous_user_id: str, user_id: str | None, now: int) -> Plan[bool]:
    """Change the owner only if it is still ``previous_user_id`` and no run is in flight."""
    changed: dict[str, Any] | None = yield Command(
        SESSIONS,
        "find_one_and_update",
        {
            "filter": {"_id": session_id, "user_id": previous_user_id, "runs.status": {"$nin": ACTIVE_RUN_STATUSES}},
            "update": {"$set": {"user_id": user_id, "updated_at": now}},
            "projection": {"overflow": True},
        },
    )
    if changed is None:
        return False
    if changed.get("overflow"):
        yield Command(
            OVERFLOW, "update_many", {"filter": {"session_id": session_id}, "update": {"$set": {"user_id": user_id}}}
        )
    return True


def delete_orphaned_overflow() -> Plan[int]:
    """Delete overflow documents whose session is gone (expired by TTL, or removed by hand)."""
    owners: list[str] = yield Command(OVERFLOW, "distinct", {"key": "session_id"})
    if not owners:
        return 0
    alive: list[str] = yield Command(SESSIONS, "distinct", {"key": "_id", "filter": {"_id": {"$in": owners}}})
    orphans = sorted(set(owners) - set(alive))
    if not orphans:
        return 0
    result = yield Command(OVERFLOW, "delete_many", {"filter": {"session_id": {"$in": orphans}}})
    return int(result.deleted_count)
