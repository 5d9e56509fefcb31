"""Pure command builders for the learnings collection (one document per learning record).

Nothing here does I/O. A learning's ``_id`` is its ``learning_id``. ``upsert_learning`` carries the
owner check inside its filter, like sessions and memories: a record owned by another user does not
match, the upsert collides on ``_id`` and MongoDB refuses it in the same round trip. A collision
that is a lost create race (same owner, created first by another writer) is sent again, not refused
(see :func:`~agno_mongo.ops.owned.owner_checked_upsert`).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.memories import stats_page, user_stats_pipeline
from agno_mongo.ops.owned import may_write, owner_checked_upsert
from agno_mongo.ops.sessions import owner_filter
from agno_mongo.schema.codec import MARKER
from agno_mongo.schema.learnings import SCHEMA_VERSION, LearningFields, learning_free_form

LEARNINGS = "learnings"

LEARNING_INDEXES = [
    # get_learning / get_learnings: agno's stores look records up by type and owner, newest first.
    IndexModel(
        [("learning_type", ASCENDING), ("user_id", ASCENDING), ("updated_at", DESCENDING)], name="type_user_updated"
    ),
    # list_learnings / get_learnings_user_stats / delete_user_learnings: by owner.
    IndexModel([("user_id", ASCENDING), ("updated_at", DESCENDING)], name="user_updated"),
]

NEWEST_FIRST = [("updated_at", DESCENDING), ("_id", ASCENDING)]

FILTER_FIELDS = (
    "learning_type",
    "user_id",
    "agent_id",
    "team_id",
    "session_id",
    "namespace",
    "entity_id",
    "entity_type",
)


def learning_filter(values: dict[str, str | None], *, include_global: bool = False) -> dict[str, Any]:
    """Equality on each given field; ``include_global`` also admits ownerless records for a user."""
    query: dict[str, Any] = {}
    for field in FILTER_FIELDS:
        value = values.get(field)
        if value is None:
            continue
        if field == "user_id" and include_global:
            query["user_id"] = {"$in": [value, None]}
        else:
            query[field] = value
    return query


def upsert_learning(fields: LearningFields, now: int) -> Command:
    """One ``update``: ``$set`` every field, ``$setOnInsert`` ``created_at``; refused for another owner."""
    return Command(
        LEARNINGS,
        "update_one",
        {
            "filter": {"_id": fields.learning_id, **owner_filter(fields.user_id)},
            "update": {
                "$set": {**fields.stored_fields(), "updated_at": now, "schema_version": SCHEMA_VERSION},
                "$setOnInsert": {"created_at": now},
            },
            "upsert": True,
        },
    )


def upsert_learning_plan(fields: LearningFields, now: int) -> Plan[bool]:
    """Upsert one record; ``False`` (nothing changed) if another user owns its id.

    One command, plus an owner read and a resend only after a collision on ``_id``.
    """
    landed, _ = yield from owner_checked_upsert(
        upsert_learning(fields, now), fields.learning_id, may_write(fields.user_id)
    )
    return landed


def get_learning(query: dict[str, Any]) -> Command:
    """One ``find``: the newest matching record's ``content`` only."""
    projection = {"content": True, MARKER: True}
    return Command(LEARNINGS, "find_one", {"filter": query, "sort": NEWEST_FIRST, "projection": projection})


def get_learning_by_id(learning_id: str) -> Command:
    """One ``find`` by primary key."""
    return Command(LEARNINGS, "find_one", {"filter": {"_id": learning_id}})


def get_learnings(query: dict[str, Any], limit: int | None) -> Command:
    """One ``find``, newest first (as agno's SQL stores order them)."""
    kwargs: dict[str, Any] = {"filter": query, "sort": NEWEST_FIRST}
    if limit is not None:
        kwargs["limit"] = limit
    return Command(LEARNINGS, "find", kwargs)


def update_learning(learning_id: str, content: dict[str, Any], metadata: dict[str, Any] | None, now: int) -> Command:
    """One ``update`` without upsert: a deleted record stays deleted."""
    return Command(
        LEARNINGS,
        "update_one",
        {
            "filter": {"_id": learning_id},
            "update": {"$set": {**learning_free_form(content, metadata), "updated_at": now}},
        },
    )


def delete_learning(learning_id: str) -> Command:
    """One ``delete`` by primary key."""
    return Command(LEARNINGS, "delete_one", {"filter": {"_id": learning_id}})


def delete_user_learnings(user_id: str, learning_type: str | None) -> Command:
    """One ``delete`` of a user's records (ownerless records are never matched)."""
    query: dict[str, Any] = {"user_id": user_id}
    if learning_type is not None:
        query["learning_type"] = learning_type
    return Command(LEARNINGS, "delete_many", {"filter": query})


def learning_user_stats(
    learning_type: str | None, user_id: str | None, sort_field: str, direction: int, limit: int | None, skip: int
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """Users owning learning records with their last update, and how many users: one ``aggregate``."""
    match: dict[str, Any] = {"user_id": {"$ne": None} if user_id is None else user_id}
    if learning_type is not None:
        match["learning_type"] = learning_type
    key = "_id" if sort_field == "user_id" else sort_field
    sort = {key: direction} if key == "_id" else {key: direction, "_id": ASCENDING}
    pipeline = user_stats_pipeline(match, count_field=None, last_field="last_learning_updated_at", sort=sort)
    rows, total = yield from stats_page(LEARNINGS, pipeline, limit, skip)
    return [{"user_id": row["_id"], "last_learning_updated_at": row["last_learning_updated_at"]} for row in rows], total
