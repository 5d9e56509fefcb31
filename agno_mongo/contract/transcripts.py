"""Transcripts: agno's external-agent transcript storage (used by ``ClaudeAgent``) as plans.

``TranscriptContract`` holds what the sync and async classes share; each method has agno's
signature and returns a plan. ``agno.agents.claude.session_store.AgnoSessionStore`` calls them with
``framework="claude-agent-sdk"``: ``append`` for every batch of transcript lines the SDK writes,
``load`` (``get_transcript_entries``, an empty list meaning "no transcript") to resume on another
replica, ``list_sessions``, ``list_subkeys`` and ``delete``. Layout and the append's concurrency and
lost-reply handling: :mod:`agno_mongo.ops.transcripts`.
"""

from __future__ import annotations

import time
from typing import Any

from agno_mongo.contract.checks import check_id
from agno_mongo.errors import CorruptDocumentError
from agno_mongo.ops import transcripts as ops
from agno_mongo.ops.command import Plan
from agno_mongo.schema.transcripts import check_key, check_subpath, prepare_entries, stored_entries


def now_ms() -> int:
    """Epoch milliseconds, the unit agno's transcript rows use for ``created_at`` (and ``mtime``)."""
    return time.time_ns() // 1_000_000


class TranscriptContract:
    """The transcripts part of agno's ``BaseDb`` contract, as plans."""

    def append_transcript_entries(
        self,
        framework: str,
        project_key: str,
        session_id: str,
        entries: list[dict[str, Any]],
        agno_session_id: str,
        subpath: str | None = None,
    ) -> Plan[None]:
        """Append entries in order after the transcript's last, skipping any whose ``uuid`` the
        transcript already holds (or that an earlier entry of the same call has).

        Usually two commands (read the end, insert one document). Bad input (an entry that is not a
        JSON-serialisable dict, a non-string uuid, an id that is not a string) is refused before
        any command; an empty list writes nothing.
        """
        key = check_key(framework, project_key, session_id, subpath)
        agno_session = check_id("agno_session_id", agno_session_id)
        prepared = prepare_entries(entries)
        if prepared:
            yield from ops.append_plan(key, prepared, agno_session, now_ms())
        return None

    def get_transcript_entries(
        self, framework: str, project_key: str, session_id: str, subpath: str | None = None
    ) -> Plan[list[dict[str, Any]]]:
        """The transcript's entries in append order (``[]`` when there is none); one ``find``."""
        key = check_key(framework, project_key, session_id, subpath)
        documents: list[dict[str, Any]] = yield ops.find_entries(key)
        entries: list[dict[str, Any]] = []
        for document in documents:
            entries.extend(stored_entries(document, ops.TRANSCRIPTS))
        return entries

    def list_transcript_sessions(self, framework: str, project_key: str) -> Plan[list[dict[str, Any]]]:
        """Sessions with a main transcript, by session id: ``{"session_id", "mtime"}`` with ``mtime``
        the time of the newest append in epoch milliseconds; one ``aggregate``."""
        check_id("framework", framework)
        check_id("project_key", project_key)
        groups: list[dict[str, Any]] = yield ops.list_sessions(framework, project_key)
        listed: list[dict[str, Any]] = []
        for group in groups:
            session, mtime = group.get("_id"), group.get("mtime")
            if not isinstance(session, str) or isinstance(mtime, bool) or not isinstance(mtime, int):
                raise CorruptDocumentError(
                    ops.TRANSCRIPTS, session, "session_id/created_at", "must be a string and an integer"
                )
            listed.append({"session_id": session, "mtime": int(mtime)})
        return listed

    def list_transcript_subpaths(self, framework: str, project_key: str, session_id: str) -> Plan[list[str]]:
        """The session's subagent transcript paths, sorted; one ``aggregate`` (grouped by path)."""
        check_id("framework", framework)
        check_id("project_key", project_key)
        check_id("session_id", session_id)
        groups: list[dict[str, Any]] = yield ops.list_subpaths(framework, project_key, session_id)
        values: list[Any] = [group.get("_id") for group in groups]
        for value in values:
            if not isinstance(value, str):
                raise CorruptDocumentError(ops.TRANSCRIPTS, None, "subpath", f"must be a string, got {value!r}")
        return sorted(values)

    def delete_transcript(
        self, framework: str, project_key: str, session_id: str, subpath: str | None = None
    ) -> Plan[None]:
        """Delete one subpath's transcript (``""``: the main one only), or with ``subpath=None`` the
        main transcript and every subpath, as agno's does; one ``deleteMany``."""
        check_id("framework", framework)
        check_id("project_key", project_key)
        check_id("session_id", session_id)
        checked = check_subpath(subpath)
        yield ops.delete(framework, project_key, session_id, checked)
        return None
