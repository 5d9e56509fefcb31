"""Approvals: agno's contract as plans (check arguments, build commands, map answers).

``ApprovalContract`` holds what the sync and async classes share; each method has agno's signature and
returns a plan that :func:`~agno_mongo.drivers.blocking` or :func:`~agno_mongo.drivers.awaiting` runs.

Where agno's SQL stores swallow an error and answer ``None`` / ``False`` / ``0``, these plans raise:
the approval gate (``agno.os.auth.run_continuation_blocked_reason``) reads an empty answer as
permission to continue a run, so only an answer that was actually read is ever returned.
``get_approvals`` raises too in agno's stores, for that reason.
"""

from __future__ import annotations

from typing import Any

from agno.run.base import RunStatus

from agno_mongo.contract.checks import check_id, check_int, check_optional_id, check_optional_str, check_owner, now
from agno_mongo.contract.checks import check_skip as _check_skip
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import approvals as ops
from agno_mongo.ops.command import Plan, Written
from agno_mongo.ops.common import page_of_plan
from agno_mongo.schema.approvals import approval_row, check_changes, check_record

_RUN_STATUSES = {member.value for member in RunStatus}


def check_run_status(run_status: object) -> str:
    """A ``RunStatus`` (or its exact value) as the stored string."""
    if isinstance(run_status, RunStatus):
        return run_status.value
    if isinstance(run_status, str) and run_status in _RUN_STATUSES:
        return run_status
    raise InvalidInputError("run_status", f"must be a RunStatus, got {run_status!r}")


def check_listing_page(limit: object, page: object) -> tuple[int, int]:
    """``(limit, skip)``: both required and at least 1 (agno's defaults are 100 and 1). A limit of 0
    would answer an empty page that was never read, which the approval gate takes for "nothing pending"."""
    checked_limit = check_int("limit", limit, minimum=1)
    checked_page = check_int("page", page, minimum=1)
    if checked_limit is None:
        raise InvalidInputError("limit", "must be an integer, got None")
    if checked_page is None:
        raise InvalidInputError("page", "must be an integer, got None")
    return checked_limit, _check_skip((checked_page - 1) * checked_limit)


class ApprovalContract:
    """The approvals part of agno's ``BaseDb`` contract, as plans."""

    def create_approval(self, approval_data: dict[str, Any]) -> Plan[dict[str, Any] | None]:
        """Store a new approval in one command; answers agno's: the given dict, with ``created_at``
        and ``updated_at`` set to now when absent.

        An unknown column, a wrong type or a missing required column (``id``, ``run_id``,
        ``session_id``, ``status``, ``source_type``, ``pause_type``) is refused before any command, as
        agno's table refuses it. An id already taken raises ``DuplicateKeyError`` and changes nothing;
        our own resend after a cut connection is recognised and succeeds.
        """
        returned, columns = check_record(approval_data, now())
        yield from ops.create_approval_plan(ops.stored_document(columns, ops.token()))
        return returned

    def get_approval(self, approval_id: str) -> Plan[dict[str, Any] | None]:
        """One approval by id as agno's row dict, or ``None``."""
        check_id("approval_id", approval_id)
        document: dict[str, Any] | None = yield ops.get_approval(approval_id)
        return None if document is None else approval_row(document)

    def get_approvals(
        self,
        status: str | None = None,
        source_type: str | None = None,
        approval_type: str | None = None,
        pause_type: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        user_id: str | None = None,
        schedule_id: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
        page: int = 1,
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """Approvals matching every given column, newest first, one page: ``(rows, total)``.

        Raises on any error (never an empty page it did not read): agno's continue gate reads an empty
        page of pending approvals for a run as "nothing to wait for". One ``find``, plus a ``count``
        only when the page is full (or empty past the first page).
        """
        query = ops.list_filter(
            {
                "status": check_optional_str("status", status),
                "source_type": check_optional_str("source_type", source_type),
                "approval_type": check_optional_str("approval_type", approval_type),
                "pause_type": check_optional_str("pause_type", pause_type),
                "agent_id": check_optional_id("agent_id", agent_id),
                "team_id": check_optional_id("team_id", team_id),
                "workflow_id": check_optional_id("workflow_id", workflow_id),
                "user_id": check_owner("user_id", user_id),
                "schedule_id": check_optional_id("schedule_id", schedule_id),
                "run_id": check_optional_id("run_id", run_id),
            }
        )
        page_limit, skip = check_listing_page(limit, page)
        documents, total = yield from page_of_plan(
            ops.APPROVALS, query, ops.NEWEST_FIRST, page_limit, skip, None, count=True
        )
        assert total is not None  # count=True always answers a total
        return [approval_row(document) for document in documents], total

    def update_approval(
        self, approval_id: str, expected_status: str | None = None, **kwargs: Any
    ) -> Plan[dict[str, Any] | None]:
        """Set the given columns (and ``updated_at``) in one command; the approval after, as agno's row.

        With ``expected_status`` it is a compare-and-set: it lands only if the approval is in that
        status, so of several resolvers exactly one gets the row back and the others ``None``.
        ``None`` also when the approval does not exist. A lost reply is resolved by a read for this
        call's write token, never by a blind resend (see :func:`agno_mongo.ops.approvals.update_approval_plan`).
        """
        check_id("approval_id", approval_id)
        expected = check_optional_str("expected_status", expected_status)
        changes = check_changes(kwargs)
        document = yield from ops.update_approval_plan(approval_id, expected, changes, now())
        return None if document is None else approval_row(document)

    def delete_approval(self, approval_id: str) -> Plan[bool]:
        """Delete one approval: ``True`` if it was there."""
        check_id("approval_id", approval_id)
        deleted = yield from ops.delete_approval_plan(approval_id)
        return deleted

    def get_pending_approval_count(self, user_id: str | None = None) -> Plan[int]:
        """How many approvals are pending, of ``user_id`` when given; one ``count``."""
        check_owner("user_id", user_id)
        count: int = yield ops.pending_count(user_id)
        return count

    def update_approval_run_status(self, run_id: str, run_status: RunStatus) -> Plan[int]:
        """Set ``run_status`` (and ``updated_at``) on every approval of the run in one command; how
        many approvals the run has (agno's SQL row count, which counts unchanged rows too)."""
        check_id("run_id", run_id)
        value = check_run_status(run_status)
        result: Written = yield ops.update_run_status(run_id, value, now())
        return result.matched_count
