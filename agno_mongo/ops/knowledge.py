"""Pure command builders for the knowledge contents collection (one document per ``KnowledgeRow``).

Nothing here does I/O. A row's ``_id`` is its ``id``. The owner rules are agno's:

- a read with ``user_id`` sees that user's rows plus shared ones (``user_id`` null or absent);
- a delete with ``user_id`` removes only that user's rows (shared rows only go unscoped);
- an upsert writes a row only where the stored owner is the row's own ``user_id``: the check sits
  in the filter, so a row owned by someone else (or a shared row, for an owned write) does not
  match, the upsert collides on ``_id``, and MongoDB refuses it with a duplicate key in the same
  round trip. Ownership never changes through an upsert (agno's ids already include the owner).
  A collision that is a lost create race (the winner has the same owner) is sent again, not
  refused (see :func:`~agno_mongo.ops.owned.owner_checked_upsert_plan`).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.owned import Owner, owner_checked_upsert_plan
from agno_mongo.schema.knowledge import SCHEMA_VERSION, KnowledgeFields

KNOWLEDGE = "knowledge"

KNOWLEDGE_INDEXES = [
    # Knowledge.get_content lists one instance's rows (linked_to; all rows when it has no name) by
    # (created_at or updated_at, _id), either direction; the owner scope filters the walked range.
    # They replace linked_created (no _id), which an older deployment can drop (docs/indexes.md).
    IndexModel([("linked_to", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)], name="linked_created_id"),
    IndexModel([("linked_to", ASCENDING), ("updated_at", ASCENDING), ("_id", ASCENDING)], name="linked_updated_id"),
    IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)], name="created_id"),
    IndexModel([("updated_at", ASCENDING), ("_id", ASCENDING)], name="updated_id"),
]


def read_scope(user_id: str | None) -> dict[str, Any]:
    """What a caller may read: their rows and shared ones; everything when unscoped.

    ``{"user_id": None}`` also matches documents without the field, so ``$in`` covers both.
    """
    return {} if user_id is None else {"user_id": {"$in": [user_id, None]}}


def delete_scope(user_id: str | None) -> dict[str, Any]:
    """What a caller may delete: only their own rows; everything when unscoped."""
    return {} if user_id is None else {"user_id": user_id}


def upsert_knowledge(fields: KnowledgeFields, now: int) -> Command:
    """One ``update``: ``$set`` every field of the row, guarded by the owner in the filter.

    agno replaces the whole row on each upsert; ``$set`` of every field gives the same stored row
    without a replace. A row with no ``created_at`` is stamped once, on insert.
    """
    update: dict[str, Any] = {"$set": {**fields.stored_fields(), "schema_version": SCHEMA_VERSION}}
    if fields.created_at is None:
        update["$setOnInsert"] = {"created_at": now}
    else:
        update["$set"]["created_at"] = fields.created_at
    return Command(
        KNOWLEDGE,
        "update_one",
        {"filter": {"_id": fields.id, "user_id": fields.user_id}, "update": update, "upsert": True},
    )


def same_owner(user_id: str | None) -> Owner:
    """What the upsert's filter ``{"user_id": user_id}`` matches: exactly that owner (null or absent
    for a shared row)."""
    return lambda owner: owner == user_id


def upsert_knowledge_plan(fields: KnowledgeFields, now: int) -> Plan[bool]:
    """Upsert one row; ``False`` (nothing changed) if the stored row with this id has another owner.

    One command, plus an owner read and a resend only after a collision on ``_id``.
    """
    landed, _ = yield from owner_checked_upsert_plan(
        upsert_knowledge(fields, now), fields.id, same_owner(fields.user_id)
    )
    return landed


def get_knowledge(content_id: str, user_id: str | None) -> Command:
    """One ``find``: the row by id, if the caller may read it."""
    return Command(KNOWLEDGE, "find_one", {"filter": {"_id": content_id, **read_scope(user_id)}})


def knowledge_list_filter(linked_to: str | None, user_id: str | None) -> dict[str, Any]:
    """The ``get_knowledge_contents`` filter; values have been checked to be plain strings."""
    query: dict[str, Any] = {**read_scope(user_id)}
    if linked_to is not None:
        query["linked_to"] = linked_to
    return query


def delete_knowledge(content_id: str, user_id: str | None) -> Command:
    """One ``delete``: the row by id, only the caller's own when ``user_id`` is given."""
    return Command(KNOWLEDGE, "delete_one", {"filter": {"_id": content_id, **delete_scope(user_id)}})
