"""Company (Products, Projects, Tasks, Sources, acceptances, routine links): agno's contract as plans.

``CompanyContract`` holds what the sync and async classes share; each method has agno's signature
(``agno.db.base.BaseDb``) and returns a plan. agno's own lifecycle rules (``agno.db.schemas.*``:
transitions, run reservations, restores, metadata policy) are called as they are, on the decoded
stored row, so a rule change in agno applies here too; what agno's SQL adapters do in SQL (locks,
cascades, conditional updates) is done by :mod:`agno_mongo.ops.company`, one document per write
where that is enough and a transaction where several must change together (see docs/company.md).

Bad arguments raise :class:`~agno_mongo.errors.InvalidInputError` (a ``ValueError``, as agno's
adapters raise) naming the argument, before any command. A rule that depends on stored state (an
invalid transition, an archived Product, active Tasks under an archive) raises agno's own
``ValueError`` with agno's message, which AgentOS turns into 409/422.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agno.db.base import _UNSET_UPDATED_AT
from agno.db.schemas.products import product_metadata, validate_product_fields
from agno.db.schemas.projects import project_transition_fields, validate_project_fields
from agno.db.schemas.sources import validate_source_fields
from agno.db.schemas.tasks import TASK_TRANSITIONS, task_run_fields, task_transition_fields, validate_task_fields
from agno.db.sql.company import task_restore_fields
from pymongo import ReturnDocument

from agno_mongo.contract.checks import check_id, check_ids, check_int, check_optional_id, check_owner, check_str, now
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import company as ops
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import page_of_plan
from agno_mongo.schema.codec import encode_fields
from agno_mongo.schema.company import PRODUCT_ARCHIVED, PROJECT_ARCHIVED, check_changes, check_record, company_row

Row = dict[str, Any]


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(name, f"must be a bool, got {type(value).__name__}")
    return value


def _agno_rule(rule: Callable[[], Any], keys: Mapping[str, Any] | None = None, default: str = "fields") -> Any:
    """Run one of agno's validators; its ``ValueError`` becomes :class:`InvalidInputError` naming the
    field its message names (else ``default``)."""
    try:
        return rule()
    except ValueError as error:
        message = str(error)
        field = next((key for key in (keys or {}) if isinstance(key, str) and key in message), default)
        raise InvalidInputError(field, message) from None


def _page(limit: object, page: object) -> tuple[int, int]:
    checked_limit = check_int("limit", limit, minimum=1)
    checked_page = check_int("page", page, minimum=1)
    if checked_limit is None or checked_page is None:
        raise InvalidInputError("limit" if checked_limit is None else "page", "must be a positive integer")
    return checked_limit, (checked_page - 1) * checked_limit


def _sort(sort_by: object, sort_order: object) -> list[tuple[str, int]]:
    if sort_by is not None and sort_by not in ("created_at", "updated_at"):
        raise InvalidInputError("sort_by", f"must be created_at or updated_at, got {sort_by!r}")
    if sort_order is not None and sort_order not in ("asc", "desc"):
        raise InvalidInputError("sort_order", f"must be asc or desc, got {sort_order!r}")
    return ops.sort_spec(str(sort_by or "created_at"), str(sort_order or "desc"))


def _expected_updated_at(value: object) -> object:
    if value is _UNSET_UPDATED_AT or value is None:
        return value
    return check_int("expected_updated_at", value)


def _transitions(name: str, value: object) -> list[Any] | None:
    if value is not None and not isinstance(value, list):
        raise InvalidInputError(name, f"must be a list of transition dicts, got {type(value).__name__}")
    return value


def _auto_accept(value: object) -> dict[str, Any] | None:
    """agno's ``auto_accept`` dict: ``routine_id``, ``policy`` and ``max_acceptances`` are read."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError("auto_accept", f"must be a dict, got {type(value).__name__}")
    check_str("auto_accept.routine_id", value.get("routine_id"))
    check_str("auto_accept.policy", value.get("policy"))
    if check_int("auto_accept.max_acceptances", value.get("max_acceptances")) is None:
        raise InvalidInputError("auto_accept.max_acceptances", "must be an integer")
    encode_fields({"auto_accept": value})
    return value


def _descriptive(kind: str, fields: dict[str, Any], validate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """An update's fields checked by agno's rule, then for type, then for encodability."""
    _agno_rule(lambda: validate(fields), fields)
    checked = check_changes(kind, fields)
    ops.changes(kind, checked, "")  # refuses what the codec cannot store, before any command
    return checked


def _row(kind: str, document: Mapping[str, Any] | None) -> Row | None:
    return None if document is None else company_row(kind, document)


def _scoped_update(record_id: str, user_id: str | None, deleted: bool) -> dict[str, Any]:
    query: dict[str, Any] = {"_id": record_id, "deleted_at": {"$ne": None} if deleted else None}
    if user_id is not None:
        query["user_id"] = user_id
    return query


class CompanyContract:
    """The Company part of agno's ``BaseDb`` contract, as plans."""

    # --- Sources ---------------------------------------------------------------------------------

    def add_product_routine(self, product_id: str, schedule_id: str) -> Plan[Row]:
        """Append a Routine (schedule) id to the Product's ``metadata.routine_ids`` once, keeping the
        rest of its metadata: a compare-and-set on the Product's revision, so concurrent links and
        metadata edits never overwrite each other. ``ValueError`` if the Product is missing or archived."""
        check_id("product_id", product_id)
        check_id("schedule_id", schedule_id)

        def compute(row: Row) -> dict[str, Any] | None:
            metadata = product_metadata(dict(row["metadata"] or {}))
            ids = list(metadata.get("routine_ids") or [])
            if schedule_id in ids:
                return None
            metadata["routine_ids"] = [*ids, schedule_id]
            return {"metadata": metadata, "updated_at": now()}

        document = yield from ops.cas_plan("products", {"_id": product_id, "deleted_at": None}, compute)
        if document is None:
            raise ValueError("Product is missing or archived")
        return company_row("products", document)

    def create_source(self, source_data: dict[str, Any], reuse: bool = False) -> Plan[Row]:
        """Create a Source under an active Product (serialised with its archive in one transaction).
        With ``reuse``, an identical Source of the same reference is answered instead, and a
        conflicting or archived one refused with ``ValueError``, as agno's ``create_company_source``."""
        columns = check_record("sources", source_data, "source_data")
        _flag("reuse", reuse)
        document = ops.stored_document("sources", columns, ops.token())

        def steps() -> Plan[Row | None]:
            yield from ops.lock_product_plan(columns["product_id"])
            if reuse:
                rows = yield Command(
                    ops.SOURCES,
                    "find",
                    {
                        "filter": {"product_id": columns["product_id"], "reference": columns["reference"]},
                        "sort": [("created_at", 1), ("_id", 1)],
                    },
                )
                existing_rows = [company_row("sources", row) for row in rows]
                requested = {k: v for k, v in (columns.get("config") or {}).items() if k != "metadata"}
                for existing in existing_rows:
                    config = {k: v for k, v in (existing.get("config") or {}).items() if k != "metadata"}
                    if (
                        existing.get("deleted_at") is not None
                        or existing["type"] != columns["type"]
                        or existing.get("credential_ref") != columns.get("credential_ref")
                        or config != requested
                    ):
                        raise ValueError(
                            "Source "
                            + existing["id"]
                            + " already uses this reference with conflicting configuration or is archived"
                        )
                if existing_rows:
                    return existing_rows[0]
            yield ops.insert(ops.SOURCES, document)
            return None

        reused = yield from ops.atomically(steps, "create_source")
        return reused if reused is not None else dict(columns)

    def get_source(self, source_id: str, user_id: str | None = None, include_deleted: bool = False) -> Plan[Row | None]:
        """One Source by id (of ``user_id`` when given; archived ones only with ``include_deleted``)."""
        check_id("source_id", source_id)
        query = ops.scoped(source_id, check_owner("user_id", user_id), _flag("include_deleted", include_deleted))
        document = yield Command(ops.SOURCES, "find_one", {"filter": query})
        return _row("sources", document)

    def get_sources(
        self,
        user_id: str | None = None,
        limit: int = 20,
        page: int = 1,
        include_deleted: bool = False,
        product_id: str | None = None,
    ) -> Plan[tuple[list[Row], int]]:
        """Sources of active Products, newest first, one page, and the total."""
        query = ops.list_query(
            check_owner("user_id", user_id),
            _flag("include_deleted", include_deleted),
            (PRODUCT_ARCHIVED,),
            product_id=check_optional_id("product_id", product_id),
        )
        page_limit, skip = _page(limit, page)
        documents, total = yield from page_of_plan(
            ops.SOURCES, query, ops.sort_spec("created_at", "desc"), page_limit, skip, None, count=True
        )
        assert total is not None
        return [company_row("sources", document) for document in documents], total

    def update_source(self, source_id: str, user_id: str | None = None, **fields: Any) -> Plan[Row | None]:
        """Update an active Source; agno's ``validate_source_fields`` judges the result against the
        stored type and reference. A compare-and-set on the Source's revision."""
        check_id("source_id", source_id)
        owner = check_owner("user_id", user_id)
        unknown = set(fields) - {"product_id", "type", "reference", "credential_ref", "config"}
        if unknown:
            raise InvalidInputError(sorted(unknown)[0], f"Unsupported source fields: {sorted(unknown)}")
        checked = check_changes("sources", fields)
        ops.changes("sources", checked, "")

        def compute(existing: Row) -> dict[str, Any]:
            candidate = {**{key: existing[key] for key in ("type", "reference", "credential_ref", "config")}, **checked}
            if "config" not in checked and isinstance(candidate.get("config"), dict):
                candidate["config"] = {key: value for key, value in candidate["config"].items() if key != "metadata"}
            if "reference" not in checked and candidate["type"] == existing["type"]:
                candidate.pop("reference", None)
            validate_source_fields(candidate)
            return {**checked, "updated_at": now()}

        document = yield from ops.cas_plan("sources", _scoped_update(source_id, owner, False), compute)
        return _row("sources", document)

    def delete_source(self, source_id: str, user_id: str | None = None) -> Plan[bool]:
        """Archive an active Source: ``True`` if this call did."""
        check_id("source_id", source_id)
        query = _scoped_update(source_id, check_owner("user_id", user_id), False)
        when, write_token = now(), ops.token()
        update = ops.changes("sources", {"deleted_at": when, "updated_at": when}, write_token)
        document = yield from ops.modify_plan(ops.SOURCES, query, update, write_token)
        return document is not None

    def restore_source(self, source_id: str, user_id: str | None = None) -> Plan[Row | None]:
        """Restore an archived Source: the row after, or ``None``."""
        check_id("source_id", source_id)
        query = _scoped_update(source_id, check_owner("user_id", user_id), True)
        write_token = ops.token()
        update = ops.changes("sources", {"deleted_at": None, "updated_at": now()}, write_token)
        document = yield from ops.modify_plan(ops.SOURCES, query, update, write_token)
        return _row("sources", document)

    # --- Products --------------------------------------------------------------------------------

    def create_product(self, product_data: dict[str, Any]) -> Plan[Row]:
        """Store a new Product (agno's archive policy applied to its metadata) in one command; an id
        already taken raises ``DuplicateKeyError`` and changes nothing."""
        if not isinstance(product_data, Mapping):
            raise InvalidInputError("product_data", f"must be a dict, got {type(product_data).__name__}")
        metadata = product_data.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInputError("product_data.metadata", "must be a dict or None")
        data = {
            **product_data,
            "metadata": _agno_rule(lambda: product_metadata(metadata), default="product_data.metadata"),
        }
        columns = check_record("products", data, "product_data")
        document = ops.stored_document("products", columns, ops.token())
        yield from ops.create_plan(ops.PRODUCTS, document, "product")
        return dict(columns)

    def get_product(
        self, product_id: str, user_id: str | None = None, include_deleted: bool = False
    ) -> Plan[Row | None]:
        """One Product by id (of ``user_id`` when given; archived ones only with ``include_deleted``)."""
        check_id("product_id", product_id)
        query = ops.scoped(product_id, check_owner("user_id", user_id), _flag("include_deleted", include_deleted))
        document = yield Command(ops.PRODUCTS, "find_one", {"filter": query})
        return _row("products", document)

    def get_products(
        self,
        user_id: str | None = None,
        limit: int = 20,
        page: int = 1,
        include_deleted: bool = False,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> Plan[tuple[list[Row], int]]:
        """Products, by ``created_at`` or activity (newest first unless ``asc``), one page, and the total."""
        sort = _sort(sort_by, sort_order)
        query = ops.list_query(check_owner("user_id", user_id), _flag("include_deleted", include_deleted), ())
        page_limit, skip = _page(limit, page)
        documents, total = yield from page_of_plan(ops.PRODUCTS, query, sort, page_limit, skip, None, count=True)
        assert total is not None
        return [company_row("products", document) for document in documents], total

    def update_product(self, product_id: str, user_id: str | None = None, **fields: Any) -> Plan[Row | None]:
        """Update ``name``/``purpose``/``metadata`` of an active Product; replacing the metadata keeps
        its linked Routine ids (a compare-and-set on the Product's revision, so a concurrent
        ``add_product_routine`` is never lost)."""
        check_id("product_id", product_id)
        owner = check_owner("user_id", user_id)
        checked = _descriptive("products", fields, validate_product_fields)
        if "metadata" in checked:
            checked["metadata"] = product_metadata(checked["metadata"])

        def compute(existing: Row) -> dict[str, Any]:
            values = dict(checked)
            if "metadata" in values and "routine_ids" not in values["metadata"]:
                routine_ids = (existing["metadata"] or {}).get("routine_ids")
                if routine_ids:
                    values["metadata"] = {**values["metadata"], "routine_ids": routine_ids}
            return {**values, "updated_at": now()}

        document = yield from ops.cas_plan("products", _scoped_update(product_id, owner, False), compute)
        return _row("products", document)

    def get_product_counts(self, product_ids: list[str]) -> Plan[dict[str, dict[str, Any]]]:
        """Per Product: its visible proposed/active Projects and its visible Tasks per status (every
        status present, zero included); two grouped aggregations."""
        ids = check_ids("product_ids", product_ids)
        if not ids:
            return {}
        counts: dict[str, dict[str, Any]] = {
            pid: {"projects": 0, "tasks": dict.fromkeys(TASK_TRANSITIONS, 0)} for pid in ids
        }
        projects = yield Command(
            ops.PROJECTS,
            "aggregate",
            {
                "pipeline": [
                    {
                        "$match": {
                            "product_id": {"$in": ids},
                            "deleted_at": None,
                            "status": {"$in": ["proposed", "active"]},
                            PRODUCT_ARCHIVED: False,
                        }
                    },
                    {"$group": {"_id": "$product_id", "total": {"$sum": 1}}},
                ],
                "allowDiskUse": True,
            },
        )
        tasks = yield Command(
            ops.TASKS,
            "aggregate",
            {
                "pipeline": [
                    {
                        "$match": {
                            "product_id": {"$in": ids},
                            "deleted_at": None,
                            PRODUCT_ARCHIVED: False,
                            PROJECT_ARCHIVED: False,
                        }
                    },
                    {"$group": {"_id": {"parent": "$product_id", "status": "$status"}, "total": {"$sum": 1}}},
                ],
                "allowDiskUse": True,
            },
        )
        for row in projects:
            counts[row["_id"]]["projects"] = row["total"]
        for row in tasks:
            counts[row["_id"]["parent"]]["tasks"][row["_id"]["status"]] = row["total"]
        return counts

    def delete_product(self, product_id: str, user_id: str | None = None) -> Plan[bool]:
        """Archive a Product and its active Projects and Tasks in one transaction; ``ValueError``
        listing the active Tasks (and nothing written) if any; ``False`` if there was none to archive."""
        check_id("product_id", product_id)
        owner = check_owner("user_id", user_id)
        archived: bool = yield from ops.atomically(
            lambda: ops.archive_product_plan(product_id, owner), "delete_product"
        )
        return archived

    def restore_product(self, product_id: str, user_id: str | None = None) -> Plan[Row | None]:
        """Restore an archived Product and exactly the children its archive archived, in one transaction."""
        check_id("product_id", product_id)
        owner = check_owner("user_id", user_id)
        document = yield from ops.atomically(lambda: ops.restore_product_plan(product_id, owner), "restore_product")
        return _row("products", document)

    # --- Projects --------------------------------------------------------------------------------

    def create_project(self, project_data: dict[str, Any], reuse: bool = False) -> Plan[Row]:
        """Create a Project under an active Product (a transaction holding the Product's lock); with
        ``reuse``, an existing Project of that id in that Product is answered instead."""
        columns = check_record("projects", project_data, "project_data")
        _flag("reuse", reuse)
        document = ops.stored_document("projects", columns, ops.token())

        def steps() -> Plan[Row | None]:
            yield from ops.lock_product_plan(columns["product_id"])
            if reuse:
                existing = yield ops.by_id(ops.PROJECTS, columns["id"])
                if existing is not None:
                    if existing.get("product_id") != columns["product_id"]:
                        raise ValueError("Project identity belongs to another Product")
                    return company_row("projects", existing)
            yield ops.insert(ops.PROJECTS, document)
            return None

        reused = yield from ops.atomically(steps, "create_project")
        return reused if reused is not None else dict(columns)

    def get_project(
        self, project_id: str, user_id: str | None = None, include_deleted: bool = False
    ) -> Plan[Row | None]:
        """One Project by id (of ``user_id`` when given; archived ones only with ``include_deleted``)."""
        check_id("project_id", project_id)
        query = ops.scoped(project_id, check_owner("user_id", user_id), _flag("include_deleted", include_deleted))
        document = yield Command(ops.PROJECTS, "find_one", {"filter": query})
        return _row("projects", document)

    def get_projects(
        self,
        user_id: str | None = None,
        limit: int = 20,
        page: int = 1,
        include_deleted: bool = False,
        product_id: str | None = None,
        status: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> Plan[tuple[list[Row], int]]:
        """Projects of active Products, filtered and sorted as agno's, one page, and the total."""
        sort = _sort(sort_by, sort_order)
        query = ops.list_query(
            check_owner("user_id", user_id),
            _flag("include_deleted", include_deleted),
            (PRODUCT_ARCHIVED,),
            product_id=check_optional_id("product_id", product_id),
            status=None if status is None else check_str("status", status),
        )
        page_limit, skip = _page(limit, page)
        documents, total = yield from page_of_plan(ops.PROJECTS, query, sort, page_limit, skip, None, count=True)
        assert total is not None
        return [company_row("projects", document) for document in documents], total

    def update_project(
        self, project_id: str, user_id: str | None = None, expected_status: str | None = None, **fields: Any
    ) -> Plan[Row | None]:
        """Update ``name``/``outcome``/``target_date`` of an active Project (in ``expected_status`` when
        given): one command. ``ValueError`` as agno's when its Product is missing or archived."""
        check_id("project_id", project_id)
        owner = check_owner("user_id", user_id)
        if expected_status is not None:
            check_str("expected_status", expected_status)
        checked = _descriptive("projects", fields, validate_project_fields)
        query = _scoped_update(project_id, owner, False)
        if expected_status is not None:
            query["status"] = expected_status
        write_token = ops.token()
        document = yield from ops.modify_plan(
            ops.PROJECTS, query, ops.changes("projects", {**checked, "updated_at": now()}, write_token), write_token
        )
        if document is None:
            yield from ops.explain_miss_plan("projects", project_id)
        return _row("projects", document)

    def get_project_counts(self, project_ids: list[str]) -> Plan[dict[str, dict[str, Any]]]:
        """Per Project: its visible Tasks per status (every status present); one grouped aggregation."""
        ids = check_ids("project_ids", project_ids)
        if not ids:
            return {}
        counts: dict[str, dict[str, Any]] = {pid: {"tasks": dict.fromkeys(TASK_TRANSITIONS, 0)} for pid in ids}
        rows = yield Command(
            ops.TASKS,
            "aggregate",
            {
                "pipeline": [
                    {
                        "$match": {
                            "project_id": {"$in": ids},
                            "deleted_at": None,
                            PRODUCT_ARCHIVED: False,
                            PROJECT_ARCHIVED: False,
                        }
                    },
                    {"$group": {"_id": {"parent": "$project_id", "status": "$status"}, "total": {"$sum": 1}}},
                ],
                "allowDiskUse": True,
            },
        )
        for row in rows:
            counts[row["_id"]["parent"]]["tasks"][row["_id"]["status"]] = row["total"]
        return counts

    def delete_project(
        self, project_id: str, user_id: str | None = None, updated_before: int | None = None
    ) -> Plan[bool]:
        """Archive a Project and its active Tasks in one transaction; ``ValueError`` with the active
        Tasks; with ``updated_before``, only finished work last changed before it."""
        check_id("project_id", project_id)
        owner = check_owner("user_id", user_id)
        cutoff = check_int("updated_before", updated_before)
        archived: bool = yield from ops.atomically(
            lambda: ops.archive_project_plan(project_id, owner, cutoff), "delete_project"
        )
        return archived

    def restore_project(self, project_id: str, user_id: str | None = None) -> Plan[Row | None]:
        """Restore an archived Project and exactly the Tasks its archive archived, in one transaction."""
        check_id("project_id", project_id)
        owner = check_owner("user_id", user_id)
        document = yield from ops.atomically(lambda: ops.restore_project_plan(project_id, owner), "restore_project")
        return _row("projects", document)

    def transition_project(
        self,
        project_id: str,
        target: str,
        reason: str,
        user_id: str | None = None,
        accepted_by: str | None = None,
        expected_updated_at: int | None = _UNSET_UPDATED_AT,
        auto_accept: dict[str, Any] | None = None,
    ) -> Plan[Row | None]:
        """agno's lifecycle transition of a visible Project, recorded with caller and reason, in one
        transaction under the Product's lock (completion checks the Project's open Tasks); a
        compare-and-set on the Project's revision: ``None`` if it changed since it was read."""
        check_id("project_id", project_id)
        check_str("target", target)
        check_str("reason", reason)
        owner = check_owner("user_id", user_id)
        check_owner("accepted_by", accepted_by)
        expected = _expected_updated_at(expected_updated_at)
        accept = _auto_accept(auto_accept)

        def steps() -> Plan[Any]:
            yield from ops.lock_child_plan("projects", project_id)
            if accept is not None:
                if target != "done" or expected is _UNSET_UPDATED_AT:
                    raise ValueError("Automatic completion requires expected_updated_at and a Project with Tasks")
                spent = yield from ops.acceptance_count_plan(
                    accept["routine_id"], accept["policy"], {}, {"_id": {"$ne": project_id}}
                )
                if spent >= accept["max_acceptances"]:
                    raise ValueError("Routine acceptance limit reached")
            document = yield Command(ops.PROJECTS, "find_one", {"filter": ops.scoped(project_id, owner, False)})
            if document is None:
                return None
            existing = company_row("projects", document)
            open_tasks: list[Row] = []
            if target == "done":
                rows = yield Command(
                    ops.TASKS, "find", {"filter": {"project_id": project_id, "status": {"$nin": ops.TERMINAL}}}
                )
                open_tasks = [company_row("tasks", row) for row in rows]
            fields = project_transition_fields(existing, target, reason, accepted_by, tasks=open_tasks)
            if accept is not None:
                fields["transitions"][-1]["auto_accept"] = accept
            query: dict[str, Any] = {
                "_id": project_id,
                "deleted_at": None,
                "status": existing["status"],
                "_rev": document.get("_rev", 0),
            }
            if expected is not _UNSET_UPDATED_AT:
                query["updated_at"] = expected
            if owner is not None:
                query["user_id"] = owner
            return (
                yield Command(
                    ops.PROJECTS,
                    "find_one_and_update",
                    {
                        "filter": query,
                        "update": ops.changes("projects", fields, ops.token()),
                        "return_document": ReturnDocument.AFTER,
                    },
                )
            )

        document = yield from ops.atomically(steps, "transition_project")
        return _row("projects", document)

    # --- Tasks -----------------------------------------------------------------------------------

    def create_task(self, task_data: dict[str, Any]) -> Plan[Row]:
        """Create a Task under an active Product (and active Project of that Product), in a transaction
        holding the Product's lock. A ``dedupe_key`` already used in the Product answers that Task."""
        columns = check_record("tasks", task_data, "task_data")
        document = ops.stored_document("tasks", columns, ops.token())
        product_id, project_id = columns["product_id"], columns["project_id"]

        def steps() -> Plan[Row | None]:
            yield from ops.lock_product_plan(product_id)
            yield from ops.require_project_plan(project_id, product_id)
            if columns["dedupe_key"] is not None:
                existing = yield Command(
                    ops.TASKS, "find_one", {"filter": {"product_id": product_id, "dedupe_key": columns["dedupe_key"]}}
                )
                if existing is not None:
                    return company_row("tasks", existing)
            yield from ops.require_project_plan(project_id, product_id, columns["status"])
            yield ops.insert(ops.TASKS, document)
            return None

        proposal = yield from ops.atomically(steps, "create_task")
        return proposal if proposal is not None else dict(columns)

    def get_task(self, task_id: str, user_id: str | None = None, include_deleted: bool = False) -> Plan[Row | None]:
        """One Task by id (of ``user_id`` when given; archived ones only with ``include_deleted``)."""
        check_id("task_id", task_id)
        query = ops.scoped(task_id, check_owner("user_id", user_id), _flag("include_deleted", include_deleted))
        document = yield Command(ops.TASKS, "find_one", {"filter": query})
        return _row("tasks", document)

    def get_tasks(
        self,
        user_id: str | None = None,
        limit: int = 20,
        page: int = 1,
        include_deleted: bool = False,
        product_id: str | None = None,
        status: str | None = None,
        project_id: str | None = None,
        failed: bool | None = None,
        session_id: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> Plan[tuple[list[Row], int]]:
        """Tasks under active parents, filtered and sorted as agno's, one page, and the total.
        ``failed``: in progress with an ERROR/CANCELLED result (or, ``False``, everything else)."""
        sort = _sort(sort_by, sort_order)
        query = ops.list_query(
            check_owner("user_id", user_id),
            _flag("include_deleted", include_deleted),
            (PRODUCT_ARCHIVED, PROJECT_ARCHIVED),
            product_id=check_optional_id("product_id", product_id),
            status=None if status is None else check_str("status", status),
            project_id=check_optional_id("project_id", project_id),
            session_id=None if session_id is None else check_str("session_id", session_id),
        )
        if failed is not None:
            bad = ["ERROR", "CANCELLED"]
            if _flag("failed", failed):
                if query.get("status", "in_progress") != "in_progress":
                    query["_id"] = {"$in": []}
                query.update({"status": "in_progress", "result.status": {"$in": bad}})
            else:
                query["$or"] = [{"status": {"$ne": "in_progress"}}, {"result.status": {"$nin": bad}}]
        page_limit, skip = _page(limit, page)
        documents, total = yield from page_of_plan(ops.TASKS, query, sort, page_limit, skip, None, count=True)
        assert total is not None
        return [company_row("tasks", document) for document in documents], total

    def update_task(self, task_id: str, user_id: str | None = None, **fields: Any) -> Plan[Row | None]:
        """Update descriptive fields of an active backlog Task; moving it checks the new Project (same
        Product, active, unfinished). A transaction holding the Product's lock."""
        check_id("task_id", task_id)
        owner = check_owner("user_id", user_id)
        checked = _descriptive("tasks", fields, validate_task_fields)

        def steps() -> Plan[Any]:
            found = yield from ops.lock_child_plan("tasks", task_id)
            if found is not None and checked.get("project_id") is not None:
                yield from ops.require_project_plan(checked["project_id"], found["product_id"], "backlog")
            values: dict[str, Any] = {**checked, "updated_at": now()}
            if "project_id" in checked:
                values[PROJECT_ARCHIVED] = False  # the new Project is active (or there is none)
            query = {**_scoped_update(task_id, owner, False), "status": "backlog"}
            return (
                yield Command(
                    ops.TASKS,
                    "find_one_and_update",
                    {
                        "filter": query,
                        "update": ops.changes("tasks", values, ops.token()),
                        "return_document": ReturnDocument.AFTER,
                    },
                )
            )

        document = yield from ops.atomically(steps, "update_task")
        return _row("tasks", document)

    def delete_task(self, task_id: str, user_id: str | None = None, updated_before: int | None = None) -> Plan[bool]:
        """Archive an active Task (with ``updated_before``: only finished work last changed before it):
        one command; ``True`` if this call did."""
        check_id("task_id", task_id)
        query = _scoped_update(task_id, check_owner("user_id", user_id), False)
        cutoff = check_int("updated_before", updated_before)
        if cutoff is not None:
            query.update(status={"$in": ops.TERMINAL}, _activity={"$lt": cutoff})
        when, write_token = now(), ops.token()
        update = ops.changes("tasks", {"deleted_at": when, "updated_at": when}, write_token)
        document = yield from ops.modify_plan(ops.TASKS, query, update, write_token)
        if document is None:
            yield from ops.explain_miss_plan("tasks", task_id)
        return document is not None

    def restore_task(self, task_id: str, user_id: str | None = None) -> Plan[Row | None]:
        """Restore an archived Task whose Product and Project are active (a transaction holding the
        Product's lock); a cascade's archive event is closed by a restore event, as agno's."""
        check_id("task_id", task_id)
        owner = check_owner("user_id", user_id)

        def steps() -> Plan[Any]:
            found = yield from ops.lock_child_plan("tasks", task_id)
            if found is None:
                return None
            fields = task_restore_fields(company_row("tasks", found))
            return (
                yield Command(
                    ops.TASKS,
                    "find_one_and_update",
                    {
                        "filter": _scoped_update(task_id, owner, True),
                        "update": ops.changes("tasks", fields, ops.token()),
                        "return_document": ReturnDocument.AFTER,
                    },
                )
            )

        document = yield from ops.atomically(steps, "restore_task")
        return _row("tasks", document)

    def start_task_run(
        self,
        task_id: str,
        attempt: int,
        expected_transitions: list[dict[str, Any]],
        user_id: str | None = None,
        run_db_id: str | None = None,
        session_user_id: str | None = None,
    ) -> Plan[Row | None]:
        """Reserve the Task's next attempt if its history is still ``expected_transitions`` (compared
        in Python) and its revision unchanged: of racing starters exactly one gets the row, the
        others ``None``. One read and one compare-and-set."""
        check_id("task_id", task_id)
        if check_int("attempt", attempt, minimum=1) is None:
            raise InvalidInputError("attempt", "must be a positive integer")
        expected = _transitions("expected_transitions", expected_transitions)
        check_owner("user_id", user_id)
        check_optional_id("run_db_id", run_db_id)
        check_owner("session_user_id", session_user_id)
        document = yield Command(ops.TASKS, "find_one", {"filter": {"_id": task_id, "deleted_at": None}})
        if document is None:
            return None
        existing = company_row("tasks", document)
        if existing["transitions"] != expected:
            return None
        fields = task_run_fields(existing, attempt, user_id, run_db_id, session_user_id)
        query = {"_id": task_id, "deleted_at": None, "status": existing["status"], "_rev": document.get("_rev", 0)}
        write_token = ops.token()
        after = yield from ops.modify_plan(ops.TASKS, query, ops.changes("tasks", fields, write_token), write_token)
        return _row("tasks", after)

    def complete_task_run(
        self,
        task_id: str,
        job_id: str,
        result: dict[str, Any],
        expected_transitions: list[dict[str, Any]] | None = None,
        checkout: dict[str, Any] | None = None,
    ) -> Plan[Row | None]:
        """Save the result of the Task's current run (its ``job_id``, in progress, no result yet) and,
        when it completed, move the Task to review; a compare-and-set on its revision."""
        check_id("task_id", task_id)
        check_id("job_id", job_id)
        if not isinstance(result, dict):
            raise InvalidInputError("result", f"must be a dict, got {type(result).__name__}")
        expected = _transitions("expected_transitions", expected_transitions)
        if checkout is not None and not isinstance(checkout, dict):
            raise InvalidInputError("checkout", f"must be a dict, got {type(checkout).__name__}")
        encode_fields({"result": result, "checkout": checkout})
        base: dict[str, Any] = {
            "_id": task_id,
            "job_id": job_id,
            "deleted_at": None,
            "status": "in_progress",
            "result": None,
        }
        document = yield Command(ops.TASKS, "find_one", {"filter": base})
        if document is None:
            return None
        existing = company_row("tasks", document)
        if expected_transitions is not None and existing["transitions"] != expected:
            return None
        fields: dict[str, Any] = (
            task_transition_fields(existing, "in_review", "Execution completed; human review required")
            if result.get("status") == "COMPLETED"
            else {"updated_at": now()}
        )
        if checkout is not None:
            fields["metadata"] = {**(existing.get("metadata") or {}), "checkout": checkout}
        fields["result"] = result
        write_token = ops.token()
        after = yield from ops.modify_plan(
            ops.TASKS, {**base, "_rev": document.get("_rev", 0)}, ops.changes("tasks", fields, write_token), write_token
        )
        return _row("tasks", after)

    def count_company_acceptances(
        self, routine_id: str, policy: str, exclude_task_id: str, user_id: str | None = None
    ) -> Plan[int]:
        """Tasks of the Routine (but ``exclude_task_id``) and Projects accepted under ``policy`` by it,
        archived ones included: two counts."""
        check_str("routine_id", routine_id)
        check_str("policy", policy)
        check_id("exclude_task_id", exclude_task_id)
        owner = check_owner("user_id", user_id)
        scope = {} if owner is None else {"user_id": owner}
        count: int = yield from ops.acceptance_count_plan(
            routine_id, policy, {"_id": {"$ne": exclude_task_id}, **scope}, scope
        )
        return count

    def transition_task(
        self,
        task_id: str,
        target: str,
        reason: str,
        user_id: str | None = None,
        accepted_by: str | None = None,
        executor_type: str | None = None,
        executor_id: str | None = None,
        expected_updated_at: int | None = _UNSET_UPDATED_AT,
        auto_accept: dict[str, Any] | None = None,
    ) -> Plan[Row | None]:
        """agno's lifecycle transition of a visible Task: a compare-and-set on its revision (one read,
        one write), so of racing transitions exactly one lands and the others get ``None``. With
        ``auto_accept`` it runs in a transaction under the Product's lock, so the Routine's
        acceptance budget is counted and spent by one writer at a time."""
        check_id("task_id", task_id)
        check_str("target", target)
        check_str("reason", reason)
        owner = check_owner("user_id", user_id)
        check_owner("accepted_by", accepted_by)
        if executor_type is not None:
            check_str("executor_type", executor_type)
        if executor_id is not None:
            check_str("executor_id", executor_id)
        expected = _expected_updated_at(expected_updated_at)
        accept = _auto_accept(auto_accept)

        def transition() -> Plan[Any]:
            document = yield Command(ops.TASKS, "find_one", {"filter": ops.scoped(task_id, owner, False)})
            if document is None:
                return None
            existing = company_row("tasks", document)
            fields = task_transition_fields(existing, target, reason, accepted_by, executor_type, executor_id)
            if accept is not None:
                fields["transitions"][-1]["auto_accept"] = accept
            query: dict[str, Any] = {
                "_id": task_id,
                "deleted_at": None,
                "status": existing["status"],
                "_rev": document.get("_rev", 0),
            }
            if expected is not _UNSET_UPDATED_AT:
                query["updated_at"] = expected
            if owner is not None:
                query["user_id"] = owner
            write_token = ops.token()
            return (
                yield from ops.modify_plan(ops.TASKS, query, ops.changes("tasks", fields, write_token), write_token)
            )

        if accept is None:
            document = yield from transition()
            return _row("tasks", document)

        def steps() -> Plan[Any]:
            yield from ops.lock_child_plan("tasks", task_id)
            if expected is _UNSET_UPDATED_AT:
                raise ValueError("Automatic acceptance requires expected_updated_at and a Product")
            assert accept is not None
            spent = yield from ops.acceptance_count_plan(
                accept["routine_id"], accept["policy"], {"_id": {"$ne": task_id}}, {}
            )
            if spent >= accept["max_acceptances"]:
                raise ValueError("Routine acceptance limit reached")
            return (yield from transition())

        document = yield from ops.atomically(steps, "transition_task")
        return _row("tasks", document)
