"""Pure command builders and plans for the approvals collection (one document per approval).

Nothing here does I/O. An approval's ``_id`` is its ``id``, so every single-approval command is a
point lookup on the shard key. Each write carries a random token in ``_ops`` (the last
:data:`OPS_KEPT`), so after a lost reply a plan can tell by one read whether its own write landed:

* ``create_approval``: an upsert that only inserts (``$setOnInsert``); resendable, since a second
  arrival finds the document and answers it, token and all, and the plan recognises its own token.
  A different create under a taken id is refused with ``DuplicateKeyError``, as agno's does.
* ``update_approval``: a compare-and-set on ``status`` (``findAndModify``). Not resendable: a second
  arrival of the winning update no longer matches and would answer "lost". After ``ReplyLost`` the
  plan reads whether its token is in the document; after a resend that misses it reads again (the
  first send may have landed late), so the winner is never told it lost, nor a loser that it won.
* ``delete_approval``: not resendable (a second arrival answers "nothing deleted"); after
  ``ReplyLost`` the plan reads whether the approval is gone.
* ``update_approval_run_status``: an ``updateMany`` ``$set`` of whole values, resendable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.ops.command import Command, Plan, ReplyLost, Written
from agno_mongo.ops.common import DUPLICATE_KEY
from agno_mongo.ops.owned import create_upsert_plan
from agno_mongo.schema.approvals import FREE_FORM, SCHEMA_VERSION
from agno_mongo.schema.codec import MARKER, encode_fields, encode_free_form

APPROVALS = "approvals"

OPS = "_ops"
"""Field holding the tokens of the last writes (never shown to agno)."""
OPS_KEPT = 8
"""Tokens kept per approval: a plan checks for its own right after its reply was lost."""
SEQUENCE = "created_ns"
"""Client clock in nanoseconds at create (never shown to agno): orders approvals created in the same
second newest first, as agno's SQL stores do in practice (their index on ``created_at`` scans in
insertion order)."""
INTERNAL = (OPS, SEQUENCE, MARKER, "schema_version")
"""Stored fields that are not agno's columns."""

SEND_ROUNDS = 3
"""Sends of a non-resendable write whose reply keeps being lost (each followed by a check read)."""

NEWEST_FIRST = [("created_at", DESCENDING), (SEQUENCE, DESCENDING)]
"""agno's listing order (``created_at DESC``), made total within a second."""


def _by(field: str) -> list[tuple[str, int]]:
    return [(field, ASCENDING), *NEWEST_FIRST]


APPROVAL_INDEXES = [
    # get_approvals unfiltered (AgentOS's approvals page), newest first.
    IndexModel(NEWEST_FIRST, name="created"),
    # ?status=pending (the inbox), and get_pending_approval_count.
    IndexModel(_by("status"), name="status_created"),
    # A non-admin caller's listing is forced to their user_id; with ?status=, and their pending count.
    IndexModel(_by("user_id"), name="user_created"),
    IndexModel([("user_id", ASCENDING), ("status", ASCENDING), *NEWEST_FIRST], name="user_status_created"),
    # The continue gate (run_id + status + approval_type), the run's latest record, update_approval_run_status.
    IndexModel(_by("run_id"), name="run_created"),
    # The component and schedule filters of GET /approvals.
    IndexModel(_by("agent_id"), name="agent_created"),
    IndexModel(_by("team_id"), name="team_created"),
    IndexModel(_by("workflow_id"), name="workflow_created"),
    IndexModel(_by("schedule_id"), name="schedule_created"),
]

LIST_FILTERS = (
    "status",
    "source_type",
    "approval_type",
    "pause_type",
    "agent_id",
    "team_id",
    "workflow_id",
    "user_id",
    "schedule_id",
    "run_id",
)


def token() -> str:
    """A fresh write token."""
    return secrets.token_hex(8)


def stored_document(columns: Mapping[str, Any], write_token: str) -> dict[str, Any]:
    """The whole document a new approval is stored as: every column (``id`` as ``_id``), free-form
    columns through the codec, and the internal fields."""
    values = {("_id" if key == "id" else key): value for key, value in columns.items()}
    encode_free_form(values, FREE_FORM, "approval_data.")
    if not values[MARKER]:
        del values[MARKER]  # absent rather than null, so an update can ``$set`` ``_codec.<column>``
    values[OPS] = [write_token]
    values[SEQUENCE] = time.time_ns()
    values["schema_version"] = SCHEMA_VERSION
    return values


def create_approval(document: dict[str, Any]) -> Command:
    """One ``findAndModify`` that inserts the approval if its id is free and returns the write tokens
    of what was there before (``None`` back: inserted)."""
    return Command(
        APPROVALS,
        "find_one_and_update",
        {
            "filter": {"_id": document["_id"]},
            "update": {"$setOnInsert": document},
            "upsert": True,
            "projection": {OPS: True},
            "return_document": ReturnDocument.BEFORE,
        },
    )


def create_approval_plan(document: dict[str, Any]) -> Plan[None]:
    """Insert an approval; our own resend is recognised by its token, anything else under the id refused.

    The filter is equality on ``_id`` alone, so MongoDB 4.4+ retries a create race's duplicate key by
    itself; on a server that does not, the resend (bounded) matches the stored approval and answers it.
    """
    before: dict[str, Any] | None = yield from create_upsert_plan(
        create_approval(document), f"approval {document['_id']!r}"
    )
    if before is not None and document[OPS][0] not in (before.get(OPS) or []):
        raise DuplicateKeyError(f"approval {document['_id']!r} already exists", DUPLICATE_KEY)
    return None


def get_approval(approval_id: str) -> Command:
    """One ``find`` by ``_id``."""
    return Command(APPROVALS, "find_one", {"filter": {"_id": approval_id}})


def list_filter(filters: Mapping[str, str | None]) -> dict[str, Any]:
    """The ``get_approvals`` filter: equality on each given column (values already checked to be strings)."""
    return {key: value for key, value in filters.items() if value is not None}


def update_changes(changes: Mapping[str, Any], now: int, write_token: str) -> dict[str, Any]:
    """The update document: ``$set`` the columns (free-form ones encoded, their codec markers kept
    right) and ``updated_at``, and ``$push`` the write token (the last :data:`OPS_KEPT` kept)."""
    free = {key: value for key, value in changes.items() if key in FREE_FORM}
    to_set, to_unset = encode_fields(free)
    update: dict[str, Any] = {
        "$set": {**{k: v for k, v in changes.items() if k not in FREE_FORM}, **to_set, "updated_at": now},
        "$push": {OPS: {"$each": [write_token], "$slice": -OPS_KEPT}},
    }
    if to_unset:
        update["$unset"] = to_unset
    return update


def update_approval(
    approval_id: str, expected_status: str | None, changes: Mapping[str, Any], now: int, write_token: str
) -> Command:
    """One ``findAndModify``: set ``changes`` if the approval is (still) in ``expected_status``; the
    document after, or ``None`` if it is absent or in another status. Not resendable (see module)."""
    query: dict[str, Any] = {"_id": approval_id}
    if expected_status is not None:
        query["status"] = expected_status
    return Command(
        APPROVALS,
        "find_one_and_update",
        {"filter": query, "update": update_changes(changes, now, write_token), "return_document": ReturnDocument.AFTER},
        resend=False,
    )


def written_by(approval_id: str, write_token: str) -> Command:
    """One ``find``: the approval if the write stamped ``write_token`` has landed on it."""
    return Command(APPROVALS, "find_one", {"filter": {"_id": approval_id, OPS: write_token}})


def update_approval_plan(
    approval_id: str, expected_status: str | None, changes: Mapping[str, Any], now: int
) -> Plan[dict[str, Any] | None]:
    """Compare-and-set one approval; the document after our write, or ``None`` if it did not land.

    After a lost reply, one read for our token tells whether it landed (then that document is the
    answer) or not (then it is sent again, same token). A resend that misses is checked once more: the
    first send may have been applied after the check read, and a miss means whichever write moved the
    status had already landed, so our token is there exactly when that write was ours.
    """
    write_token = token()
    command = update_approval(approval_id, expected_status, changes, now, write_token)
    for attempt in range(SEND_ROUNDS):
        try:
            after: dict[str, Any] | None = yield command
        except ReplyLost:
            landed: dict[str, Any] | None = yield written_by(approval_id, write_token)
            if landed is not None:
                return landed
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        if after is None and attempt > 0:
            late: dict[str, Any] | None = yield written_by(approval_id, write_token)
            return late
        return after
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def delete_approval(approval_id: str) -> Command:
    """One ``delete`` by ``_id``; not resendable (a second arrival would answer "nothing deleted")."""
    return Command(APPROVALS, "delete_one", {"filter": {"_id": approval_id}}, resend=False)


def delete_approval_plan(approval_id: str) -> Plan[bool]:
    """Delete one approval: whether it was there. After a lost reply, one read: gone means deleted (by
    this call, or by another deleting it at the same moment: either way it existed and is gone)."""
    command = delete_approval(approval_id)
    for attempt in range(SEND_ROUNDS):
        try:
            result: Written = yield command
        except ReplyLost:
            still: dict[str, Any] | None = yield Command(
                APPROVALS, "find_one", {"filter": {"_id": approval_id}, "projection": {"_id": True}}
            )
            if still is None:
                return True
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        # A resend that deletes nothing still answers True: the approval was there at the check read.
        return bool(result.deleted_count) or attempt > 0
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def pending_count(user_id: str | None) -> Command:
    """One ``count``: pending approvals, of ``user_id`` when given."""
    query: dict[str, Any] = {"status": "pending"}
    if user_id is not None:
        query["user_id"] = user_id
    return Command(APPROVALS, "count_documents", {"filter": query})


def update_run_status(run_id: str, run_status: str, now: int) -> Command:
    """One ``updateMany``: ``run_status`` and ``updated_at`` on every approval of the run. Resendable:
    a second arrival sets the same values and matches the same approvals."""
    return Command(
        APPROVALS,
        "update_many",
        {"filter": {"run_id": run_id}, "update": {"$set": {"run_status": run_status, "updated_at": now}}},
    )
