"""A revision-checked cache of whole sessions, one per storage instance: a turn reads what changed.

agno's ``Agent`` and ``Team`` read the whole session at the start of every run. With this cache the
read is still one command to the server, but it carries the revision the instance already holds,
and the server answers with only what changed since: nothing (the revision is the same), or the
session's fields and the runs written after that revision. The answer is always current; the cache
only decides how many bytes come back. Correctness never depends on it.

The rules that make a delta exact (``docs/session_cache.md`` says it at length):

- ``rev`` on the session document strictly increases with every write of it. A write that stores a
  run sets ``rev`` to a value ``T`` it chose and stamps the run with ``_r: T``, conditioned on the
  stored ``rev`` being below ``T``; other writes ``$inc`` it. So the runs written after revision ``C``
  are exactly those with ``_r > C``.
- ``shape`` is a token replaced by every write that removes, reorders or moves runs (delete, a
  placed insert, a spill, an overflowed rewrite, a cancel). ``inc`` changes when the session is
  deleted and created again. A delta is used only when both equal what the cache holds; otherwise
  the server sends the whole session in the same command.
- The read always goes to the server with the caller's owner filter, so another user never gets a
  cached session: the server answers "no such session" first.

Sessions are kept as encoded BSON (one ``bytes`` per run), decoded afresh on every read: callers
(and agno) get objects nobody else holds, and the byte bound is exact. Bounded by sessions and by
bytes, least recently used first out; ``session_cache_sessions=0`` switches it off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import bson

from agno_mongo.errors import InvalidInputError

DEFAULT_SESSIONS = 256
DEFAULT_BYTES = 64 * 1024 * 1024
CACHE_FIELDS = ("rev", "inc", "shape")
"""Bookkeeping fields a cached read asks for and the caller strips before handing the session out."""


@dataclass(frozen=True)
class Base:
    """What a cached read sends: the revision, incarnation and shape the cache holds."""

    rev: int
    inc: str | None
    shape: str | None


@dataclass
class Entry:
    """One cached session: its revision markers, its fields and its runs, encoded."""

    base: Base
    fields: bytes
    runs: list[bytes]
    run_ids: list[Any]
    size: int


def _entry(fields: dict[str, Any], runs: list[bytes], run_ids: list[Any]) -> Entry:
    """An entry from a session's fields (``rev``, ``inc`` and ``shape`` among them) and its runs, encoded."""
    encoded = bson.encode(fields)
    base = Base(int(fields.get("rev") or 0), fields.get("inc"), fields.get("shape"))
    return Entry(base, encoded, runs, run_ids, len(encoded) + sum(map(len, runs)))


def check_cache_bounds(sessions: object, size: object) -> tuple[int, int]:
    """The constructor's ``session_cache_sessions`` / ``session_cache_bytes``, checked."""
    for name, value in (("session_cache_sessions", sessions), ("session_cache_bytes", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(name, "must be a non-negative integer (0 switches the session cache off)")
    assert isinstance(sessions, int) and isinstance(size, int)
    return sessions, size


class SessionCache:
    """Least-recently-used whole sessions, bounded by count and by encoded bytes; thread-safe."""

    def __init__(self, max_sessions: int = DEFAULT_SESSIONS, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when either bound is 0."""
        return self.max_sessions > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Encoded bytes held."""
        return self._bytes

    def base(self, session_id: str) -> Base | None:
        """The markers a read of ``session_id`` can send, if it is cached."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                return None
            self._entries.move_to_end(session_id)
            return entry.base

    def holds_run(self, session_id: str, run_id: str) -> bool:
        """Whether the cached copy of the session has this run (a hint only: where to write it)."""
        with self._lock:
            entry = self._entries.get(session_id)
            return entry is not None and run_id in entry.run_ids

    def drop(self, session_id: str) -> None:
        """Forget a session (deleted here, or its answer was not a session)."""
        with self._lock:
            self._forget(session_id)

    def store(self, session_id: str, document: dict[str, Any]) -> dict[str, Any]:
        """Remember a whole session the server sent; returns it as a fresh document."""
        runs = document.get("runs")
        if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
            return document  # a malformed document is not kept: reading it raises anyway
        if self.enabled:
            fields = {key: value for key, value in document.items() if key != "runs"}
            self._put(session_id, _entry(fields, [bson.encode(run) for run in runs], [r.get("run_id") for r in runs]))
        return document

    def merge(self, session_id: str, base: Base, answer: dict[str, Any]) -> dict[str, Any] | None:
        """The current session from a delta answer against ``base``: the cached runs with the
        rewritten ones replaced and the new ones appended; ``None`` if the entry moved meanwhile
        (another thread of this instance stored a different state: the caller reads again)."""
        with self._lock:
            entry = self._entries.get(session_id)
        if entry is None or entry.base != base:
            return None
        if int(answer.get("rev") or 0) == base.rev:
            return self._document(entry)
        changed = {run.get("run_id"): run for run in answer.get("runs") or []}
        fields = {key: value for key, value in answer.items() if key != "runs"}
        raws = [
            bson.encode(changed[run_id]) if run_id in changed else raw
            for run_id, raw in zip(entry.run_ids, entry.runs, strict=True)
        ]
        held = set(entry.run_ids)
        added = [run for run_id, run in changed.items() if run_id not in held]
        raws.extend(bson.encode(run) for run in added)  # new runs, in the order the session holds them
        merged = _entry(fields, raws, [*entry.run_ids, *(run.get("run_id") for run in added)])
        if self.enabled:
            self._put(session_id, merged)
        return self._document(merged)

    def _document(self, entry: Entry) -> dict[str, Any]:
        """A fresh document from an entry."""
        document = bson.decode(entry.fields)
        document["runs"] = [bson.decode(raw) for raw in entry.runs]
        return document

    def _put(self, session_id: str, entry: Entry) -> None:
        with self._lock:
            self._forget(session_id)
            if entry.size > self.max_bytes:
                return
            self._entries[session_id] = entry
            self._bytes += entry.size
            while len(self._entries) > self.max_sessions or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size

    def _forget(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self._bytes -= entry.size
