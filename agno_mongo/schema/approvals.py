"""The approval document: one per human approval (a paused tool call waiting for, or audited after, a decision).

``_id`` is the approval's ``id``. The columns are agno's SQL ``APPROVAL_TABLE_SCHEMA``; every one is
stored (``None`` when not given), so a row read back has agno's keys. ``tool_args``, ``requirements``,
``context`` and ``resolution_data`` are free-form and stay native BSON (subdocuments, arrays), escaped
by the codec (``agno_mongo.schema.codec``) only where MongoDB could not hold them as they are.

``ApprovalChanges`` is what ``update_approval`` may set (strict, every field optional, but a column
agno's SQL table declares ``NOT NULL`` may not be set to ``None``); ``ApprovalRecord`` is what
``create_approval`` may store (the same, with agno's required columns required); ``ApprovalDocument``
is what a read gets back (validated, so a malformed stored document raises instead of reaching the
approval gate or AgentOS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, from_stored, validated

__all__ = [
    "COLUMNS",
    "FREE_FORM",
    "SCHEMA_VERSION",
    "ApprovalChanges",
    "ApprovalDocument",
    "ApprovalRecord",
    "approval_row",
    "check_changes",
    "check_record",
]

COLUMNS = (
    "id",
    "run_id",
    "session_id",
    "status",
    "source_type",
    "approval_type",
    "pause_type",
    "tool_name",
    "tool_args",
    "expires_at",
    "agent_id",
    "team_id",
    "workflow_id",
    "user_id",
    "schedule_id",
    "schedule_run_id",
    "source_name",
    "requirements",
    "context",
    "resolution_data",
    "resolved_by",
    "resolved_at",
    "created_at",
    "updated_at",
    "run_status",
)
"""agno's approval columns, in its table's order: the keys of every row dict."""

FREE_FORM = ("tool_args", "requirements", "context", "resolution_data")
"""The JSON columns of agno's table: stored through the codec."""

IMMUTABLE = frozenset({"id"})
"""Columns ``update_approval`` may not change: the id is the document's ``_id``."""


class ApprovalChanges(BaseModel):
    """Columns an update may set, each checked for agno's type. ``None`` is refused for the columns
    agno's SQL table declares ``NOT NULL`` (the default here is never validated, only an explicit value)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: IdStr = None  # type: ignore[assignment]
    session_id: Text = None  # type: ignore[assignment]
    status: Text = None  # type: ignore[assignment]
    source_type: Text = None  # type: ignore[assignment]
    approval_type: Text | None = None
    pause_type: Text = None  # type: ignore[assignment]
    tool_name: Text | None = None
    tool_args: Any = None
    expires_at: Int64 | None = None
    agent_id: Text | None = None
    team_id: Text | None = None
    workflow_id: Text | None = None
    user_id: OwnerStr | None = None
    schedule_id: Text | None = None
    schedule_run_id: Text | None = None
    source_name: Text | None = None
    requirements: Any = None
    context: Any = None
    resolution_data: Any = None
    resolved_by: Text | None = None
    resolved_at: Int64 | None = None
    created_at: Int64 = None  # type: ignore[assignment]
    updated_at: Int64 | None = None
    run_status: Text | None = None


class ApprovalRecord(ApprovalChanges):
    """A whole new approval as ``create_approval`` gets it: agno's ``NOT NULL`` columns are required
    (``created_at`` and ``updated_at`` default to now, as in agno)."""

    id: IdStr
    run_id: IdStr
    session_id: Text
    status: Text
    source_type: Text
    pause_type: Text


def _checked_keys(values: object, name: str, prefix: str) -> Mapping[str, Any]:
    """``values`` as a mapping of column names, or :class:`InvalidInputError` naming the first bad key."""
    if not isinstance(values, Mapping):
        raise InvalidInputError(name, f"must be a dict of approval columns, got {type(values).__name__}")
    for key in values:
        if not isinstance(key, str) or key not in COLUMNS:
            raise InvalidInputError(f"{prefix}{key}", f"is not an approval column; the columns are {list(COLUMNS)}")
    return values


def check_record(approval_data: object, now: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(returned, stored)``: what ``create_approval`` answers (agno's: the input with ``created_at`` and
    ``updated_at`` defaulted to ``now`` when absent) and every column as validated for storing."""
    data = _checked_keys(approval_data, "approval_data", "approval_data.")
    returned = {**data}
    returned.setdefault("created_at", now)
    returned.setdefault("updated_at", now)
    record = validated(ApprovalRecord, returned, "approval_data.")
    stored = {column: getattr(record, column) for column in COLUMNS}
    return returned, stored


def check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The columns an ``update_approval`` sets, validated (``updated_at`` is the caller's to omit: the
    update stamps it, as agno's does)."""
    _checked_keys(changes, "kwargs", "")
    for key in changes:
        if key in IMMUTABLE:
            raise InvalidInputError(key, "cannot be changed: it is the approval's id")
    given = {key: value for key, value in changes.items() if key != "updated_at"}
    checked = validated(ApprovalChanges, given)
    return {key: getattr(checked, key) for key in given}


class ApprovalDocument(BaseModel):
    """A stored approval as read back: every column, typed as agno's table types it."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    run_id: IdStr
    session_id: str
    status: str
    source_type: str
    approval_type: str | None = None
    pause_type: str
    tool_name: str | None = None
    tool_args: Any = None
    expires_at: Int64 | None = None
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    schedule_id: str | None = None
    schedule_run_id: str | None = None
    source_name: str | None = None
    requirements: Any = None
    context: Any = None
    resolution_data: Any = None
    resolved_by: str | None = None
    resolved_at: Int64 | None = None
    created_at: Int64
    updated_at: Int64 | None = None
    run_status: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """agno's row dict: its 25 columns in its order (what ``SqliteDb.get_approval`` returns)."""
        return {column: getattr(self, column) for column in COLUMNS}


def approval_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as agno's row dict: decoded and validated (a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    return from_stored(ApprovalDocument, document, "approvals").to_agno_dict()
