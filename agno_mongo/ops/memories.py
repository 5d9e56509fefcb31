"""Pure command builders and plans for the user memories collection (one document per memory).

Nothing here does I/O. A memory's ``_id`` is its ``memory_id``, so every single-memory command is a
point lookup. Writes carry the owner check inside the filter (``user_id`` the writer's, or null): a
memory owned by another user does not match, the upsert then collides on ``_id`` and MongoDB refuses
it with a duplicate key, in the same round trip. Reads and deletes scope to ``user_id`` when given.

A duplicate key can also be a lost create race: two writers create the same new id at once, both
filters miss (it does not exist yet), one insert wins and the other collides. MongoDB retries that
itself only when the filter is equality on ``_id`` alone, which an owner check is not, so the
shared plans of :mod:`agno_mongo.ops.owned` read the stored owner after a duplicate key and send the
upsert again when the write is allowed: it now matches. The common path stays one command.
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne

from agno_mongo.ops.aggregations import aggregate, page_with_total_plan
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import owner_filter, scope_filter
from agno_mongo.ops.owned import may_write, owner_checked_bulk_plan, owner_checked_upsert_plan
from agno_mongo.schema.memories import SCHEMA_VERSION, MemoryFields

MEMORIES = "memories"

MEMORY_INDEXES = [
    # get_user_memories sorts by (created_at or updated_at, _id), either direction: the agent's read
    # (one user, creation order), the memory manager's unscoped read, AgentOS's page (newest update
    # first, by user or not). get_all_memory_topics per user and get_user_memory_stats (by user on
    # updated_at) use the user indexes' prefixes. They replace user_created and user_updated (no
    # _id), which an older deployment can drop (docs/indexes.md).
    IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)], name="created_id"),
    IndexModel([("updated_at", DESCENDING), ("_id", DESCENDING)], name="updated_id"),
    IndexModel([("user_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)], name="user_created_id"),
    IndexModel([("user_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)], name="user_updated_id"),
]


def upsert_memory(fields: MemoryFields, now: int) -> Command:
    """One ``findAndModify``: ``$set`` the memory, ``$setOnInsert`` its birth time; returns the stored one.

    agno's memory manager rebuilds a ``UserMemory`` (with a fresh ``created_at``) to update one, so
    ``created_at`` is only written when the memory is first stored.
    """
    return Command(
        MEMORIES,
        "find_one_and_update",
        {
            "filter": {"_id": fields.memory_id, **owner_filter(fields.user_id)},
            "update": {
                "$set": {
                    **fields.stored_fields(),
                    "memory_id": fields.memory_id,
                    "updated_at": now,
                    "schema_version": SCHEMA_VERSION,
                },
                "$setOnInsert": {"created_at": fields.created_at or now},
            },
            "upsert": True,
            "return_document": ReturnDocument.AFTER,
        },
    )


def upsert_memory_plan(fields: MemoryFields, now: int) -> Plan[dict[str, Any] | None]:
    """Upsert one memory; ``None`` when another user owns that ``memory_id`` (nothing changed).

    A lost create race (another writer created the same new id first) is written, not refused.
    """
    landed, document = yield from owner_checked_upsert_plan(
        upsert_memory(fields, now), fields.memory_id, may_write(fields.user_id)
    )
    return document if landed else None


def stored_record(fields: MemoryFields, now: int, *, preserve_updated_at: bool) -> dict[str, Any]:
    """The whole document a bulk upsert writes, as agno's bulk path does (``created_at`` included)."""
    updated_at = fields.updated_at if preserve_updated_at and fields.updated_at is not None else now
    return {
        **fields.stored_fields(),
        "memory_id": fields.memory_id,
        "created_at": fields.created_at if fields.created_at is not None else now,
        "updated_at": updated_at,
        "schema_version": SCHEMA_VERSION,
    }


def bulk_upsert_memories(records: list[dict[str, Any]]) -> Command:
    """One unordered ``update`` command carrying every memory, each with its own owner check."""
    requests = [
        UpdateOne({"_id": record["memory_id"], **owner_filter(record["user_id"])}, {"$set": record}, upsert=True)
        for record in records
    ]
    return Command(MEMORIES, "bulk_write", {"requests": requests, "ordered": False})


def upsert_memories_plan(records: list[dict[str, Any]]) -> Plan[set[int]]:
    """Bulk upsert; returns the indexes of the records not written because another user owns them.

    The rest land: an unordered bulk write carries on past a refused document. The records whose
    upsert collided on ``_id`` are told apart with ONE read of their stored owners: those another
    user owns are refused, the others lost a create race and go again in ONE more bulk (bounded by
    :data:`CREATE_RACE_ROUNDS`; a record still colliding after that is left out too). Without a
    collision this is the one command.
    """
    if not records:
        return set()
    return (
        yield from owner_checked_bulk_plan(
            lambda indexes: bulk_upsert_memories([records[index] for index in indexes]),
            MEMORIES,
            [record["memory_id"] for record in records],
            [may_write(record["user_id"]) for record in records],
        )
    )


def get_memory(memory_id: str, user_id: str | None) -> Command:
    """One ``find``: the memory by id, only if it is the caller's when ``user_id`` is given."""
    return Command(MEMORIES, "find_one", {"filter": {"_id": memory_id, **scope_filter(user_id)}})


def memory_list_filter(
    *,
    user_id: str | None,
    agent_id: str | None,
    team_id: str | None,
    topics: list[str] | None,
    search_content: str | None,
) -> dict[str, Any]:
    """The ``get_user_memories`` filter; every value has been checked to be a plain string."""
    query: dict[str, Any] = {**scope_filter(user_id)}
    if agent_id is not None:
        query["agent_id"] = agent_id
    if team_id is not None:
        query["team_id"] = team_id
    if topics is not None:
        query["topics"] = {"$in": topics}
    if search_content is not None:
        query["memory"] = {"$regex": re.escape(search_content), "$options": "i"}
    return query


def memory_topics(user_id: str | None) -> Command:
    """One ``aggregate``: each topic once (``topics`` is an array field), in order, through a cursor.

    Not ``distinct``: its answer is one document, refused past 16 MiB."""
    return aggregate(
        MEMORIES,
        [
            {"$match": {**scope_filter(user_id), "topics": {"$type": "string"}}},
            {"$unwind": "$topics"},
            {"$match": {"topics": {"$type": "string"}}},
            {"$group": {"_id": "$topics"}},
            {"$sort": {"_id": ASCENDING}},
        ],
    )


def user_stats_pipeline(
    match: dict[str, Any], *, count_field: str | None, last_field: str, sort: dict[str, int]
) -> list[dict[str, Any]]:
    """Group owned documents by ``user_id``: how many (if ``count_field``) and the latest ``updated_at``.

    One output document per user, each of bounded size (``$sum`` / ``$max`` only)."""
    group: dict[str, Any] = {"_id": "$user_id", last_field: {"$max": "$updated_at"}}
    if count_field is not None:
        group[count_field] = {"$sum": 1}
    return [{"$match": match}, {"$group": group}, {"$sort": sort}]


def stats_page_plan(
    collection: str, collection_name: str, pipeline: list[dict[str, Any]], limit: int | None, skip: int
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """A page of grouped rows and the total number of groups, in ONE ``aggregate``.

    The page's rows come through the cursor, followed by the number of users (a ``$unionWith``
    counting the groups; see :func:`~agno_mongo.ops.aggregations.page_with_total_plan`); without a limit
    every group comes back and is the total. ``collection_name`` is ``collection``'s real name.
    """
    counting = [pipeline[0], {"$group": {"_id": "$user_id"}}]
    result = yield from page_with_total_plan(collection, collection_name, pipeline, counting, skip, limit)
    return result


def memory_stats_plan(
    user_id: str | None, limit: int | None, skip: int, collection_name: str = MEMORIES
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """Per-user memory counts and last update, newest first, with the total number of users."""
    match: dict[str, Any] = {"user_id": {"$ne": None}} if user_id is None else {"user_id": user_id}
    pipeline = user_stats_pipeline(
        match,
        count_field="total_memories",
        last_field="last_memory_updated_at",
        sort={"last_memory_updated_at": DESCENDING, "_id": ASCENDING},
    )
    rows, total = yield from stats_page_plan(MEMORIES, collection_name, pipeline, limit, skip)
    return [
        {
            "user_id": row["_id"],
            "total_memories": row["total_memories"],
            "last_memory_updated_at": row["last_memory_updated_at"],
        }
        for row in rows
    ], total


def delete_memories(memory_ids: list[str], user_id: str | None) -> Command:
    """One ``delete``: ``delete_one`` for one id, ``delete_many`` for several; scoped to the caller."""
    if len(memory_ids) == 1:
        return Command(MEMORIES, "delete_one", {"filter": {"_id": memory_ids[0], **scope_filter(user_id)}})
    return Command(MEMORIES, "delete_many", {"filter": {"_id": {"$in": memory_ids}, **scope_filter(user_id)}})


def clear_memories() -> Command:
    """Delete every memory (agno's ``clear_memories`` is unscoped by contract)."""
    return Command(MEMORIES, "delete_many", {"filter": {}})
