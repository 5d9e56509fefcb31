"""The knowledge content document: one per ``KnowledgeRow``, ``_id`` is the row's ``id``.

``KnowledgeFields`` is what ``upsert_knowledge_content`` may store (strict: a wrong type is refused
before any command); ``KnowledgeDocument`` is what a read gets back (validated on the way out).
``metadata`` stays a native BSON subdocument (escaped by the codec only where it must be).
``user_id`` is the uploader; ``None`` means shared.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from agno.db.schemas.knowledge import KnowledgeRow
from pydantic import BaseModel, ConfigDict

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, from_stored, validated
from agno_mongo.schema.codec import encode_free_form

__all__ = ["SCHEMA_VERSION", "KnowledgeDocument", "KnowledgeFields", "knowledge_out"]


class KnowledgeFields(BaseModel):
    """The fields of one ``KnowledgeRow`` as stored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: IdStr
    name: Text
    description: Text
    metadata: dict[str, Any] | None = None
    type: Text | None = None
    size: Int64 | None = None
    linked_to: Text | None = None
    access_count: Int64 | None = None
    status: Text | None = None
    status_message: Text | None = None
    user_id: OwnerStr | None = None
    created_at: Int64 | None = None
    updated_at: Int64 | None = None
    external_id: Text | None = None

    @classmethod
    def from_row(cls, row: object, *, name: str = "knowledge_row") -> KnowledgeFields:
        """Validate an agno ``KnowledgeRow`` (which gives itself a uuid4 ``id`` when it has none).

        agno puts ``ContentStatus`` members in ``status``; enum members are stored as their values.
        """
        if not isinstance(row, KnowledgeRow):
            raise InvalidInputError(name, f"must be an agno KnowledgeRow, got {type(row).__name__}")
        raw = {key: getattr(row, key, None) for key in cls.model_fields}
        raw = {key: value.value if isinstance(value, Enum) else value for key, value in raw.items()}
        return validated(cls, raw, f"{name}.")

    def stored_fields(self) -> dict[str, Any]:
        """Every field but ``created_at``, which the write plan decides (kept from the first write
        unless the row names one)."""
        return encode_free_form(self.model_dump(exclude={"created_at"}), ("metadata",), "knowledge_row.")


class KnowledgeDocument(KnowledgeFields):
    """A stored knowledge row as read back from MongoDB (``_id`` equals ``id``)."""

    model_config = ConfigDict(extra="ignore", strict=False)

    schema_version: int = SCHEMA_VERSION

    def to_row(self) -> KnowledgeRow:
        """The agno ``KnowledgeRow``."""
        return KnowledgeRow.model_validate(self.model_dump(exclude={"schema_version"}))


def knowledge_out(document: dict[str, Any]) -> KnowledgeRow:
    """A stored document as agno's ``KnowledgeRow``, validated on the way out (a malformed one
    raises :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    if "id" not in document:
        document = {**document, "id": document.get("_id")}
    return from_stored(KnowledgeDocument, document, "knowledge").to_row()
