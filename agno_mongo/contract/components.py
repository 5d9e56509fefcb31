"""The component catalog (components, config versions, links): agno's contract as plans.

``ComponentContract`` has agno's ``BaseDb`` signatures; each method checks its arguments (bad input
raises :class:`~agno_mongo.errors.InvalidInputError` naming the argument, before any command) and
returns a plan (see :mod:`agno_mongo.ops.components` for the documents and which writes are
transactions). The semantics are agno's ``SqliteDb``: archived components are immutable and their
ids reserved, version numbers are never reused, published versions are immutable, labels are unique
among live versions, ``expected_*`` arguments are compare-and-set guards, links are validated.

agno calls these methods synchronously on any store (``AsyncBaseDb`` declares them as plain
methods), so the domain is bound on ``MongoDb`` only (``sync_only``); the plans themselves run on
every client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agno.db.base import DELETED_CONFIG_STAGE, ComponentType

from agno_mongo.contract.checks import check_id, check_int, check_optional_str, check_owner, now
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import components as ops
from agno_mongo.ops.command import Command, Plan, atomically
from agno_mongo.schema.components import (
    check_component_type,
    check_links,
    check_stage,
    component_of,
    component_row,
    config_of,
    config_row,
)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(name, f"must be True or False, got {value!r}")
    return value


def _check_dict(name: str, value: object, *, required: bool = False) -> dict[str, Any] | None:
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError(name, f"must be a dict, got {type(value).__name__}")
    return value


def _check_version(name: str, value: object, *, required: bool = False, minimum: int = 1) -> int | None:
    checked = check_int(name, value, minimum=minimum)
    if checked is None and required:
        raise InvalidInputError(name, "must be an integer, got None")
    return checked


def _check_id_set(name: str, values: object) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(name, f"must be a set of ids, got {type(values).__name__}")
    return sorted({check_id(f"{name}[]", value) for value in values})


def _check_stats(value: object) -> dict[str, int] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidInputError("cascade_stats", f"must be a dict or None, got {type(value).__name__}")
    return value


class ComponentContract:
    """The components / configs / links part of agno's ``BaseDb`` contract, as plans."""

    # --- components ------------------------------------------------------------------------------

    def get_component(
        self,
        component_id: str,
        component_type: ComponentType | None = None,
        user_id: str | None = None,
        include_deleted: bool = False,
    ) -> Plan[dict[str, Any] | None]:
        """One component row, or ``None``; with ``user_id`` only if that user may see it (own,
        unowned, or live and published). One ``find``."""
        check_id("component_id", component_id)
        kind = check_component_type("component_type", component_type, required=False)
        owner = check_owner("user_id", user_id)
        _check_bool("include_deleted", include_deleted)
        query: dict[str, Any] = {"_id": component_id}
        if not include_deleted:
            query["deleted_at"] = None
        if kind is not None:
            query["component_type"] = kind
        if owner is not None:
            query.update(ops.visible_to(owner))
        document: dict[str, Any] | None = yield Command(ops.COMPONENTS, "find_one", {"filter": query})
        return None if document is None else component_row(document)

    def upsert_component(
        self,
        component_id: str,
        component_type: ComponentType | None = None,
        name: str | None = None,
        description: str | None = None,
        current_version: int | None = None,
        metadata: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Plan[dict[str, Any]]:
        """Create (``component_type`` required) or update a component; the row after the write.

        Archived components are refused (``ComponentArchivedError``), the type is fixed at creation,
        ``current_version`` must name a published version, and with ``user_id`` only its owner may
        update it (another's answers agno's "not found" ``ValueError``)."""
        check_id("component_id", component_id)
        kind = check_component_type("component_type", component_type, required=False)
        checked_name = check_optional_str("name", name)
        checked_description = check_optional_str("description", description)
        version = _check_version("current_version", current_version)
        checked_metadata = _check_dict("metadata", metadata)
        owner = check_owner("user_id", user_id)
        document = yield from ops.upsert_component_plan(
            component_id, kind, checked_name, checked_description, version, checked_metadata, owner, now()
        )
        return component_row(document)

    def delete_component(
        self,
        component_id: str,
        hard_delete: bool = False,
        user_id: str | None = None,
        expected_current_version: int | None = None,
        require_no_dependents: bool = True,
        cascade_stats: dict[str, int] | None = None,
    ) -> Plan[bool]:
        """Archive (or with ``hard_delete`` remove) a component, and disable every schedule aimed at
        it, in one transaction. ``True`` if it was deleted by this call."""
        check_id("component_id", component_id)
        hard = _check_bool("hard_delete", hard_delete)
        owner = check_owner("user_id", user_id)
        expected = _check_version("expected_current_version", expected_current_version, minimum=0)
        guarded = _check_bool("require_no_dependents", require_no_dependents)
        stats = _check_stats(cascade_stats)
        deleted, disabled = yield from atomically(
            lambda: ops.delete_component_steps(component_id, hard, owner, expected, guarded, now()),
            "delete_component",
            (*ops.ROLES, ops.SCHEDULES),
        )
        if deleted and stats is not None:
            stats["schedules_disabled"] = disabled
        return deleted

    def restore_component(self, component_id: str, user_id: str | None = None) -> Plan[bool]:
        """Un-archive a component (every version kept, the live pointer untouched, schedules left
        disabled); refused if its live version pins an archived child. One transaction."""
        check_id("component_id", component_id)
        owner = check_owner("user_id", user_id)
        restored: bool = yield from atomically(
            lambda: ops.restore_component_steps(component_id, owner, now()), "restore_component", ops.ROLES
        )
        return restored

    def list_components(
        self,
        component_type: ComponentType | None = None,
        include_deleted: bool = False,
        limit: int = 20,
        offset: int = 0,
        exclude_component_ids: set[str] | None = None,
        user_id: str | None = None,
        name: str | None = None,
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """``(rows, total)``: newest first (``created_at DESC, component_id``), one page. A ``find``
        and a ``count``, served by the ``created`` / ``type_created`` / ``name_created`` indexes."""
        kind = check_component_type("component_type", component_type, required=False)
        _check_bool("include_deleted", include_deleted)
        page_limit = check_int("limit", limit, minimum=0)
        skip = check_int("offset", offset, minimum=0) or 0
        excluded = (
            None if exclude_component_ids is None else _check_id_set("exclude_component_ids", exclude_component_ids)
        )
        owner = check_owner("user_id", user_id)
        checked_name = check_optional_str("name", name)
        clauses: list[dict[str, Any]] = []
        if kind is not None:
            clauses.append({"component_type": kind})
        if owner is not None:
            clauses.append(ops.visible_to(owner))
        if not include_deleted:
            clauses.append({"deleted_at": None})
        if excluded:
            clauses.append({"_id": {"$nin": excluded}})
        if checked_name is not None:
            clauses.append({"name": checked_name})
        query: dict[str, Any] = {"$and": clauses} if len(clauses) > 1 else (clauses[0] if clauses else {})
        documents: list[dict[str, Any]] = []
        if page_limit != 0:
            kwargs: dict[str, Any] = {"filter": query, "sort": ops.NEWEST_FIRST, "skip": skip}
            if page_limit is not None:
                kwargs["limit"] = page_limit
            documents = yield Command(ops.COMPONENTS, "find", kwargs)
        total: int = yield Command(ops.COMPONENTS, "count_documents", {"filter": query})
        return [component_row(document) for document in documents], total

    def create_component_with_config(
        self,
        component_id: str,
        component_type: ComponentType,
        name: str | None,
        config: dict[str, Any],
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        label: str | None = None,
        stage: str = "draft",
        notes: str | None = None,
        links: list[dict[str, Any]] | None = None,
        user_id: str | None = None,
    ) -> Plan[tuple[dict[str, Any], dict[str, Any]]]:
        """The component and its version 1 (with its links) in one transaction: ``(component, config)``.
        A taken id (archived ones included) is agno's "not available" ``ValueError``."""
        check_stage(stage, required=True)
        checked_links = check_links("links", links)
        check_id("component_id", component_id)
        kind = check_component_type("component_type", component_type, required=True)
        created = now()
        columns: dict[str, Any] = {
            "component_id": component_id,
            "component_type": kind,
            "name": check_optional_str("name", name),
            "user_id": check_owner("user_id", user_id),
            "description": check_optional_str("description", description),
            "current_version": None,
            "metadata": _check_dict("metadata", metadata),
            "created_at": created,
            "updated_at": None,
            "deleted_at": None,
        }
        checked_config = _check_dict("config", config, required=True)
        checked_label = check_optional_str("label", label)
        checked_notes = check_optional_str("notes", notes)
        component, configuration = yield from ops.create_with_config_plan(
            columns, checked_config, checked_label, stage, checked_notes, checked_links, created
        )
        return component_row(component), config_row(configuration)

    # --- configs ---------------------------------------------------------------------------------

    def get_config(
        self,
        component_id: str,
        version: int | None = None,
        label: str | None = None,
        include_deleted: bool = False,
    ) -> Plan[dict[str, Any] | None]:
        """A config row of a live component: ``version``, else ``label``, else the current version,
        else the latest visible one. Tombstones only with ``include_deleted`` and a version."""
        check_id("component_id", component_id)
        number = _check_version("version", version)
        checked_label = check_optional_str("label", label)
        _check_bool("include_deleted", include_deleted)
        document = yield from _config_of_live(component_id, number, checked_label, include_deleted)
        return None if document is None else config_row(document)

    def get_current_config(self, component_id: str) -> Plan[dict[str, Any] | None]:
        """The live published config, or ``None`` (never a draft)."""
        check_id("component_id", component_id)
        component = yield from ops.read_component_plan(component_id, deleted_at=None)
        if component is None or component.current_version is None:
            return None
        document: dict[str, Any] | None = yield ops.find_config(
            component_id, component.current_version, stage={"$ne": DELETED_CONFIG_STAGE}
        )
        return None if document is None else config_row(document)

    def get_latest_config(self, component_id: str) -> Plan[dict[str, Any] | None]:
        """The latest visible version of a live component, draft or published."""
        check_id("component_id", component_id)
        component = yield from ops.read_component_plan(component_id, deleted_at=None)
        if component is None:
            return None
        document: dict[str, Any] | None = yield ops.latest_visible(component_id)
        return None if document is None else config_row(document)

    def get_latest_configs(self, component_ids: set[str]) -> Plan[dict[str, dict[str, Any] | None]]:
        """``get_latest_config`` for each id, in two commands (live components, then one aggregate
        taking each one's highest visible version from the ``component_version`` index)."""
        ids = _check_id_set("component_ids", component_ids)
        answer: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        if not ids:
            return answer
        rows: list[dict[str, Any]] = yield Command(
            ops.COMPONENTS, "find", {"filter": {"_id": {"$in": ids}, "deleted_at": None}, "projection": {"_id": True}}
        )
        live = sorted(row["_id"] for row in rows)
        if live:
            latest: list[dict[str, Any]] = yield Command(
                ops.CONFIGS,
                "aggregate",
                {
                    "pipeline": [
                        {"$match": {"component_id": {"$in": live}, "stage": {"$ne": DELETED_CONFIG_STAGE}}},
                        {"$sort": {"component_id": 1, "version": -1}},
                        {"$group": {"_id": "$component_id", "latest": {"$first": "$$ROOT"}}},
                    ],
                    "allowDiskUse": True,
                },
            )
            for group in latest:
                answer[group["_id"]] = config_row(group["latest"])
        return answer

    def upsert_config(
        self,
        component_id: str,
        config: dict[str, Any] | None = None,
        version: int | None = None,
        label: str | None = None,
        stage: str | None = None,
        notes: str | None = None,
        links: list[dict[str, Any]] | None = None,
        expected_latest_version: int | None = None,
        expected_current_version: int | None = None,
        user_id: str | None = None,
    ) -> Plan[dict[str, Any]]:
        """Append a version (``version=None``) or edit a draft, in one transaction; the config row.

        Published versions are immutable; publishing moves the live pointer and re-projects the
        config's name/description/metadata onto the component. ``expected_latest_version`` (the
        latest visible version) and ``expected_current_version`` (the pointer a publish replaces,
        0 for none) are compare-and-set guards: ``ComponentVersionConflictError`` on a mismatch."""
        checked_stage = check_stage(stage, required=False)
        check_id("component_id", component_id)
        checked_config = _check_dict("config", config)
        number = _check_version("version", version)
        checked_label = check_optional_str("label", label)
        checked_notes = check_optional_str("notes", notes)
        checked_links = check_links("links", links)
        latest = _check_version("expected_latest_version", expected_latest_version, minimum=0)
        current = _check_version("expected_current_version", expected_current_version, minimum=0)
        owner = check_owner("user_id", user_id)
        written = yield from ops.upsert_config_plan(
            component_id,
            checked_label,
            lambda: ops.upsert_config_steps(
                component_id,
                checked_config,
                number,
                checked_label,
                checked_stage,
                checked_notes,
                checked_links,
                latest,
                current,
                owner,
                now(),
            ),
        )
        return config_row(written)

    def delete_config(self, component_id: str, version: int, user_id: str | None = None) -> Plan[bool]:
        """Tombstone a draft version (its number is never reused, its label freed); one transaction."""
        check_id("component_id", component_id)
        number = _check_version("version", version, required=True)
        assert number is not None
        owner = check_owner("user_id", user_id)
        deleted: bool = yield from atomically(
            lambda: ops.delete_config_steps(component_id, number, owner, now()), "delete_config", ops.ROLES
        )
        return deleted

    def list_configs(
        self, component_id: str, include_config: bool = False, include_deleted: bool = False
    ) -> Plan[list[dict[str, Any]]]:
        """A live component's versions, newest first (without ``config`` unless asked)."""
        check_id("component_id", component_id)
        full = _check_bool("include_config", include_config)
        _check_bool("include_deleted", include_deleted)
        component = yield from ops.read_component_plan(component_id, deleted_at=None)
        if component is None:
            return []
        query: dict[str, Any] = {"component_id": component_id}
        if not include_deleted:
            query["stage"] = {"$ne": DELETED_CONFIG_STAGE}
        kwargs: dict[str, Any] = {"filter": query, "sort": [("version", -1)]}
        if not full:
            kwargs["projection"] = {"config": False, "links": False}
        documents: list[dict[str, Any]] = yield Command(ops.CONFIGS, "find", kwargs)
        return [config_row(document, include_config=full) for document in documents]

    def set_current_version(
        self,
        component_id: str,
        version: int,
        expected_current_version: int | None = None,
        user_id: str | None = None,
    ) -> Plan[bool]:
        """Point the component at a published version (a rollback); one transaction. ``False`` if
        the component (live, and owned when ``user_id`` is given) or the version does not exist."""
        check_id("component_id", component_id)
        number = _check_version("version", version, required=True)
        assert number is not None
        expected = _check_version("expected_current_version", expected_current_version, minimum=0)
        owner = check_owner("user_id", user_id)
        moved: bool = yield from atomically(
            lambda: ops.set_current_steps(component_id, number, expected, owner, now()),
            "set_current_version",
            ops.ROLES,
        )
        return moved

    # --- links -----------------------------------------------------------------------------------

    def get_links(self, component_id: str, version: int, link_kind: str | None = None) -> Plan[list[dict[str, Any]]]:
        """A version's link rows, by position."""
        check_id("component_id", component_id)
        number = _check_version("version", version, required=True)
        assert number is not None
        kind = check_optional_str("link_kind", link_kind)
        links = yield from _links_of(component_id, number)
        return [link for link in links if kind is None or link["link_kind"] == kind]

    def get_dependents(
        self, component_id: str, version: int | None = None, active_parents_only: bool = False
    ) -> Plan[list[dict[str, Any]]]:
        """The link rows that point at this component (at ``version`` if given): one ``find`` on the
        ``link_child`` index, plus the parents' rows when ``active_parents_only``."""
        check_id("component_id", component_id)
        number = _check_version("version", version)
        active = _check_bool("active_parents_only", active_parents_only)
        found: list[dict[str, Any]] = yield from ops.dependents_plan(component_id, number, active_parents_only=active)
        return found

    def load_component_graph(
        self, component_id: str, version: int | None = None, label: str | None = None
    ) -> Plan[dict[str, Any] | None]:
        """The component, its config and every linked child's graph, recursively; a cycle yields a
        stub with ``cycle_detected``. ``label`` selects the root version when ``version`` is not
        given (agno's SqliteDb ignores it)."""
        check_id("component_id", component_id)
        number = _check_version("version", version)
        checked_label = check_optional_str("label", label)
        graph = yield from _graph(component_id, number, checked_label, frozenset())
        return graph


# --- shared plans -------------------------------------------------------------------------------


def _config_of_live(
    component_id: str, version: int | None, label: str | None, include_deleted: bool
) -> Plan[dict[str, Any] | None]:
    component = yield from ops.read_component_plan(component_id, deleted_at=None)
    if component is None:
        return None
    visible = {"stage": {"$ne": DELETED_CONFIG_STAGE}}
    document: dict[str, Any] | None
    if version is not None:
        document = yield ops.find_config(component_id, version, **({} if include_deleted else visible))
    elif label is not None:
        document = yield Command(
            ops.CONFIGS, "find_one", {"filter": {"component_id": component_id, "label": label, **visible}}
        )
    elif component.current_version is not None:
        document = yield ops.find_config(component_id, component.current_version, **visible)
    else:
        document = yield ops.latest_visible(component_id)
    return document


def _links_of(component_id: str, version: int) -> Plan[list[dict[str, Any]]]:
    document: dict[str, Any] | None = yield ops.find_config(component_id, version)
    if document is None:
        return []
    return sorted(config_of(document).link_rows(), key=lambda link: link["position"])


def _graph(
    component_id: str, version: int | None, label: str | None, path: frozenset[str]
) -> Plan[dict[str, Any] | None]:
    """agno's ``load_component_graph``: tracks the active recursion path, so a shared child of a
    DAG loads normally and only a true cycle is cut."""
    if component_id in path:
        return {
            "component": {"component_id": component_id},
            "config": None,
            "children": [],
            "resolved_versions": {},
            "cycle_detected": True,
        }
    path = path | {component_id}
    document: dict[str, Any] | None = yield ops.find_component(component_id, deleted_at=None)
    if document is None:
        return None
    component = component_of(document)
    resolved = version
    if resolved is None and label is not None:
        labelled = yield from _config_of_live(component_id, None, label, False)
        resolved = None if labelled is None else int(labelled["version"])
    if resolved is None:
        resolved = component.current_version
    if resolved is None:
        return None
    config = yield from _config_of_live(component_id, resolved, None, False)
    if config is None:
        return None
    links = yield from _links_of(component_id, resolved)
    children = []
    resolved_versions: dict[str, int | None] = {component_id: resolved}
    for link in links:
        child_id = link["child_component_id"]
        child_version = link["child_version"]
        if child_version is None:
            child = yield from ops.read_component_plan(child_id)
            child_version = None if child is None else child.current_version
        resolved_versions[child_id] = child_version
        child_graph = yield from _graph(child_id, child_version, None, path)
        if child_graph:
            resolved_versions.update(child_graph.get("resolved_versions", {}))
        children.append({"link": link, "graph": child_graph})
    return {
        "component": component.to_agno_dict(),
        "config": config_row(config),
        "children": children,
        "resolved_versions": resolved_versions,
    }
