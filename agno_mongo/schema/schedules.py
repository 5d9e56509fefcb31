"""The schedule and schedule-run documents: one per cron schedule, one per execution attempt.

``_id`` is agno's ``id`` in both collections. The columns are agno's SQL ``SCHEDULE_TABLE_SCHEMA`` and
schedule-runs schema; every one is stored (``None`` when not given), so a row read back has agno's
keys in agno's order. ``payload`` (schedules) and ``input`` / ``output`` / ``requirements`` (runs) are
free-form and stay native BSON, escaped by the codec (:mod:`agno_mongo.schema.codec`) only where
MongoDB could not hold them as they are.

``ScheduleChanges`` is what ``update_schedule`` may set: agno's ``SCHEDULE_MUTABLE_COLUMNS`` (plus the
target columns when they match a new endpoint exactly, as agno's ``validate_schedule_update`` allows);
ownership, provenance and lock state move only through their own methods. ``ScheduleRecord`` is what
``create_schedule`` may store, with agno's ``NOT NULL`` columns required. ``RunChanges`` /
``RunRecord`` are the same for runs. The ``*Document`` models validate what a read gets back, so a
malformed stored document raises :class:`~agno_mongo.errors.CorruptDocumentError` instead of reaching
the poller or AgentOS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agno.db.schemas.scheduler import RUN_ENDPOINT_RE, SCHEDULE_MUTABLE_COLUMNS
from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, from_stored, validated

__all__ = [
    "PROVENANCE",
    "RUN_COLUMNS",
    "RUN_FREE_FORM",
    "SCHEDULE_COLUMNS",
    "SCHEDULE_FREE_FORM",
    "SCHEMA_VERSION",
    "check_provenance",
    "check_run_changes",
    "check_run_record",
    "check_schedule_changes",
    "check_schedule_record",
    "run_row",
    "schedule_row",
]

SCHEDULE_COLUMNS = (
    "id",
    "name",
    "description",
    "method",
    "endpoint",
    "payload",
    "cron_expr",
    "timezone",
    "timeout_seconds",
    "max_retries",
    "retry_delay_seconds",
    "enabled",
    "next_run_at",
    "locked_by",
    "locked_at",
    "user_id",
    "managed_by",
    "target_type",
    "target_id",
    "created_by_run_id",
    "created_by_session_id",
    "updated_by_run_id",
    "updated_by_session_id",
    "disabled_reason",
    "created_at",
    "updated_at",
)
"""agno's schedule columns, in its table's order: the keys of every schedule row."""

RUN_COLUMNS = (
    "id",
    "schedule_id",
    "attempt",
    "triggered_at",
    "completed_at",
    "status",
    "status_code",
    "run_id",
    "session_id",
    "error",
    "input",
    "output",
    "requirements",
    "user_id",
    "created_at",
)
"""agno's schedule-run columns, in its table's order: the keys of every run row."""

SCHEDULE_FREE_FORM = ("payload",)
RUN_FREE_FORM = ("input", "output", "requirements")
"""The JSON columns of agno's tables: stored through the codec."""

PROVENANCE = frozenset(
    {
        "managed_by",
        "target_type",
        "target_id",
        "created_by_run_id",
        "created_by_session_id",
        "updated_by_run_id",
        "updated_by_session_id",
    }
)
"""The columns ``stamp_schedule_provenance`` may write (agno's allowed set)."""

RUN_IMMUTABLE = {
    "id": "cannot be changed: it is the run's id",
    "schedule_id": "cannot be changed: a run stays with the schedule it was created for",
}


class ScheduleChanges(BaseModel):
    """Columns ``update_schedule`` may set, each checked for agno's type. ``None`` is refused for the
    columns agno's table declares ``NOT NULL`` (the default here is never validated, only a value given)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Text = None  # type: ignore[assignment]
    description: Text | None = None
    method: Text = None  # type: ignore[assignment]
    endpoint: Text = None  # type: ignore[assignment]
    payload: Any = None
    cron_expr: Text = None  # type: ignore[assignment]
    timezone: Text = None  # type: ignore[assignment]
    timeout_seconds: Int64 = None  # type: ignore[assignment]
    max_retries: Int64 = None  # type: ignore[assignment]
    retry_delay_seconds: Int64 = None  # type: ignore[assignment]
    enabled: bool = None  # type: ignore[assignment]
    next_run_at: Int64 | None = None
    disabled_reason: Text | None = None
    target_type: Text | None = None
    target_id: Text | None = None


class ScheduleRecord(ScheduleChanges):
    """A whole new schedule as ``create_schedule`` gets it: agno's ``NOT NULL`` columns without a
    default are required; ``enabled`` defaults to ``True`` as agno's column does."""

    id: IdStr
    name: Text
    method: Text
    endpoint: Text
    cron_expr: Text
    timezone: Text
    timeout_seconds: Int64
    max_retries: Int64
    retry_delay_seconds: Int64
    enabled: bool = True
    created_at: Int64
    locked_by: Text | None = None
    locked_at: Int64 | None = None
    user_id: OwnerStr | None = None
    managed_by: Text | None = None
    created_by_run_id: Text | None = None
    created_by_session_id: Text | None = None
    updated_by_run_id: Text | None = None
    updated_by_session_id: Text | None = None
    updated_at: Int64 | None = None


class ProvenanceChanges(BaseModel):
    """What ``stamp_schedule_provenance`` may write: nullable strings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    managed_by: Text | None = None
    target_type: Text | None = None
    target_id: Text | None = None
    created_by_run_id: Text | None = None
    created_by_session_id: Text | None = None
    updated_by_run_id: Text | None = None
    updated_by_session_id: Text | None = None


class RunChanges(BaseModel):
    """Columns ``update_schedule_run`` may set (all but the id and the schedule)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    attempt: Int64 = None  # type: ignore[assignment]
    triggered_at: Int64 | None = None
    completed_at: Int64 | None = None
    status: Text = None  # type: ignore[assignment]
    status_code: Int64 | None = None
    run_id: Text | None = None
    session_id: Text | None = None
    error: Text | None = None
    input: Any = None
    output: Any = None
    requirements: Any = None
    user_id: OwnerStr | None = None
    created_at: Int64 = None  # type: ignore[assignment]


class RunRecord(RunChanges):
    """A whole new run as ``create_schedule_run`` gets it: agno's ``NOT NULL`` columns required."""

    id: IdStr
    schedule_id: IdStr
    attempt: Int64
    status: Text
    created_at: Int64


def _checked_keys(values: object, name: str, prefix: str, columns: tuple[str, ...], what: str) -> Mapping[str, Any]:
    """``values`` as a mapping of column names, or :class:`InvalidInputError` naming the first bad key."""
    if not isinstance(values, Mapping):
        raise InvalidInputError(name, f"must be a dict of {what} columns, got {type(values).__name__}")
    for key in values:
        if not isinstance(key, str) or key not in columns:
            raise InvalidInputError(f"{prefix}{key}", f"is not a {what} column; the columns are {list(columns)}")
    return values


def check_schedule_record(schedule_data: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(returned, stored)``: what ``create_schedule`` answers (agno's: the dict as given) and every
    column as validated for storing."""
    data = _checked_keys(schedule_data, "schedule_data", "schedule_data.", SCHEDULE_COLUMNS, "schedule")
    record = validated(ScheduleRecord, data, "schedule_data.")
    return dict(data), {column: getattr(record, column) for column in SCHEDULE_COLUMNS}


def check_schedule_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The columns an ``update_schedule`` sets, validated: agno's mutable set only (its
    ``validate_schedule_update``), each with agno's type; ``updated_at`` is stamped by the update."""
    allowed = set(SCHEDULE_MUTABLE_COLUMNS)
    endpoint = changes.get("endpoint")
    if isinstance(endpoint, str) and {"target_type", "target_id"} <= changes.keys():
        target = RUN_ENDPOINT_RE.fullmatch(endpoint)
        expected = (target.group(1).rstrip("s"), target.group(2)) if target else (None, None)
        if (changes["target_type"], changes["target_id"]) == expected:
            allowed.update({"target_type", "target_id"})
    rejected = sorted((key for key in changes if key not in allowed), key=str)
    if rejected:
        raise InvalidInputError(
            str(rejected[0]),
            f"update_schedule cannot modify {rejected}: only {sorted(SCHEDULE_MUTABLE_COLUMNS)} are mutable; "
            "ownership, provenance, trigger and lock state move only through their dedicated APIs",
        )
    checked = validated(ScheduleChanges, changes)
    return {key: getattr(checked, key) for key in changes}


def check_provenance(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance columns to stamp, validated (agno's allowed set, nullable strings)."""
    rejected = sorted((key for key in provenance if key not in PROVENANCE), key=str)
    if rejected:
        raise InvalidInputError(str(rejected[0]), f"stamp_schedule_provenance cannot write {rejected}")
    checked = validated(ProvenanceChanges, provenance)
    return {key: getattr(checked, key) for key in provenance}


def check_run_record(run_data: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(returned, stored)`` for ``create_schedule_run``: the dict as given, and every column validated."""
    data = _checked_keys(run_data, "run_data", "run_data.", RUN_COLUMNS, "schedule run")
    record = validated(RunRecord, data, "run_data.")
    return dict(data), {column: getattr(record, column) for column in RUN_COLUMNS}


def check_run_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The columns an ``update_schedule_run`` sets, validated."""
    _checked_keys(changes, "kwargs", "", RUN_COLUMNS, "schedule run")
    for key, why in RUN_IMMUTABLE.items():
        if key in changes:
            raise InvalidInputError(key, why)
    checked = validated(RunChanges, changes)
    return {key: getattr(checked, key) for key in changes}


class ScheduleDocument(BaseModel):
    """A stored schedule as read back: every column, typed as agno's table types it."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    name: str
    description: str | None = None
    method: str
    endpoint: str
    payload: Any = None
    cron_expr: str
    timezone: str
    timeout_seconds: Int64
    max_retries: Int64
    retry_delay_seconds: Int64
    enabled: bool
    next_run_at: Int64 | None = None
    locked_by: str | None = None
    locked_at: Int64 | None = None
    user_id: str | None = None
    managed_by: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    created_by_run_id: str | None = None
    created_by_session_id: str | None = None
    updated_by_run_id: str | None = None
    updated_by_session_id: str | None = None
    disabled_reason: str | None = None
    created_at: Int64
    updated_at: Int64 | None = None
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """agno's row dict: its 26 columns in its order (what ``SqliteDb.get_schedule`` returns)."""
        return {column: getattr(self, column) for column in SCHEDULE_COLUMNS}


class RunDocument(BaseModel):
    """A stored schedule run as read back."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    schedule_id: IdStr
    attempt: Int64
    triggered_at: Int64 | None = None
    completed_at: Int64 | None = None
    status: str
    status_code: Int64 | None = None
    run_id: str | None = None
    session_id: str | None = None
    error: str | None = None
    input: Any = None
    output: Any = None
    requirements: Any = None
    user_id: str | None = None
    created_at: Int64
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """agno's row dict: its 15 columns in its order (what ``SqliteDb.get_schedule_run`` returns)."""
        return {column: getattr(self, column) for column in RUN_COLUMNS}


def schedule_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored schedule as agno's row dict: decoded and validated (a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    return from_stored(ScheduleDocument, document, "schedules").to_agno_dict()


def run_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored schedule run as agno's row dict, decoded and validated."""
    return from_stored(RunDocument, document, "schedule_runs").to_agno_dict()
