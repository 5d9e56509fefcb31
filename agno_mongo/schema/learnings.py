"""The learning document: one per learning record, ``_id`` is the ``learning_id``.

agno's learning stores (user profile, user memory, session context, entity memory, ...) keep their
state here as a ``content`` dict keyed by ``learning_type`` and scoping ids. ``LearningFields`` is what
a write may set (strict); ``LearningDocument`` is what a read gets back.
"""

from __future__ import annotations

import json
from typing import Any

from agno.db.utils import CustomJSONEncoder
from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, OwnerStr, Text, from_stored, validated
from agno_mongo.schema.codec import encode_free_form

__all__ = [
    "SCHEMA_VERSION",
    "SEARCH_TEXT",
    "LearningDocument",
    "LearningFields",
    "ascii_lower",
    "learning_free_form",
    "learning_out",
    "search_text",
]

SEARCH_TEXT = "search_text"
"""The derived field ``search_learnings`` matches: ``content`` as the JSON text agno's SQL stores
see (``json.dumps`` with agno's encoder, ``ensure_ascii``), ASCII-lower-cased. Every write of
``content`` sets it; rows written before it existed are backfilled by the first search that meets
them (see :func:`agno_mongo.ops.learnings.search_learnings_plan`)."""

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only, as SQLite's ``lower()`` and ``LIKE`` do (``str.lower`` would also fold
    e.g. the Kelvin sign to ``k``, which SQLite never matches)."""
    return text.translate(_ASCII_LOWER)


class _SearchEncoder(CustomJSONEncoder):
    """agno's encoder for its SQL JSON columns, plus ``str()`` for what it cannot encode (agno's
    SQL write would fail there; the text must still exist for the row to be searchable)."""

    def default(self, o: Any) -> Any:
        try:
            return super().default(o)  # type: ignore[no-untyped-call]  # agno's encoder is untyped
        except TypeError:
            return str(o)


def search_text(content: Any) -> str:
    """``content`` as agno's SQLite holds it (ASCII-only JSON text), lower-cased for matching."""
    try:
        text = json.dumps(content, cls=_SearchEncoder)
    except (TypeError, ValueError):  # e.g. a key json cannot write (a tuple), a circular value
        text = json.dumps(str(content))
    return ascii_lower(text)


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
    user_id: OwnerStr | None = None
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
        """Every field as stored, the id included (agno's rows carry ``learning_id``), and the
        derived :data:`SEARCH_TEXT` of ``content``."""
        return {**encode_free_form(self.model_dump(), FREE_FORM), SEARCH_TEXT: search_text(self.content)}


class LearningDocument(LearningFields):
    """A stored learning as read back from MongoDB."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    workflow_id: str | None = None  # agno's rows carry it; only an external writer ever sets it
    created_at: Int64 | None = None
    updated_at: Int64 | None = None
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """The row dict agno's learning APIs return."""
        return self.model_dump(exclude={"id", "schema_version"})


def learning_free_form(content: dict[str, Any], metadata: dict[str, Any] | None) -> dict[str, Any]:
    """``content``, ``metadata``, the codec marker and :data:`SEARCH_TEXT` as ``update_learning`` sets them."""
    stored = encode_free_form({"content": content, "metadata": metadata}, FREE_FORM)
    return {**stored, SEARCH_TEXT: search_text(content)}


def learning_out(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as the dict agno returns, validated on the way out (a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    return from_stored(LearningDocument, document, "learnings").to_agno_dict()
