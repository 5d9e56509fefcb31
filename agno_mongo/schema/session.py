"""The session document: one per session, runs embedded oldest first.

``SessionFields`` is what a write may set; ``SessionDocument`` is what a read gets back. Both classes
(`MongoDb`, `AsyncMongoDb`) go through these models, so a bad value is refused the same way on either
side and an unexpected stored shape is caught on the way out. The shared field types and checks are
in :mod:`agno_mongo.schema.base`.
"""

from __future__ import annotations

from typing import Any, Literal

from agno.session import AgentSession, TeamSession, WorkflowSession
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import (
    SCHEMA_VERSION,
    IdStr,
    Int64,
    OwnerStr,
    Text,
    check_id,
    check_optional_id,
    reading,
    validated,
)
from agno_mongo.schema.codec import CorruptValueError, decode_fields, decode_run, encode_free_form

SessionTypeName = Literal["agent", "team", "workflow"]
FREE_FORM = ("session_data", "agent_data", "team_data", "workflow_data", "metadata", "summary")
"""Fields holding whatever agno or the user put there: stored through the codec (escaped where needed)."""
AgnoSession = AgentSession | TeamSession | WorkflowSession


class SessionFields(BaseModel):
    """The session fields a write sets; runs are written separately with ``upsert_run``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    session_id: IdStr
    session_type: SessionTypeName
    user_id: OwnerStr | None = None
    agent_id: IdStr | None = None
    team_id: IdStr | None = None
    workflow_id: IdStr | None = None
    workflow_name: Text | None = None
    session_data: dict[str, Any] | None = None
    agent_data: dict[str, Any] | None = None
    team_data: dict[str, Any] | None = None
    workflow_data: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    created_at: Int64 | None = None
    updated_at: Int64 | None = None
    _stored: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_session(cls, session: object, *, name: str = "session") -> SessionFields:
        """Validate an agno ``AgentSession``/``TeamSession``/``WorkflowSession``."""
        if isinstance(session, AgentSession):
            session_type: SessionTypeName = "agent"
        elif isinstance(session, TeamSession):
            session_type = "team"
        elif isinstance(session, WorkflowSession):
            session_type = "workflow"
        else:
            expected = "an agno AgentSession, TeamSession or WorkflowSession"
            raise InvalidInputError(name, f"must be {expected}, got {type(session).__name__}")
        raw = session.to_dict(include_runs=False)
        raw["session_type"] = session_type
        known = {key: raw.get(key) for key in cls.model_fields if key in raw}
        fields = validated(cls, known, f"{name}.")
        fields._stored = fields._encode(f"{name}.")
        return fields

    def stored_fields(self) -> dict[str, Any]:
        """Every field but the id and the timestamps (the write plan decides those), as stored.

        Free-form fields go through the codec; ``_codec`` lists those a reader must decode (None
        when none), and is rewritten whole because every free-form field is.
        """
        if self._stored is None:
            self._stored = self._encode("")
        return self._stored

    def _encode(self, prefix: str) -> dict[str, Any]:
        values = self.model_dump(exclude={"session_id", "created_at", "updated_at"})
        return encode_free_form(values, FREE_FORM, prefix)


class SessionDocument(SessionFields):
    """A stored session as read back from MongoDB."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    runs: list[dict[str, Any]] = Field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_mongo(cls, document: dict[str, Any]) -> SessionDocument:
        """Decode and validate a raw document; a malformed one raises
        :class:`~agno_mongo.errors.CorruptDocumentError` (naming its ``_id`` and the first bad field)
        instead of reaching the agent.

        Runs are checked to be documents but not copied through Pydantic: they are most of the
        bytes, and agno validates them itself when it builds its run objects.
        """
        with reading("sessions", document):
            decoded = decode_fields(document)
            runs = decoded.pop("runs", None) or []
            if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
                raise CorruptValueError("runs", "expected an array of run documents")
            session = cls.model_validate(decoded)
            session.runs = [decode_run(run, f"runs[{i}]") for i, run in enumerate(runs)]
        return session

    def to_agno_dict(self) -> dict[str, Any]:
        """The dict agno's ``Session.from_dict`` expects (and what ``deserialize=False`` returns)."""
        out = self.model_dump(exclude={"id", "schema_version", "runs"})
        out["runs"] = self.runs
        return out


def run_to_dict(run: object, *, name: str = "run") -> dict[str, Any]:
    """The run as the dict stored in ``runs``, with its ``run_id`` checked."""
    if isinstance(run, dict):
        data = run
    elif hasattr(run, "to_dict"):
        data = run.to_dict()
    else:
        expected = "a RunOutput, TeamRunOutput, WorkflowRunOutput or dict"
        raise InvalidInputError(name, f"must be {expected}, got {type(run).__name__}")
    if not isinstance(data, dict):
        raise InvalidInputError(name, "to_dict() did not return a dict")
    check_id(f"{name}.run_id", data.get("run_id"))
    for key in ("parent_run_id", "session_id"):
        check_optional_id(f"{name}.{key}", data.get(key))
    status = data.get("status")
    if status is not None and not isinstance(status, str):
        raise InvalidInputError(f"{name}.status", f"must be a string, got {type(status).__name__}")
    return data
