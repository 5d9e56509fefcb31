"""What every stored document shares: the schema version, id and text checks, the strict field
types, and the two ways a model meets a document (``validated`` on the way in, ``from_stored`` on
the way out), each turning Pydantic's error into one naming the field.

Each collection's module (``session``, ``memories``, ...) builds its models from these.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, ValidationError

from agno_mongo.errors import CorruptDocumentError, InvalidInputError
from agno_mongo.schema.codec import CorruptStoredValueError, CorruptValueError, decode_fields

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
