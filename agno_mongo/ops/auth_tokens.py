"""Pure command builders and plans for the auth tokens collection (one document per stored token).

Nothing here does I/O. A token's ``_id`` is derived from ``(provider, user_id, service)``
(:func:`~agno_mongo.schema.auth_tokens.token_key`), so that triple is unique by construction, every
command is a point write or read on ``_id`` (one shard when sharded on ``_id``), and the collection
needs no secondary index.

Lost replies: the upsert ``$set``s whole values with a time fixed by the caller, so a resend stores
and answers the same (resendable). The delete is not resendable (a second arrival answers "nothing
deleted"); after ``ReplyLost`` one read tells whether the token is gone.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.ops.command import Command, Plan, ReplyLost, Written, backoff
from agno_mongo.ops.owned import CREATE_RACE_ROUNDS
from agno_mongo.schema.auth_tokens import AuthTokenFields

AUTH_TOKENS = "auth_tokens"

SEND_ROUNDS = 3
"""Sends of a non-resendable delete whose reply keeps being lost (each followed by a check read)."""


def get(key: str) -> Command:
    """One ``find`` by ``_id``."""
    return Command(AUTH_TOKENS, "find_one", {"filter": {"_id": key}})


def upsert(fields: AuthTokenFields, now: int) -> Command:
    """One ``findAndModify`` upsert on ``_id`` returning the stored token.

    ``token_data``, ``granted_scopes`` and ``updated_at`` are replaced (agno's ``ON CONFLICT DO
    UPDATE`` set); the key fields and ``created_at`` are written only by the insert. Every value is
    whole and ``now`` is fixed by the caller, so a resend stores the same thing and answers the same:
    it is resendable.
    """
    return Command(
        AUTH_TOKENS,
        "find_one_and_update",
        {
            "filter": {"_id": fields.key},
            "update": {"$set": fields.replaced_fields(now), "$setOnInsert": fields.inserted_fields(now)},
            "upsert": True,
            "return_document": ReturnDocument.AFTER,
        },
    )


def upsert_plan(fields: AuthTokenFields, now: int) -> Plan[dict[str, Any] | None]:
    """Store or replace the triple's token; the stored document.

    Two writers racing on a new triple collide on ``_id``: the loser's upsert is sent again and now
    matches (MongoDB 4.4+ does that retry itself; this covers servers that answer the duplicate key).
    Bounded by :data:`~agno_mongo.ops.owned.CREATE_RACE_ROUNDS`, then the ``DuplicateKeyError`` is raised.
    """
    command = upsert(fields, now)
    for round_number in range(CREATE_RACE_ROUNDS):
        if round_number > 1:
            yield backoff(round_number)  # the triple keeps being deleted and re-created: give it a moment
        try:
            document: dict[str, Any] | None = yield command
        except DuplicateKeyError:
            if round_number == CREATE_RACE_ROUNDS - 1:
                raise
            continue
        return document
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def delete(key: str) -> Command:
    """One ``delete`` by ``_id``; not resendable (a second arrival would answer "nothing deleted")."""
    return Command(AUTH_TOKENS, "delete_one", {"filter": {"_id": key}}, resend=False)


def delete_plan(key: str) -> Plan[bool]:
    """Delete one token; whether it was there.

    After a lost reply, one read: gone means deleted (by this call or a concurrent one: either way it
    existed and is gone); still there means the delete never arrived, and it is sent again (a resend
    that then deletes nothing still answers True: the token was there at the check read). Bounded by
    :data:`SEND_ROUNDS`, then the ``ReplyLost`` is raised.
    """
    command = delete(key)
    for attempt in range(SEND_ROUNDS):
        try:
            result: Written = yield command
        except ReplyLost:
            still: dict[str, Any] | None = yield Command(
                AUTH_TOKENS, "find_one", {"filter": {"_id": key}, "projection": {"_id": True}}
            )
            if still is None:
                return True
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        return bool(result.deleted_count) or attempt > 0
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
