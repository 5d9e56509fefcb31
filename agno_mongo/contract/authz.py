"""Authorization: agno's ``*_authz_*`` contract as plans (check arguments, build commands, map answers).

``AuthzContract`` backs ``agno.os.authz`` (managed roles, the user directory and its kill switch, the
audit trails). agno decides whether a store supports authorization by calling (sync) or finding
overridden (async) ``authz_name_is_role``; both classes get it from here, so
``AgentOS(authorization=Authorization(...))`` starts on them.

Answers have the shapes, orders and counts of agno's ``SqliteDb`` (``agno.db.sql.authz``). Nothing
is cached: every call reads MongoDB, so a revocation on one replica holds on the next request
everywhere. See docs/authorization.md for the layout and the write-by-write reasoning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.errors import DuplicateKeyError

from agno_mongo.contract.checks import check_int, check_str, now
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import authz as ops
from agno_mongo.ops.command import Command, Plan
from agno_mongo.schema.authz import (
    AUDIT_COLUMNS,
    DECISION_COLUMNS,
    check_event,
    check_meta_values,
    check_user_values,
    event_row,
    meta_row,
    name_document,
    user_row,
)

_USER_SORTABLE = ("id", "email", "name", "disabled", "created_at", "updated_at")
_NULLABLE_USER_COLUMNS = ("email", "name")


def _names(name: str, values: object) -> list[str]:
    if not isinstance(values, list | tuple):
        raise InvalidInputError(name, f"must be a list of strings, got {type(values).__name__}")
    return [check_str(f"{name}[{index}]", value) for index, value in enumerate(values)]


def _rows(rows: object) -> list[tuple[str, str, str]]:
    if not isinstance(rows, list | tuple):
        raise InvalidInputError("rows", f"must be a list of (resource, action, effect), got {type(rows).__name__}")
    checked = []
    for index, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != 3:
            raise InvalidInputError(f"rows[{index}]", f"must be a (resource, action, effect) triple, got {row!r}")
        resource, action, effect = (
            check_str(f"rows[{index}].{part}", value)
            for part, value in zip(("resource", "action", "effect"), row, strict=True)
        )
        checked.append((resource, action, effect))
    return checked


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(name, f"must be a bool, got {type(value).__name__}")
    return value


def _window(limit: object, offset: object) -> tuple[int | None, int]:
    checked_limit = check_int("limit", limit, minimum=0)
    checked_offset = check_int("offset", offset, minimum=0)
    return checked_limit, checked_offset or 0


def _search(search: object) -> str | None:
    return None if search is None else check_str("search", search)


def _sort_column(sort_by: object, columns: Sequence[str]) -> str:
    """agno's: a column of the table sorts by it, any other name by ``created_at``."""
    check_str("sort_by", sort_by)
    return sort_by if sort_by in columns else "created_at"  # type: ignore[return-value]


class AuthzContract:
    """The authorization part of agno's ``BaseDb`` / ``AsyncBaseDb`` contract, as plans."""

    # --- policy: what a role may do -----------------------------------------------------------------------

    def get_authz_policies(self, roles: list[str]) -> Plan[list[tuple[str, str, str, str]]]:
        """Every ``(role, resource, action, effect)`` of ``roles``, sorted (agno's SQLite index order)."""
        wanted = list(dict.fromkeys(_names("roles", roles)))
        out: list[tuple[str, str, str, str]] = []
        for start in range(0, len(wanted), ops.IN_CHUNK):
            documents: list[dict[str, Any]] = yield ops.find_policies(wanted[start : start + ops.IN_CHUNK])
            for document in documents:
                stored = name_document(document)
                out.extend((stored.id, p.resource, p.action, p.effect) for p in stored.policies)
        return sorted(out)

    def get_authz_role_policies(self, role: str) -> Plan[list[tuple[str, str, str]]]:
        """One role's ``(resource, action, effect)`` rows, sorted by resource and action."""
        check_str("role", role)
        document: dict[str, Any] | None = yield ops.find_name(role, "policies")
        if document is None:
            return []
        return sorted((p.resource, p.action, p.effect) for p in name_document(document).policies)

    def set_authz_role_policies(self, role: str, rows: list[tuple[str, str, str]]) -> Plan[None]:
        """Replace the role's policy rows in one single-document write: readers and concurrent writers
        see the old set or the new one, never a mix or an empty role in between."""
        check_str("role", role)
        yield ops.set_policies(role, _rows(rows))
        return None

    def upsert_authz_policy(self, *, role: str, resource: str, action: str, effect: str) -> Plan[None]:
        """Add the (resource, action) grant, or flip its effect if the role has it."""
        check_str("role", role)
        check_str("resource", resource)
        check_str("action", action)
        check_str("effect", effect)
        yield from ops.upsert_policy_plan(role, resource, action, effect)
        return None

    def delete_authz_policy(self, *, role: str, resource: str | None = None, action: str | None = None) -> Plan[None]:
        """Delete the role's rows, narrowed to ``resource`` / ``action`` when given."""
        check_str("role", role)
        narrowed_resource = None if resource is None else check_str("resource", resource)
        narrowed_action = None if action is None else check_str("action", action)
        yield ops.delete_policy(role, narrowed_resource, narrowed_action)
        return None

    # --- grouping: who holds which role -------------------------------------------------------------------

    def get_authz_direct_roles(self, subject: str) -> Plan[list[str]]:
        """The roles assigned to ``subject``, sorted."""
        check_str("subject", subject)
        document: dict[str, Any] | None = yield ops.find_name(subject, "roles")
        return [] if document is None else sorted(name_document(document).roles)

    def get_authz_direct_roles_many(self, subjects: list[str]) -> Plan[dict[str, list[str]]]:
        """Roles of each subject (``[]`` when none), one ``find`` per :data:`~agno_mongo.ops.authz.IN_CHUNK`."""
        asked = _names("subjects", subjects)
        out: dict[str, list[str]] = {subject: [] for subject in asked}
        wanted = list(out)
        for start in range(0, len(wanted), ops.IN_CHUNK):
            documents: list[dict[str, Any]] = yield ops.find_roles_of(wanted[start : start + ops.IN_CHUNK])
            for document in documents:
                stored = name_document(document)
                out[stored.id] = sorted(stored.roles)
        return out

    def list_authz_role_subjects(self, role: str) -> Plan[list[str]]:
        """The names holding ``role``, sorted (agno's SQLite answers them in assignment order, which
        no contract promises; its one caller sorts them)."""
        check_str("role", role)
        documents: list[dict[str, Any]] = yield ops.holders(role)
        return [str(document["_id"]) for document in documents]

    def authz_name_is_role(self, name: str) -> Plan[bool]:
        """Whether ``name`` carries policy or is held by anything; one ``find``."""
        check_str("name", name)
        found: dict[str, Any] | None = yield ops.name_is_role(name)
        return found is not None

    def assign_authz_role(self, subject: str, role: str) -> Plan[None]:
        """Add an assignment (idempotent)."""
        check_str("subject", subject)
        check_str("role", role)
        yield from ops.upsert_plan(ops.assign(subject, role))
        return None

    def unassign_authz_role(self, subject: str, role: str) -> Plan[None]:
        """Remove an assignment (idempotent)."""
        check_str("subject", subject)
        check_str("role", role)
        yield ops.unassign(subject, role)
        return None

    def replace_authz_subject_roles(self, subject: str, role: str) -> Plan[None]:
        """Make ``role`` the subject's only role in one single-document write: no instant with no
        role, and concurrent replacements leave exactly one of them."""
        check_str("subject", subject)
        check_str("role", role)
        yield from ops.upsert_plan(ops.replace_roles(subject, role))
        return None

    def list_authz_roles(self) -> Plan[list[str]]:
        """Every role known to policy or to assignments, sorted."""
        with_policy: list[dict[str, Any]] = yield ops.roles_with_policy()
        held: list[dict[str, Any]] = yield ops.held_roles()
        return sorted({str(document["_id"]) for document in [*with_policy, *held]})

    def delete_authz_role(self, role: str) -> Plan[None]:
        """Drop the role's policy, its assignments both ways and its metadata (ordered idempotent steps,
        see :func:`agno_mongo.ops.authz.delete_role_plan`)."""
        check_str("role", role)
        yield from ops.delete_role_plan(role)
        return None

    # --- role metadata ------------------------------------------------------------------------------------

    def get_authz_role_meta(self, slug: str) -> Plan[dict[str, Any] | None]:
        """A role's metadata row, or ``None``."""
        check_str("slug", slug)
        document: dict[str, Any] | None = yield Command(ops.META, "find_one", {"filter": {"_id": slug}})
        return None if document is None else meta_row(document)

    def list_authz_role_meta(self) -> Plan[list[dict[str, Any]]]:
        """Every metadata row, in creation order (agno's SQLite rowid order)."""
        documents: list[dict[str, Any]] = yield Command(
            ops.META, "find", {"filter": {}, "sort": [(ops.SEQ, 1), ("_id", 1)]}
        )
        return [meta_row(document) for document in documents]

    def upsert_authz_role_meta(self, slug: str, values: dict[str, Any]) -> Plan[None]:
        """Create or update a role's metadata in one upsert. ``values`` must hold agno's ``NOT NULL``
        columns (``is_default``, ``created_at``, ``updated_at``), as agno's ``INSERT ... ON CONFLICT``
        requires even for an existing row."""
        check_str("slug", slug)
        given = check_meta_values(values)
        on_insert = {column: None for column in ("name", "description") if column not in given}
        yield from ops.set_or_create_plan(ops.META, slug, given, on_insert, {})
        return None

    def delete_authz_role_meta(self, slug: str) -> Plan[None]:
        """Delete a role's metadata row."""
        check_str("slug", slug)
        yield Command(ops.META, "delete_one", {"filter": {"_id": slug}})
        return None

    # --- user directory -----------------------------------------------------------------------------------

    def get_authz_user(self, user_id: str) -> Plan[dict[str, Any] | None]:
        """A directory row, or ``None``."""
        check_str("user_id", user_id)
        document: dict[str, Any] | None = yield Command(ops.USERS, "find_one", {"filter": {"_id": user_id}})
        return None if document is None else user_row(document)

    def list_authz_users(
        self,
        limit: int = 1000,
        offset: int = 0,
        include_disabled: bool = True,
        search: str | None = None,
        sort_by: str = "created_at",
        order: str = "desc",
    ) -> Plan[list[dict[str, Any]]]:
        """A page of directory rows: ``search`` a case-insensitive substring of id, email or name;
        sorted by ``sort_by`` (``created_at`` for an unknown column), descending unless ``order`` is
        ``"asc"``, nulls last either way; ties in agno's SQLite order."""
        page_limit, skip = _window(limit, offset)
        query = ops.directory_filter(_bool("include_disabled", include_disabled), _search(search))
        if sort_by == "user_metadata":
            raise InvalidInputError("sort_by", "sorting by the metadata's JSON text is not supported")
        column = _sort_column(sort_by, _USER_SORTABLE)
        check_str("order", order)
        direction = 1 if order == "asc" else -1
        if page_limit == 0:
            return []
        if column in _NULLABLE_USER_COLUMNS:
            command = ops.page_nulls_last(ops.USERS, query, column, direction, page_limit, skip)
        else:
            command = ops.page(ops.USERS, query, ops.sort_keys(column, direction), page_limit, skip)
        documents: list[dict[str, Any]] = yield command
        return [user_row(document) for document in documents]

    def count_authz_users(self, include_disabled: bool = True, search: str | None = None) -> Plan[int]:
        """How many directory rows ``list_authz_users`` would page through."""
        query = ops.directory_filter(_bool("include_disabled", include_disabled), _search(search))
        count: int = yield Command(ops.USERS, "count_documents", {"filter": query})
        return int(count)

    def count_authz_users_by_status(self) -> Plan[dict[str, int]]:
        """``{"total": n, "disabled": n}`` from one aggregate, so the two always agree."""
        groups: list[dict[str, Any]] = yield ops.users_by_status()
        group = groups[0] if groups else {}
        return {"total": int(group.get("total") or 0), "disabled": int(group.get("disabled") or 0)}

    def list_authz_user_ids(self, include_disabled: bool = True) -> Plan[list[str]]:
        """Every directory id, sorted."""
        query = ops.directory_filter(_bool("include_disabled", include_disabled), None)
        documents: list[dict[str, Any]] = yield Command(
            ops.USERS, "find", {"filter": query, "projection": {"_id": True}, "sort": [("_id", 1)]}
        )
        return [str(document["_id"]) for document in documents]

    def count_authz_users_by_day(
        self, starting_at: int | None = None, ending_before: int | None = None
    ) -> Plan[list[dict[str, int]]]:
        """``[{"date": <UTC day start>, "count": n}]``, oldest day first, for ``created_at`` in
        ``[starting_at, ending_before)``; days without users are absent."""
        start = check_int("starting_at", starting_at)
        end = check_int("ending_before", ending_before)
        groups: list[dict[str, Any]] = yield ops.users_by_day(start, end)
        return [{"date": int(group["_id"]), "count": int(group["count"])} for group in groups]

    def upsert_authz_user(self, user_id: str, values: dict[str, Any]) -> Plan[None]:
        """Create or update a directory row's profile in one upsert. ``disabled`` is written only when
        the row is created, never over an existing row's (the revocation tombstone). ``values`` must
        hold agno's ``NOT NULL`` columns (``disabled``, ``created_at``, ``updated_at``), as agno's
        ``INSERT ... ON CONFLICT`` requires. ``metadata`` ``None`` leaves the stored metadata as it is."""
        check_str("user_id", user_id)
        given = check_user_values(values)
        to_set, extra = ops.user_update(given)
        on_insert: dict[str, Any] = {"disabled": given["disabled"]}
        on_insert.update({column: None for column in ("email", "name", "metadata") if column not in given})
        yield from ops.set_or_create_plan(ops.USERS, user_id, to_set, on_insert, extra)
        return None

    def set_authz_user_disabled(self, user_id: str, disabled: bool) -> Plan[None]:
        """Set or clear the kill switch in one write (no read first); an unknown user gets a tombstone
        row in that state, so a later token for that ``sub`` is refused too."""
        check_str("user_id", user_id)
        yield from ops.upsert_plan(ops.set_disabled(user_id, _bool("disabled", disabled), now()))
        return None

    def delete_authz_user(self, user_id: str) -> Plan[None]:
        """Remove a directory row."""
        check_str("user_id", user_id)
        yield Command(ops.USERS, "delete_one", {"filter": {"_id": user_id}})
        return None

    def is_authz_user_disabled(self, user_id: str) -> Plan[bool]:
        """The kill switch: ``True`` only for a known, disabled user."""
        check_str("user_id", user_id)
        document: dict[str, Any] | None = yield Command(
            ops.USERS, "find_one", {"filter": {"_id": user_id}, "projection": {"disabled": True}}
        )
        return bool(document is not None and document.get("disabled") is True)

    # --- audit: change trail and access trail -------------------------------------------------------------

    def record_authz_audit_event(self, values: dict[str, Any]) -> Plan[None]:
        """Append a change-trail event; an ``event_id`` already recorded is ignored, as agno's does."""
        columns = check_event(values, decisions=False)
        try:
            yield ops.record_event(ops.AUDIT, columns)
        except DuplicateKeyError:
            pass
        return None

    def record_authz_decision(self, values: dict[str, Any]) -> Plan[None]:
        """Append an access-trail event; an ``event_id`` already recorded is ignored, as agno's does."""
        columns = check_event(values, decisions=True)
        try:
            yield ops.record_event(ops.DECISIONS, columns)
        except DuplicateKeyError:
            pass
        return None

    def read_authz_audit_events(
        self,
        limit: int = 100,
        offset: int = 0,
        search: str | None = None,
        sort_by: str = "created_at",
        order: str = "desc",
        decisions: bool = False,
    ) -> Plan[list[dict[str, Any]]]:
        """A page of one trail: ``search`` a case-insensitive substring of actor, action or target;
        sorted by ``sort_by`` (``created_at`` for an unknown column), descending when ``order`` is
        ``"desc"`` in any case, else ascending (agno's rule, unlike the user listing's)."""
        page_limit, skip = _window(limit, offset)
        trail = _bool("decisions", decisions)
        query = ops.search_filter(_search(search), ("actor", "action", "target"))
        column = _sort_column(sort_by, DECISION_COLUMNS if trail else AUDIT_COLUMNS)
        direction = -1 if check_str("order", order).lower() == "desc" else 1
        if page_limit == 0:
            return []
        collection = ops.DECISIONS if trail else ops.AUDIT
        documents: list[dict[str, Any]] = yield ops.page(
            collection, query, ops.sort_keys(column, direction), page_limit, skip
        )
        return [event_row(document, trail) for document in documents]

    def count_authz_audit_events(self, search: str | None = None, decisions: bool = False) -> Plan[int]:
        """How many events of one trail match ``search``."""
        trail = _bool("decisions", decisions)
        query = ops.search_filter(_search(search), ("actor", "action", "target"))
        count: int = yield Command(ops.DECISIONS if trail else ops.AUDIT, "count_documents", {"filter": query})
        return int(count)
