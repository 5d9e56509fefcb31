"""The compaction record document: one per fold of a conversation, written once and never changed.

``_id`` is agno's ``compaction_id``. The columns are agno's SQL ``COMPACTIONS_TABLE_SCHEMA``; every
one is stored (``None`` when not given), so a row read back has agno's keys in agno's order.
``session_id`` is a top-level field: the session's records are found (and cascaded away with the
session) by it. Every column is a plain string or int, so nothing goes through the codec.

``CompactionRow`` is what ``upsert_compaction`` may store (strict: an unknown column, a wrong type or
a missing ``compaction_id`` / ``session_id`` / ``created_at`` is refused before any command, where
agno's SQLite raises ``CompileError`` / ``IntegrityError`` or, for a wrong type, stores it anyway);
``CompactionDocument`` is what a read gets back (validated, so a malformed stored document raises
instead of reaching agno's ``CompactionRecord.from_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, from_stored, validated

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "CompactionDocument",
    "CompactionRow",
    "check_row",
    "compaction_row",
]

COLUMNS = (
    "compaction_id",
    "session_id",
    "run_id",
    "user_id",
    "first_kept_message_id",
    "summary",
    "archived_messages",
    "messages_compacted",
    "tokens_before",
    "tokens_after",
    "created_at",
)
"""agno's compaction columns, in its table's order: the keys of every row dict."""


class CompactionRow(BaseModel):
    """One compaction record as ``upsert_compaction`` gets it (agno's ``CompactionArchive._row``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    compaction_id: IdStr
    session_id: IdStr
    run_id: IdStr | None = None
    user_id: OwnerStr | None = None
    first_kept_message_id: Text | None = None
    summary: Text | None = None
    archived_messages: Text | None = None
    messages_compacted: Int64 | None = None
    tokens_before: Int64 | None = None
    tokens_after: Int64 | None = None
    created_at: Int64


def check_row(row: object) -> dict[str, Any]:
    """Every column of ``row`` validated for storing (absent nullable columns as ``None``), or
    :class:`InvalidInputError` naming the first bad one (``row.<column>``)."""
    if not isinstance(row, Mapping):
        raise InvalidInputError("row", f"must be a dict of compaction columns, got {type(row).__name__}")
    for key in row:
        if not isinstance(key, str) or key not in COLUMNS:
            raise InvalidInputError(f"row.{key}", f"is not a compaction column; the columns are {list(COLUMNS)}")
    record = validated(CompactionRow, row, "row.")
    return {column: getattr(record, column) for column in COLUMNS}


class CompactionDocument(BaseModel):
    """A stored compaction record as read back: every column, typed as agno's table types it."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    compaction_id: IdStr = Field(alias="_id")
    session_id: IdStr
    run_id: str | None = None
    user_id: str | None = None
    first_kept_message_id: str | None = None
    summary: str | None = None
    archived_messages: str | None = None
    messages_compacted: Int64 | None = None
    tokens_before: Int64 | None = None
    tokens_after: Int64 | None = None
    created_at: Int64
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """agno's row dict: its 11 columns in its order (what ``SqliteDb.get_compaction`` returns)."""
        return {column: getattr(self, column) for column in COLUMNS}


def compaction_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as agno's row dict, validated (a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    return from_stored(CompactionDocument, document, "compactions").to_agno_dict()
