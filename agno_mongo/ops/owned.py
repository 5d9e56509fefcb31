"""Upserts with the owner check in the filter, and the one thing a duplicate key can also mean.

A write filtered on ``_id`` plus an owner check (``user_id`` the writer's, or null) that misses
collides on ``_id``: another user owns the document (the refusal), or another writer created the same
new id a moment earlier (a lost create race). MongoDB retries the latter itself only for a filter on
``_id`` alone, so after a duplicate key these plans read the stored owner and send again when the
write is allowed: it now matches. Sessions, memories, learnings and knowledge share them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError

from agno_mongo.ops.command import Command, Plan, backoff
from agno_mongo.ops.common import DUPLICATE_KEY

CREATE_RACE_ROUNDS = 4
"""Sends of an owner-checked upsert that keeps colliding on ``_id`` while the stored owner allows it.

One collision is a lost create race and the resend matches; more mean the id is being deleted and
created again between our commands. After this many the single upsert raises
:class:`DuplicateKeyError` (not an ownership error: nobody else owns it) and a bulk leaves the record
out of its answer."""

Owner = Callable[[object], bool]
"""Whether a stored ``user_id`` (``None`` when null or absent) lets this write through its filter."""


def create_upsert_plan(command: Command, what: str) -> Plan[Any]:
    """Send a create-only upsert filtered on ``_id`` alone; its reply (the document before, or None).

    A duplicate key is a lost create race (two inserts of one new id; MongoDB 4.4+ retries that by
    itself): the resend now matches the stored document and answers it, for the caller to compare
    with its own. After :data:`CREATE_RACE_ROUNDS` collisions, :class:`DuplicateKeyError` naming ``what``.
    """
    for _ in range(CREATE_RACE_ROUNDS):
        try:
            return (yield command)
        except DuplicateKeyError:
            continue
    raise DuplicateKeyError(f"{what}: the create kept colliding on _id", DUPLICATE_KEY)


def may_write(user_id: str | None) -> Owner:
    """What :func:`~agno_mongo.ops.common.owner_filter` matches: the writer's own, or nobody's."""
    return lambda owner: owner is None or owner == user_id


def stored_owner(collection: str, doc_id: str) -> Command:
    """One ``find`` by ``_id`` of the owner field only: who owns the document an upsert collided with."""
    return Command(collection, "find_one", {"filter": {"_id": doc_id}, "projection": {"user_id": True}})


def stored_owners(collection: str, doc_ids: list[str]) -> Command:
    """One ``find`` of the owner field of several documents."""
    return Command(collection, "find", {"filter": {"_id": {"$in": doc_ids}}, "projection": {"user_id": True}})


def owner_checked_upsert_plan(command: Command, doc_id: str, allowed: Owner) -> Plan[tuple[bool, Any]]:
    """Send an upsert filtered on ``_id`` plus an owner check: ``(True, result)`` once it has landed,
    ``(False, None)`` if the stored owner refuses it.

    A duplicate key means the filter missed and the insert collided on ``_id``: either another owner,
    or a writer that created the same new id first. One read of the stored owner tells them apart;
    when the write is allowed (or the document is gone again) the upsert is sent again, bounded by
    :data:`CREATE_RACE_ROUNDS`. Without a collision this is the one command.
    """
    for round_number in range(CREATE_RACE_ROUNDS):
        if round_number > 1:
            yield backoff(round_number)  # the id keeps being deleted and re-created: give it a moment
        try:
            result = yield command
        except DuplicateKeyError:
            stored: dict[str, Any] | None = yield stored_owner(command.collection, doc_id)
            if stored is not None and not allowed(stored.get("user_id")):
                return False, None
            continue
        return True, result
    raise DuplicateKeyError(
        f"{command.collection} {doc_id!r}: the upsert collided on _id {CREATE_RACE_ROUNDS} times although the "
        "stored owner allows it (other writers keep deleting and re-creating this id); nothing was written",
        DUPLICATE_KEY,
    )


def owner_checked_bulk_plan(
    bulk: Callable[[list[int]], Command], collection: str, ids: list[str], allowed: list[Owner]
) -> Plan[set[int]]:
    """Send ``bulk(indexes)`` (an unordered bulk of owner-checked upserts); the indexes refused.

    The records whose upsert collided on ``_id`` are told apart with one read of their stored
    owners: those another user owns are refused, the others lost a create race and go again in one
    more bulk (bounded by :data:`CREATE_RACE_ROUNDS`; a record still colliding after that is left out
    too). Without a collision this is the one command.
    """
    refused: set[int] = set()
    pending = list(range(len(ids)))
    for round_number in range(CREATE_RACE_ROUNDS):
        if round_number > 1:
            yield backoff(round_number)
        try:
            yield bulk(pending)
        except BulkWriteError as error:
            collided: list[int] = []
            for write_error in error.details.get("writeErrors", []):
                if write_error.get("code") != DUPLICATE_KEY:
                    raise
                collided.append(pending[int(write_error["index"])])
        else:
            return refused
        stored: list[dict[str, Any]] = yield stored_owners(collection, list(dict.fromkeys(ids[i] for i in collided)))
        owners = {document["_id"]: document.get("user_id") for document in stored}
        pending = []
        for index in collided:
            if ids[index] in owners and not allowed[index](owners[ids[index]]):
                refused.add(index)
            else:
                pending.append(index)
        if not pending:
            return refused
    return refused | set(pending)
