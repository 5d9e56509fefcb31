"""The session document: one per session, runs embedded oldest first.

``SessionFields`` is what a write may set; ``SessionDocument`` is what a read gets back. Both classes
(`MongoDb`, `AsyncMongoDb`) go through these models, so a bad value is refused the same way on either
side and an unexpected stored shape is caught on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, Literal, TypeVar

from agno.session import AgentSession, TeamSession, WorkflowSession
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError

from agno_mongo.errors import CorruptDocumentError, InvalidInputError
from agno_mongo.schema.codec import (
    CorruptStoredValueError,
    CorruptValueError,
    decode_fields,
    decode_run,
    encode_free_form,
)

SCHEMA_VERSION = 1
"""Bumped when the stored layout changes, so a migration can find old documents."""

MAX_ID_LENGTH = 1024
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
"""The ints BSON can hold: a larger one makes PyMongo raise ``OverflowError`` while encoding."""
LONE_SURROGATE = "must be valid Unicode text (it holds a lone surrogate)"


def is_utf8(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8 (BSON's strings); only a lone surrogate cannot."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8_text(value: str) -> str:
    if not is_utf8(value):
        raise ValueError(LONE_SURROGATE)
    return value


IdStr = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
OwnerStr = Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)]
"""A ``user_id`` field: like an id, but ``""`` is a real owner in agno (distinct from ``None``)."""
Text = Annotated[str, AfterValidator(_utf8_text)]
"""A plain string field stored as it is (not through the codec): it must encode as UTF-8."""
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An int field stored as a BSON int: it must fit in 64 bits."""
SessionTypeName = Literal["agent", "team", "workflow"]
FREE_FORM = ("session_data", "agent_data", "team_data", "workflow_data", "metadata", "summary")
"""Fields holding whatever agno or the user put there: stored through the codec (escaped where needed)."""
AgnoSession = AgentSession | TeamSession | WorkflowSession


def check_id(name: str, value: object) -> str:
    """Return ``value`` if it is a usable id, else raise naming ``name``.

    Ids go into filters: a dict such as ``{"$ne": None}`` would match other people's documents, so
    anything but a non-empty string is refused before a command is built.
    """
    if not isinstance(value, str):
        raise InvalidInputError(name, f"must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidInputError(name, f"must be 1 to {MAX_ID_LENGTH} characters long")
    if not is_utf8(value):
        raise InvalidInputError(name, LONE_SURROGATE)
    return value


def check_optional_id(name: str, value: object) -> str | None:
    """Like :func:`check_id`, but ``None`` is allowed (it means "no user" or "no filter")."""
    return None if value is None else check_id(name, value)


def check_owner(name: str, value: object) -> str | None:
    """A ``user_id`` argument: ``None`` (no owner, or no filter) or a string of at most
    :data:`MAX_ID_LENGTH` characters. ``""`` is accepted: agno treats it as a real owner, distinct
    from ``None`` (its SQL stores filter ``user_id = ''``), so reads, renames and deletes scope to it."""
    if value is None:
        return None
    if isinstance(value, str) and value == "":
        return value
    return check_id(name, value)


Model = TypeVar("Model", bound=BaseModel)


def validated(cls: type[Model], raw: Mapping[str, Any], prefix: str = "") -> Model:
    """``cls.model_validate(raw)``; the first problem becomes an ``InvalidInputError`` naming its field."""
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "value"
        raise InvalidInputError(prefix + field, first["msg"]) from None


def _problem(error: ValidationError) -> tuple[str, str]:
    """The first problem Pydantic found: its field (with list indexes) and message."""
    first = error.errors()[0]
    loc = first["loc"]
    field = str(loc[0]) if loc else "document"
    for part in loc[1:]:
        if not isinstance(part, int):
            break  # a union member's tag or a nested key: the field itself is what the reader needs
        field += f"[{part}]"
    return field, first["msg"]


@contextmanager
def reading(collection: str, document: Mapping[str, Any]) -> Iterator[None]:
    """Turn a stored document's problems (a failed validation, corrupt codec data) into
    :class:`~agno_mongo.errors.CorruptDocumentError` naming ``collection``, its ``_id`` and the field."""
    try:
        yield
    except CorruptStoredValueError:
        raise
    except CorruptValueError as error:
        raise CorruptStoredValueError.wrap(error, collection, document.get("_id")) from error
    except ValidationError as error:
        raise CorruptDocumentError(collection, document.get("_id"), *_problem(error)) from error


def from_stored(cls: type[Model], document: Mapping[str, Any], collection: str) -> Model:
    """``cls`` validated from a stored document (codec-decoded), or :class:`CorruptDocumentError`."""
    with reading(collection, document):
        return cls.model_validate(decode_fields(document))


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
