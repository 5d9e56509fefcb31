"""The learning document: one per learning record, ``_id`` is the ``learning_id``.

agno's learning stores (user profile, user memory, session context, entity memory, ...) keep their
state here as a ``content`` dict keyed by ``learning_type`` and scoping ids. ``LearningFields`` is what
a write may set (strict); ``LearningDocument`` is what a read gets back.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.schema.codec import encode_free_form
from agno_mongo.schema.session import SCHEMA_VERSION, IdStr, Int64, Text, from_stored, validated

__all__ = ["SCHEMA_VERSION", "LearningDocument", "LearningFields", "learning_free_form", "learning_out"]


FREE_FORM = ("content", "metadata")
"""Fields holding whatever agno's learning stores put there: stored through the codec."""


class LearningFields(BaseModel):
    """The fields ``upsert_learning`` stores; ``content`` and ``metadata`` stay native subdocuments
    (escaped by the codec only where MongoDB could not hold them as they are)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    learning_id: IdStr
    learning_type: IdStr
    content: dict[str, Any]
    namespace: Text | None = None
    user_id: IdStr | None = None
    agent_id: IdStr | None = None
    team_id: IdStr | None = None
    session_id: IdStr | None = None
    entity_id: Text | None = None
    entity_type: Text | None = None
    metadata: dict[str, Any] | None = None

    @classmethod
    def build(cls, **values: Any) -> LearningFields:
        """Validate keyword arguments, naming the first bad one in :class:`InvalidInputError`."""
        return validated(cls, values)

    def stored_fields(self) -> dict[str, Any]:
        """Every field as stored, the id included (agno's rows carry ``learning_id``)."""
        return encode_free_form(self.model_dump(), FREE_FORM)


class LearningDocument(LearningFields):
    """A stored learning as read back from MongoDB."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    created_at: Int64 | None = None
    updated_at: Int64 | None = None
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """The row dict agno's learning APIs return."""
        return self.model_dump(exclude={"id", "schema_version"})


def learning_free_form(content: dict[str, Any], metadata: dict[str, Any] | None) -> dict[str, Any]:
    """``content``, ``metadata`` and the codec marker as ``update_learning`` sets them."""
    return encode_free_form({"content": content, "metadata": metadata}, FREE_FORM)


def learning_out(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as the dict agno returns, validated on the way out (a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    return from_stored(LearningDocument, document, "learnings").to_agno_dict()
