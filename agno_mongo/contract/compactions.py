"""Compaction records: agno's contract as plans (check arguments, build commands, map answers).

agno's compaction (``agno.compaction.archive``) stores one record per fold and reads the newest back
at the start of every run, so a fold outlasts the run that made it. It calls these methods
synchronously, and decides whether a db stores records by whether its class overrides
``BaseDb.upsert_compaction``. ``AsyncBaseDb`` declares none of them, so the domain is registered
``sync_only``: ``MongoDb`` gets them, ``AsyncMongoDb`` has none (as agno's own async stores), and an
agent on an async store turns compaction off with agno's warning.

Rows are agno's row dicts (the 11 columns of its SQL table, in its order), newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agno_mongo.contract.checks import check_id, check_int, check_str
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import compactions as ops
from agno_mongo.ops.command import Plan
from agno_mongo.schema.compactions import check_row, compaction_row

LOG = logging.getLogger(__name__)


def check_limit(limit: object) -> int | None:
    """``None`` (no limit) or an int of at least 0. agno's SQLite reads a negative ``LIMIT`` as
    "no limit"; here it is refused, as a caller bug."""
    return check_int("limit", limit, minimum=0)


def check_terms(query: object) -> list[str]:
    """The non-empty search terms: ``query`` itself when it is a string, else each string in it."""
    if isinstance(query, str):
        terms = [check_str("query", query)]
    elif isinstance(query, Sequence):
        terms = [check_str(f"query[{index}]", term) for index, term in enumerate(query)]
    else:
        raise InvalidInputError("query", f"must be a string or a list of strings, got {type(query).__name__}")
    return [term for term in terms if term]


class CompactionContract:
    """The compactions part of agno's ``BaseDb`` contract, as plans."""

    def upsert_compaction(self, row: dict[str, Any]) -> Plan[None]:
        """Store one compaction record in one command; a repeated ``compaction_id`` changes nothing.

        An unknown column, a wrong type or a missing ``compaction_id`` / ``session_id`` /
        ``created_at`` is refused before any command. A record too large for one MongoDB document is
        stored without its ``archived_messages`` (with a warning): the fold still applies.
        """
        document = ops.stored_document(check_row(row))
        if not ops.fits(document):
            document = ops.without_transcript(document)
            if not ops.fits(document):
                raise InvalidInputError("row", "is larger than one MongoDB document even without archived_messages")
            LOG.warning(
                "Compaction record %s is too large for one MongoDB document with its archived messages; "
                "it is stored without them (the summary still applies).",
                document["_id"],
            )
        yield from ops.insert_plan(document)
        return None

    def get_compaction(self, compaction_id: str) -> Plan[dict[str, Any] | None]:
        """One record by id as agno's row dict, or ``None``."""
        check_id("compaction_id", compaction_id)
        document: dict[str, Any] | None = yield ops.get(compaction_id)
        return None if document is None else compaction_row(document)

    def get_compactions_for_session(self, session_id: str, limit: int | None = None) -> Plan[list[dict[str, Any]]]:
        """The session's records, newest first (at most ``limit``); one ``find`` on the session index."""
        check_id("session_id", session_id)
        checked = check_limit(limit)
        if checked == 0:
            return []
        documents: list[dict[str, Any]] = yield ops.for_session(session_id, checked)
        return [compaction_row(document) for document in documents]

    def delete_compactions_for_session(self, session_id: str) -> Plan[int]:
        """Delete the session's records; how many there were."""
        check_id("session_id", session_id)
        deleted = yield from ops.delete_plan(session_id)
        return deleted

    def search_compactions(
        self, session_id: str, query: str | Sequence[str], limit: int = 10
    ) -> Plan[list[dict[str, Any]]]:
        """The session's records whose ``archived_messages`` contains ``query`` (or any of several
        terms), ignoring case, newest first, at most ``limit``.

        Terms are literal: ``.``, ``*``, ``%``, ``_``, ``|`` and the rest match themselves (agno's
        SQLite passes them to ``LIKE``, where ``%`` and ``_`` are wildcards). Empty terms are dropped;
        none left answers ``[]`` without a command.
        """
        check_id("session_id", session_id)
        terms = check_terms(query)
        checked = check_limit(limit)
        if not terms or checked == 0:
            return []
        documents: list[dict[str, Any]] = yield ops.for_session(session_id, checked, ops.contains_any(terms))
        return [compaction_row(document) for document in documents]
