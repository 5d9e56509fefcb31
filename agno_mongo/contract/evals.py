"""Eval runs: agno's contract as plans (check arguments, build commands, map answers).

``EvalContract`` holds what the sync and async classes share; each method has agno's signature and
returns a plan that :func:`~agno_mongo.drivers.blocking` or :func:`~agno_mongo.drivers.awaiting` runs.
Every single-run call is one command; a listing is one ``find`` (plus a count only when the total is
asked for and the page does not already tell it).
"""

from __future__ import annotations

from typing import Any

from agno.db.schemas.evals import EvalFilterType, EvalRunRecord, EvalType

from agno_mongo.contract.checks import (
    check_id,
    check_ids,
    check_optional_id,
    check_owner,
    check_page,
    check_sort,
    check_str,
    now,
)
from agno_mongo.errors import EvalRunOwnershipError, InvalidInputError
from agno_mongo.ops import evals as ops
from agno_mongo.ops.command import Plan
from agno_mongo.ops.common import listing_sort, page_of_plan
from agno_mongo.schema.evals import EvalFields, eval_out, eval_row

EVAL_SORT_FIELDS = {
    "run_id",
    "name",
    "eval_type",
    "agent_id",
    "team_id",
    "workflow_id",
    "model_id",
    "model_provider",
    "evaluated_component_name",
    "user_id",
    "created_at",
    "updated_at",
}
_EVAL_TYPES = {member.value for member in EvalType}
_FILTER_TYPES = {member.value for member in EvalFilterType}


def check_eval_types(eval_type: object) -> list[str] | None:
    """``None`` or a list of ``EvalType`` members (or their values), as the stored strings."""
    if eval_type is None:
        return None
    if not isinstance(eval_type, list | tuple):
        raise InvalidInputError("eval_type", f"must be a list of EvalType, got {type(eval_type).__name__}")
    values: list[str] = []
    for index, item in enumerate(eval_type):
        value = item.value if isinstance(item, EvalType) else item
        if not isinstance(value, str) or value not in _EVAL_TYPES:
            raise InvalidInputError(f"eval_type[{index}]", f"must be one of {sorted(_EVAL_TYPES)}, got {item!r}")
        values.append(value)
    return values


def check_filter_type(filter_type: object) -> str | None:
    """``None`` or an ``EvalFilterType`` (or its value): which component id must be set."""
    if filter_type is None:
        return None
    value = filter_type.value if isinstance(filter_type, EvalFilterType) else filter_type
    if not isinstance(value, str) or value not in _FILTER_TYPES:
        raise InvalidInputError("filter_type", f"must be one of {sorted(_FILTER_TYPES)}, got {filter_type!r}")
    return value


class EvalContract:
    """The eval runs part of agno's ``BaseDb`` contract, as plans."""

    def create_eval_run(self, eval_run: EvalRunRecord) -> Plan[EvalRunRecord | None]:
        """Store a new eval run in one command and return it.

        A resend of the same record (a retry after a cut connection) changes nothing and succeeds;
        a different record under a ``run_id`` already taken raises ``DuplicateKeyError``, as agno's
        own adapter does, and the stored run is left as it was.
        """
        fields = EvalFields.from_record(eval_run)
        yield from ops.create_eval_run_plan(fields, now())
        return eval_run

    def get_eval_run(self, eval_run_id: str, deserialize: bool | None = True, user_id: str | None = None) -> Plan[Any]:
        """One run by id; with ``user_id``, only if it is that user's. ``deserialize=False`` gives the row
        dict (with ``user_id``, ``created_at`` and ``updated_at``, which ``EvalRunRecord`` lacks)."""
        check_id("eval_run_id", eval_run_id)
        check_owner("user_id", user_id)
        document = yield ops.get_eval_run(eval_run_id, user_id)
        return None if document is None else eval_out(document, deserialize)

    def get_eval_run_raw(self, eval_run_id: str) -> Plan[dict[str, Any] | None]:
        """One run by id as its row dict (agno's adapter offers this too; unscoped)."""
        check_id("eval_run_id", eval_run_id)
        document = yield ops.get_eval_run(eval_run_id, None)
        return None if document is None else eval_row(document)

    def get_eval_runs(
        self,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        model_id: str | None = None,
        filter_type: EvalFilterType | None = None,
        eval_type: list[EvalType] | None = None,
        deserialize: bool | None = True,
        user_id: str | None = None,
    ) -> Plan[Any]:
        """Filter, sort and page eval runs; newest first unless ``sort_by`` says otherwise.

        ``deserialize=True`` gives a list of ``EvalRunRecord``; ``False`` gives ``(rows, total)``.
        ``eval_type`` keeps runs of any listed type; ``filter_type`` keeps agent, team or workflow runs.
        """
        query = ops.eval_list_filter(
            user_id=check_owner("user_id", user_id),
            agent_id=check_optional_id("agent_id", agent_id),
            team_id=check_optional_id("team_id", team_id),
            workflow_id=check_optional_id("workflow_id", workflow_id),
            model_id=check_optional_id("model_id", model_id),
            eval_types=check_eval_types(eval_type),
            filter_type=check_filter_type(filter_type),
        )
        field, direction = check_sort(sort_by, sort_order, EVAL_SORT_FIELDS)
        sort = listing_sort(field or "created_at", direction, id_field="run_id")
        page_limit, skip = check_page(limit, page)
        documents, total = yield from page_of_plan(
            ops.EVALS, query, sort, page_limit, skip, None, count=not deserialize
        )
        if deserialize:
            return [eval_out(document, True) for document in documents]
        return [eval_out(document, False) for document in documents], total

    def rename_eval_run(
        self, eval_run_id: str, name: str, deserialize: bool | None = True, user_id: str | None = None
    ) -> Plan[Any]:
        """Rename a run in one command and return it; ``None`` if it is absent or not ``user_id``'s."""
        check_id("eval_run_id", eval_run_id)
        check_str("name", name)
        check_owner("user_id", user_id)
        document = yield ops.rename_eval_run(eval_run_id, user_id, name, now())
        return None if document is None else eval_out(document, deserialize)

    def update_eval_run_user_id(self, eval_run_id: str, user_id: str) -> Plan[None]:
        """Make ``user_id`` the owner of a run nobody owns yet (AgentOS does this after creating one).

        One command. A missing run is a no-op, as in agno. A run another user already owns keeps its
        owner and :class:`EvalRunOwnershipError` is raised (agno's adapter would hand it over; AgentOS
        logs the error and carries on).
        """
        check_id("eval_run_id", eval_run_id)
        check_id("user_id", user_id)
        before: dict[str, Any] | None = yield ops.claim_eval_run(eval_run_id, user_id)
        if before is not None and before.get("user_id") not in (None, user_id):
            raise EvalRunOwnershipError(eval_run_id, user_id)
        return None

    def delete_eval_run(self, eval_run_id: str, user_id: str | None = None) -> Plan[None]:
        """Delete one run; with ``user_id``, only if it is that user's."""
        check_id("eval_run_id", eval_run_id)
        check_owner("user_id", user_id)
        yield ops.delete_eval_runs([eval_run_id], user_id)
        return None

    def delete_eval_runs(self, eval_run_ids: list[str], user_id: str | None = None) -> Plan[None]:
        """Delete many runs in one command; with ``user_id``, only that user's."""
        ids = check_ids("eval_run_ids", eval_run_ids)
        check_owner("user_id", user_id)
        if ids:
            yield ops.delete_eval_runs(ids, user_id)
        return None
