"""Pure command builders and plans for the Company collections (Products, Projects, Tasks, Sources).

Nothing here does I/O. One document per record, ``_id`` = agno's ``id``. Internal fields:

* ``_rev``: a revision counter, bumped by every write of the document. Task runs and transitions are
  compare-and-set on it (never on ``transitions``: BSON equality of subdocuments depends on key
  order, so the expected history is compared in Python after decoding, and the write is guarded by
  the revision that was read). On a Product it is also the hierarchy lock: every hierarchy write
  (creating, moving, restoring, archiving children) runs in a transaction that first bumps its
  Product's ``_rev`` (matching only an active Product, as agno's ``lock_product``), so two such
  transactions on one Product conflict and one is retried, exactly as SQL serialises them.
* ``_ops``: the tokens of the last writes, so a compare-and-set whose reply was lost finds out by
  one read whether it landed (see :func:`modify_plan`).
* ``_activity``: ``coalesce(updated_at, created_at)``, agno's ``sort_by="updated_at"`` key, kept in
  step by every write, so that listing is served by an index.
* ``_product_archived`` (children) and ``_project_archived`` (Tasks): set by an archive cascade on
  every child of the archived parent, cleared by its restore. agno's listings and counts hide
  children of archived parents even with ``include_deleted`` (``active_parents``); these flags make
  that one indexed equality instead of a join.

Single-document writes (Product create/update, routine links, Source update/delete/restore, Task
runs, manual Task transitions, Project update, Task delete) are one ``findAndModify`` each, not
resendable, resolved after a lost reply by their token. Everything that must change several
documents or be serialised per Product is a transaction (:func:`atomically`); see docs/company.md.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from agno_mongo.ops import command
from agno_mongo.ops.command import Command, Plan, ReplyLost, Written, backoff
from agno_mongo.ops.common import DUPLICATE_KEY
from agno_mongo.ops.owned import create_upsert_plan
from agno_mongo.schema.codec import MARKER, encode_fields, encode_free_form
from agno_mongo.schema.company import (
    ACTIVITY,
    FREE_FORM,
    OPS,
    PRODUCT_ARCHIVED,
    PROJECT_ARCHIVED,
    REV,
    SCHEMA_VERSION,
    company_row,
)

PRODUCTS = "company_products"
PROJECTS = "company_projects"
TASKS = "company_tasks"
SOURCES = "company_sources"
ROLES = {"products": PRODUCTS, "projects": PROJECTS, "tasks": TASKS, "sources": SOURCES}

OPS_KEPT = 8
SEND_ROUNDS = 3
"""Sends of a non-resendable write whose reply keeps being lost (each followed by a check read)."""
CAS_ROUNDS = 12
"""Read-compute-write rounds of a single-document update that keeps losing its revision race."""

ACTIVE_TASK_STATUSES = ["ready", "in_progress", "in_review"]
TERMINAL = ["done", "cancelled"]


def _sorted(*prefix: str) -> list[IndexModel]:
    """Indexes serving a listing filtered on ``prefix`` and sorted by created_at or activity, id."""
    keys = [(field, ASCENDING) for field in prefix]
    tag = "_".join(field.strip("_") for field in prefix) or "all"
    return [
        IndexModel([*keys, ("created_at", DESCENDING), ("_id", DESCENDING)], name=f"{tag}_created"),
        IndexModel([*keys, (ACTIVITY, DESCENDING), ("_id", DESCENDING)], name=f"{tag}_activity"),
    ]


PRODUCT_INDEXES = [*_sorted("deleted_at"), *_sorted(), *_sorted("user_id", "deleted_at")]
COMPANY_INDEXES: dict[str, list[IndexModel]] = {
    PRODUCTS: PRODUCT_INDEXES,
    PROJECTS: [
        *_sorted(PRODUCT_ARCHIVED, "deleted_at"),
        *_sorted(PRODUCT_ARCHIVED),
        *_sorted("product_id", PRODUCT_ARCHIVED, "deleted_at"),
        *_sorted("product_id", PRODUCT_ARCHIVED),
        *_sorted("product_id", "status", PRODUCT_ARCHIVED, "deleted_at"),
        *_sorted("status", PRODUCT_ARCHIVED, "deleted_at"),
        IndexModel([("transitions.auto_accept.routine_id", ASCENDING)], name="accepted_routine"),
    ],
    TASKS: [
        *_sorted(PRODUCT_ARCHIVED, PROJECT_ARCHIVED, "deleted_at"),
        *_sorted(PRODUCT_ARCHIVED, PROJECT_ARCHIVED),
        *_sorted("product_id", PRODUCT_ARCHIVED, PROJECT_ARCHIVED, "deleted_at"),
        *_sorted("product_id", PRODUCT_ARCHIVED, PROJECT_ARCHIVED),
        *_sorted("project_id", PRODUCT_ARCHIVED, PROJECT_ARCHIVED, "deleted_at"),
        *_sorted("project_id", PRODUCT_ARCHIVED, PROJECT_ARCHIVED),
        *_sorted("product_id", "status", PRODUCT_ARCHIVED, PROJECT_ARCHIVED, "deleted_at"),
        *_sorted("status", PRODUCT_ARCHIVED, PROJECT_ARCHIVED, "deleted_at"),
        *_sorted("session_id", PRODUCT_ARCHIVED, PROJECT_ARCHIVED, "deleted_at"),
        IndexModel([("job_id", ASCENDING)], name="job"),
        IndexModel([("routine_id", ASCENDING)], name="routine"),
        # agno's uq_company_task_evidence: unique only where the key is set (MongoDB counts null).
        IndexModel(
            [("product_id", ASCENDING), ("dedupe_key", ASCENDING)],
            name="product_dedupe_key",
            unique=True,
            partialFilterExpression={"dedupe_key": {"$type": "string"}},
        ),
    ],
    SOURCES: [
        *_sorted(PRODUCT_ARCHIVED, "deleted_at"),
        *_sorted(PRODUCT_ARCHIVED),
        *_sorted("product_id", PRODUCT_ARCHIVED, "deleted_at"),
        *_sorted("product_id", PRODUCT_ARCHIVED),
        IndexModel([("product_id", ASCENDING), ("reference", ASCENDING)], name="product_reference"),
    ],
}
"""Indexes per Company collection role: every listing's filter and sort (with the id tie-break)."""
PROJECT_INDEXES = COMPANY_INDEXES[PROJECTS]
TASK_INDEXES = COMPANY_INDEXES[TASKS]
SOURCE_INDEXES = COMPANY_INDEXES[SOURCES]


def token() -> str:
    """A fresh write token."""
    return secrets.token_hex(8)


def now() -> int:
    return int(time.time())


# --- documents and updates ------------------------------------------------------------------------


def stored_document(kind: str, columns: Mapping[str, Any], write_token: str) -> dict[str, Any]:
    """The whole document a new record is stored as: every column (``id`` as ``_id``), JSON columns
    through the codec, and the internal fields."""
    values = {("_id" if key == "id" else key): value for key, value in columns.items()}
    encode_free_form(values, FREE_FORM[kind], f"{kind[:-1]}_data.")
    if not values[MARKER]:
        del values[MARKER]
    values[REV] = 0
    values[OPS] = [write_token]
    values[ACTIVITY] = columns["updated_at"] if columns["updated_at"] is not None else columns["created_at"]
    if kind != "products":
        values[PRODUCT_ARCHIVED] = False
    if kind == "tasks":
        values[PROJECT_ARCHIVED] = False
    values["schema_version"] = SCHEMA_VERSION
    return values


def changes(kind: str, fields: Mapping[str, Any], write_token: str) -> dict[str, Any]:
    """An update document setting ``fields`` (JSON columns encoded, their codec markers kept right),
    ``_activity`` with ``updated_at``, bumping ``_rev`` and recording the write token."""
    free = {key: value for key, value in fields.items() if key in FREE_FORM[kind]}
    to_set, to_unset = encode_fields(free)
    values = {**{key: value for key, value in fields.items() if key not in FREE_FORM[kind]}, **to_set}
    if fields.get("updated_at") is not None:
        values[ACTIVITY] = fields["updated_at"]
    update: dict[str, Any] = {
        "$set": values,
        "$inc": {REV: 1},
        "$push": {OPS: {"$each": [write_token], "$slice": -OPS_KEPT}},
    }
    if to_unset:
        update["$unset"] = to_unset
    return update


def event_update(action: str, reason: str, when: int, parent: Mapping[str, str] | None) -> list[dict[str, Any]]:
    """A pipeline update appending agno's archive/restore event (``agno.db.sql.company._event``) to
    ``transitions`` and setting ``deleted_at`` (``when`` for archive, null for restore)."""
    event = {
        "action": {"$literal": action},
        "from": "$status",
        "target": "$status",
        "reason": {"$literal": reason},
        "created_at": {"$literal": when},
        "user_id": {"$literal": None},
        "archived_by": {"$literal": dict(parent) if parent is not None else None},
    }
    return [
        {
            "$set": {
                "deleted_at": {"$literal": when if action == "archive" else None},
                "updated_at": {"$literal": when},
                ACTIVITY: {"$literal": when},
                "transitions": {"$concatArrays": [{"$ifNull": ["$transitions", []]}, [event]]},
                REV: {"$add": [{"$ifNull": [f"${REV}", 0]}, 1]},
            }
        }
    ]


def by_id(role: str, record_id: str, **extra: Any) -> Command:
    """One ``find`` of a record by ``_id`` (and ``extra`` equalities)."""
    return Command(role, "find_one", {"filter": {"_id": record_id, **extra}})


def scoped(record_id: str, user_id: str | None, include_deleted: bool) -> dict[str, Any]:
    """agno's read filter: the id, the owner when given, not archived unless asked for."""
    query: dict[str, Any] = {"_id": record_id}
    if user_id is not None:
        query["user_id"] = user_id
    if not include_deleted:
        query["deleted_at"] = None
    return query


def sort_spec(sort_by: str, sort_order: str) -> list[tuple[str, int]]:
    """agno's listing order: ``created_at`` or ``coalesce(updated_at, created_at)``, then ``id``."""
    direction = ASCENDING if sort_order == "asc" else DESCENDING
    return [(ACTIVITY if sort_by == "updated_at" else "created_at", direction), ("_id", direction)]


def accepted(routine_id: str, policy: str) -> dict[str, Any]:
    """Records with a history entry accepted by ``routine_id`` under ``policy`` (``_acceptance_count``)."""
    return {
        "transitions": {
            "$elemMatch": {
                "target": {"$in": ["ready", "done"]},
                "auto_accept.routine_id": routine_id,
                "auto_accept.policy": policy,
            }
        }
    }


def acceptance_count_plan(routine_id: str, policy: str, tasks: dict[str, Any], projects: dict[str, Any]) -> Plan[int]:
    """Tasks of the routine (``tasks`` further filters them) plus Projects (``projects``) that spent
    the routine's acceptance budget: two counts."""
    in_tasks: int = yield Command(
        TASKS, "count_documents", {"filter": {"routine_id": routine_id, **tasks, **accepted(routine_id, policy)}}
    )
    in_projects: int = yield Command(
        PROJECTS, "count_documents", {"filter": {**projects, **accepted(routine_id, policy)}}
    )
    return in_tasks + in_projects


# --- single-document writes with a token ---------------------------------------------------------


def modify(role: str, query: dict[str, Any], update: Any) -> Command:
    """One ``findAndModify`` answering the document after, or ``None``; not resendable."""
    return Command(
        role,
        "find_one_and_update",
        {"filter": query, "update": update, "return_document": ReturnDocument.AFTER},
        resend=False,
    )


def modify_plan(role: str, query: dict[str, Any], update: dict[str, Any], write_token: str) -> Plan[Any]:
    """Send :func:`modify`; after a lost reply, read whether ``write_token`` landed (then the
    document is the answer), else send again; a resend that misses reads once more, since the first
    send may have landed late. The winner is never told it lost, nor a loser that it won."""
    command = modify(role, query, update)
    for attempt in range(SEND_ROUNDS):
        try:
            after = yield command
        except ReplyLost:
            found = yield by_id(role, query["_id"])
            if found is not None and write_token in (found.get(OPS) or []):
                return found
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        if after is None and attempt > 0:
            found = yield by_id(role, query["_id"])
            if found is not None and write_token in (found.get(OPS) or []):
                return found
        return after
    raise AssertionError("unreachable")  # pragma: no cover


def create_plan(role: str, document: dict[str, Any], what: str) -> Plan[None]:
    """Insert a record outside a transaction: an upsert that only inserts, resendable; our own resend
    is recognised by its token, anything else under the id refused with ``DuplicateKeyError``."""
    command = Command(
        role,
        "find_one_and_update",
        {
            "filter": {"_id": document["_id"]},
            "update": {"$setOnInsert": document},
            "upsert": True,
            "projection": {OPS: True},
            "return_document": ReturnDocument.BEFORE,
        },
    )
    before: dict[str, Any] | None = yield from create_upsert_plan(command, f"{what} {document['_id']!r}")
    if before is not None and document[OPS][0] not in (before.get(OPS) or []):
        raise DuplicateKeyError(f"{what} {document['_id']!r} already exists", DUPLICATE_KEY)
    return None


def cas_plan(
    kind: str,
    query: dict[str, Any],
    compute: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> Plan[dict[str, Any] | None]:
    """Read the record matching ``query``, let ``compute`` (agno's rules, on the decoded row) give the
    fields to set (``None``: answer the row unchanged), and write them only if the record's ``_rev``
    is still the one read; on a lost race read again. ``None`` if nothing matches ``query``."""
    role = ROLES[kind]
    for round_number in range(CAS_ROUNDS):
        document = yield Command(role, "find_one", {"filter": query})
        if document is None:
            return None
        fields = compute(company_row(kind, document))
        if fields is None:
            return document  # type: ignore[no-any-return]
        write_token = token()
        after = yield from modify_plan(
            role, {**query, REV: document.get(REV, 0)}, changes(kind, fields, write_token), write_token
        )
        if after is not None:
            return after  # type: ignore[no-any-return]
        yield backoff(round_number)
    raise OperationFailure(f"{kind} {query['_id']!r}: the update kept losing to concurrent writes")


# --- transactions: the hierarchy lock and the cascades --------------------------------------------


def atomically(steps: Callable[[], Generator[Any, Any, Any]], what: str) -> Plan[Any]:
    """:func:`agno_mongo.ops.command.atomically` on the company collections: concurrent hierarchy
    writers that lost a write conflict are run again, serialised, not refused."""
    return command.atomically(steps, what, (PRODUCTS, PROJECTS, TASKS, SOURCES))


def lock_product_plan(product_id: str) -> Plan[None]:
    """agno's ``lock_product`` inside a transaction: bump the active Product's ``_rev`` (so every other
    hierarchy transaction on it conflicts), or ``ValueError`` if it is missing or archived."""
    result: Written = yield Command(
        PRODUCTS, "update_one", {"filter": {"_id": product_id, "deleted_at": None}, "update": {"$inc": {REV: 1}}}
    )
    if not result.matched_count:
        raise ValueError("Product is missing or archived")


def require_project_plan(project_id: str | None, product_id: str, task_status: str | None = None) -> Plan[None]:
    """agno's ``require_project``: the Project exists, is active, is in the Product and (for open work)
    is not finished."""
    if project_id is None:
        return
    project = yield by_id(PROJECTS, project_id)
    if project is None or project.get("deleted_at") is not None:
        raise ValueError("Project is missing or archived")
    if project.get("product_id") != product_id:
        raise ValueError("Task and Project must belong to the same Product")
    if task_status is not None and task_status not in TERMINAL and project.get("status") in TERMINAL:
        raise ValueError("Cannot add open work to a completed or cancelled Project")


def lock_child_plan(kind: str, record_id: str) -> Plan[dict[str, Any] | None]:
    """agno's ``lock_child``: lock the record's Product (and check a Task's Project); the stored
    record, or ``None`` (and no lock) when there is none."""
    document = yield by_id(ROLES[kind], record_id)
    if document is None:
        return None
    yield from lock_product_plan(document["product_id"])
    if kind == "tasks":
        yield from require_project_plan(document.get("project_id"), document["product_id"])
    return document  # type: ignore[no-any-return]


def explain_miss_plan(kind: str, record_id: str) -> Plan[None]:
    """After a single-document write matched nothing: raise what agno's ``lock_child`` would have
    (the record's Product, or a Task's Project, missing or archived), else return."""
    document = yield by_id(ROLES[kind], record_id)
    if document is None:
        return
    product = yield by_id(PRODUCTS, document["product_id"])
    if product is None or product.get("deleted_at") is not None:
        raise ValueError("Product is missing or archived")
    if kind == "tasks":
        yield from require_project_plan(document.get("project_id"), document["product_id"])


def refuse_open_tasks_plan(query: dict[str, Any]) -> Plan[None]:
    """agno's ``_refuse_open_tasks``: ``ValueError`` listing active Tasks (archived ones too) by id."""
    rows = yield Command(
        TASKS,
        "find",
        {
            "filter": {**query, "status": {"$in": ACTIVE_TASK_STATUSES}},
            "projection": {"_id": True, "title": True},
            "sort": [("_id", ASCENDING)],
        },
    )
    if rows:
        tasks = [{"id": row["_id"], "title": row.get("title")} for row in rows]
        raise ValueError({"message": "Cannot archive with active Tasks", "tasks": tasks})


def archive_children(role: str, query: dict[str, Any], parent: dict[str, str], when: int) -> Command:
    """One ``updateMany``: archive every active child matching ``query``, recording ``parent``."""
    return Command(
        role,
        "update_many",
        {"filter": {**query, "deleted_at": None}, "update": event_update("archive", "Parent archived", when, parent)},
    )


def restore_children_plan(kind: str, query: dict[str, Any], parent: dict[str, str], when: int) -> Plan[None]:
    """Restore exactly the archived children whose last event is an archive by ``parent`` (compared
    in Python, after decoding: never as BSON subdocuments)."""
    role = ROLES[kind]
    documents = yield Command(role, "find", {"filter": {**query, "deleted_at": {"$ne": None}}})
    ids = []
    for document in documents:
        history = company_row(kind, document).get("transitions") or []
        last = history[-1] if history else None
        if isinstance(last, dict) and last.get("action") == "archive" and last.get("archived_by") == parent:
            ids.append(document["_id"])
    if ids:
        yield Command(
            role,
            "update_many",
            {"filter": {"_id": {"$in": ids}}, "update": event_update("restore", "Restored", when, None)},
        )


def flag(role: str, query: dict[str, Any], field: str, value: bool) -> Command:
    """One ``updateMany`` setting a parent-archived flag on every child matching ``query``."""
    return Command(role, "update_many", {"filter": query, "update": {"$set": {field: value}}})


def archive_product_plan(product_id: str, user_id: str | None) -> Plan[bool]:
    """agno's ``archive_product`` (inside a transaction): archive the Product, refuse active Tasks,
    archive its active Projects and Tasks with provenance, and hide every child."""
    query: dict[str, Any] = {"_id": product_id, "deleted_at": None}
    if user_id is not None:
        query["user_id"] = user_id
    when = now()
    product = yield Command(
        PRODUCTS,
        "find_one_and_update",
        {
            "filter": query,
            "update": {"$set": {"deleted_at": when, "updated_at": when, ACTIVITY: when}, "$inc": {REV: 1}},
            "projection": {"_id": True},
        },
    )
    if product is None:
        return False
    yield from refuse_open_tasks_plan({"product_id": product_id})
    parent = {"type": "product", "id": product_id}
    yield archive_children(PROJECTS, {"product_id": product_id}, parent, when)
    yield archive_children(TASKS, {"product_id": product_id}, parent, when)
    for role in (PROJECTS, TASKS, SOURCES):
        yield flag(role, {"product_id": product_id}, PRODUCT_ARCHIVED, True)
    return True


def restore_product_plan(product_id: str, user_id: str | None) -> Plan[dict[str, Any] | None]:
    """agno's ``restore_product`` (inside a transaction): the Product after, or ``None``."""
    query: dict[str, Any] = {"_id": product_id, "deleted_at": {"$ne": None}}
    if user_id is not None:
        query["user_id"] = user_id
    when = now()
    product = yield Command(
        PRODUCTS,
        "find_one_and_update",
        {
            "filter": query,
            "update": {"$set": {"deleted_at": None, "updated_at": when, ACTIVITY: when}, "$inc": {REV: 1}},
            "return_document": ReturnDocument.AFTER,
        },
    )
    if product is None:
        return None
    parent = {"type": "product", "id": product_id}
    for role in (PROJECTS, TASKS, SOURCES):
        yield flag(role, {"product_id": product_id}, PRODUCT_ARCHIVED, False)
    yield from restore_children_plan("projects", {"product_id": product_id}, parent, when)
    yield from restore_children_plan("tasks", {"product_id": product_id}, parent, when)
    return product  # type: ignore[no-any-return]


def archive_project_plan(project_id: str, user_id: str | None, updated_before: int | None) -> Plan[bool]:
    """agno's ``archive_project`` (inside a transaction)."""
    yield from lock_child_plan("projects", project_id)
    query: dict[str, Any] = {"_id": project_id, "deleted_at": None}
    if user_id is not None:
        query["user_id"] = user_id
    if updated_before is not None:
        query.update(status={"$in": TERMINAL}, **{ACTIVITY: {"$lt": updated_before}})
    project = yield Command(PROJECTS, "find_one", {"filter": query, "projection": {"_id": True}})
    if project is None:
        return False
    yield from refuse_open_tasks_plan({"project_id": project_id})
    if updated_before is not None:
        still_open = yield Command(
            TASKS,
            "find_one",
            {"filter": {"project_id": project_id, "status": {"$nin": TERMINAL}}, "projection": {"_id": True}},
        )
        if still_open is not None:
            return False
    when = now()
    yield Command(
        PROJECTS,
        "update_one",
        {"filter": {"_id": project_id}, "update": event_update("archive", "Archived", when, None)},
    )
    parent = {"type": "project", "id": project_id}
    yield archive_children(TASKS, {"project_id": project_id}, parent, when)
    yield flag(TASKS, {"project_id": project_id}, PROJECT_ARCHIVED, True)
    return True


def restore_project_plan(project_id: str, user_id: str | None) -> Plan[dict[str, Any] | None]:
    """agno's ``restore_project`` (inside a transaction): the Project after, or ``None``."""
    yield from lock_child_plan("projects", project_id)
    query: dict[str, Any] = {"_id": project_id, "deleted_at": {"$ne": None}}
    if user_id is not None:
        query["user_id"] = user_id
    project = yield Command(PROJECTS, "find_one", {"filter": query, "projection": {"_id": True}})
    if project is None:
        return None
    when = now()
    restored = yield Command(
        PROJECTS,
        "find_one_and_update",
        {
            "filter": {"_id": project_id},
            "update": event_update("restore", "Restored", when, None),
            "return_document": ReturnDocument.AFTER,
        },
    )
    yield flag(TASKS, {"project_id": project_id}, PROJECT_ARCHIVED, False)
    yield from restore_children_plan("tasks", {"project_id": project_id}, {"type": "project", "id": project_id}, when)
    return restored  # type: ignore[no-any-return]


def insert(role: str, document: dict[str, Any]) -> Command:
    """One ``insert`` (inside a transaction, where it is sent once and a duplicate key aborts it)."""
    return Command(role, "insert_one", {"document": document})


def list_query(user_id: str | None, include_deleted: bool, hidden: tuple[str, ...], **equal: Any) -> dict[str, Any]:
    """A listing's filter: the given equalities, the owner, not archived, no archived parent."""
    query: dict[str, Any] = {key: value for key, value in equal.items() if value is not None}
    for field in hidden:
        query[field] = False
    if user_id is not None:
        query["user_id"] = user_id
    if not include_deleted:
        query["deleted_at"] = None
    return query
