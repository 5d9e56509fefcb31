"""Pure command builders and plans for authorization (agno's ``*_authz_*`` contract). No I/O.

Collections (roles): ``authz`` (one document per name: ``policies`` it carries as a role, ``roles``
it holds as a subject; see :mod:`agno_mongo.schema.authz`), ``authz_roles`` (role metadata),
``authz_users``, ``authz_audit``, ``authz_decisions``.

Single-document writes, each resendable (a second arrival changes nothing and answers the same):

* ``set_authz_role_policies``: one ``$set`` of the whole ``policies`` array (upsert).
* ``replace_authz_subject_roles``: one ``$set`` of ``roles: [role]`` (upsert).
* ``assign`` / ``unassign``: ``$addToSet`` / ``$pull``; ``delete_authz_policy``: ``$pull`` (or ``$set []``).
* ``upsert_authz_policy``: a positional ``$set`` of the effect where the (resource, action) row
  exists, else a ``$push`` guarded by its absence (upsert). A duplicate key (the guard saw the row
  a concurrent writer had just pushed, or our own first arrival after a resend) sends the ``$set``
  again, which now matches.
* users, metadata: ``$set`` of whole values with ``$setOnInsert`` of the rest; events: an insert whose
  duplicate key is the answer agno gives anyway (swallowed).

``delete_authz_role`` touches several documents; it is an order of idempotent steps, not a
transaction (see docs/authorization.md): first the role's own document (its policies and its own
inherited roles, in one delete, so every holder loses what the role granted at the same instant),
then the role is pulled from every holder, then its metadata is deleted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from agno_mongo.ops.aggregations import aggregate
from agno_mongo.ops.command import Command, Plan, Written, backoff
from agno_mongo.ops.common import DUPLICATE_KEY
from agno_mongo.ops.owned import CREATE_RACE_ROUNDS
from agno_mongo.schema.codec import encode_fields

NAMES = "authz"
META = "authz_roles"
USERS = "authz_users"
AUDIT = "authz_audit"
DECISIONS = "authz_decisions"

SEQ = "_seq"
"""Client clock in nanoseconds at insert: agno's SQLite rowid (insertion) order, where it shows."""

HAS_POLICY = {"policies.resource": {"$exists": True}}
"""A name that carries at least one policy row (every row has a ``resource``): served by the sparse
``carries_policy`` index, which holds the roles only, not the (many) subjects."""

IN_CHUNK = 5000
"""Ids per ``$in`` when reading many subjects (a directory can be large; a command is at most 16 MiB)."""

SEARCH_MAX_LENGTH = 200
"""agno caps a search needle at this many characters before matching."""

NAMES_INDEXES = [
    # list_authz_role_subjects (sorted by subject), authz_name_is_role's "is anything assigned to it",
    # and the distinct roles of list_authz_roles.
    IndexModel([("roles", ASCENDING), ("_id", ASCENDING)], name="roles_subject"),
    # list_authz_roles' "which names carry policy" without reading every subject's document.
    IndexModel([("policies.resource", ASCENDING)], name="carries_policy", sparse=True),
]
META_INDEXES = [IndexModel([(SEQ, ASCENDING), ("_id", ASCENDING)], name="inserted")]
USER_INDEXES = [
    # The directory listing's default (created_at, newest first) and count_authz_users_by_day's range;
    # ties in insertion order, in the sort's direction, as agno's SQLite index scan gives them.
    IndexModel([("created_at", ASCENDING), (SEQ, ASCENDING)], name="created"),
    IndexModel([("updated_at", ASCENDING), (SEQ, ASCENDING)], name="updated"),
]
EVENT_INDEXES = [IndexModel([("created_at", ASCENDING), (SEQ, ASCENDING)], name="created")]

INDEXED_SORTS = frozenset({"created_at", "updated_at"})
"""Sort columns agno's SQLite tables index: ties follow the sort's direction (an index scan).
Elsewhere SQLite sorts in memory and ties keep insertion order."""


def seq() -> int:
    """A fresh insertion stamp."""
    return time.time_ns()


def upsert_plan(command: Command) -> Plan[Any]:
    """Send an upsert on ``_id``; a duplicate key (a concurrent create of the same new id, which
    MongoDB does not retry itself on every version) sends it again, where it now matches."""
    for round_number in range(CREATE_RACE_ROUNDS):
        if round_number > 1:
            yield backoff(round_number)
        try:
            return (yield command)
        except DuplicateKeyError:
            continue
    raise DuplicateKeyError(f"{command.collection}: the upsert kept colliding on _id", DUPLICATE_KEY)


# --- policies -----------------------------------------------------------------------------------------------


def policy_rows(rows: Sequence[tuple[str, str, str]]) -> list[dict[str, str]]:
    """The ``policies`` array for ``rows``: one entry per (resource, action), the last effect winning
    (agno's rows are upserted one by one on that key)."""
    entries: dict[tuple[str, str], str] = {}
    for resource, action, effect in rows:
        entries[(resource, action)] = effect
    return [{"resource": r, "action": a, "effect": e} for (r, a), e in sorted(entries.items())]


def set_policies(role: str, rows: Sequence[tuple[str, str, str]]) -> Command:
    """One upsert replacing the role's whole ``policies`` array."""
    return Command(
        NAMES,
        "update_one",
        {"filter": {"_id": role}, "update": {"$set": {"policies": policy_rows(rows)}}, "upsert": True},
    )


def upsert_policy_plan(role: str, resource: str, action: str, effect: str) -> Plan[None]:
    """Flip the effect of the (resource, action) row if the role has it, else add it (see module)."""
    row = {"resource": resource, "action": action}
    flip = Command(
        NAMES,
        "update_one",
        {"filter": {"_id": role, "policies": {"$elemMatch": row}}, "update": {"$set": {"policies.$.effect": effect}}},
    )
    add = Command(
        NAMES,
        "update_one",
        {
            "filter": {"_id": role, "policies": {"$not": {"$elemMatch": row}}},
            "update": {"$push": {"policies": {**row, "effect": effect}}},
            "upsert": True,
        },
    )
    for round_number in range(CREATE_RACE_ROUNDS):
        if round_number > 1:
            yield backoff(round_number)
        result: Written = yield flip
        if result.matched_count:
            return None
        try:
            yield add
        except DuplicateKeyError:
            continue  # the row is there now (another writer's, or our own resend's): flip it
        return None
    raise DuplicateKeyError(f"policy of role {role!r}: kept colliding on _id", DUPLICATE_KEY)


def delete_policy(role: str, resource: str | None, action: str | None) -> Command:
    """One update removing the role's rows matching ``resource`` / ``action`` (all when neither)."""
    match = {key: value for key, value in (("resource", resource), ("action", action)) if value is not None}
    update: dict[str, Any] = {"$pull": {"policies": match}} if match else {"$set": {"policies": []}}
    query: dict[str, Any] = {"_id": role} if match else {"_id": role, **HAS_POLICY}
    return Command(NAMES, "update_one", {"filter": query, "update": update})


def find_policies(roles: list[str]) -> Command:
    """One ``find`` of the policy arrays of ``roles``."""
    return Command(NAMES, "find", {"filter": {"_id": {"$in": roles}, **HAS_POLICY}, "projection": {"policies": True}})


def find_name(name: str, field: str) -> Command:
    """One ``find`` by ``_id`` of one field of a name's document."""
    return Command(NAMES, "find_one", {"filter": {"_id": name}, "projection": {field: True}})


# --- groupings ----------------------------------------------------------------------------------------------


def assign(subject: str, role: str) -> Command:
    return Command(
        NAMES, "update_one", {"filter": {"_id": subject}, "update": {"$addToSet": {"roles": role}}, "upsert": True}
    )


def unassign(subject: str, role: str) -> Command:
    return Command(
        NAMES, "update_one", {"filter": {"_id": subject, "roles": role}, "update": {"$pull": {"roles": role}}}
    )


def replace_roles(subject: str, role: str) -> Command:
    """One upsert making ``role`` the subject's only role."""
    return Command(
        NAMES, "update_one", {"filter": {"_id": subject}, "update": {"$set": {"roles": [role]}}, "upsert": True}
    )


def find_roles_of(subjects: list[str]) -> Command:
    return Command(
        NAMES,
        "find",
        {"filter": {"_id": {"$in": subjects}, "roles.0": {"$exists": True}}, "projection": {"roles": True}},
    )


def holders(role: str) -> Command:
    """The names holding ``role``, by name (served by ``roles_subject``: a point on ``roles``, then
    ``_id`` order; sorting on ``roles`` itself would order by each array's smallest element)."""
    return Command(NAMES, "find", {"filter": {"roles": role}, "projection": {"_id": True}, "sort": [("_id", 1)]})


def name_is_role(name: str) -> Command:
    """One ``find``: a document if ``name`` carries policy or anything holds it."""
    return Command(
        NAMES,
        "find_one",
        {"filter": {"$or": [{"_id": name, **HAS_POLICY}, {"roles": name}]}, "projection": {"_id": True}},
    )


def roles_with_policy() -> Command:
    """One ``find`` (a cursor, not a ``distinct``: its one-document answer stops at 16 MiB): the
    names carrying a policy, as ``{_id}`` documents."""
    return Command(NAMES, "find", {"filter": HAS_POLICY, "projection": {"_id": True}})


def held_roles() -> Command:
    """One ``aggregate`` (a cursor, not a ``distinct``): each role some name holds, once, as ``{_id}``."""
    return aggregate(
        NAMES,
        [
            {"$match": {"roles": {"$type": "string"}}},
            {"$unwind": "$roles"},
            {"$match": {"roles": {"$type": "string"}}},
            {"$group": {"_id": "$roles"}},
        ],
    )


def delete_role_plan(role: str) -> Plan[None]:
    """Drop a role: its own document (policies and inherited roles at once), then every holder's
    assignment, then its metadata. Each step is idempotent and resendable; see the module."""
    yield Command(NAMES, "delete_one", {"filter": {"_id": role}})
    yield Command(NAMES, "update_many", {"filter": {"roles": role}, "update": {"$pull": {"roles": role}}})
    yield Command(META, "delete_one", {"filter": {"_id": role}})


# --- role metadata and users -------------------------------------------------------------------------------


def set_or_create_plan(
    collection: str, key: str, to_set: Mapping[str, Any], on_insert: Mapping[str, Any], extra: Mapping[str, Any]
) -> Plan[None]:
    """One upsert: ``$set`` ``to_set`` on the document ``key``, created if absent with ``on_insert``
    and ``_seq`` (``$setOnInsert``). ``extra`` holds further operators (the codec marker's ``$unset``)."""
    update: dict[str, Any] = {**extra, "$set": dict(to_set), "$setOnInsert": {**on_insert, SEQ: seq()}}
    yield from upsert_plan(
        Command(collection, "update_one", {"filter": {"_id": key}, "update": update, "upsert": True})
    )
    return None


def user_update(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``($set, extra operators)`` for the profile columns of a user upsert: every given column but
    ``disabled`` (never overwritten on an existing user); ``metadata`` through the codec."""
    to_set = {key: value for key, value in values.items() if key not in ("disabled", "metadata")}
    extra: dict[str, Any] = {}
    if "metadata" in values:
        encoded, unset = encode_fields({"metadata": values["metadata"]})
        to_set.update(encoded)
        if unset:
            extra["$unset"] = unset
    return to_set, extra


def set_disabled(user_id: str, disabled: bool, now: int) -> Command:
    """One upsert of the kill switch: ``disabled`` and ``updated_at`` on a known user, a tombstone
    (no profile, created now) for an unknown one."""
    return Command(
        USERS,
        "update_one",
        {
            "filter": {"_id": user_id},
            "update": {
                "$set": {"disabled": disabled, "updated_at": now},
                "$setOnInsert": {"email": None, "name": None, "created_at": now, "metadata": None, SEQ: seq()},
            },
            "upsert": True,
        },
    )


# --- search, sort, pages ------------------------------------------------------------------------------------


def search_pattern(search: str) -> str:
    """agno's ``ILIKE '%<search>%'`` on SQLite as a regular expression: a literal substring, the first
    :data:`SEARCH_MAX_LENGTH` characters, case-insensitive for ASCII letters only (SQLite's ``lower``
    and ``LIKE`` fold ASCII only)."""
    parts = []
    for char in search[:SEARCH_MAX_LENGTH]:
        if char.isascii() and char.isalpha():
            parts.append(f"[{char.lower()}{char.upper()}]")
        elif char == "\0":
            parts.append("\\x00")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


def search_filter(search: str | None, columns: Sequence[str]) -> dict[str, Any]:
    if not search:
        return {}
    pattern = search_pattern(search)
    return {"$or": [{column: {"$regex": pattern}} for column in columns]}


def sort_keys(column: str, direction: int) -> list[tuple[str, int]]:
    """The sort agno's SQLite answers in: the column, then insertion order (the column's direction
    where SQLite scans an index, ascending where it sorts in memory)."""
    tie = direction if column in INDEXED_SORTS else ASCENDING
    field = "_id" if column in ("id", "event_id", "slug") else column
    return [(field, direction)] if field == "_id" else [(field, direction), (SEQ, tie)]


def page(
    collection: str, query: dict[str, Any], sort: list[tuple[str, int]], limit: int | None, offset: int
) -> Command:
    kwargs: dict[str, Any] = {"filter": query, "sort": sort, "skip": offset}
    if limit is not None:
        kwargs["limit"] = limit
    return Command(collection, "find", kwargs)


def page_nulls_last(
    collection: str, query: dict[str, Any], column: str, direction: int, limit: int | None, offset: int
) -> Command:
    """A page sorted on a nullable column with nulls last in both directions (agno's ``nullslast``):
    an aggregate sorting on a computed "is null" flag first."""
    pipeline: list[dict[str, Any]] = [
        {"$match": query},
        {"$addFields": {"_null": {"$cond": [{"$eq": [{"$ifNull": [f"${column}", None]}, None]}, 1, 0]}}},
        {"$sort": {"_null": ASCENDING, column: direction, SEQ: ASCENDING}},
    ]
    if offset:
        pipeline.append({"$skip": offset})
    if limit is not None:
        pipeline.append({"$limit": limit})
    pipeline.append({"$project": {"_null": False}})
    return aggregate(collection, pipeline)


def users_by_status() -> Command:
    return aggregate(
        USERS,
        [
            {
                "$group": {
                    "_id": None,
                    "total": {"$sum": 1},
                    "disabled": {"$sum": {"$cond": [{"$eq": ["$disabled", True]}, 1, 0]}},
                }
            }
        ],
    )


def users_by_day(starting_at: int | None, ending_before: int | None) -> Command:
    """Users created per UTC day (``created_at - created_at % 86400``, as agno's SQL), oldest first."""
    bounds: dict[str, Any] = {}
    if starting_at is not None:
        bounds["$gte"] = starting_at
    if ending_before is not None:
        bounds["$lt"] = ending_before
    day = {"$subtract": ["$created_at", {"$mod": ["$created_at", 86400]}]}
    return aggregate(
        USERS,
        [
            {"$match": {"created_at": bounds} if bounds else {}},
            {"$group": {"_id": day, "count": {"$sum": 1}}},
            {"$sort": {"_id": ASCENDING}},
        ],
    )


def directory_filter(include_disabled: bool, search: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {} if include_disabled else {"disabled": False}
    query.update(search_filter(search, ("_id", "email", "name")))
    return query


def record_event(collection: str, columns: Mapping[str, Any]) -> Command:
    """One insert of an event; a duplicate ``event_id`` is swallowed by the plan (agno's sink must never
    fail the request it records), so a resend that finds its own first arrival answers the same."""
    document = {("_id" if key == "event_id" else key): value for key, value in columns.items()}
    document[SEQ] = seq()
    return Command(collection, "insert_one", {"document": document})
