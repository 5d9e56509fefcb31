"""Pure command builders and plans for the eval runs collection (one document per eval run).

Nothing here does I/O. A run's ``_id`` is its ``run_id``, so every single-run command is a point
lookup. An ``EvalRunRecord`` carries no owner: AgentOS stamps one afterwards with
``update_eval_run_user_id``, which only claims a run nobody owns yet (one command, owner check inside
it). Reads, renames and deletes scope to ``user_id`` when given: another user's runs neither show nor
change.
"""

from __future__ import annotations

from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import DUPLICATE_KEY, scope_filter
from agno_mongo.ops.owned import create_upsert_plan
from agno_mongo.schema.evals import SCHEMA_VERSION, EvalFields

EVALS = "evals"

EVAL_INDEXES = [
    # get_eval_runs sorts by (created_at, _id), newest first by default (AgentOS's evals page):
    # unfiltered, by owner, by agent / team / workflow; model and eval type filter the walked range.
    # They replace created, user_created, agent_created and team_created (no _id), which an older
    # deployment can drop (docs/indexes.md).
    IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="created_id"),
    IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="user_created_id"),
    IndexModel([("agent_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="agent_created_id"),
    IndexModel([("team_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="team_created_id"),
    IndexModel(
        [("workflow_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="workflow_created_id"
    ),
]


def create_eval_run(fields: EvalFields, now: int) -> Command:
    """One ``findAndModify`` that inserts the run if its id is free and returns what was there before.

    ``$setOnInsert`` only: an existing run is never changed. ``None`` back means it was inserted.
    """
    return Command(
        EVALS,
        "find_one_and_update",
        {
            "filter": {"_id": fields.run_id},
            "update": {"$setOnInsert": stored_record(fields, now)},
            "upsert": True,
            "return_document": ReturnDocument.BEFORE,
        },
    )


def stored_record(fields: EvalFields, now: int) -> dict[str, Any]:
    """The whole document a new run is stored as (no owner yet; AgentOS stamps it afterwards)."""
    return {
        **fields.stored_fields(),
        "user_id": None,
        "created_at": now,
        "updated_at": now,
        "schema_version": SCHEMA_VERSION,
    }


def same_record(stored: dict[str, Any], fields: EvalFields) -> bool:
    """Whether a stored run holds exactly this record, field by field as BSON bytes (so NaN equals
    NaN and 0.0 differs from -0.0, as they are stored)."""
    return all(
        bson.encode({"v": stored.get(key)}) == bson.encode({"v": value})
        for key, value in fields.stored_fields().items()
    )


def create_eval_run_plan(fields: EvalFields, now: int) -> Plan[None]:
    """Insert a run; a resend of the same record is a no-op, a different record under a taken id fails.

    agno's adapter inserts and lets the unique ``run_id`` index refuse a duplicate; we keep that
    refusal (a :class:`DuplicateKeyError`) but tell it apart from our own retry landing twice.

    The filter is equality on ``_id`` alone, so MongoDB 4.4+ retries a create race's duplicate key
    by itself; a server that does not gets the same answer from the plan: the duplicate key is
    answered by a resend (bounded), which now matches the stored run and is compared with it.
    """
    what = f"eval run {fields.run_id!r}"
    before: dict[str, Any] | None = yield from create_upsert_plan(create_eval_run(fields, now), what)
    if before is not None and not same_record(before, fields):
        raise DuplicateKeyError(f"eval run {fields.run_id!r} already exists with other contents", DUPLICATE_KEY)
    return None


def get_eval_run(run_id: str, user_id: str | None) -> Command:
    """One ``find``: the run by id, only if it is the caller's when ``user_id`` is given."""
    return Command(EVALS, "find_one", {"filter": {"_id": run_id, **scope_filter(user_id)}})


def eval_list_filter(
    *,
    user_id: str | None,
    agent_id: str | None,
    team_id: str | None,
    workflow_id: str | None,
    model_id: str | None,
    eval_types: list[str] | None,
    filter_type: str | None,
) -> dict[str, Any]:
    """The ``get_eval_runs`` filter; every value has been checked to be a plain string.

    ``filter_type`` keeps runs of that component kind (its id not null). agno's adapter lets it
    overwrite an explicit id filter of the same kind; here an explicit id already implies it.
    """
    query: dict[str, Any] = {**scope_filter(user_id)}
    for key, value in (("agent_id", agent_id), ("team_id", team_id), ("workflow_id", workflow_id)):
        if value is not None:
            query[key] = value
    if model_id is not None:
        query["model_id"] = model_id
    if eval_types:
        query["eval_type"] = {"$in": eval_types}
    if filter_type is not None:
        query.setdefault(f"{filter_type}_id", {"$ne": None})
    return query


def rename_eval_run(run_id: str, user_id: str | None, name: str, now: int) -> Command:
    """One ``findAndModify``: set the name, return the renamed run (``None`` if absent or not theirs)."""
    return Command(
        EVALS,
        "find_one_and_update",
        {
            "filter": {"_id": run_id, **scope_filter(user_id)},
            "update": {"$set": {"name": name, "updated_at": now}},
            "return_document": ReturnDocument.AFTER,
        },
    )


def claim_eval_run(run_id: str, user_id: str) -> Command:
    """One ``findAndModify``: make ``user_id`` the owner if nobody (or they) own the run already.

    A pipeline update keeps another owner in place, and the document from before tells the plan
    whether the run was missing, claimed, or someone else's. ``$literal`` keeps an id that starts
    with ``$`` from being read as a field path.
    """
    owner = {"$ifNull": ["$user_id", None]}
    claimable = {"$in": [owner, [{"$literal": user_id}, None]]}
    return Command(
        EVALS,
        "find_one_and_update",
        {
            "filter": {"_id": run_id},
            "update": [{"$set": {"user_id": {"$cond": [claimable, {"$literal": user_id}, "$user_id"]}}}],
            "projection": {"user_id": True},
            "return_document": ReturnDocument.BEFORE,
        },
    )


def delete_eval_runs(run_ids: list[str], user_id: str | None) -> Command:
    """One ``delete``: ``delete_one`` for one id, ``delete_many`` for several; scoped to the caller."""
    if len(run_ids) == 1:
        return Command(EVALS, "delete_one", {"filter": {"_id": run_ids[0], **scope_filter(user_id)}})
    return Command(EVALS, "delete_many", {"filter": {"_id": {"$in": run_ids}, **scope_filter(user_id)}})
