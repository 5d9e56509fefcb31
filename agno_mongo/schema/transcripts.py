"""Transcript documents: external-agent transcripts (the Claude Agent SDK's) as opaque JSON entries.

A transcript is named by ``(framework, project_key, session_id, subpath)``; ``subpath`` is ``""``
for the main transcript (agno stores ``None`` as ``""``) and a subagent's path otherwise. Each call
of ``append_transcript_entries`` is stored as ONE document (two or more only when its entries
exceed what one document can hold, see :mod:`agno_mongo.ops.transcripts`):

| field | type | note |
|---|---|---|
| ``_id`` | ObjectId | chosen by the writer once per document, so a resend can never store it twice |
| ``framework``, ``project_key``, ``session_id``, ``subpath`` | str | the transcript |
| ``position`` | int | position of the document's first entry (unique within the transcript) |
| ``end`` | int | position of the append's last entry: the next append starts at ``end + 1`` |
| ``entries`` | array of subdocuments | the entries, in append order, through the codec |
| ``uuids`` | array of str | the entries' ``uuid`` values (absent when none has one) |
| ``agno_session_id`` | str | the agno session the append came from (deleting it deletes this) |
| ``created_at`` | int | epoch milliseconds of the append (``mtime`` of the listing) |
| ``_codec`` | 1 | present when an entry needs decoding (escaped keys, tagged values) |
| ``schema_version`` | int | |

Entries are what agno's SQL stores keep: ``json.loads(json.dumps(entry))``. They are normalised the
same way here (tuples become lists, non-string keys strings), so an entry reads back exactly as
agno's would, and stored as native BSON through the codec (a ``$``- or ``.``-key, an int beyond 64
bits, a lone surrogate come back exactly). What ``json.dumps`` refuses is refused here, naming the
entry, before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import bson
from bson.raw_bson import RawBSONDocument
from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import LONE_SURROGATE, SCHEMA_VERSION, Int64, check_id, is_utf8, reading
from agno_mongo.schema.codec import MAX_DEPTH, decode, encode

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "SCHEMA_VERSION",
    "PreparedEntry",
    "TranscriptDocument",
    "TranscriptKey",
    "check_key",
    "check_subpath",
    "prepare_entries",
    "stored_entries",
]

MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
"""MongoDB's limit for one document (``maxBsonObjectSize``)."""
ENTRY_DEPTH: Final = MAX_DEPTH - 2
"""Nesting an entry may use: it sits in the ``entries`` array of a top-level document."""


@dataclass(frozen=True)
class TranscriptKey:
    """One transcript: the four values agno's SQL table keys it by (``subpath`` ``""`` is the main one)."""

    framework: str
    project_key: str
    session_id: str
    subpath: str

    def filter(self) -> dict[str, str]:
        """Equality on the four fields: the prefix of the position index."""
        return {
            "framework": self.framework,
            "project_key": self.project_key,
            "session_id": self.session_id,
            "subpath": self.subpath,
        }


@dataclass(frozen=True)
class PreparedEntry:
    """An entry checked and encoded once: ``raw`` is what is sent, ``size`` its BSON size."""

    index: int
    """Where it was in the ``entries`` agno passed (for errors)."""
    uuid: str | None
    raw: RawBSONDocument
    changed: bool
    """Whether reading it back needs the codec's ``decode``."""

    @property
    def size(self) -> int:
        return len(self.raw.raw)


def check_subpath(value: object) -> str | None:
    """``None`` or a string that encodes as UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError("subpath", f"must be a string or None, got {type(value).__name__}")
    if not is_utf8(value):
        raise InvalidInputError("subpath", LONE_SURROGATE)
    return value


def check_key(framework: object, project_key: object, session_id: object, subpath: object) -> TranscriptKey:
    """The transcript named by agno's arguments; ``None`` and ``""`` both name the main transcript."""
    return TranscriptKey(
        check_id("framework", framework),
        check_id("project_key", project_key),
        check_id("session_id", session_id),
        check_subpath(subpath) or "",
    )


def _uuid_of(entry: dict[Any, Any], name: str) -> str | None:
    """agno's ``entry.get("uuid") or None``; a truthy uuid must be a string (it is a unique key)."""
    value = entry.get("uuid")
    if not value:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{name}.uuid", f"must be a string, got {type(value).__name__}")
    if not is_utf8(value):
        raise InvalidInputError(f"{name}.uuid", LONE_SURROGATE)
    return value


def _prepared(entry: object, index: int) -> PreparedEntry:
    name = f"entries[{index}]"
    if not isinstance(entry, dict):
        raise InvalidInputError(name, f"must be a dict, got {type(entry).__name__}")
    uuid = _uuid_of(entry, name)
    try:
        normal = json.loads(json.dumps(entry))  # what agno's SQL stores give back
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidInputError(name, f"must be JSON-serialisable: {error}") from None
    encoded, changed = encode(normal, name, max_depth=ENTRY_DEPTH)
    raw = RawBSONDocument(bson.encode(encoded))
    if len(raw.raw) > MAX_DOCUMENT_BYTES:
        raise InvalidInputError(name, f"is {len(raw.raw)} bytes as BSON; one entry must fit in a 16 MiB document")
    return PreparedEntry(index, uuid, raw, changed)


def prepare_entries(entries: object) -> list[PreparedEntry]:
    """Every entry checked and encoded, in order, without repeats of a uuid (the first one is kept,
    as agno's ``ON CONFLICT DO NOTHING`` keeps it); refuses a bad entry naming ``entries[i]``."""
    if not isinstance(entries, list | tuple):
        raise InvalidInputError("entries", f"must be a list of dicts, got {type(entries).__name__}")
    prepared: list[PreparedEntry] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        item = _prepared(entry, index)
        if item.uuid is not None:
            if item.uuid in seen:
                continue
            seen.add(item.uuid)
        prepared.append(item)
    return prepared


class TranscriptDocument(BaseModel):
    """A stored transcript document as a read sees it: checked, so a malformed one raises
    :class:`~agno_mongo.errors.CorruptDocumentError` instead of reaching the agent."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: Any = Field(alias="_id")
    position: Int64
    entries: list[dict[str, Any]]
    codec: int | None = Field(default=None, alias="_codec")


def stored_entries(document: dict[str, Any], collection: str) -> list[dict[str, Any]]:
    """The entries of one stored document, decoded."""
    with reading(collection, document):
        checked = TranscriptDocument.model_validate(document)
        if not checked.codec:
            return checked.entries
        return [decode(entry, f"entries[{index}]") for index, entry in enumerate(checked.entries)]
