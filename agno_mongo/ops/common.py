"""Helpers every domain's plans share: tokens, owner and scope filters, listing sorts and pages,
and the duplicate key code with what a bulk write's duplicate-key refusals were.

Nothing here does I/O; like the rest of :mod:`agno_mongo.ops`, these return filters, sorts or plans.
"""

from __future__ import annotations

import secrets
from typing import Any

from pymongo.errors import BulkWriteError

from agno_mongo.ops.command import Command, Plan

DUPLICATE_KEY = 11000
"""MongoDB's error code for a write refused by a unique index (``_id`` included)."""


def new_token() -> str:
    """A fresh random token: 64 bits as 16 hex characters."""
    return secrets.token_hex(8)


def duplicate_indexes(error: BulkWriteError) -> list[int] | None:
    """The indexes (in the bulk's requests) of the writes a bulk write refused, when every refusal
    is a duplicate key; ``None`` if any has another code, or the error lists none."""
    failed = error.details.get("writeErrors") or []
    if not failed or any(item.get("code") != DUPLICATE_KEY for item in failed):
        return None
    return [int(item["index"]) for item in failed]


def owner_filter(user_id: str | None) -> dict[str, Any]:
    """Match a session the caller may write: theirs, or one nobody owns yet."""
    return {"user_id": {"$in": [None] if user_id is None else [user_id, None]}}


def scope_filter(user_id: str | None) -> dict[str, Any]:
    """Match what the caller may read or delete: their sessions, or all when unscoped (None)."""
    return {} if user_id is None else {"user_id": user_id}


def listing_sort(field: str, direction: int, *, id_field: str = "session_id") -> list[tuple[str, int]]:
    """A listing's sort: ``field``, then ``_id`` in the same direction (an index holds both, so the
    server walks it instead of sorting in memory). ``id_field`` is stored as ``_id`` too: sorting by
    it is sorting by ``_id`` alone, which the ``_id`` index serves."""
    if field == id_field:
        return [("_id", direction)]
    return [(field, direction), ("_id", direction)]


def page_of_plan(
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
