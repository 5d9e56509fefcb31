"""The daily metrics document: one per day and owner, ``_id`` derived from (day, owner, period).

``MetricsFields`` is what ``calculate_metrics`` writes (strict: a value of the wrong type is refused
before any command); ``MetricsDocument`` is what ``get_metrics`` reads back (validated, but tolerant
of records agno itself wrote before owners existed, which lack ``user_id``). The fields and their
meaning are agno's (``agno.db.mongo.utils.calculate_date_metrics``); the unowned bucket is stored
under ``user_id == ""`` as agno does.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.schema.base import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "TOKEN_FIELDS", "MetricsDocument", "MetricsFields", "metric_id"]

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "audio_total_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
"""The ``session_metrics`` fields agno sums into ``token_metrics``, in agno's order."""

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/agno-agi/agno#metrics")

Number = int | float


def metric_id(day: str, user_id: str, period: str = "daily") -> str:
    """The record id for one (day, owner, period): a uuid like agno's, but the same on every run.

    A stable id makes the record's ``_id`` its natural key, so the upsert that rewrites a day is a
    point write that a retry or a concurrent calculation can never duplicate; being a hash, it does
    not spell out the owner the way a ``{day}_{user}`` id would.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{period}/{day}/{user_id}"))


class TokenMetrics(BaseModel):
    """Token totals of a day's sessions (sums of their ``session_data.session_metrics``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input_tokens: Number = 0
    output_tokens: Number = 0
    total_tokens: Number = 0
    audio_total_tokens: Number = 0
    audio_input_tokens: Number = 0
    audio_output_tokens: Number = 0
    cache_read_tokens: Number = 0
    cache_write_tokens: Number = 0
    reasoning_tokens: Number = 0


class ModelCount(BaseModel):
    """How many of the day's runs used one model of one provider."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    model_id: str
    model_provider: str
    count: int


class MetricsFields(BaseModel):
    """One owner's metrics for one day, as stored (native subdocuments, never JSON strings)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    aggregation_period: Literal["daily"] = "daily"
    user_id: str
    completed: bool
    users_count: int
    agent_sessions_count: int
    team_sessions_count: int
    workflow_sessions_count: int
    agent_runs_count: int
    team_runs_count: int
    workflow_runs_count: int
    token_metrics: TokenMetrics
    model_metrics: list[ModelCount]
    created_at: int
    updated_at: int

    def stored_fields(self) -> dict[str, Any]:
        """What a recalculation overwrites: everything but the record's identity and birth time."""
        return {**self.model_dump(exclude={"id", "created_at"}), "schema_version": SCHEMA_VERSION}

    def to_agno_dict(self) -> dict[str, Any]:
        """The record as agno's ``calculate_metrics`` returns it (the stored fields, no ``_id``)."""
        return self.model_dump()


class MetricsDocument(BaseModel):
    """A stored metrics record as read back; unset fields stay unset (agno's legacy records lack some)."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True, protected_namespaces=())

    id: str | None = None
    date: str
    aggregation_period: str | None = None
    user_id: str | None = None
    completed: bool | None = None
    users_count: int | None = None
    agent_sessions_count: int | None = None
    team_sessions_count: int | None = None
    workflow_sessions_count: int | None = None
    agent_runs_count: int | None = None
    team_runs_count: int | None = None
    workflow_runs_count: int | None = None
    token_metrics: dict[str, Number | None] | None = None
    model_metrics: list[dict[str, Any]] | None = None
    created_at: int | None = None
    updated_at: int | None = None

    def to_agno_dict(self) -> dict[str, Any]:
        """The record as agno's ``get_metrics`` returns it: stored fields only, ``_id`` dropped."""
        return self.model_dump(exclude_unset=True)
