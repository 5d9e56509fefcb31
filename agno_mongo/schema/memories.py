"""The user memory document: one per memory, ``_id`` is the ``memory_id``.

``MemoryFields`` is what a write may set (strict: a wrong type is refused before any command);
``MemoryDocument`` is what a read gets back (validated, so a malformed stored document raises instead
of reaching the agent). Both classes (``MongoDb``, ``AsyncMongoDb``) go through these models.
"""

from __future__ import annotations

import uuid
from typing import Any

from agno.db.schemas.memory import UserMemory
from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, from_stored, validated
from agno_mongo.schema.codec import encode_free_form

__all__ = ["SCHEMA_VERSION", "MemoryDocument", "MemoryFields"]


class MemoryFields(BaseModel):
    """The fields of one ``UserMemory`` as stored: native BSON values, never JSON strings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    memory_id: IdStr
    memory: str | dict[str, Any]
    topics: list[Text] | None = None
    user_id: OwnerStr | None = None
    agent_id: IdStr | None = None
    team_id: IdStr | None = None
    input: Text | None = None
    feedback: Text | None = None
    created_at: Int64 | None = None
    updated_at: Int64 | None = None

    @classmethod
    def from_memory(cls, memory: object, *, name: str = "memory") -> MemoryFields:
        """Validate an agno ``UserMemory``; one without an id gets a fresh uuid4, as agno does."""
        if not isinstance(memory, UserMemory):
            raise InvalidInputError(name, f"must be an agno UserMemory, got {type(memory).__name__}")
        if memory.memory_id is None:
            memory.memory_id = str(uuid.uuid4())
        if not isinstance(memory.memory, str | dict):
            raise InvalidInputError(f"{name}.memory", f"must be a string or dict, got {type(memory.memory).__name__}")
        raw = {key: getattr(memory, key) for key in cls.model_fields}
        return validated(cls, raw, f"{name}.")

    def stored_fields(self) -> dict[str, Any]:
        """Every field but the id and the timestamps, which the write plan decides; a dict
        ``memory`` goes through the codec (``agno_mongo.schema.codec``), like session fields."""
        values = self.model_dump(exclude={"memory_id", "created_at", "updated_at"})
        return encode_free_form(values, ("memory",), "memory.")


class MemoryDocument(MemoryFields):
    """A stored memory as read back from MongoDB."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """The dict ``UserMemory.from_dict`` takes (and what ``deserialize=False`` returns)."""
        return self.model_dump(exclude={"id", "schema_version"})


def memory_out(document: dict[str, Any], deserialize: bool | None) -> UserMemory | dict[str, Any]:
    """A stored document as agno wants it: a ``UserMemory`` or its dict; a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`."""
    record = from_stored(MemoryDocument, document, "memories").to_agno_dict()
    return UserMemory.from_dict(record) if deserialize else record
