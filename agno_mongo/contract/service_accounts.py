"""Service accounts: agno's contract as plans (check arguments, build commands, map answers).

AgentOS mints machine tokens (``agno_pat_...``) through ``POST /service-accounts`` and verifies each
request's token with ``get_service_account_by_token_hash``, touching ``last_used_at`` at most once a
minute per worker. Every call here is one command (a listing adds a count only when its page does not
tell the total). Rows are agno's SQL rows: the same keys, ``revoked_at`` null while active.
"""

from __future__ import annotations

from typing import Any

from agno_mongo.contract.checks import check_id, check_int, check_owner, check_skip, check_str
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import service_accounts as ops
from agno_mongo.ops.command import Plan
from agno_mongo.ops.common import page_of_plan
from agno_mongo.ops.service_accounts import ServiceAccountConflictError
from agno_mongo.schema.service_accounts import ServiceAccountFields, service_account_row

__all__ = ["MUTABLE", "ServiceAccountConflictError", "ServiceAccountContract"]

MUTABLE = ("last_used_at", "revoked_at")
"""agno's ``SERVICE_ACCOUNT_MUTABLE_COLUMNS``: everything else would rebind or rescope a minted token."""


def check_bool(name: str, value: object) -> bool:
    """A real ``bool`` (a truthy string or a dict is a caller bug, not a filter)."""
    if not isinstance(value, bool):
        raise InvalidInputError(name, f"must be a bool, got {type(value).__name__}")
    return value


def check_changes(kwargs: dict[str, Any]) -> dict[str, int | None]:
    """agno's ``validate_service_account_update`` rules, as :class:`InvalidInputError` (a ``ValueError``,
    which is what agno raises) naming the field: at least one change, only the mutable columns,
    revocation one-way, and each value an epoch-seconds int (``last_used_at`` may be cleared)."""
    if not kwargs:
        raise InvalidInputError("kwargs", "update_service_account requires at least one column to update")
    for key in kwargs:
        if key not in MUTABLE:
            raise InvalidInputError(
                key, f"cannot be updated: only {list(MUTABLE)} are mutable; revoke the account and mint a new token"
            )
    if "revoked_at" in kwargs and kwargs["revoked_at"] is None:
        raise InvalidInputError("revoked_at", "revocation is one-way: revoked_at cannot be reset to None")
    return {key: check_int(key, value) for key, value in kwargs.items()}


def check_listing_sort(sort_by: object, sort_order: object) -> tuple[str, int]:
    """agno's sort rules (``resolve_service_account_sort_column``, then ``asc if sort_order == "asc"
    else desc``): an unknown column, or ``None``, falls back to ``created_at`` and anything but exactly
    ``"asc"`` is descending (AgentOS passes the query string through, so a typo must not fail the
    request). A value that is neither a string nor ``None`` is refused."""
    if sort_by is not None and not isinstance(sort_by, str):
        raise InvalidInputError("sort_by", f"must be a string, got {type(sort_by).__name__}")
    if sort_order is not None and not isinstance(sort_order, str):
        raise InvalidInputError("sort_order", f"must be 'asc' or 'desc', got {type(sort_order).__name__}")
    field = sort_by if isinstance(sort_by, str) and sort_by in ops.SORTABLE else "created_at"
    return field, 1 if sort_order == "asc" else -1


class ServiceAccountContract:
    """The service accounts part of agno's ``BaseDb`` contract, as plans."""

    def create_service_account(self, account_data: dict[str, Any]) -> Plan[dict[str, Any]]:
        """Store a new account (``ServiceAccount.to_dict()``) in one command and return ``account_data``.

        A taken id, token hash or active name raises :class:`ServiceAccountConflictError` (also an
        SQLAlchemy ``IntegrityError``, so AgentOS answers 409 as with its SQL stores); nothing is
        written. So does a second call with the same dict, as in agno; only this call's own resend
        after a lost reply is recognised (by its token) and answered as a success.
        """
        fields = ServiceAccountFields.from_dict(account_data)
        yield from ops.create_plan(fields)
        return account_data

    def get_service_account(self, service_account_id: str, user_id: str | None = None) -> Plan[dict[str, Any] | None]:
        """One account by id; with ``user_id``, only if that user owns it or nobody does."""
        check_id("service_account_id", service_account_id)
        check_owner("user_id", user_id)
        document = yield ops.get(service_account_id, user_id)
        return None if document is None else service_account_row(document)

    def get_service_account_by_token_hash(self, token_hash: str) -> Plan[dict[str, Any] | None]:
        """The account holding this token hash, revoked and expired ones included (the verifier checks
        those). A server error raises: AgentOS fails closed on it rather than reading "unknown token"."""
        check_str("token_hash", token_hash)
        document = yield ops.get_by_token_hash(token_hash)
        return None if document is None else service_account_row(document)

    def get_service_account_by_name(self, name: str, include_revoked: bool = False) -> Plan[dict[str, Any] | None]:
        """The newest account of that name; only an unrevoked one unless ``include_revoked``.

        "Active" is agno's: not revoked. An expired account that was never revoked still holds its name.
        """
        check_str("name", name)
        check_bool("include_revoked", include_revoked)
        document = yield ops.get_by_name(name, include_revoked)
        return None if document is None else service_account_row(document)

    def get_service_accounts(
        self,
        include_revoked: bool = True,
        limit: int = 20,
        page: int = 1,
        sort_by: str = "created_at",
        sort_order: str = "desc",
        user_id: str | None = None,
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """``(rows, total)``: a page of accounts, with ``user_id`` only theirs and workspace-level ones.

        Sorted by ``sort_by`` (one of agno's sortable columns, else ``created_at``); ties newest created
        first when descending, oldest first when ascending, then by id, so pages never overlap.
        """
        check_bool("include_revoked", include_revoked)
        checked_limit = check_int("limit", limit, minimum=0)
        checked_page = check_int("page", page, minimum=1)
        if checked_limit is None:
            raise InvalidInputError("limit", "must be an integer, got None")
        if checked_page is None:
            raise InvalidInputError("page", "must be an integer, got None")
        skip = check_skip((checked_page - 1) * checked_limit)
        check_owner("user_id", user_id)
        field, direction = check_listing_sort(sort_by, sort_order)
        query = ops.list_filter(include_revoked, user_id)
        if checked_limit == 0:  # SQL's LIMIT 0: no rows, but the total
            total: int = yield ops.count(query)
            return [], total
        documents, counted = yield from page_of_plan(
            ops.SERVICE_ACCOUNTS, query, ops.tie_broken(field, direction), checked_limit, skip, None, count=True
        )
        return [service_account_row(document) for document in documents], int(counted or 0)

    def update_service_account(
        self, service_account_id: str, return_record: bool = True, **kwargs: Any
    ) -> Plan[dict[str, Any] | None]:
        """Set ``revoked_at`` and/or ``last_used_at`` in one command; the updated row, or ``None``
        (absent account, or ``return_record=False``).

        Any other field, no field, or ``revoked_at=None`` is refused before any command, as agno does.
        Revoking frees the name for a new account. Values are set as given, as agno's SQL ``UPDATE``
        does (``last_used_at`` may be cleared with ``None``).
        """
        check_id("service_account_id", service_account_id)
        check_bool("return_record", return_record)
        changes = check_changes(kwargs)
        document = yield ops.update(service_account_id, changes, return_record)
        if not return_record or document is None:
            return None
        return service_account_row(document)

    def delete_service_account(self, service_account_id: str) -> Plan[bool]:
        """Hard-delete one account; whether it was there (true after a lost reply once it is gone)."""
        check_id("service_account_id", service_account_id)
        return (yield from ops.delete_plan(service_account_id))
