"""The authorization documents: names (policies and assignments), role metadata, users, audit trails.

agno's SQL stores keep six tables (``agno.db.schemas.authz``). Here:

* **names** (collection ``authz_policy_table_name``): one document per name, ``_id`` the name.
  Subjects and roles share one namespace in agno (a role can be assigned to a role), so one
  document holds both what the name may do as a role (``policies``: ``[{resource, action, effect}]``,
  agno's policy rows of that role) and what it holds as a subject (``roles``: agno's grouping rows
  with that subject). Replacing a role's policies or a subject's roles is then one document.
* **role metadata** (``authz_roles_table_name``): one document per slug.
* **users** (``authz_users_table_name``): one per directory user, ``_id`` the JWT ``sub``;
  ``metadata`` native BSON (agno stores JSON text; the value round-trips through JSON first, so it
  reads back exactly as agno's does).
* **audit** / **decisions** (``authz_audit_table_name`` / ``authz_decisions_table_name``): one
  document per event, ``_id`` the caller's ``event_id``.

Every insert stamps ``_seq`` (client clock, nanoseconds): agno's SQLite rows come back in rowid
(insertion) order where the SQL leaves the order open, and ``_seq`` reproduces that order.

Input models are strict (a wrong type raises :class:`~agno_mongo.errors.InvalidInputError` naming
the field, before any command); read models validate stored documents
(:class:`~agno_mongo.errors.CorruptDocumentError`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import Int64, Text, from_stored, validated

__all__ = [
    "AUDIT_COLUMNS",
    "DECISION_COLUMNS",
    "META_COLUMNS",
    "USER_COLUMNS",
    "check_event",
    "check_meta_values",
    "check_user_values",
    "event_row",
    "meta_row",
    "name_document",
    "user_row",
]

META_COLUMNS = ("slug", "name", "description", "is_default", "created_at", "updated_at")
"""agno's role metadata columns, in its table's order: the keys of every metadata row."""
META_REQUIRED = ("is_default", "created_at", "updated_at")
"""Metadata columns agno's table declares ``NOT NULL`` (needed to create a row)."""

USER_COLUMNS = ("id", "email", "name", "disabled", "created_at", "updated_at", "metadata")
"""The keys of a user row as agno's store hands it out (``user_metadata`` parsed into ``metadata``)."""
USER_REQUIRED = ("disabled", "created_at", "updated_at")
"""User columns agno's table declares ``NOT NULL`` (needed to create a row)."""

AUDIT_COLUMNS = ("event_id", "created_at", "actor", "action", "target", "before", "after")
DECISION_COLUMNS = ("event_id", "created_at", "actor", "action", "target", "token_ref", "required", "scopes")
EVENT_REQUIRED = ("event_id", "created_at", "action")


class MetaValues(BaseModel):
    """What ``upsert_authz_role_meta`` may set: a ``NOT NULL`` column may not be set to ``None``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Text | None = None
    description: Text | None = None
    is_default: StrictBool = None  # type: ignore[assignment]
    created_at: Int64 = None  # type: ignore[assignment]
    updated_at: Int64 = None  # type: ignore[assignment]


class UserValues(BaseModel):
    """What ``upsert_authz_user`` may set (``metadata`` any JSON-serialisable value)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    email: Text | None = None
    name: Text | None = None
    disabled: StrictBool = None  # type: ignore[assignment]
    created_at: Int64 = None  # type: ignore[assignment]
    updated_at: Int64 = None  # type: ignore[assignment]
    metadata: Any = None


class AuditValues(BaseModel):
    """One change-trail event as agno's ``DbAuditSink`` records it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event_id: Text
    created_at: Int64
    actor: Text | None = None
    action: Text
    target: Text | None = None
    before: Text | None = None
    after: Text | None = None


class DecisionValues(BaseModel):
    """One access-trail event as agno's ``DbAuditSink`` records it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event_id: Text
    created_at: Int64
    actor: Text | None = None
    action: Text
    target: Text | None = None
    token_ref: Text | None = None
    required: Text | None = None
    scopes: Text | None = None


def _mapping(values: object, name: str) -> Mapping[str, Any]:
    if not isinstance(values, Mapping):
        raise InvalidInputError(name, f"must be a dict, got {type(values).__name__}")
    for key in values:
        if not isinstance(key, str):
            raise InvalidInputError(name, f"has a non-string key {key!r}")
    return values


def _no_nulls(values: Mapping[str, Any], required: tuple[str, ...]) -> None:
    """agno's upsert is an ``INSERT ... ON CONFLICT``: the row it proposes must hold every ``NOT NULL``
    column even when the row exists (SQLite and PostgreSQL check before resolving the conflict)."""
    for key in required:
        if values.get(key) is None:
            raise InvalidInputError(f"values.{key}", "is required (agno's table declares it NOT NULL)")


def check_meta_values(values: object) -> dict[str, Any]:
    """The metadata columns an upsert sets, validated; ``slug`` is the argument, not a value."""
    given = _mapping(values, "values")
    if "slug" in given:
        raise InvalidInputError("values.slug", "cannot be set: the slug is the role's id")
    _no_nulls(given, META_REQUIRED)
    checked = validated(MetaValues, given, "values.")
    return {key: getattr(checked, key) for key in given}


def json_normalised(value: object, name: str) -> Any:
    """``value`` as agno's store reads it back: through ``json.dumps`` / ``json.loads``."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as error:
        raise InvalidInputError(name, f"must be JSON-serialisable: {error}") from None


def check_user_values(values: object) -> dict[str, Any]:
    """The user columns an upsert sets, validated. ``metadata`` ``None`` is dropped (agno's store then
    leaves the stored metadata as it is); any other metadata is JSON-normalised."""
    given = _mapping(values, "values")
    if "id" in given:
        raise InvalidInputError("values.id", "cannot be set: the id is the user_id argument")
    _no_nulls(given, USER_REQUIRED)
    checked = validated(UserValues, given, "values.")
    out = {key: getattr(checked, key) for key in given}
    if out.get("metadata") is None:
        out.pop("metadata", None)
    else:
        out["metadata"] = json_normalised(out["metadata"], "values.metadata")
    return out


def check_event(values: object, decisions: bool) -> dict[str, Any]:
    """One audit event, validated: every column of its trail (``None`` when absent)."""
    given = _mapping(values, "values")
    model = DecisionValues if decisions else AuditValues
    for key in EVENT_REQUIRED:
        if given.get(key) is None:
            raise InvalidInputError(f"values.{key}", "is required (agno's table declares it NOT NULL)")
    checked = validated(model, given, "values.")
    columns = DECISION_COLUMNS if decisions else AUDIT_COLUMNS
    return {column: getattr(checked, column) for column in columns}


# --- stored documents, validated on read -----------------------------------------------------------------


class PolicyEntry(BaseModel):
    """One of a role's policy rows."""

    model_config = ConfigDict(extra="ignore", strict=True)

    resource: str
    action: str
    effect: str


class NameDocument(BaseModel):
    """A name's document: its policies as a role, its roles as a subject."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    id: str = Field(alias="_id")
    policies: list[PolicyEntry] = []
    roles: list[str] = []


def name_document(document: Mapping[str, Any]) -> NameDocument:
    """A stored name document, validated."""
    return from_stored(NameDocument, document, "authz")


class MetaDocument(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    slug: str = Field(alias="_id")
    name: str | None = None
    description: str | None = None
    is_default: bool
    created_at: Int64
    updated_at: Int64


def meta_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored metadata document as agno's row dict."""
    meta = from_stored(MetaDocument, document, "authz_roles")
    return {column: getattr(meta, column) for column in META_COLUMNS}


class UserDocument(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    id: str = Field(alias="_id")
    email: str | None = None
    name: str | None = None
    disabled: bool
    created_at: Int64
    updated_at: Int64
    metadata: Any = None


def user_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored user document as agno's row dict (``metadata`` decoded from the codec)."""
    user = from_stored(UserDocument, document, "authz_users")
    return {column: getattr(user, column) for column in USER_COLUMNS}


class AuditDocument(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    event_id: str = Field(alias="_id")
    created_at: Int64
    actor: str | None = None
    action: str
    target: str | None = None
    before: str | None = None
    after: str | None = None
    token_ref: str | None = None
    required: str | None = None
    scopes: str | None = None


def event_row(document: Mapping[str, Any], decisions: bool) -> dict[str, Any]:
    """A stored event as agno's row dict for its trail."""
    event = from_stored(AuditDocument, document, "authz_decisions" if decisions else "authz_audit")
    columns = DECISION_COLUMNS if decisions else AUDIT_COLUMNS
    return {column: getattr(event, column) for column in columns}
