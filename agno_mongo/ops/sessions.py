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
import time
from typing import Any, Literal

import bson
from agno.db.utils import HISTORY_SKIP_STATUSES
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from agno_mongo.errors import AgnoMongoError, InvalidInputError, WriteContentionError
from agno_mongo.ops.command import Command, Plan, ReplyLost, Written
from agno_mongo.ops.common import new_token, owner_filter, scope_filter
from agno_mongo.ops.owned import may_write, owner_checked_bulk_plan, owner_checked_upsert_plan
from agno_mongo.schema.base import SCHEMA_VERSION
from agno_mongo.schema.codec import RUN_REV
from agno_mongo.schema.session import SessionFields

SESSIONS = "sessions"
OVERFLOW = "overflow"
"""Role of the collection that holds a long session's oldest runs in chunks (see :mod:`agno_mongo.ops.runs`)."""

INTERNAL = {"inc": False, "spill_rev": False, "_ops": False}
"""Bookkeeping fields that no read returns (``spilled`` too, wherever runs are not read)."""
ORPHAN_GRACE_SECONDS = 3600
"""An unreferenced chunk younger than this is never collected: a commit may still be on its way,
or a reader may hold a session it read just before a rewrite."""


def birth_fields() -> dict[str, Any]:
    """``$setOnInsert`` fields of every session a write creates: a new incarnation, no overflow."""
    return {"inc": new_token(), "spilled": [], "spill_rev": 0, SHAPE: new_token()}


# --- revisions (what lets a cached read ask for only what changed: see agno_mongo.session_cache) ---

REV = "rev"
"""The session's revision: strictly increasing with every write of the document."""
SHAPE = "shape"
"""A token replaced by every write that removes, reorders or moves runs."""
BUMP: dict[str, int] = {REV: 1}
"""``$inc`` clause of a write that stores no run."""


def next_revision(known: int | None = None) -> int:
    """The revision a run write proposes: the clock in microseconds, past what the caller knows.

    The write lands only if the stored revision is below it (:func:`below`); a stale guess (a clock
    behind another writer's) misses once, and the writer tries again past the revision it reads.
    """
    return max(time.time_ns() // 1000, (known or 0) + 1)


def below(revision: int) -> dict[str, Any]:
    """Filter clause: the session's revision is below ``revision`` (or it has none yet)."""
    return {REV: {"$not": {"$gte": revision}}}


def reshaped() -> dict[str, Any]:
    """``$set`` clause of a write that removes, reorders or moves runs: cached copies read it whole."""
    return {SHAPE: new_token()}


class MissingChunkError(AgnoMongoError):
    """A session lists an overflow chunk that stays missing on every re-read: the data was damaged
    (a chunk deleted by hand). Names the session and the chunk."""

    def __init__(self, session_id: object, chunk_id: object) -> None:
        self.session_id = session_id
        self.chunk_id = chunk_id
        super().__init__(f"session {session_id!r} lists overflow chunk {chunk_id!r}, which does not exist")


def stamped_plan(command: Command, token: str, check: dict[str, Any]) -> Plan[Written | Literal[True]]:
    """Send a command that stamps ``token`` into ``_ops`` and is not safe to resend blindly.

    Returns the command's result; after a lost reply, ``True`` if a document matching ``check``
    (which includes the token) shows it was applied, else the result of sending it again.
    """
    for attempt in range(3):
        try:
            result: Written = yield command
            return result
        except ReplyLost:
            found = yield Command(command.collection, "find_one", {"filter": check, "projection": {"_id": 1}})
            if found is not None:
                return True
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


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
    IndexModel([("spilled.ids", ASCENDING)], name="spilled_ids"),
    # after a lost reply, a write's token says whether it was applied
    IndexModel([("_ops", ASCENDING)], name="ops_tokens", sparse=True),
    # get_sessions sorts by (created_at or updated_at, _id), either direction; these serve it with
    # no in-memory sort: unfiltered, by owner, by component (docs/indexes.md has the combinations;
    # session_type is a filter on the walked range). created_at and the component ids never change,
    # so only the two updated_at indexes are rewritten by a run write. They replace the indexes
    # user_created, type_created, agent_created, team_created and workflow_created (no _id), which
    # an older deployment can drop.
    IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="created_id"),
    IndexModel([("updated_at", DESCENDING), ("_id", DESCENDING)], name="updated_id"),
    IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="user_created_id"),
    IndexModel([("user_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)], name="user_updated_id"),
    IndexModel([("agent_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="agent_created_id"),
    IndexModel([("team_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="team_created_id"),
    IndexModel(
        [("workflow_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="workflow_created_id"
    ),
]

OVERFLOW_INDEXES = [
    IndexModel([("session_id", ASCENDING), ("inc", ASCENDING)], name="session_inc"),
    IndexModel([("created_at", ASCENDING)], name="created_at"),
]

# A run belongs in the agent's context when it is top-level and not cancelled/errored: the same
# rule as agno.db.utils.filter_context_runs, evaluated by the server.
_CONTEXT_RUN = {
    "$and": [
        {"$eq": [{"$ifNull": ["$$run.parent_run_id", None]}, None]},
        {"$eq": [{"$in": [{"$ifNull": ["$$run.status", None]}, HISTORY_SKIP_STATUSES]}, False]},
    ]
}


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
                "$setOnInsert": {"created_at": fields.created_at or now, "runs": [], **birth_fields()},
                "$inc": BUMP,
                "$currentDate": {TOUCHED_AT: True},
            },
            "upsert": True,
            "return_document": ReturnDocument.AFTER,
            "projection": {"runs": False, "spilled": False, **INTERNAL},
        },
    )


def upsert_session_plan(fields: SessionFields, now: int) -> Plan[dict[str, Any] | None]:
    """Upsert one session; ``None`` when another user owns it (agno's contract for a refusal).

    A duplicate key is a refusal only if the stored owner is someone else: two writers creating the
    same new id at once also meet one (MongoDB retries that itself only for filters on ``_id`` alone).
    """
    landed, document = yield from owner_checked_upsert_plan(
        upsert_session(fields, now), fields.session_id, may_write(fields.user_id)
    )
    return document if landed else None


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
    out of the result; the rest land (a lost create race is sent again, see :mod:`agno_mongo.ops.owned`).
    """
    if not items:
        return []
    refused = yield from owner_checked_bulk_plan(
        lambda indexes: bulk_upsert_sessions([items[i] for i in indexes], now, preserve_updated_at=preserve_updated_at),
        SESSIONS,
        [fields.session_id for fields in items],
        [may_write(fields.user_id) for fields in items],
    )
    accepted = [fields.session_id for index, fields in enumerate(items) if index not in refused]
    if not accepted:
        return []
    documents: list[dict[str, Any]] = yield Command(
        SESSIONS,
        "find",
        {"filter": {"_id": {"$in": accepted}}, "projection": {"runs": False, "spilled": False, **INTERNAL}},
    )
    by_id = {document["_id"]: document for document in documents}
    return [by_id[session_id] for session_id in dict.fromkeys(accepted) if session_id in by_id]


def assemble(document: dict[str, Any], chunks: dict[str, dict[str, Any]]) -> str | None:
    """Put a session's overflowed runs back before its own, in place; the id of a missing chunk, if any.

    Only the ids an entry lists are taken from its chunk, in the entry's order: a chunk may also hold
    versions that were since rewritten or deleted, and those are never shown.
    """
    older: list[dict[str, Any]] = []
    for entry in document.get("spilled") or []:
        chunk = chunks.get(entry.get("c"))
        if chunk is None:
            return str(entry.get("c"))
        by_id = {run.get("run_id"): run for run in chunk.get("runs") or []}
        older.extend(by_id[run_id] for run_id in entry.get("ids") or [] if run_id in by_id)
    document["runs"] = [*older, *(document.get("runs") or [])]
    document.pop("spilled", None)
    return None


def chunk_ids(documents: list[dict[str, Any]]) -> list[Any]:
    """Every chunk the documents' ``spilled`` entries name."""
    return list(dict.fromkeys(entry.get("c") for document in documents for entry in document.get("spilled") or []))


def attach_overflow_plan(documents: list[dict[str, Any]]) -> Plan[list[dict[str, Any]]]:
    """Put back the overflowed runs of the listed sessions that have any: one command for the page.

    A chunk can only be missing if it was collected after a rewrite made it unreferenced; that
    session is then read again on its own (its current ``spilled`` names chunks that exist).
    """
    wanted = chunk_ids(documents)
    if not wanted:
        for document in documents:
            document.pop("spilled", None)
        return documents
    found: list[dict[str, Any]] = yield Command(OVERFLOW, "find", {"filter": {"_id": {"$in": wanted}}})
    chunks = {chunk["_id"]: chunk for chunk in found}
    out = []
    for document in documents:
        if assemble(document, chunks) is not None:
            fresh = yield from whole_session_plan({"_id": document["_id"]})
            if fresh is None:
                continue
            document = fresh
        out.append(document)
    return out


def whole_session_plan(match: dict[str, Any], projection: dict[str, Any] = INTERNAL) -> Plan[dict[str, Any] | None]:
    """The session matching ``match`` with every run, overflowed ones included, as one consistent state.

    The session document is read first; the chunks it names never change, so they complete that
    state. A named chunk missing means a newer state exists: read again.
    """
    missing: str | None = None
    for _ in range(5):
        document: dict[str, Any] | None = yield Command(
            SESSIONS, "find_one", {"filter": match, "projection": projection}
        )
        if document is None:
            return None
        missing = yield from with_overflow_plan(document)
        if missing is None:
            return document
    raise MissingChunkError(match.get("_id"), missing)


def with_overflow_plan(document: dict[str, Any]) -> Plan[str | None]:
    """Put a session document's overflowed runs back in place (one read of its chunks, none if it
    has not overflowed); the id of a missing chunk, if any (a newer state exists: read again)."""
    if not document.get("spilled"):
        document.pop("spilled", None)
        return None
    found: list[dict[str, Any]] = yield Command(OVERFLOW, "find", {"filter": {"_id": {"$in": chunk_ids([document])}}})
    return assemble(document, {chunk["_id"]: chunk for chunk in found})


def get_session_plan(session_id: str, user_id: str | None, runs_limit: int | None) -> Plan[dict[str, Any] | None]:
    """One command: ``find`` for the whole session, or ``aggregate`` trimming runs on the server.

    A session whose oldest runs overflowed costs one more command for a full read, and for a
    ``runs_limit`` read only when its own document holds fewer than ``runs_limit`` context runs.
    """
    match = {"_id": session_id, **scope_filter(user_id)}
    if runs_limit is None:
        return (yield from whole_session_plan(match))
    spilled = {"$gt": [{"$size": {"$ifNull": ["$spilled", []]}}, 0]}
    documents: list[dict[str, Any]] = yield Command(
        SESSIONS,
        "aggregate",
        {
            "pipeline": [
                {"$match": match},
                {"$set": {"runs": recent_runs(runs_limit), "spilled": spilled}},
                {"$project": INTERNAL},
            ]
        },
    )
    document = documents[0] if documents else None
    if document is None or not document.pop("spilled", False):
        return document
    if len(document.get("runs") or []) >= runs_limit:
        return document
    whole = yield from whole_session_plan(match)
    if whole is None:
        return None
    whole["runs"] = [run for run in whole.get("runs") or [] if is_context_run(run)][-runs_limit:] if runs_limit else []
    return whole


CACHED: dict[str, Any] = {"spill_rev": False, "_ops": False}
"""Projection of a read whose answer is cached: it keeps ``rev``, ``inc`` and ``shape``."""


def delta_pipeline(match: dict[str, Any], rev: int, inc: str | None, shape: str | None) -> list[dict[str, Any]]:
    """Aggregation: the session as a delta against a cached copy at ``rev``, or whole.

    Same incarnation and shape: ``{_id, rev, d: true}`` if the revision is the same, else the
    session's fields with only the runs written after ``rev`` (``_r > rev``), ``d: true``. Otherwise
    the whole document with ``d: false``.
    """
    same = {
        "$and": [
            {"$eq": [{"$ifNull": ["$inc", ""]}, inc or ""]},
            {"$eq": [{"$ifNull": [f"${SHAPE}", ""]}, shape or ""]},
        ]
    }
    unchanged = {"$eq": [{"$ifNull": [f"${REV}", 0]}, rev]}
    newer = {"$gt": [{"$ifNull": [f"$$run.{RUN_REV}", 0]}, rev]}
    return [
        {"$match": match},
        {
            "$replaceWith": {
                "$cond": [
                    {"$and": [same, unchanged]},
                    {"_id": "$_id", REV: f"${REV}", "d": True},
                    {"$mergeObjects": ["$$ROOT", {"d": same}]},
                ]
            }
        },
        {
            "$set": {
                "runs": {
                    "$cond": [
                        "$d",
                        {"$filter": {"input": {"$ifNull": ["$runs", []]}, "as": "run", "cond": newer}},
                        "$runs",
                    ]
                },
                "spilled": {"$cond": ["$d", "$$REMOVE", "$spilled"]},
            }
        },
        {"$project": CACHED},
    ]


def cached_session_plan(
    session_id: str, user_id: str | None, base: tuple[int, str | None, str | None] | None
) -> Plan[tuple[dict[str, Any] | None, bool]]:
    """The whole session, or with ``base`` (a cached copy's revision, incarnation and shape) the
    delta against it: ``(answer, is_delta)``. One command, plus one for overflow chunks only when the
    answer is whole and the session has overflowed."""
    match = {"_id": session_id, **scope_filter(user_id)}
    if base is not None:
        documents: list[dict[str, Any]] = yield Command(
            SESSIONS, "aggregate", {"pipeline": delta_pipeline(match, *base)}
        )
        if not documents:
            return None, False
        answer = documents[0]
        if answer.pop("d", False):
            return answer, True
        if (yield from with_overflow_plan(answer)) is None:
            return answer, False
    return (yield from whole_session_plan(match, CACHED)), False


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


FIELDS_BOOKKEEPING_BYTES = 16 * 1024
"""What a session document holds beside its fields and runs (id, timestamps, ``_ops`` tokens,
counters). The size guard of a rename counts them with the fields, so it allows this much more
than :data:`MAX_FIELDS_BYTES`; the 16 MiB limit still leaves about 1 MiB of headroom."""


def renamed_data(session_name: str) -> dict[str, Any]:
    """Aggregation expression: the stored ``session_data`` (null is fine) with the new name."""
    return {"$mergeObjects": [{"$ifNull": ["$session_data", {}]}, {"session_name": {"$literal": session_name}}]}


def renamed_fields_bytes(session_name: str) -> dict[str, Any]:
    """Aggregation expression: BSON size of the session once renamed, without its runs and overflow
    index (those have their own budget, ``max_runs_bytes``)."""
    without_runs = {
        "runs": {"$literal": []},
        "spilled": {"$literal": []},
        "session_data": renamed_data(session_name),
        REV: {"$literal": 0},  # bookkeeping (the embedded server's $bsonSize cannot size an Int64)
    }
    return {"$bsonSize": {"$mergeObjects": ["$$ROOT", without_runs]}}


def rename_session(
    session_id: str, user_id: str | None, session_type: str | None, session_name: str, now: int
) -> Command:
    """One ``findAndModify`` with a pipeline update, so a null ``session_data`` is fine too.

    Guarded on size: it matches only if the renamed session's fields stay within
    :data:`MAX_FIELDS_BYTES` (plus bookkeeping), the rule ``upsert_session`` applies to its fields,
    so the runs budget still fits in a 16 MiB document. A refused rename writes nothing.
    """
    query: dict[str, Any] = {"_id": session_id, **scope_filter(user_id)}
    if session_type is not None:
        query["session_type"] = session_type
    limit = MAX_FIELDS_BYTES + FIELDS_BOOKKEEPING_BYTES
    return Command(
        SESSIONS,
        "find_one_and_update",
        {
            "filter": {**query, "$expr": {"$lte": [renamed_fields_bytes(session_name), limit]}},
            "update": [
                {
                    "$set": {
                        "session_data": renamed_data(session_name),
                        "updated_at": {"$literal": now},
                        REV: {"$add": [{"$ifNull": [f"${REV}", 0]}, 1]},
                    }
                }
            ],
            "return_document": ReturnDocument.AFTER,
            "projection": INTERNAL,
        },
    )


RENAME_ROUNDS = 4
"""Sends of a rename whose guard missed while the session, read again, fits (it was created or
shrunk in between) before :class:`~agno_mongo.errors.WriteContentionError`."""


def rename_session_plan(
    session_id: str, user_id: str | None, session_type: str | None, session_name: str, now: int
) -> Plan[dict[str, Any] | None]:
    """Rename a session; ``None`` if there is none (in the caller's scope).

    One command when it lands. A name that alone exceeds :data:`MAX_FIELDS_BYTES` is refused before
    anything is sent; a miss is told apart by one read of the would-be size: no session (``None``),
    too big (:class:`~agno_mongo.errors.InvalidInputError` naming ``session_name``, nothing
    written), or it fits now (a race: send again).
    """
    name_bytes = len(bson.encode({"session_name": session_name}))
    if name_bytes > MAX_FIELDS_BYTES:
        raise InvalidInputError(
            "session_name", f"takes {name_bytes} bytes; a session's fields hold at most {MAX_FIELDS_BYTES}"
        )
    command = rename_session(session_id, user_id, session_type, session_name, now)
    limit = MAX_FIELDS_BYTES + FIELDS_BOOKKEEPING_BYTES
    for _ in range(RENAME_ROUNDS):
        document: dict[str, Any] | None = yield command
        if document is not None:
            return document
        query = {key: value for key, value in command.kwargs["filter"].items() if key != "$expr"}
        sized: list[dict[str, Any]] = yield Command(
            SESSIONS,
            "aggregate",
            {"pipeline": [{"$match": query}, {"$project": {"_id": 1, "size": renamed_fields_bytes(session_name)}}]},
        )
        if not sized:
            return None
        size = int(sized[0]["size"])
        if size > limit:
            raise InvalidInputError(
                "session_name",
                f"renaming session {session_id!r} would make its fields {size} bytes; at most {limit} fit "
                "beside its runs in one 16 MiB document (nothing was changed)",
            )
    raise WriteContentionError(f"session {session_id!r}: the rename kept missing while the session fits; not renamed")


def delete_sessions_plan(session_ids: list[str], user_id: str | None) -> Plan[tuple[int, list[str]]]:
    """Delete sessions with their runs; returns how many sessions went, and the ids whose other
    stored records (compactions, transcripts) go with them, as agno's SQL stores decide: a session
    this call deleted, or, for an unscoped bulk delete (no other owner to protect), every id given.

    One command for a single session that never overflowed (``findAndModify`` tells); otherwise the
    chunks of the deleted incarnations go in a second command. After a lost reply on the delete, a
    read tells whether the session is gone; its chunks are then left to
    :func:`delete_orphaned_overflow` (unreachable: nothing reads a chunk but through its session).
    A scoped bulk delete reads the caller's ids first and deletes only those.
    """
    if len(session_ids) == 1:
        match = {"_id": session_ids[0], **scope_filter(user_id)}
        try:
            gone: dict[str, Any] | None = yield Command(
                SESSIONS,
                "find_one_and_delete",
                {"filter": match, "projection": {"inc": True, "spilled.c": True}},
                resend=False,
            )
        except ReplyLost:
            still: dict[str, Any] | None = yield Command(
                SESSIONS, "find_one", {"filter": match, "projection": {"_id": 1}}
            )
            if still is None:
                return 1, list(session_ids)
            return (yield from delete_sessions_plan(session_ids, user_id))
        if gone is None:
            return 0, []
        if gone.get("spilled"):
            yield Command(OVERFLOW, "delete_many", {"filter": {"session_id": session_ids[0], "inc": gone.get("inc")}})
        return 1, list(session_ids)
    match = {"_id": {"$in": session_ids}, **scope_filter(user_id)}
    if user_id is None:
        cascade = list(session_ids)
        doomed: list[dict[str, Any]] = yield Command(
            SESSIONS, "find", {"filter": {**match, "spilled.0": {"$exists": True}}, "projection": {"inc": True}}
        )
    else:
        owned: list[dict[str, Any]] = yield Command(
            SESSIONS, "find", {"filter": match, "projection": {"inc": True, "spilled": {"$slice": 1}}}
        )
        cascade = [d["_id"] for d in owned]
        doomed = [d for d in owned if d.get("spilled")]
        if not cascade:
            return 0, []
        match = {"_id": {"$in": cascade}, **scope_filter(user_id)}
    result: Written = yield Command(SESSIONS, "delete_many", {"filter": match})
    if doomed:
        yield Command(
            OVERFLOW,
            "delete_many",
            {"filter": {"$or": [{"session_id": d["_id"], "inc": d.get("inc")} for d in doomed]}},
        )
    return result.deleted_count, cascade


def reassign_session_owner_plan(session_id: str, previous_user_id: str, user_id: str | None, now: int) -> Plan[bool]:
    """Change the owner only if it is still ``previous_user_id`` and no run is in flight.

    One atomic update: the owner lives on the session document alone (overflow chunks have none).
    Stamped with a token, so after a lost reply a read says whether it was applied.
    """
    token = new_token()
    command = Command(
        SESSIONS,
        "update_one",
        {
            "filter": {"_id": session_id, "user_id": previous_user_id, "runs.status": {"$nin": ACTIVE_RUN_STATUSES}},
            "update": {
                "$set": {"user_id": user_id, "updated_at": now},
                "$inc": BUMP,
                "$push": {"_ops": {"$each": [token], "$slice": -8}},
            },
        },
        resend=False,
    )
    result = yield from stamped_plan(command, token, {"_id": session_id, "_ops": token})
    return result is True or bool(result.matched_count)


def delete_orphaned_overflow_plan(now: int, grace_seconds: int = ORPHAN_GRACE_SECONDS, batch: int = 1000) -> Plan[int]:
    """Delete overflow chunks that no session references (expired by TTL, deleted, or superseded by a
    rewrite or a commit that missed), once older than ``grace_seconds``. Bounded batches."""
    deleted = 0
    last: Any = None
    while True:
        query: dict[str, Any] = {"created_at": {"$lte": now - grace_seconds}}
        if last is not None:
            query["_id"] = {"$gt": last}
        chunks: list[dict[str, Any]] = yield Command(
            OVERFLOW,
            "find",
            {"filter": query, "projection": {"session_id": True}, "sort": [("_id", ASCENDING)], "limit": batch},
        )
        if not chunks:
            return deleted
        last = chunks[-1]["_id"]
        owners = list({chunk.get("session_id") for chunk in chunks})
        sessions: list[dict[str, Any]] = yield Command(
            SESSIONS, "find", {"filter": {"_id": {"$in": owners}}, "projection": {"spilled.c": True}}
        )
        referenced = {entry.get("c") for document in sessions for entry in document.get("spilled") or []}
        orphans = [chunk["_id"] for chunk in chunks if chunk["_id"] not in referenced]
        if orphans:
            result: Written = yield Command(
                OVERFLOW,
                "delete_many",
                {"filter": {"_id": {"$in": orphans}, "created_at": {"$lte": now - grace_seconds}}},
            )
            deleted += result.deleted_count
        if len(chunks) < batch:
            return deleted
