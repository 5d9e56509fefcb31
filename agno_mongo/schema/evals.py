"""The eval run document: one per evaluation run, ``_id`` is the ``run_id``.

``EvalFields`` is what ``create_eval_run`` may store (strict: a wrong type is refused before any
command); ``EvalDocument`` is what a read gets back (validated, so a malformed stored document raises
instead of reaching AgentOS). ``eval_data`` and ``eval_input`` stay native BSON subdocuments, escaped
by the codec (``agno_mongo.schema.codec``) only where MongoDB could not hold them as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from agno.db.schemas.evals import EvalRunRecord
from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, Text, from_stored, validated
from agno_mongo.schema.codec import encode_free_form

__all__ = ["SCHEMA_VERSION", "EvalDocument", "EvalFields", "EvalTypeName", "eval_out", "eval_row"]

EvalTypeName = Literal["accuracy", "agent_as_judge", "performance", "reliability"]


class EvalFields(BaseModel):
    """The fields of one ``EvalRunRecord`` as stored (the record itself carries no owner)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: IdStr
    eval_type: EvalTypeName
    eval_data: dict[str, Any]
    eval_input: dict[str, Any] | None = None
    agent_id: Text | None = None
    model_id: Text | None = None
    model_provider: Text | None = None
    team_id: Text | None = None
    workflow_id: Text | None = None
    name: Text | None = None
    evaluated_component_name: Text | None = None

    @classmethod
    def from_record(cls, record: object, *, name: str = "eval_run") -> EvalFields:
        """Validate an agno ``EvalRunRecord``, naming the first bad field."""
        if not isinstance(record, EvalRunRecord):
            raise InvalidInputError(name, f"must be an agno EvalRunRecord, got {type(record).__name__}")
        raw = {key: getattr(record, key, None) for key in cls.model_fields}
        eval_type = raw["eval_type"]
        raw["eval_type"] = getattr(eval_type, "value", eval_type)  # EvalType is a str enum; store its value
        return validated(cls, raw, f"{name}.")

    def stored_fields(self) -> dict[str, Any]:
        """Every field as stored, ``run_id`` included (agno's rows and AgentOS read it); the two
        free-form fields go through the codec."""
        return encode_free_form(self.model_dump(), ("eval_data", "eval_input"), "eval_run.")


class EvalDocument(EvalFields):
    """A stored eval run as read back from MongoDB: the record plus owner and timestamps."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    user_id: str | None = None
    created_at: Int64 | None = None
    updated_at: Int64 | None = None
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """The dict AgentOS's ``EvalSchema.from_dict`` reads (what ``deserialize=False`` returns)."""
        return self.model_dump(exclude={"id", "schema_version"})


def eval_row(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as agno's row dict: decoded and validated (a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError`)."""
    return from_stored(EvalDocument, document, "evals").to_agno_dict()


def eval_out(document: dict[str, Any], deserialize: bool | None) -> EvalRunRecord | dict[str, Any]:
    """A stored document as agno wants it: an ``EvalRunRecord`` or its row dict."""
    row = eval_row(document)
    return EvalRunRecord.model_validate(row) if deserialize else row
