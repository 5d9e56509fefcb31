"""Pure command builders and plans for the compaction records collection (one document per fold).

Nothing here does I/O. A record's ``_id`` is its ``compaction_id``; ``session_id`` is a top-level
field, and one index (``session_id``, then newest first) serves every read, the search and both
deletes. Records are immutable facts, so there is no update:

* ``upsert_compaction``: an upsert that only inserts (``$setOnInsert``), so a repeated id is a no-op
  (agno's ``ON CONFLICT DO NOTHING``). Resendable: a second arrival finds the record and changes
  nothing, and the answer is not used.
* ``delete_compactions_for_session``: counts, then deletes. The delete is not resendable (a second
  arrival answers "0 deleted"); after a lost reply it is sent again and the count read before it
  is the answer, so a cut connection does not turn "3 deleted" into "0".
* :func:`delete_for_sessions`: the session cascade, one resendable ``deleteMany`` whose answer no
  one reads.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from agno_mongo.ops.command import Command, Plan, ReplyLost, Written
from agno_mongo.schema.compactions import SCHEMA_VERSION

COMPACTIONS = "compactions"

SEQUENCE = "created_ns"
"""Client clock in nanoseconds at insert (never shown to agno): orders records of one second newest
first, as agno's SQLite does (its ``(session_id, created_at)`` index scans equal keys in insertion
order). agno's ``latest()`` takes the first row as the fold in force, so a tie must not be arbitrary."""
INTERNAL = (SEQUENCE, "schema_version")
"""Stored fields that are not agno's columns."""

NEWEST_FIRST = [("created_at", DESCENDING), (SEQUENCE, DESCENDING)]
"""agno's order (``created_at DESC``), made total within a second."""

COMPACTION_INDEXES = [
    # get_compactions_for_session (every run reads it), search_compactions, and both deletes.
    IndexModel([("session_id", ASCENDING), *NEWEST_FIRST], name="session_created"),
]

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 - 64 * 1024
"""The largest record stored with its transcript: MongoDB's 16 MiB document limit, less room for the
update command around it."""


def stored_document(columns: Mapping[str, Any]) -> dict[str, Any]:
    """The document one record is stored as: every column (``compaction_id`` as ``_id``) and the
    internal fields."""
    values = {("_id" if key == "compaction_id" else key): value for key, value in columns.items()}
    values[SEQUENCE] = time.time_ns()
    values["schema_version"] = SCHEMA_VERSION
    return values


def fits(document: Mapping[str, Any]) -> bool:
    """Whether ``document`` is small enough to store as one MongoDB document (:data:`MAX_DOCUMENT_BYTES`)."""
    return len(bson.encode(document)) <= MAX_DOCUMENT_BYTES


def without_transcript(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with ``archived_messages`` null: what is stored for a record too large for one
    document. agno's contract allows it (``BaseDb``: a backend "may leave it null: the summary still
    stands, and only recoverability is lost"), and it keeps the fold, where refusing the record would
    make every later run pay for a new summary of the whole history."""
    return {**document, "archived_messages": None}


def insert(document: dict[str, Any]) -> Command:
    """One ``update`` that inserts the record if its id is free and otherwise changes nothing."""
    return Command(
        COMPACTIONS,
        "update_one",
        {"filter": {"_id": document["_id"]}, "update": {"$setOnInsert": document}, "upsert": True},
    )


def insert_plan(document: dict[str, Any]) -> Plan[None]:
    """Store a record once. A duplicate key (two writers of one new id racing, on a server that does
    not retry that itself) means the id is taken: the no-op agno's ``ON CONFLICT DO NOTHING`` is."""
    try:
        yield insert(document)
    except DuplicateKeyError:
        pass
    return None


def get(compaction_id: str) -> Command:
    """One ``find`` by ``_id``."""
    return Command(COMPACTIONS, "find_one", {"filter": {"_id": compaction_id}})


def for_session(session_id: str, limit: int | None, extra: Mapping[str, Any] | None = None) -> Command:
    """One ``find``: the session's records (matching ``extra``), newest first, at most ``limit``."""
    kwargs: dict[str, Any] = {"filter": {"session_id": session_id, **(extra or {})}, "sort": NEWEST_FIRST}
    if limit is not None:
        kwargs["limit"] = limit
    return Command(COMPACTIONS, "find", kwargs)


def literal_pattern(term: str) -> str:
    """A regular expression matching ``term`` literally, the same in MongoDB's PCRE and Python's ``re``.

    Every ASCII character but a letter or digit is backslash-escaped (literal in both dialects); NUL,
    which MongoDB refuses inside a pattern, is written ``\\x00``. Other characters stand for themselves.
    """
    return re.sub(r"[^A-Za-z0-9\x80-\U0010ffff]", lambda m: r"\x00" if m.group() == "\0" else "\\" + m.group(), term)


def contains_any(terms: Sequence[str]) -> dict[str, Any]:
    """The filter for "``archived_messages`` contains one of ``terms``, ignoring case", as one regex."""
    return {"archived_messages": {"$regex": "|".join(literal_pattern(term) for term in terms), "$options": "i"}}


def count_for_session(session_id: str) -> Command:
    """One ``count``: the session's records."""
    return Command(COMPACTIONS, "count_documents", {"filter": {"session_id": session_id}})


def delete_session_records(session_id: str, *, resend: bool) -> Command:
    """One ``deleteMany`` of the session's records."""
    return Command(COMPACTIONS, "delete_many", {"filter": {"session_id": session_id}}, resend=resend)


def delete_plan(session_id: str) -> Plan[int]:
    """Delete the session's records: how many were deleted.

    The count is read first. After a lost reply the delete is sent again (resendable now: its answer
    only matters if the first never arrived) and the larger of the count and the resend's answer is
    returned: exact unless a record of the session was written in between.
    """
    counted: int = yield count_for_session(session_id)
    if counted == 0:
        return 0
    try:
        result: Written = yield delete_session_records(session_id, resend=False)
    except ReplyLost:
        again: Written = yield delete_session_records(session_id, resend=True)
        return max(counted, again.deleted_count)
    return result.deleted_count


def delete_for_sessions(session_ids: list[str]) -> Command:
    """One ``deleteMany`` of every record of ``session_ids``: the cascade of ``delete_session`` /
    ``delete_sessions`` (agno's SQL stores delete a session's records with it, so a session recreated
    under the same id does not inherit an old fold). Resendable: a second arrival deletes nothing more,
    and the answer is not read."""
    return Command(COMPACTIONS, "delete_many", {"filter": {"session_id": {"$in": list(session_ids)}}})
