"""Pure command builders and plans for the service accounts collection (one document per account).

Nothing here does I/O. An account's ``_id`` is its id, so every single-account command is a point
lookup. Two unique indexes carry agno's SQL constraints: ``token_hash`` (one account per token) and
``name`` among active accounts only (partial on ``{active: true}``, see
:mod:`agno_mongo.schema.service_accounts`). A create that breaks either raises
:class:`ServiceAccountConflictError`, which AgentOS's route answers with 409 as it does for SQL's
``IntegrityError``.

These unique secondary indexes do not contain ``_id``, so this collection must stay unsharded (a
sharded collection's unique indexes must start with the shard key). It holds one small document per
machine identity, so nothing is lost.

Lost replies: the create is an insert-only upsert, resendable because it carries a random token
(``_op``): a resend that finds the account answers "ours" only when the stored token is its own.
Updates ``$set`` whole values (resendable). The delete is not resendable (a second arrival answers
"nothing deleted"); after ``ReplyLost`` one read tells whether the account is gone.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import AgnoMongoError
from agno_mongo.ops.command import Command, Plan, ReplyLost, Written
from agno_mongo.ops.common import DUPLICATE_KEY
from agno_mongo.ops.owned import CREATE_RACE_ROUNDS
from agno_mongo.schema.service_accounts import ACTIVE, OP, SEQUENCE, ServiceAccountFields

SERVICE_ACCOUNTS = "service_accounts"

SORTABLE = ("created_at", "name", "last_used_at", "expires_at")
"""agno's ``SERVICE_ACCOUNT_SORTABLE_COLUMNS``: every listing sort has an index, unscoped and per owner."""

SEND_ROUNDS = 3
"""Sends of a non-resendable delete whose reply keeps being lost (each followed by a check read)."""


def tie_broken(field: str, direction: int) -> list[tuple[str, int]]:
    """A listing's sort: ``field``, then creation order (newest first when descending, as SQLite's
    ``created_at`` index answers ties), then ``_id`` so pages never overlap."""
    return [(field, direction), (SEQUENCE, direction), ("_id", direction)]


SERVICE_ACCOUNT_INDEXES = [
    # Token verification (every agno_pat_ request that misses AgentOS's cache): one account per hash.
    IndexModel([("token_hash", ASCENDING)], name="token_hash", unique=True),
    # One active account per name; revoked ones free the name (rotation keeps the identity). Also
    # serves get_service_account_by_name for active accounts (at most one matches).
    IndexModel([("name", ASCENDING)], name="active_name", unique=True, partialFilterExpression={ACTIVE: True}),
    # get_service_account_by_name(include_revoked=True): the newest account of a name.
    IndexModel([("name", ASCENDING), *tie_broken("created_at", DESCENDING)], name="name_newest"),
    # get_service_accounts: each sortable column with the tie-break, unscoped and by owner
    # (``user_id: {$in: [owner, null]}`` is two index ranges merged in order).
    *(IndexModel(tie_broken(field, DESCENDING), name=f"{field}_order") for field in SORTABLE),
    *(
        IndexModel([("user_id", ASCENDING), *tie_broken(field, DESCENDING)], name=f"user_{field}_order")
        for field in SORTABLE
    ),
]

_INDEX_FIELDS = {"_id_": "id", "token_hash": "token_hash", "active_name": "name"}
_INDEX_IN_MESSAGE = re.compile(r"index: (\S+)")


class ServiceAccountConflictError(AgnoMongoError, DuplicateKeyError):
    """The account's id, token hash or (active) name is taken by another account; nothing was written.

    ``field`` is ``"id"``, ``"token_hash"`` or ``"name"``. When SQLAlchemy is installed (it is with
    ``agno[os]``) the instance raised is also a ``sqlalchemy.exc.IntegrityError``, which is what
    AgentOS's ``POST /service-accounts`` turns into a 409 for agno's SQL stores.
    """

    def __init__(self, field: str, value: object) -> None:
        self.field = field
        self.value = value
        self.text = f"a service account with this {field} already exists ({field}={value!r})"
        DuplicateKeyError.__init__(self, self.text, DUPLICATE_KEY, {"keyValue": {field: value}})

    def __str__(self) -> str:
        return self.text


@functools.cache
def _conflict_class() -> type[ServiceAccountConflictError]:
    """:class:`ServiceAccountConflictError`, also an SQLAlchemy ``IntegrityError`` where SQLAlchemy is
    importable (built on first conflict, so importing agno-mongo never imports SQLAlchemy)."""
    try:
        from sqlalchemy.exc import IntegrityError
    except ImportError:  # pragma: no cover - agno[os] brings SQLAlchemy
        return ServiceAccountConflictError

    class _IntegrityShim(IntegrityError):
        """Ends PyMongo's ``super().__init__(message)`` chain without SQLAlchemy's required arguments."""

        def __init__(self, message: str, *_: object, **__: object) -> None:
            Exception.__init__(self, message)
            self.statement = None
            self.params = None
            self.orig = None
            self.ismulti = None
            self.hide_parameters = False
            self.connection_invalidated = False
            self.detail = []

    class ServiceAccountIntegrityError(ServiceAccountConflictError, _IntegrityShim):  # type: ignore[misc]
        """A :class:`ServiceAccountConflictError` that AgentOS recognises as a constraint violation."""

        def __str__(self) -> str:
            return ServiceAccountConflictError.__str__(self)

    ServiceAccountIntegrityError.__module__ = __name__
    return ServiceAccountIntegrityError


def conflict(field: str, value: object) -> ServiceAccountConflictError:
    """The error a create that breaks a unique constraint raises."""
    return _conflict_class()(field, value)


def conflict_field(error: DuplicateKeyError) -> str | None:
    """Which unique constraint a duplicate key broke: ``"id"``, ``"token_hash"``, ``"name"``, or None if
    the server did not say (it reports ``keyPattern`` since 4.2, and the index name in the message)."""
    details = error.details or {}
    pattern = details.get("keyPattern")
    if isinstance(pattern, dict) and len(pattern) == 1:
        key = next(iter(pattern))
        return {"_id": "id", "token_hash": "token_hash", "name": "name"}.get(key)
    found = _INDEX_IN_MESSAGE.search(str(details.get("errmsg") or error))
    return _INDEX_FIELDS.get(found.group(1)) if found else None


def token() -> str:
    """A fresh create token."""
    return secrets.token_hex(8)


def create(document: dict[str, Any]) -> Command:
    """One ``findAndModify`` that inserts the account if its id is free and returns the create token
    of what was there before (``None`` back: inserted).

    ``$setOnInsert`` only, so a resend after a lost reply matches the inserted account and changes
    nothing; a clash on ``token_hash`` or an active ``name`` is a duplicate key from the server.
    """
    return Command(
        SERVICE_ACCOUNTS,
        "find_one_and_update",
        {
            "filter": {"_id": document["_id"]},
            "update": {"$setOnInsert": document},
            "upsert": True,
            "projection": {OP: True},
            "return_document": ReturnDocument.BEFORE,
        },
    )


def create_plan(fields: ServiceAccountFields) -> Plan[None]:
    """Insert an account; our own resend is recognised by its token, any other clash raises
    :class:`ServiceAccountConflictError` naming the constraint (agno's SQL stores raise
    ``IntegrityError`` for all three, a second create of an identical dict included).

    A duplicate key on ``_id`` is a lost create race (two inserts of one new id; MongoDB 4.4+ retries
    that itself): sent again, the upsert now matches and the stored token is compared with ours.
    """
    document = fields.document(token(), time.time_ns())
    command = create(document)
    for _ in range(CREATE_RACE_ROUNDS):
        try:
            before: dict[str, Any] | None = yield command
        except DuplicateKeyError as error:
            field = conflict_field(error)
            if field in ("name", "token_hash"):
                raise conflict(field, getattr(fields, field)) from error
            continue  # _id (or unreported): the resend either matches the stored account or clashes again
        break
    else:
        raise conflict("id", fields.id)
    if before is not None and before.get(OP) != document[OP]:
        raise conflict("id", fields.id)
    return None


def owned_by(user_id: str | None) -> dict[str, Any]:
    """agno's owner scope for accounts: the owner's own or workspace-level (no owner) ones."""
    return {} if user_id is None else {"user_id": {"$in": [user_id, None]}}


def get(service_account_id: str, user_id: str | None) -> Command:
    """One ``find`` by id, scoped to ``user_id``'s and workspace-level accounts when given."""
    return Command(SERVICE_ACCOUNTS, "find_one", {"filter": {"_id": service_account_id, **owned_by(user_id)}})


def get_by_token_hash(token_hash: str) -> Command:
    """One ``find`` on the unique ``token_hash`` index."""
    return Command(SERVICE_ACCOUNTS, "find_one", {"filter": {"token_hash": token_hash}})


def get_by_name(name: str, include_revoked: bool) -> Command:
    """One ``find``: the newest account of that name (only an active one unless ``include_revoked``;
    agno's SQL stores order by ``created_at DESC``, ties here newest created first)."""
    query: dict[str, Any] = {"name": name}
    if not include_revoked:
        query[ACTIVE] = True
    return Command(SERVICE_ACCOUNTS, "find_one", {"filter": query, "sort": tie_broken("created_at", DESCENDING)})


def list_filter(include_revoked: bool, user_id: str | None) -> dict[str, Any]:
    """The ``get_service_accounts`` filter."""
    query: dict[str, Any] = owned_by(user_id)
    if not include_revoked:
        query[ACTIVE] = True
    return query


def count(query: dict[str, Any]) -> Command:
    """One count of the accounts a listing filter matches."""
    return Command(SERVICE_ACCOUNTS, "count_documents", {"filter": query})


def update_spec(changes: dict[str, int | None]) -> dict[str, Any]:
    """The update for checked ``changes`` (only ``last_used_at`` and ``revoked_at``): ``$set`` of each,
    as agno's SQL ``UPDATE`` does; setting ``revoked_at`` also drops the ``active`` marker, freeing the
    name. Whole values, so a resend changes nothing."""
    update: dict[str, Any] = {"$set": dict(changes)}
    if "revoked_at" in changes:
        update["$unset"] = {ACTIVE: ""}
    return update


def update(service_account_id: str, changes: dict[str, int | None], return_record: bool) -> Command:
    """One command: ``findAndModify`` returning the updated account, or ``update`` when it is not wanted
    (AgentOS's last-used touches). Resendable: every change is a whole value."""
    query = {"_id": service_account_id}
    if return_record:
        return Command(
            SERVICE_ACCOUNTS,
            "find_one_and_update",
            {"filter": query, "update": update_spec(changes), "return_document": ReturnDocument.AFTER},
        )
    return Command(SERVICE_ACCOUNTS, "update_one", {"filter": query, "update": update_spec(changes)})


def delete(service_account_id: str) -> Command:
    """One ``delete`` by ``_id``; not resendable (a second arrival would answer "nothing deleted")."""
    return Command(SERVICE_ACCOUNTS, "delete_one", {"filter": {"_id": service_account_id}}, resend=False)


def delete_plan(service_account_id: str) -> Plan[bool]:
    """Delete one account; whether it was there.

    After a lost reply, one read: gone means deleted (by this call, or by another deleting it at the
    same moment: either way it existed and is gone); still there means the delete never arrived, and
    it is sent again (a resend that then deletes nothing still answers True: the account was there at
    the check read). Bounded by :data:`SEND_ROUNDS`, then the ``ReplyLost`` is raised.
    """
    command = delete(service_account_id)
    for attempt in range(SEND_ROUNDS):
        try:
            result: Written = yield command
        except ReplyLost:
            still: dict[str, Any] | None = yield Command(
                SERVICE_ACCOUNTS, "find_one", {"filter": {"_id": service_account_id}, "projection": {"_id": True}}
            )
            if still is None:
                return True
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        return bool(result.deleted_count) or attempt > 0
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
