"""Trace and span documents: one per trace (``_id`` is the ``trace_id``), one per span (``_id`` is the ``span_id``).

Times are stored as BSON dates, not agno's ISO strings: range filters then compare instants (an ISO
string with ``+05:30`` does not sort among ``+00:00`` ones), the server can compute a duration, and a
TTL index can expire old telemetry. BSON dates keep milliseconds, which is the precision agno's own
MongoDB adapter already keeps for a trace's duration. Span attributes stay a native subdocument with
OpenTelemetry's dotted keys as they are: spans are only ever inserted, never updated by path.

``TraceFields`` / ``SpanFields`` are what a write may store (strict: a wrong type is refused before
any command); ``TraceDocument`` / ``SpanDocument`` are what a read gets back. agno's ``Trace`` and
``Span`` live in ``agno.tracing.schemas``, which imports the OpenTelemetry SDK, so they are imported
only when a trace or span is actually built.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, reading, validated

if TYPE_CHECKING:
    from agno.tracing.schemas import Span, Trace

__all__ = [
    "CONTEXT_FIELDS",
    "SCHEMA_VERSION",
    "SpanDocument",
    "SpanFields",
    "TraceDocument",
    "TraceFields",
    "as_utc",
    "span_out",
    "trace_out",
]

CONTEXT_FIELDS = ("run_id", "session_id", "user_id", "agent_id", "team_id", "workflow_id")
"""The root span's context a trace carries; once set, a later part of the trace never changes it."""


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime: PyMongo returns naive UTC unless the client is ``tz_aware``."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TraceFields(BaseModel):
    """One ``Trace`` (or one part of it: the exporter sends a trace per batch of spans) as stored.

    ``total_spans`` and ``error_count`` are not stored: they are counted from the spans on read,
    as every agno backend does, so they can never drift from the spans actually stored.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    trace_id: IdStr
    name: Text
    status: Text
    start_time: datetime
    end_time: datetime
    duration_ms: Int64
    run_id: IdStr | None = None
    session_id: IdStr | None = None
    user_id: OwnerStr | None = None
    agent_id: IdStr | None = None
    team_id: IdStr | None = None
    workflow_id: IdStr | None = None
    created_at: datetime

    @classmethod
    def from_trace(cls, trace: object, *, name: str = "trace") -> TraceFields:
        """Validate an agno ``Trace``.

        An empty context id (an attribute that was set but blank) means "not known", as agno's
        ``attrs.get(...) or ...`` chains treat it, so it is stored as null and a later part of the
        trace can still fill it in. The exception is ``user_id``: ``""`` is a real owner in agno
        (its SQL stores keep it, and ``get_traces(user_id="")`` finds it), so it is kept.
        """
        from agno.tracing.schemas import Trace

        if not isinstance(trace, Trace):
            raise InvalidInputError(name, f"must be an agno Trace, got {type(trace).__name__}")
        raw = {key: getattr(trace, key) for key in cls.model_fields}
        for key in CONTEXT_FIELDS:
            if key != "user_id" and raw[key] == "":
                raw[key] = None
        fields = validated(cls, raw, f"{name}.")
        return fields


class SpanFields(BaseModel):
    """One ``Span`` as stored: ``attributes`` is a native subdocument."""

    model_config = ConfigDict(extra="forbid", strict=True)

    span_id: IdStr
    trace_id: IdStr
    parent_span_id: IdStr | None = None
    name: Text
    span_kind: Text
    status_code: Text
    status_message: Text | None = None
    start_time: datetime
    end_time: datetime
    duration_ms: Int64
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime

    @classmethod
    def from_span(cls, span: object, *, name: str = "span") -> SpanFields:
        """Validate an agno ``Span``; an attribute key BSON cannot hold (NUL) is refused by name."""
        from agno.tracing.schemas import Span

        if not isinstance(span, Span):
            raise InvalidInputError(name, f"must be an agno Span, got {type(span).__name__}")
        raw = {key: getattr(span, key) for key in cls.model_fields}
        if raw["parent_span_id"] == "":
            raw["parent_span_id"] = None
        if raw["attributes"] is None:
            raw["attributes"] = {}
        fields = validated(cls, raw, f"{name}.")
        for key in fields.attributes:
            if "\0" in key:
                raise InvalidInputError(f"{name}.attributes", f"key {key!r} contains a NUL character")
        return fields

    def document(self) -> dict[str, Any]:
        """The document ``insert`` writes: the span under its own id."""
        return {"_id": self.span_id, **self.model_dump(), "schema_version": SCHEMA_VERSION}


class TraceDocument(BaseModel):
    """A stored trace as read back, with its span counts from the ``$lookup``."""

    model_config = ConfigDict(extra="ignore", strict=False)

    trace_id: IdStr
    name: str
    status: str
    start_time: datetime
    end_time: datetime
    duration_ms: int = 0
    run_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    created_at: datetime
    total_spans: int = 0
    error_count: int = 0

    @classmethod
    def from_mongo(cls, document: dict[str, Any]) -> TraceDocument:
        """Validate a raw document; ``span_counts`` (from the lookup) becomes the two counters.

        A malformed one raises :class:`~agno_mongo.errors.CorruptDocumentError`.
        """
        with reading("traces", document):
            counts = (document.get("span_counts") or [{}])[0]
            raw = {**document, "total_spans": counts.get("total", 0), "error_count": counts.get("errors", 0)}
            result: TraceDocument = cls.model_validate(raw)
        return result

    def to_agno_dict(self) -> dict[str, Any]:
        """The dict ``Trace.from_dict`` takes, with aware UTC datetimes."""
        out = self.model_dump()
        for key in ("start_time", "end_time", "created_at"):
            out[key] = as_utc(out[key])
        return out


class SpanDocument(SpanFields):
    """A stored span as read back from MongoDB."""

    model_config = ConfigDict(extra="ignore", strict=False)

    def to_agno_dict(self) -> dict[str, Any]:
        """The dict ``Span.from_dict`` takes, with aware UTC datetimes."""
        out = self.model_dump()
        for key in ("start_time", "end_time", "created_at"):
            out[key] = as_utc(out[key])
        return out


def trace_out(document: dict[str, Any]) -> Trace:
    """A stored trace (with its ``span_counts``) as an agno ``Trace``."""
    from agno.tracing.schemas import Trace

    return Trace.from_dict(TraceDocument.from_mongo(document).to_agno_dict())


def span_out(document: dict[str, Any]) -> Span:
    """A stored span as an agno ``Span``."""
    from agno.tracing.schemas import Span

    with reading("spans", document):
        stored = SpanDocument.model_validate(document)
    return Span.from_dict(stored.to_agno_dict())
