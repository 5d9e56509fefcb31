"""Pure command builders for the learnings collection (one document per learning record).

Nothing here does I/O. A learning's ``_id`` is its ``learning_id``. ``upsert_learning`` carries the
owner check inside its filter, like sessions and memories: a record owned by another user does not
match, the upsert collides on ``_id`` and MongoDB refuses it in the same round trip. A collision
that is a lost create race (same owner, created first by another writer) is sent again, not refused
(see :func:`~agno_mongo.ops.owned.owner_checked_upsert_plan`).

``search_learnings`` matches a derived field, ``search_text`` (``content`` as agno's SQL stores'
JSON text, lower-cased), that every write of ``content`` sets in the same command; rows written
before it existed are backfilled by the first search that meets them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne

from agno_mongo.ops import common
from agno_mongo.ops.aggregations import aggregate
from agno_mongo.ops.command import Command, Plan, Written
from agno_mongo.ops.common import owner_filter
from agno_mongo.ops.memories import stats_page_plan, user_stats_pipeline
from agno_mongo.ops.owned import may_write, owner_checked_upsert_plan
from agno_mongo.schema.base import reading
from agno_mongo.schema.codec import MARKER, decode_fields
from agno_mongo.schema.learnings import (
    SCHEMA_VERSION,
    SEARCH_TEXT,
    LearningFields,
    ascii_lower,
    learning_free_form,
    search_text,
)

LEARNINGS = "learnings"


def _newest_first(*prefix: str) -> list[tuple[str, int]]:
    return [*((field, ASCENDING) for field in prefix), ("updated_at", DESCENDING), ("_id", ASCENDING)]


LEARNING_INDEXES = [
    # Every listing here reads newest first, ties by id (NEWEST_FIRST, or its reverse); these hold
    # that order after the equalities agno's stores send (docs/indexes.md has the combinations).
    # get_learning / get_learnings / search_learnings: by type and owner (user profiles, user
    # memory, entity memory in the user namespace; an $in of the owner and null merges two scans).
    IndexModel(_newest_first("learning_type", "user_id"), name="type_user_updated_id"),
    # entity memory in a shared namespace, and the Company decisions: by type and namespace; the
    # search regex is checked while walking the index in order, and the walk stops at ``limit``.
    IndexModel(_newest_first("learning_type", "namespace"), name="type_namespace_updated_id"),
    # one entity's records (entity memory reads them all, unlimited).
    IndexModel(_newest_first("learning_type", "entity_id"), name="type_entity_updated_id"),
    # the decision log (type only, agent / session filter the walk) and AgentOS's list by type.
    IndexModel(_newest_first("learning_type"), name="type_updated_id"),
    # list_learnings / get_learnings_user_stats / delete_user_learnings: by owner; and unfiltered.
    IndexModel(_newest_first("user_id"), name="user_updated_id"),
    IndexModel(_newest_first(), name="updated_id"),
    # They replace type_user_updated, user_updated and type_namespace_updated (no _id), which an
    # older deployment can drop.
]

WITHOUT_SEARCH_TEXT = {SEARCH_TEXT: False}
"""Reads that return rows leave the derived search text on the server."""

NEWEST_FIRST = [("updated_at", DESCENDING), ("_id", ASCENDING)]


def listing_sort(field: str, direction: int) -> list[tuple[str, int]]:
    """``list_learnings``' sort. By ``updated_at``: :data:`NEWEST_FIRST` or its exact reverse, the
    order every other learnings read uses, so one index serves them all. By ``learning_id`` (stored
    as ``_id``): ``_id`` alone. Otherwise the field, then ``_id`` in the same direction."""
    if field == "updated_at":
        return list(NEWEST_FIRST) if direction == DESCENDING else [("updated_at", ASCENDING), ("_id", DESCENDING)]
    return common.listing_sort(field, direction, id_field="learning_id")


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


def learning_filter(
    values: dict[str, str | None], *, include_global: bool = False, fields: tuple[str, ...] = FILTER_FIELDS
) -> dict[str, Any]:
    """Equality on each given field; ``include_global`` also admits ownerless records for a user."""
    query: dict[str, Any] = {}
    for field in fields:
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
    landed, _ = yield from owner_checked_upsert_plan(
        upsert_learning(fields, now), fields.learning_id, may_write(fields.user_id)
    )
    return landed


def get_learning(query: dict[str, Any]) -> Command:
    """One ``find``: the newest matching record's ``content`` only."""
    projection = {"content": True, MARKER: True}
    return Command(LEARNINGS, "find_one", {"filter": query, "sort": NEWEST_FIRST, "projection": projection})


def get_learning_by_id(learning_id: str) -> Command:
    """One ``find`` by primary key."""
    return Command(LEARNINGS, "find_one", {"filter": {"_id": learning_id}, "projection": WITHOUT_SEARCH_TEXT})


def get_learnings(query: dict[str, Any], limit: int | None) -> Command:
    """One ``find``, newest first (as agno's SQL stores order them)."""
    kwargs: dict[str, Any] = {"filter": query, "sort": NEWEST_FIRST, "projection": WITHOUT_SEARCH_TEXT}
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


def learning_user_stats_plan(
    learning_type: str | None,
    user_id: str | None,
    sort_field: str,
    direction: int,
    limit: int | None,
    skip: int,
    collection_name: str = LEARNINGS,
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """Users owning learning records with their last update, and how many users: one ``aggregate``."""
    match: dict[str, Any] = {"user_id": {"$ne": None} if user_id is None else user_id}
    if learning_type is not None:
        match["learning_type"] = learning_type
    key = "_id" if sort_field == "user_id" else sort_field
    sort = {key: direction} if key == "_id" else {key: direction, "_id": ASCENDING}
    pipeline = user_stats_pipeline(match, count_field=None, last_field="last_learning_updated_at", sort=sort)
    rows, total = yield from stats_page_plan(LEARNINGS, collection_name, pipeline, limit, skip)
    return [{"user_id": row["_id"], "last_learning_updated_at": row["last_learning_updated_at"]} for row in rows], total


# --- search_learnings ----------------------------------------------------------------------------------------

ANY = None
"""A pattern token matching any one character (SQL ``LIKE``'s ``_``)."""

_SEPARATORS = re.compile(r"[\s_\-]+")
_JSON_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{4}")
_WILDCARD = "\x00"


def search_regex(query: str) -> str | None:
    """The regex (over :data:`~agno_mongo.schema.learnings.SEARCH_TEXT`) that finds what agno's SQL
    stores find with ``content ILIKE`` for ``query`` (``agno.db.utils.learning_search_patterns``),
    or ``None`` when nothing can match.

    As agno builds its patterns: the query is stripped (only ``%``, ``_`` and whitespace: no
    pattern, nothing found); it is tried as given and, when it has characters JSON escapes
    (non-ASCII, quotes, backslashes, control characters), in its ``ensure_ascii`` JSON form, where
    each ``\\uXXXX`` escape becomes six any-character wildcards; in both, each run of whitespace,
    ``_`` and ``-`` matches exactly one character of any kind ("sarah chen" finds "sarah_chen" and
    "Sarah Chen"); everything else, ``%`` and regex metacharacters included, is literal. Matching
    folds A-Z only, like SQLite. The stored text is printable ASCII, so a form that keeps a
    character outside it can never match and is left out.
    """
    stripped = query.strip()
    if not re.sub(r"[%_\s]+", "", stripped):
        return None
    variants = [stripped]
    json_form = json.dumps(stripped, ensure_ascii=True)[1:-1]
    if json_form != stripped:
        variants.append(_JSON_ESCAPE.sub(_WILDCARD * 6, json_form))
    alternatives: list[str] = []
    for variant in variants:
        tokens: list[str | None] = []
        for index, part in enumerate(_SEPARATORS.split(variant)):
            if index:
                tokens.append(ANY)
            tokens.extend(ANY if char == _WILDCARD else char for char in ascii_lower(part))
        if any(token is not None and not " " <= token <= "~" for token in tokens):
            continue  # a character the stored (printable ASCII) text never has
        regex = "".join(
            "." if token is None else token if token.isascii() and token.isalnum() else "\\" + token for token in tokens
        )
        if regex not in alternatives:
            alternatives.append(regex)
    if not alternatives:
        return None
    return alternatives[0] if len(alternatives) == 1 else "|".join(f"(?:{regex})" for regex in alternatives)


UNSEARCHED = "search_text_missing"
"""Set on a search result that has no derived text yet (written before it existed)."""

BACKFILL_BATCH = 500


def search_learnings(query: dict[str, Any], regex: str, limit: int | None) -> Command:
    """One ``aggregate``: the matching records newest first (at most ``limit``), plus any record in
    scope that has no search text yet, flagged :data:`UNSEARCHED` (the text itself stays on the server)."""
    match = {**query, "$or": [{SEARCH_TEXT: {"$regex": regex, "$options": "s"}}, {SEARCH_TEXT: {"$exists": False}}]}
    pipeline: list[dict[str, Any]] = [{"$match": match}, {"$sort": dict(NEWEST_FIRST)}]
    if limit is not None:
        pipeline.append({"$limit": limit})
    pipeline += [
        {"$set": {UNSEARCHED: {"$eq": [{"$type": f"${SEARCH_TEXT}"}, "missing"]}}},
        {"$unset": SEARCH_TEXT},
    ]
    return aggregate(LEARNINGS, pipeline)


def stored_search_text(document: dict[str, Any]) -> str:
    """The search text of a stored record's ``content`` (decoded first, so it is the text agno wrote)."""
    with reading(LEARNINGS, document):
        return search_text(decode_fields(document).get("content"))


def backfill_search_text_plan(query: dict[str, Any]) -> Plan[int]:
    """Set the search text on every record in ``query``'s scope that has none (written before it
    existed); how many were set. Batches of one ``find`` and one unordered ``bulk_write``.

    Each update is conditional on the record still lacking the text and still holding the content
    it was computed from, so a write racing with it wins, and a resent batch changes nothing. A
    batch that sets nothing (its records rewritten meanwhile by a writer that does not set the
    text) ends the backfill; searches check such records in Python.
    """
    filled = 0
    while True:
        documents: list[dict[str, Any]] = yield Command(
            LEARNINGS,
            "find",
            {
                "filter": {**query, SEARCH_TEXT: {"$exists": False}},
                "projection": {"content": True, MARKER: True},
                "limit": BACKFILL_BATCH,
            },
        )
        if not documents:
            return filled
        requests = [
            UpdateOne(
                {"_id": document["_id"], SEARCH_TEXT: {"$exists": False}, "content": document.get("content")},
                {"$set": {SEARCH_TEXT: stored_search_text(document)}},
            )
            for document in documents
        ]
        result: Written = yield Command(LEARNINGS, "bulk_write", {"requests": requests, "ordered": False})
        filled += result.modified_count
        if len(documents) < BACKFILL_BATCH or not result.modified_count:
            return filled


def search_learnings_plan(query: dict[str, Any], regex: str, limit: int | None) -> Plan[list[dict[str, Any]]]:
    """Records whose search text matches ``regex``, newest first, at most ``limit``.

    One ``aggregate`` once every record in scope has its search text. A record without it (written
    by an older agno-mongo) comes back flagged: then the scope is backfilled (see
    :func:`backfill_search_text`) and the search runs again; a record that still has no text is
    checked in Python against its content, so the answer is the same either way.
    """
    documents: list[dict[str, Any]] = yield search_learnings(query, regex, limit)
    if not any(document.get(UNSEARCHED) for document in documents):
        return documents
    yield from backfill_search_text_plan(query)
    documents = yield search_learnings(query, regex, limit)
    compiled = re.compile(regex, re.DOTALL)
    return [
        document
        for document in documents
        if not document.get(UNSEARCHED) or compiled.search(stored_search_text(document))
    ]
