"""Pure command builders and plans for the transcripts collection (one document per append).

Nothing here does I/O. agno's SQL stores number a transcript's entries ``max(position) + 1, + 2,
...`` inside a locked transaction and skip an entry whose uuid the transcript already holds
(``ON CONFLICT DO NOTHING``). Here one append is one document claiming the positions
``[position, end]``:

* **Positions.** The plan reads the transcript's last document (the top of the unique index on
  ``(framework, project_key, session_id, subpath, position)``) and inserts at ``end + 1``. Two
  appends that read the same end collide on that index: one lands, the other reads again and goes
  after it (with backoff; :class:`~agno_mongo.errors.WriteContentionError` only after
  :data:`MAX_ROUNDS`). So positions never collide, each append's entries are contiguous and in
  order, and a reader sees an append whole or not at all, as with SQL's transaction. Positions
  come from the stored documents themselves: nothing to keep in step, nothing to reset on delete.
* **Uuids.** A unique multikey index on ``(framework, project_key, session_id, subpath, uuids)``
  (partial: only documents that have uuids) refuses an append holding a uuid the transcript
  already has. The plan then reads which uuids are known, drops those entries and inserts the rest,
  so re-appending entries is a no-op, as in agno.
* **Lost replies.** The insert is not resendable (a second arrival answers "duplicate key"). Its
  ``_id`` is fixed for the whole call, so whatever the rounds, one append is stored at most once:
  after :class:`~agno_mongo.ops.command.ReplyLost` one read by ``_id`` tells whether it landed; if
  not, the next round inserts the same ``_id`` (a late first arrival then makes it collide on
  ``_id``, and the read after that duplicate key finds it).
* An append too large for one 16 MiB document is split into consecutive documents, each appended
  as above; only such an append can be interleaved with a concurrent one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import bson
from bson import Int64, ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import CorruptDocumentError, InvalidInputError, WriteContentionError
from agno_mongo.ops.aggregations import aggregate
from agno_mongo.ops.command import Command, Plan, ReplyLost, backoff
from agno_mongo.schema.codec import MARKER
from agno_mongo.schema.transcripts import MAX_DOCUMENT_BYTES, SCHEMA_VERSION, PreparedEntry, TranscriptKey

TRANSCRIPTS: Final = "transcripts"

MAX_ROUNDS: Final = 32
"""Rounds of one append under contention (each re-reads the transcript's end) before
:class:`~agno_mongo.errors.WriteContentionError`; with backoff that is several seconds of trying."""

KEY: Final = ("framework", "project_key", "session_id", "subpath")
BY_POSITION: Final = [(field, ASCENDING) for field in KEY] + [("position", ASCENDING)]
POSITION_INDEX: Final = "transcript_position"
UUID_INDEX: Final = "transcript_uuid"

TRANSCRIPT_INDEXES = [
    # The order and the allocation (unique positions), get_transcript_entries (equality + sort),
    # the last document of a transcript (the same index backwards), list_transcript_subpaths (a
    # distinct scan of its 4th key under the first three) and delete_transcript (prefix).
    IndexModel(BY_POSITION, name=POSITION_INDEX, unique=True),
    # "ignoring entry UUIDs already in the transcript": SQL's unique (…, entry_uuid) with NULLs
    # distinct, hence partial (a document without uuids holds none).
    IndexModel(
        [(field, ASCENDING) for field in KEY] + [("uuids", ASCENDING)],
        name=UUID_INDEX,
        unique=True,
        partialFilterExpression={"uuids": {"$exists": True}},
    ),
    # list_transcript_sessions: main transcripts of a project, newest append per session first
    # (lets the $sort + $group/$first read one index key per session).
    IndexModel(
        [
            ("framework", ASCENDING),
            ("project_key", ASCENDING),
            ("subpath", ASCENDING),
            ("session_id", ASCENDING),
            ("created_at", DESCENDING),
        ],
        name="transcript_mtime",
    ),
    # Deleting an agno session deletes its transcripts (agno's SQL stores cascade the same way).
    IndexModel([("agno_session_id", ASCENDING)], name="transcript_agno_session"),
]


def _element_bytes(index: int, value_bytes: int) -> int:
    """BSON bytes of one array element: type byte, the index as a C string, the value."""
    return 1 + len(str(index)) + 1 + value_bytes


def _uuid_bytes(uuid: str) -> int:
    return 4 + len(uuid.encode("utf-8")) + 1


def skeleton(key: TranscriptKey, agno_session_id: str, created_at: int) -> dict[str, Any]:
    """Every field of a stored document but the ones an append fills in (``_id`` is added per document)."""
    return {
        **key.filter(),
        "agno_session_id": agno_session_id,
        "created_at": Int64(created_at),
        "schema_version": SCHEMA_VERSION,
    }


def _overhead(base: dict[str, Any]) -> int:
    """Bytes of a document's fixed part, with room for the largest ``_id``, positions and flags."""
    probe = {"_id": ObjectId(), **base, "position": Int64(1 << 62), "end": Int64(1 << 62)}
    probe.update(entries=[], uuids=[], **{MARKER: 1})
    return len(bson.encode(probe))


def chunked(base: dict[str, Any], entries: Sequence[PreparedEntry]) -> list[list[PreparedEntry]]:
    """The entries in order, cut into runs that each fit in one document with ``base``.

    Almost always one run. An entry that cannot fit even alone is refused, naming it, before any
    command is sent.
    """
    overhead = _overhead(base)
    runs: list[list[PreparedEntry]] = []
    current: list[PreparedEntry] = []
    size, uuids = overhead, 0
    for entry in entries:
        cost = _element_bytes(len(current), entry.size)
        if entry.uuid is not None:
            cost += _element_bytes(uuids, _uuid_bytes(entry.uuid))
        if current and size + cost > MAX_DOCUMENT_BYTES:
            runs.append(current)
            current, size, uuids = [], overhead, 0
            cost = _element_bytes(0, entry.size) + (
                0 if entry.uuid is None else _element_bytes(0, _uuid_bytes(entry.uuid))
            )
        if size + cost > MAX_DOCUMENT_BYTES:
            raise InvalidInputError(
                f"entries[{entry.index}]", "is too large: with the transcript's fields it exceeds a 16 MiB document"
            )
        current.append(entry)
        size += cost
        uuids += entry.uuid is not None
    if current:
        runs.append(current)
    return runs


def document(doc_id: ObjectId, base: dict[str, Any], position: int, entries: Sequence[PreparedEntry]) -> dict[str, Any]:
    """One append as stored: positions ``[position, position + len(entries) - 1]``."""
    stored: dict[str, Any] = {
        "_id": doc_id,
        **base,
        "position": Int64(position),
        "end": Int64(position + len(entries) - 1),
        "entries": [entry.raw for entry in entries],
    }
    uuids = [entry.uuid for entry in entries if entry.uuid is not None]
    if uuids:
        stored["uuids"] = uuids
    if any(entry.changed for entry in entries):
        stored[MARKER] = 1
    return stored


def last_document(key: TranscriptKey) -> Command:
    """One ``find``: the transcript's last document (its ``end``), by the position index backwards."""
    return Command(
        TRANSCRIPTS,
        "find_one",
        {"filter": key.filter(), "sort": [("position", DESCENDING)], "projection": {"end": True}},
    )


def insert(stored: dict[str, Any]) -> Command:
    """One ``insert``; not resendable: a second arrival answers "duplicate key" (see module)."""
    return Command(TRANSCRIPTS, "insert_one", {"document": stored}, resend=False)


def landed_or_known(doc_id: ObjectId, key: TranscriptKey, uuids: list[str]) -> Command:
    """One ``find``: our document if it is stored, and the documents holding any of ``uuids``."""
    query: dict[str, Any] = {"_id": doc_id}
    if uuids:
        query = {"$or": [query, {**key.filter(), "uuids": {"$in": uuids}}]}
    return Command(TRANSCRIPTS, "find", {"filter": query, "projection": {"uuids": True}})


def _end_of(last: dict[str, Any] | None) -> int:
    """The last position taken (0 for an empty transcript); a stored ``end`` that is no position is
    a corrupt document, refused rather than guessed past."""
    if last is None:
        return 0
    end = last.get("end")
    if isinstance(end, bool) or not isinstance(end, int) or end < 1:
        raise CorruptDocumentError(TRANSCRIPTS, last.get("_id"), "end", f"must be a positive integer, got {end!r}")
    return int(end)


def append_one_plan(
    doc_id: ObjectId, key: TranscriptKey, base: dict[str, Any], entries: list[PreparedEntry]
) -> Plan[None]:
    """Store ``entries`` as one document after the transcript's last, minus those whose uuid it holds."""
    pending = entries
    for round_number in range(MAX_ROUNDS):
        last: dict[str, Any] | None = yield last_document(key)
        try:
            yield insert(document(doc_id, base, _end_of(last) + 1, pending))
            return None
        except ReplyLost:
            found: list[dict[str, Any]] = yield landed_or_known(doc_id, key, [])
            if found:
                return None
            continue  # not (yet) there: the next round sends the same _id, which cannot land twice
        except DuplicateKeyError:
            found = yield landed_or_known(doc_id, key, [e.uuid for e in pending if e.uuid is not None])
        if any(stored.get("_id") == doc_id for stored in found):
            return None  # an earlier round of ours landed after all
        known = {uuid for stored in found for uuid in stored.get("uuids") or ()}
        kept = [entry for entry in pending if entry.uuid is None or entry.uuid not in known]
        if not kept:
            return None  # every entry was already in the transcript
        if len(kept) < len(pending):
            pending = kept  # a known uuid, not a race: insert the rest at once
            continue
        yield backoff(round_number)  # another append took the position: read the end again
    raise WriteContentionError(
        f"transcript {key.session_id!r} ({key.subpath or 'main'}): other appends kept taking its end; not appended"
    )


def append_plan(key: TranscriptKey, entries: list[PreparedEntry], agno_session_id: str, now_ms: int) -> Plan[None]:
    """Append ``entries`` (checked, in order, without repeated uuids) to the transcript ``key``."""
    base = skeleton(key, agno_session_id, now_ms)
    for run in chunked(base, entries):  # raises for an oversized entry before the first command
        yield from append_one_plan(ObjectId(), key, base, run)
    return None


def find_entries(key: TranscriptKey) -> Command:
    """One ``find``: the transcript's documents in position order (the position index)."""
    return Command(
        TRANSCRIPTS,
        "find",
        {
            "filter": key.filter(),
            "sort": [("position", ASCENDING)],
            "projection": {"position": True, "entries": True, MARKER: True},
        },
    )


def list_sessions(framework: str, project_key: str) -> Command:
    """One ``aggregate``: each session with a main transcript and its newest append's time, by session id."""
    return aggregate(
        TRANSCRIPTS,
        [
            {"$match": {"framework": framework, "project_key": project_key, "subpath": ""}},
            {"$sort": {"session_id": ASCENDING, "created_at": DESCENDING}},
            {"$group": {"_id": "$session_id", "mtime": {"$first": "$created_at"}}},
            {"$sort": {"_id": ASCENDING}},
        ],
    )


def list_subpaths(framework: str, project_key: str, session_id: str) -> Command:
    """One ``aggregate``: the session's subagent transcript paths, each once as ``{_id}``, sorted,
    through a cursor (not ``distinct``, whose one-document answer stops at 16 MiB)."""
    return aggregate(
        TRANSCRIPTS,
        [
            {
                "$match": {
                    "framework": framework,
                    "project_key": project_key,
                    "session_id": session_id,
                    "subpath": {"$ne": "", "$exists": True},
                }
            },
            {"$group": {"_id": "$subpath"}},
            {"$sort": {"_id": ASCENDING}},
        ],
    )


def delete(framework: str, project_key: str, session_id: str, subpath: str | None) -> Command:
    """One ``deleteMany``: one transcript (``subpath`` given, ``""`` the main one) or the main one and
    every subpath (``None``). Resendable: its answer is not used, and a second arrival deletes nothing
    more."""
    query: dict[str, Any] = {"framework": framework, "project_key": project_key, "session_id": session_id}
    if subpath is not None:
        query["subpath"] = subpath
    return Command(TRANSCRIPTS, "delete_many", {"filter": query})


def delete_for_sessions(session_ids: list[str]) -> list[Command]:
    """The commands that delete every transcript appended under these agno sessions (agno's SQL stores
    delete them with the session). Idempotent and resendable."""
    return [Command(TRANSCRIPTS, "delete_many", {"filter": {"agno_session_id": {"$in": list(session_ids)}}})]
