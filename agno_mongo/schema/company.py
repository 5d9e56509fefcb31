"""The Company documents: one per Product, Project, Task and Source (``_id`` is agno's ``id``).

The columns are agno's SQL ``PRODUCTS/PROJECTS/TASKS/SOURCES_TABLE_SCHEMA``; every one is stored
(``None`` when not given), so a row read back has agno's keys in agno's order. The JSON columns
(``metadata``, ``config``, ``evidence``, ``result``, ``transitions``) stay native BSON, escaped by the
codec only where MongoDB could not hold them as they are.

``*Record`` models are what a create may store (strict: an unknown key, a wrong type or a missing
``NOT NULL`` column is refused before any command, naming the field); ``*Document`` models are what a
read gets back (validated, so a malformed stored document raises instead of reaching AgentOS).

Internal fields (never shown to agno) are listed in :data:`INTERNAL`; :mod:`agno_mongo.ops.company`
says what each is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, from_stored, validated
from agno_mongo.schema.codec import MARKER

__all__ = [
    "COLUMNS",
    "FREE_FORM",
    "INTERNAL",
    "SCHEMA_VERSION",
    "check_record",
    "company_row",
]

COLUMNS: dict[str, tuple[str, ...]] = {
    "products": ("id", "name", "purpose", "user_id", "metadata", "created_at", "updated_at", "deleted_at"),
    "sources": (
        "id",
        "product_id",
        "reference",
        "type",
        "credential_ref",
        "user_id",
        "config",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "projects": (
        "id",
        "name",
        "outcome",
        "user_id",
        "transitions",
        "created_at",
        "updated_at",
        "deleted_at",
        "product_id",
        "status",
        "target_date",
    ),
    "tasks": (
        "id",
        "product_id",
        "project_id",
        "title",
        "brief",
        "status",
        "user_id",
        "executor_type",
        "executor_id",
        "accepted_by",
        "accepted_at",
        "session_id",
        "job_id",
        "evidence",
        "result",
        "origin",
        "routine_id",
        "dedupe_key",
        "transitions",
        "metadata",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
}
"""agno's columns per kind, in its tables' order: the keys of every row dict."""

FREE_FORM: dict[str, tuple[str, ...]] = {
    "products": ("metadata",),
    "sources": ("config",),
    "projects": ("transitions",),
    "tasks": ("evidence", "result", "transitions", "metadata"),
}
"""The JSON columns of each table: stored through the codec."""

REV = "_rev"
OPS = "_ops"
ACTIVITY = "_activity"
PRODUCT_ARCHIVED = "_product_archived"
PROJECT_ARCHIVED = "_project_archived"
INTERNAL = (REV, OPS, ACTIVITY, PRODUCT_ARCHIVED, PROJECT_ARCHIVED, MARKER, "schema_version")
"""Stored fields that are not agno's columns."""


class ProductRecord(BaseModel):
    """A new Product as ``create_product`` stores it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: IdStr
    name: Text
    purpose: Text | None = None
    user_id: OwnerStr | None = None
    metadata: dict[str, Any] | None = None
    created_at: Int64
    updated_at: Int64 | None = None
    deleted_at: Int64 | None = None


class SourceRecord(BaseModel):
    """A new Source as ``create_source`` stores it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: IdStr
    product_id: IdStr
    reference: Text
    type: Text
    credential_ref: Text | None = None
    user_id: OwnerStr | None = None
    config: dict[str, Any] | None = None
    created_at: Int64
    updated_at: Int64 | None = None
    deleted_at: Int64 | None = None


class ProjectRecord(BaseModel):
    """A new Project as ``create_project`` stores it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: IdStr
    name: Text
    outcome: Text | None = None
    user_id: OwnerStr | None = None
    transitions: list[dict[str, Any]] | None = None
    created_at: Int64
    updated_at: Int64 | None = None
    deleted_at: Int64 | None = None
    product_id: IdStr
    status: Text
    target_date: Int64 | None = None


class TaskRecord(BaseModel):
    """A new Task as ``create_task`` stores it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: IdStr
    product_id: IdStr
    project_id: IdStr | None = None
    title: Text
    brief: Text | None = None
    status: Text
    user_id: OwnerStr | None = None
    executor_type: Text | None = None
    executor_id: Text | None = None
    accepted_by: Text | None = None
    accepted_at: Int64 | None = None
    session_id: Text | None = None
    job_id: Text | None = None
    evidence: Any = None
    result: Any = None
    origin: Text | None = None
    routine_id: Text | None = None
    dedupe_key: Text | None = None
    transitions: list[dict[str, Any]] | None = None
    metadata: Any = None
    created_at: Int64
    updated_at: Int64 | None = None
    deleted_at: Int64 | None = None


RECORDS: dict[str, type[BaseModel]] = {
    "products": ProductRecord,
    "sources": SourceRecord,
    "projects": ProjectRecord,
    "tasks": TaskRecord,
}


class _Stored(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    user_id: str | None = None
    created_at: Int64
    updated_at: Int64 | None = None
    deleted_at: Int64 | None = None
    schema_version: int = SCHEMA_VERSION


class ProductDocument(_Stored):
    name: str
    purpose: str | None = None
    metadata: dict[str, Any] | None = None


class SourceDocument(_Stored):
    product_id: str
    reference: str
    type: str
    credential_ref: str | None = None
    config: Any = None


class ProjectDocument(_Stored):
    name: str
    outcome: str | None = None
    transitions: list[Any] | None = None
    product_id: str
    status: str
    target_date: Int64 | None = None


class TaskDocument(_Stored):
    product_id: str
    project_id: str | None = None
    title: str
    brief: str | None = None
    status: str
    executor_type: str | None = None
    executor_id: str | None = None
    accepted_by: str | None = None
    accepted_at: Int64 | None = None
    session_id: str | None = None
    job_id: str | None = None
    evidence: Any = None
    result: Any = None
    origin: str | None = None
    routine_id: str | None = None
    dedupe_key: str | None = None
    transitions: list[Any] | None = None
    metadata: Any = None


DOCUMENTS: dict[str, type[_Stored]] = {
    "products": ProductDocument,
    "sources": SourceDocument,
    "projects": ProjectDocument,
    "tasks": TaskDocument,
}


def check_record(kind: str, data: object, name: str) -> dict[str, Any]:
    """Every column of a new ``kind`` record, validated for storing (``None`` where not given);
    :class:`InvalidInputError` naming the first bad key (``<name>.<key>``) otherwise."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(name, f"must be a dict of {kind} columns, got {type(data).__name__}")
    columns = COLUMNS[kind]
    for key in data:
        if not isinstance(key, str) or key not in columns:
            raise InvalidInputError(f"{name}.{key}", f"is not a {kind} column; the columns are {list(columns)}")
    record = validated(RECORDS[kind], dict(data), f"{name}.")
    return {column: getattr(record, column) for column in columns}


def company_row(kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as agno's row dict: decoded and validated (a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    model = from_stored(DOCUMENTS[kind], document, f"company_{kind}")
    return {column: getattr(model, column) for column in COLUMNS[kind]}


class ProductChanges(BaseModel):
    """What ``update_product`` may set (agno's ``validate_product_fields`` rules run too)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Text | None = None
    purpose: Text | None = None
    metadata: dict[str, Any] | None = None


class ProjectChanges(BaseModel):
    """What ``update_project`` may set."""

    model_config = ConfigDict(extra="forbid", strict=True)

    target_date: Int64 | None = None
    name: Text | None = None
    outcome: Text | None = None


class TaskChanges(BaseModel):
    """What ``update_task`` may set."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: Text | None = None
    brief: Text | None = None
    project_id: IdStr | None = None
    evidence: list[Any] | None = None
    executor_type: Text | None = None
    executor_id: Text | None = None


class SourceChanges(BaseModel):
    """What ``update_source`` may set."""

    model_config = ConfigDict(extra="forbid", strict=True)

    product_id: IdStr | None = None
    type: Text | None = None
    reference: Text | None = None
    credential_ref: Text | None = None
    config: dict[str, Any] | None = None


CHANGES: dict[str, type[BaseModel]] = {
    "products": ProductChanges,
    "projects": ProjectChanges,
    "tasks": TaskChanges,
    "sources": SourceChanges,
}


def check_changes(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The descriptive fields an update sets, type-checked (agno's own rules are checked by the caller)."""
    checked = validated(CHANGES[kind], dict(fields))
    return {key: getattr(checked, key) for key in fields}
