"""Schedules and schedule runs: agno's contract as plans (check arguments, build commands, map answers).

``ScheduleContract`` serves both collections (plans name the roles ``schedules`` and
``schedule_runs``); each method has agno's signature and returns a plan that
:func:`~agno_mongo.drivers.blocking` or :func:`~agno_mongo.drivers.awaiting` runs.

Semantics are agno's ``SqliteDb`` ones (rows, filters, orders, pagination, owner scoping, the claim
and release predicates), with these differences, all on the side of integrity:

* Errors are raised, not answered with ``None`` / ``False`` / ``([], 0)``: a poller told "nothing
  due" or a route told "not found" when the server could not be read acts on something false. The
  one exception is ``get_schedules(raise_on_error=False)``, whose empty answer on failure agno
  documents as the contract (a warning is logged).
* Bad input raises :class:`~agno_mongo.errors.InvalidInputError` naming the field, before any
  command (a ``ValueError``, which is what agno's own checks raise).
* Lost replies of the claim, the release and the other non-idempotent writes are resolved by a read
  (see :mod:`agno_mongo.ops.schedules`), never by a blind resend.
"""

from __future__ import annotations

import logging
from typing import Any

from agno.db.schemas.scheduler import build_run_endpoint
from pymongo.errors import PyMongoError

from agno_mongo.contract.checks import (
    check_id,
    check_ids,
    check_int,
    check_optional_id,
    check_optional_str,
    check_owner,
    check_skip,
    check_str,
    now,
)
from agno_mongo.errors import CorruptDocumentError, InvalidInputError
from agno_mongo.ops import schedules as ops
from agno_mongo.ops.command import Plan, Written
from agno_mongo.ops.common import page_of_plan
from agno_mongo.schema.schedules import (
    check_provenance,
    check_run_changes,
    check_run_record,
    check_schedule_changes,
    check_schedule_record,
    run_row,
    schedule_row,
)

LOG = logging.getLogger(__name__)


def _required_int(name: str, value: object, minimum: int | None = None) -> int:
    checked = check_int(name, value, minimum=minimum)
    if checked is None:
        raise InvalidInputError(name, "must be an integer, got None")
    return checked


def _check_bool(name: str, value: object, *, optional: bool) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise InvalidInputError(name, f"must be a bool{' or None' if optional else ''}, got {type(value).__name__}")
    return value


def check_listing_page(limit: object, page: object) -> tuple[int, int]:
    """``(limit, skip)`` from agno's ``limit`` (at least 0; 0 is an empty page, as SQL's ``LIMIT 0``)
    and 1-based ``page`` (at least 1)."""
    checked_limit = _required_int("limit", limit, 0)
    checked_page = _required_int("page", page, 1)
    return checked_limit, check_skip((checked_page - 1) * checked_limit)


class ScheduleContract:
    """The schedules part of agno's ``BaseDb`` contract (both collections), as plans."""

    # --- schedules ------------------------------------------------------------------------------

    def get_schedule(self, schedule_id: str, user_id: str | None = None) -> Plan[dict[str, Any] | None]:
        """One schedule by id as agno's row, or ``None`` (also when ``user_id`` is given and is not its owner)."""
        check_id("schedule_id", schedule_id)
        check_owner("user_id", user_id)
        document: dict[str, Any] | None = yield ops.get_schedule(schedule_id, user_id)
        return None if document is None else schedule_row(document)

    def get_schedule_by_name(self, name: str, user_id: str | None = None) -> Plan[dict[str, Any] | None]:
        """The schedule of that name in one owner bucket: ``user_id=None`` is the unowned bucket,
        never another owner's schedule of the same name."""
        check_str("name", name)
        check_owner("user_id", user_id)
        document: dict[str, Any] | None = yield ops.get_schedule_by_name(name, user_id)
        return None if document is None else schedule_row(document)

    def get_schedules(
        self,
        enabled: bool | None = None,
        limit: int = 100,
        page: int = 1,
        user_id: str | None = None,
        raise_on_error: bool = False,
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """Schedules (of ``user_id`` when given, ``enabled`` or not when given), newest first
        (``created_at``, then id, both descending), one page: ``(rows, total)``.

        One ``find``, plus a ``count`` only when the page does not tell the total. With
        ``raise_on_error=False`` (agno's default) a server error or a malformed stored schedule
        answers ``([], 0)`` after logging a warning, as agno documents; with ``True`` it raises.
        """
        checked_enabled = _check_bool("enabled", enabled, optional=True)
        page_limit, skip = check_listing_page(limit, page)
        check_owner("user_id", user_id)
        strict = _check_bool("raise_on_error", raise_on_error, optional=False)
        query = ops.list_filter(checked_enabled, user_id)
        try:
            if page_limit == 0:
                empty_total: int = yield ops.count(ops.SCHEDULES, query)
                return [], empty_total
            documents, total = yield from page_of_plan(
                ops.SCHEDULES, query, ops.NEWEST_FIRST, page_limit, skip, None, count=True
            )
            assert total is not None  # count=True always answers a total
            return [schedule_row(document) for document in documents], total
        except (PyMongoError, CorruptDocumentError) as error:
            if strict:
                raise
            LOG.warning("Error listing schedules: %s", error)
            return [], 0

    def create_schedule(self, schedule_data: dict[str, Any]) -> Plan[dict[str, Any]]:
        """Store a new schedule in one command; answers agno's: the dict as given.

        An unknown column, a wrong type or a missing required column is refused before any command.
        A taken id, or a name already used by the same owner (the unowned bucket included), raises
        PyMongo's ``DuplicateKeyError`` and writes nothing: AgentOS's ``POST /schedules`` answers 409.
        """
        returned, columns = check_schedule_record(schedule_data)
        yield from ops.insert_plan(ops.SCHEDULES, ops.schedule_document(columns, ops.token()))
        return returned

    def update_schedule(
        self, schedule_id: str, user_id: str | None = None, **kwargs: Any
    ) -> Plan[dict[str, Any] | None]:
        """Set agno's mutable columns (and ``updated_at``) in one command; the schedule after, as agno's
        row, or ``None`` if there is no such schedule (of ``user_id`` when given).

        Columns outside agno's mutable set are refused (agno's ``validate_schedule_update``), naming
        the first. Enabling clears ``disabled_reason`` unless it is given. A rename onto a name the
        owner already uses raises ``DuplicateKeyError`` (AgentOS answers 409) and changes nothing.
        """
        check_id("schedule_id", schedule_id)
        check_owner("user_id", user_id)
        changes = check_schedule_changes(kwargs)
        if changes.get("enabled") is True:
            changes.setdefault("disabled_reason", None)
        document: dict[str, Any] | None = yield ops.update_schedule(schedule_id, user_id, changes, now())
        return None if document is None else schedule_row(document)

    def delete_schedule(self, schedule_id: str, user_id: str | None = None) -> Plan[bool]:
        """Delete a schedule (of ``user_id`` when given) and its runs: ``True`` if it was there."""
        check_id("schedule_id", schedule_id)
        check_owner("user_id", user_id)
        deleted = yield from ops.delete_schedule_plan(schedule_id, user_id)
        return deleted

    def disable_schedules_for_target(self, target_type: str, target_id: str, reason: str | None = None) -> Plan[int]:
        """Disable every enabled schedule aimed at one component, across owners: those whose
        provenance names it and those whose endpoint is its run endpoint (with or without the
        trailing slash); ``reason`` goes into ``disabled_reason``. How many were disabled."""
        checked_type = check_id("target_type", target_type)
        checked_id = check_id("target_id", target_id)
        checked_reason = check_optional_str("reason", reason)
        endpoint = build_run_endpoint(checked_type, checked_id)
        disabled = yield from ops.disable_for_target_plan(checked_type, checked_id, endpoint, checked_reason, now())
        return disabled

    def stamp_schedule_provenance(self, schedule_id: str, **provenance: Any) -> Plan[bool]:
        """Write the provenance columns ``update_schedule`` refuses (``managed_by``, ``target_*``,
        ``created_by_*`` / ``updated_by_*``) and ``updated_at``; ``True`` if the schedule exists."""
        check_id("schedule_id", schedule_id)
        values = check_provenance(provenance)
        result: Written = yield ops.stamp_provenance(schedule_id, values, now())
        return bool(result.matched_count)

    def claim_due_schedule(self, worker_id: str, lock_grace_seconds: int = 300) -> Plan[dict[str, Any] | None]:
        """Atomically claim the oldest due schedule for ``worker_id``: enabled, ``next_run_at`` at or
        before now, and unlocked or locked more than ``lock_grace_seconds`` ago. The schedule as
        locked (agno's row, ``locked_by`` / ``locked_at`` set), or ``None`` when nothing is due.

        One ``findAndModify``; a lost reply is resolved by a read for this claim's token, so of
        several pollers exactly one holds each due schedule and none is left locked unknowingly.
        """
        check_id("worker_id", worker_id)
        grace = _required_int("lock_grace_seconds", lock_grace_seconds, 0)
        document = yield from ops.claim_plan(worker_id, now(), grace)
        return None if document is None else schedule_row(document)

    def release_schedule(
        self,
        schedule_id: str,
        next_run_at: int | None = None,
        *,
        worker_id: str | None = None,
        locked_at: int | None = None,
    ) -> Plan[bool]:
        """Unlock a schedule and arm its next run; ``True`` if it matched.

        With ``worker_id`` / ``locked_at`` only that claim's holder releases (an expired holder whose
        schedule was reclaimed gets ``False`` and changes nothing). ``next_run_at=None`` keeps the
        stored time; an on-demand schedule (``cron_expr == ""``, read from the document, not the
        caller's snapshot) is left with ``next_run_at`` null whatever is given, as agno does.
        """
        check_id("schedule_id", schedule_id)
        checked_next = check_int("next_run_at", next_run_at)
        checked_worker = check_optional_id("worker_id", worker_id)
        checked_locked_at = check_int("locked_at", locked_at)
        released = yield from ops.release_plan(schedule_id, checked_next, checked_worker, checked_locked_at, now())
        return released

    # --- schedule runs --------------------------------------------------------------------------

    def delete_schedule_runs(self, schedule_id: str, *, before: int) -> Plan[int]:
        """Delete the schedule's runs completed before ``before`` (runs still going are kept); how many."""
        check_id("schedule_id", schedule_id)
        cutoff = _required_int("before", before)
        deleted = yield from ops.delete_runs_plan(schedule_id, cutoff)
        return deleted

    def create_schedule_run(self, run_data: dict[str, Any]) -> Plan[dict[str, Any]]:
        """Store a new run record; answers agno's: the dict as given.

        Bad input is refused before any command; a taken id raises ``DuplicateKeyError``; a run of a
        schedule that does not exist (or is deleted meanwhile) is not kept and raises
        :class:`~agno_mongo.ops.schedules.UnknownScheduleError` (agno's SQL stores: a foreign-key error).
        """
        returned, columns = check_run_record(run_data)
        yield from ops.create_run_plan(ops.run_document(columns, ops.token()))
        return returned

    def update_schedule_run(self, schedule_run_id: str, **kwargs: Any) -> Plan[dict[str, Any] | None]:
        """Set the given columns of a run in one command; the run after, as agno's row, or ``None``.
        ``id`` and ``schedule_id`` cannot change. With no columns it answers the run as stored."""
        check_id("schedule_run_id", schedule_run_id)
        changes = check_run_changes(kwargs)
        if not changes:
            current: dict[str, Any] | None = yield ops.get_run(schedule_run_id, None)
            return None if current is None else run_row(current)
        document: dict[str, Any] | None = yield ops.update_run(schedule_run_id, changes)
        return None if document is None else run_row(document)

    def get_schedule_run(self, run_id: str, user_id: str | None = None) -> Plan[dict[str, Any] | None]:
        """One run by id as agno's row, or ``None`` (also when ``user_id`` is given and is not its owner)."""
        check_id("run_id", run_id)
        check_owner("user_id", user_id)
        document: dict[str, Any] | None = yield ops.get_run(run_id, user_id)
        return None if document is None else run_row(document)

    def get_latest_schedule_runs(self, schedule_ids: list[str]) -> Plan[dict[str, dict[str, Any]]]:
        """The latest run of each schedule (``triggered_at``, ``created_at``, id, all descending), by
        schedule id; schedules without runs are absent. One ``aggregate``."""
        ids = check_ids("schedule_ids", schedule_ids)
        if not ids:
            return {}
        groups: list[dict[str, Any]] = yield ops.latest_runs(ids)
        return {group["_id"]: run_row(group["run"]) for group in groups}

    def get_schedule_runs(
        self,
        schedule_id: str,
        limit: int = 20,
        page: int = 1,
        user_id: str | None = None,
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """A schedule's runs (of ``user_id`` when given), newest first, one page: ``(rows, total)``."""
        check_id("schedule_id", schedule_id)
        page_limit, skip = check_listing_page(limit, page)
        check_owner("user_id", user_id)
        query = ops.runs_filter(schedule_id, user_id)
        if page_limit == 0:
            empty_total: int = yield ops.count(ops.RUNS, query)
            return [], empty_total
        documents, total = yield from page_of_plan(
            ops.RUNS, query, ops.NEWEST_FIRST, page_limit, skip, None, count=True
        )
        assert total is not None  # count=True always answers a total
        return [run_row(document) for document in documents], total
