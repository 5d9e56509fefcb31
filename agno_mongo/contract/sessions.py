"""Sessions and runs: agno's contract as plans (check arguments, build commands, map answers).

``SessionContract`` holds what the sync and async classes share. Each method has agno's signature
and returns a plan; ``MongoDb`` runs it with :func:`~agno_mongo.drivers.blocking` and
``AsyncMongoDb`` with :func:`~agno_mongo.drivers.awaiting`, so neither class repeats any logic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import bson
from agno.db.base import SessionType
from agno.db.utils import deserialize_run, deserialize_session, get_run_type
from agno.run.base import RunStatus

from agno_mongo.contract.checks import (
    check_choice,
    check_id,
    check_ids,
    check_int,
    check_optional_id,
    check_owner,
    check_page,
    check_session_type,
    check_sort,
    check_status,
    check_str,
    now,
)
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import compactions as compaction_ops
from agno_mongo.ops import runs as run_ops
from agno_mongo.ops import sessions as ops
from agno_mongo.ops import transcripts as transcript_ops
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import listing_sort, page_of_plan, scope_filter
from agno_mongo.schema.base import reading
from agno_mongo.schema.codec import decode_run, encode_run
from agno_mongo.schema.session import SessionDocument, SessionFields, run_to_dict
from agno_mongo.session_cache import SessionCache

SESSION_SORT_FIELDS = {
    "created_at",
    "updated_at",
    "session_id",
    "user_id",
    "session_type",
    "agent_id",
    "team_id",
    "workflow_id",
    "session_data.session_name",
}


def session_out(document: dict[str, Any], session_type: str | None, deserialize: bool | None) -> Any:
    """A stored document as agno wants it: a ``Session`` object or its dict."""
    record = SessionDocument.from_mongo(document).to_agno_dict()
    if not deserialize:
        return record
    return deserialize_session(SessionType(session_type) if session_type else None, record)


def run_row(session_id: str, user_id: str | None, run: dict[str, Any], run_index: int | None) -> dict[str, Any]:
    """One embedded run in the row shape agno's runs tables use for ``deserialize=False``."""
    run_type = get_run_type(run)
    return {
        "run_id": run.get("run_id"),
        "session_id": session_id,
        "run_type": run_type,
        "agent_id": run.get("agent_id"),
        "team_id": run.get("team_id"),
        "workflow_id": run.get("workflow_id"),
        "user_id": user_id,
        "parent_run_id": run.get("parent_run_id"),
        "status": run.get("status"),
        "run_index": run_index,
        "run_data": run,
        "created_at": run.get("created_at"),
    }


def check_fields_size(fields: SessionFields, name: str) -> SessionFields:
    """Refuse session fields that would crowd out the runs in a 16 MiB document."""
    size = len(bson.encode(fields.stored_fields()))
    if size > ops.MAX_FIELDS_BYTES:
        raise InvalidInputError(
            name, f"session fields take {size} bytes; at most {ops.MAX_FIELDS_BYTES} fit beside runs"
        )
    return fields


def _delete_records_of(session_ids: list[str]) -> Plan[None]:
    """Delete what else is stored by session id (compaction records, external-agent transcripts)
    after the sessions themselves, as agno's SQL stores do: both hold the conversation verbatim,
    and left behind, a session re-created under the same id would inherit them. Idempotent."""
    if not session_ids:
        return None
    commands: list[Command] = [
        compaction_ops.delete_for_sessions(session_ids),
        *transcript_ops.delete_for_sessions(session_ids),
    ]
    for command in commands:  # noqa: UP028  (a list iterator cannot receive the results sent back)
        yield command
    return None


class RunHints:
    """Which run ids this instance wrote recently, so re-saving a run tries ``$set`` first.

    Only a guess to save a round trip: a wrong guess costs one command, never correctness.
    """

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._size = size

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)

    def discard(self, key: tuple[str, str]) -> None:
        self._seen.pop(key, None)


def read_whole_session(cache: SessionCache, session_id: str, user_id: str | None) -> Plan[dict[str, Any] | None]:
    """The whole session, current: one command that sends the revision this instance holds,
    answered with only what changed since (see :mod:`agno_mongo.session_cache`)."""
    for _ in range(3):
        base = cache.base(session_id) if cache.enabled else None
        markers = None if base is None else (base.rev, base.inc, base.shape)
        answer, delta = yield from ops.cached_session_plan(session_id, user_id, markers)
        if answer is None:
            return None
        if not delta:
            return cache.store(session_id, answer)
        assert base is not None
        merged = cache.merge(session_id, base, answer)
        if merged is not None:
            return merged
    cache.drop(session_id)  # other threads of this instance keep replacing it: read it whole
    return (yield from ops.whole_session_plan({"_id": session_id, **scope_filter(user_id)}))


class SessionContract:
    """The session and run half of agno's ``BaseDb`` contract, as plans."""

    _run_hints: RunHints
    _session_cache: SessionCache
    _names: dict[str, str]
    max_runs_bytes: int

    # --- sessions ---------------------------------------------------------------------------

    def upsert_session(self, session: Any, deserialize: bool | None = True) -> Plan[Any]:
        """Create or update the session's fields in one command; ``None`` if another user owns it.

        Runs are not written here: agno saves each run with ``upsert_run``.
        """
        fields = check_fields_size(SessionFields.from_session(session), "session")
        document = yield from ops.upsert_session_plan(fields, now())
        if document is None:
            return None
        if not deserialize:
            document["runs"] = [run if isinstance(run, dict) else run.to_dict() for run in session.runs or []]
            return session_out(document, None, deserialize)
        # As agno's SQL stores do: the stored fields, with the caller's own run objects. Converting
        # every run to a dict and back would cost a long session's whole history on every turn.
        document["runs"] = []
        upserted = session_out(document, None, deserialize)
        upserted.runs = session.runs
        return upserted

    def upsert_sessions(
        self, sessions: list[Any], deserialize: bool | None = True, preserve_updated_at: bool = False
    ) -> Plan[list[Any]]:
        """Upsert many sessions in one bulk command; those owned by other users are left out."""
        if not isinstance(sessions, list | tuple):
            raise InvalidInputError("sessions", f"must be a list, got {type(sessions).__name__}")
        items = [
            check_fields_size(SessionFields.from_session(s, name=f"sessions[{i}]"), f"sessions[{i}]")
            for i, s in enumerate(sessions)
            if s is not None
        ]
        documents = yield from ops.upsert_sessions_plan(items, now(), preserve_updated_at=preserve_updated_at)
        runs_by_id = {s.session_id: s.runs for s in sessions if s is not None}
        out = []
        for document in documents:
            runs = runs_by_id.get(document["_id"]) or []
            document["runs"] = [run if isinstance(run, dict) else run.to_dict() for run in runs]
            out.append(session_out(document, None, deserialize))
        return out

    def get_session(
        self,
        session_id: str,
        session_type: SessionType | None = None,
        user_id: str | None = None,
        deserialize: bool | None = True,
        runs_limit: int | None = None,
    ) -> Plan[Any]:
        """One command. With ``runs_limit`` the server returns only the latest N context runs."""
        check_id("session_id", session_id)
        check_owner("user_id", user_id)
        kind = check_session_type(session_type)
        check_int("runs_limit", runs_limit, minimum=0)
        if runs_limit is None:
            document = yield from read_whole_session(self._session_cache, session_id, user_id)
        else:
            document = yield from ops.get_session_plan(session_id, user_id, runs_limit)
        return None if document is None else session_out(document, kind, deserialize)

    def get_sessions(
        self,
        session_type: SessionType | None = None,
        user_id: str | None = None,
        component_id: str | None = None,
        session_name: str | None = None,
        start_timestamp: int | None = None,
        end_timestamp: int | None = None,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        deserialize: bool | None = True,
        include_runs: bool = True,
    ) -> Plan[Any]:
        """Filter, sort and page sessions; with ``deserialize=False`` also the total count."""
        kind = check_session_type(session_type)
        query = ops.session_list_filter(
            session_type=kind,
            user_id=check_owner("user_id", user_id),
            component_id=check_optional_id("component_id", component_id),
            session_name=None if session_name is None else check_str("session_name", session_name),
            start_timestamp=check_int("start_timestamp", start_timestamp),
            end_timestamp=check_int("end_timestamp", end_timestamp),
        )
        field, direction = check_sort(sort_by, sort_order, SESSION_SORT_FIELDS)
        sort = listing_sort(field or "created_at", direction)
        page_limit, skip = check_page(limit, page)
        projection = ops.INTERNAL if include_runs else {"runs": False, "spilled": False, **ops.INTERNAL}
        documents, total = yield from page_of_plan(
            ops.SESSIONS, query, sort, page_limit, skip, projection, count=not deserialize
        )
        if include_runs:
            documents = yield from ops.attach_overflow_plan(documents)
        if deserialize:
            return [session_out(document, kind, True) for document in documents]
        return [session_out(document, kind, False) for document in documents], total

    def rename_session(
        self,
        session_id: str,
        session_type: SessionType | None,
        session_name: str,
        user_id: str | None = None,
        deserialize: bool | None = True,
    ) -> Plan[Any]:
        """Set ``session_data.session_name`` in one command and return the renamed session.

        A name that would push the session's fields past their cap (so its runs would no longer fit
        in one 16 MiB document) is refused with :class:`~agno_mongo.errors.InvalidInputError`
        naming ``session_name``; nothing is changed.
        """
        check_id("session_id", session_id)
        check_owner("user_id", user_id)
        kind = check_session_type(session_type)
        name = check_str("session_name", session_name)
        document = yield from ops.rename_session_plan(session_id, user_id, kind, name, now())
        if document is not None and document.get("spilled"):
            document = yield from ops.whole_session_plan({"_id": session_id, **scope_filter(user_id)})
        return None if document is None else session_out(document, kind, deserialize)

    def delete_session(self, session_id: str, user_id: str | None = None) -> Plan[bool]:
        """Delete one session with its runs, atomically (they are one document)."""
        check_id("session_id", session_id)
        check_owner("user_id", user_id)
        deleted, cascade = yield from ops.delete_sessions_plan([session_id], user_id)
        self._session_cache.drop(session_id)
        yield from _delete_records_of(cascade)
        return bool(deleted)

    def delete_sessions(self, session_ids: list[str], user_id: str | None = None) -> Plan[None]:
        """Delete many sessions (only the caller's when ``user_id`` is given)."""
        ids = check_ids("session_ids", session_ids)
        check_owner("user_id", user_id)
        if ids:
            _, cascade = yield from ops.delete_sessions_plan(ids, user_id)
            for session_id in ids:
                self._session_cache.drop(session_id)
            yield from _delete_records_of(cascade)
        return None

    def reassign_session_owner(self, session_id: str, *, previous_user_id: str, user_id: str | None) -> Plan[bool]:
        """Hand an idle session to another owner if ``previous_user_id`` still owns it."""
        check_id("session_id", session_id)
        check_id("previous_user_id", previous_user_id)
        check_owner("user_id", user_id)
        changed = yield from ops.reassign_session_owner_plan(session_id, previous_user_id, user_id, now())
        return changed

    def delete_orphaned_overflow(self, older_than_seconds: int = ops.ORPHAN_GRACE_SECONDS) -> Plan[int]:
        """Delete overflow chunks no session references any more (sessions expired by TTL or deleted
        after a lost reply, rewritten runs, commits that missed) once ``older_than_seconds`` old
        (an hour by default: a younger one may belong to a commit still on its way).

        Nothing reads an unreferenced chunk, so this only frees space: run it periodically, for
        example daily or when ``session_ttl_seconds`` is set. Returns how many were deleted.
        """
        grace = check_int("older_than_seconds", older_than_seconds, minimum=0)
        if grace is None:
            grace = ops.ORPHAN_GRACE_SECONDS
        deleted = yield from ops.delete_orphaned_overflow_plan(now(), grace)
        return deleted

    # --- runs -------------------------------------------------------------------------------

    def upsert_run(
        self, run: Any, session_id: str, user_id: str | None = None, run_index: int | None = None
    ) -> Plan[None]:
        """Append or replace one run inside its session: one command in the common case.

        Raises :class:`~agno_mongo.errors.SessionOwnershipError` if the session is another user's.
        ``run_index`` (agno's position of the run in the session) places a new run there, so runs
        saved out of order read back in agno's order; without it a new run is appended. A run
        already stored keeps its place.
        """
        check_id("session_id", session_id)
        check_owner("user_id", user_id)
        check_int("run_index", run_index, minimum=0)
        data = run_to_dict(run)
        key = (session_id, data["run_id"])
        stored = dict(encode_run(data))
        cached = self._session_cache.base(session_id)
        yield from run_ops.upsert_run_plan(
            session_id,
            user_id,
            stored,
            get_run_type(run),
            now(),
            budget=self.max_runs_bytes,
            likely_exists=key in self._run_hints or self._session_cache.holds_run(session_id, data["run_id"]),
            run_index=run_index,
            known_revision=None if cached is None else cached.rev,
        )
        self._run_hints.add(key)
        return None

    def get_run(self, run_id: str, deserialize: bool | None = True) -> Plan[Any]:
        """One run by id, from whichever session holds it."""
        check_id("run_id", run_id)
        document = yield from run_ops.get_run_plan(run_id)
        if not document or not document.get("runs"):
            return None
        with reading(ops.SESSIONS, document):
            run = decode_run(document["runs"][0])
        if not deserialize:
            return run_row(document["_id"], document.get("user_id"), run, None)
        return deserialize_run(None, run)

    def get_runs(
        self,
        session_id: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        status: RunStatus | None = None,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        deserialize: bool | None = True,
    ) -> Plan[Any]:
        """Runs matching the filters, across sessions, in one aggregation (plus a count if needed)."""
        check_optional_id("session_id", session_id)
        check_owner("user_id", user_id)
        run_filter: dict[str, Any] = {}
        for name, value in (("agent_id", agent_id), ("team_id", team_id), ("workflow_id", workflow_id)):
            if check_optional_id(name, value) is not None:
                run_filter[name] = value
        if status is not None:
            run_filter["status"] = check_status(status)
        field, direction = check_sort(sort_by, sort_order, run_ops.RUN_SORT_FIELDS)
        if field is None:
            sort = (
                [("_seq", 1), ("run_index", 1)]
                if session_id
                else [("runs.created_at", 1), ("_id", 1), ("_seq", 1), ("run_index", 1)]
            )
        else:
            key = "run_index" if field == "run_index" else f"runs.{field}"
            sort = [(key, direction), ("_id", direction), ("_seq", direction), ("run_index", direction)]
        page_limit, skip = check_page(limit, page)
        pipeline = run_ops.runs_pipeline(
            overflow_collection=self._names["overflow"],
            session_id=session_id,
            user_id=user_id,
            run_filter=run_filter,
            sort=sort,
            skip=skip,
            limit=page_limit,
        )
        rows, total = yield from run_ops.runs_plan(pipeline, skip, page_limit, count=not deserialize)
        for row in rows:
            with reading(ops.SESSIONS, {"_id": row.get("session_id")}):
                row["run_data"] = decode_run(row["run_data"])
        if deserialize:
            return [deserialize_run(None, row["run_data"]) for row in rows]
        return [run_row(r["session_id"], r.get("user_id"), r["run_data"], r.get("run_index")) for r in rows], total

    def delete_run(self, run_id: str) -> Plan[bool]:
        """Remove one run from its session."""
        check_id("run_id", run_id)
        deleted = yield from run_ops.delete_runs_plan([run_id], now())
        return bool(deleted)

    def delete_runs(self, run_ids: list[str]) -> Plan[None]:
        """Remove runs from whichever sessions hold them."""
        ids = check_ids("run_ids", run_ids)
        if ids:
            yield from run_ops.delete_runs_plan(ids, now())
        return None

    def cancel_pending_run(
        self,
        run_id: str,
        *,
        session_id: str,
        reason: str,
        user_id: str | None = None,
        expected_status: str = "PENDING",
    ) -> Plan[bool]:
        """Mark a PENDING/RUNNING run CANCELLED only if it still has ``expected_status``."""
        check_id("run_id", run_id)
        check_id("session_id", session_id)
        check_owner("user_id", user_id)
        check_str("reason", reason)
        check_choice("expected_status", expected_status, {"PENDING", "RUNNING"})
        changed = yield from run_ops.cancel_pending_run_plan(
            session_id, run_id, user_id, reason, expected_status, now(), budget=self.max_runs_bytes
        )
        return changed
