"""Pure command builders and plans for the component catalog (components, config versions, links).

Nothing here does I/O. Layout (see :mod:`agno_mongo.schema.components` and ``docs/components.md``):
one document per component (``_id`` = ``component_id``) holding the version high-water mark
``versions`` and the live pointer ``current_version``; one document per config version
(``_id`` = ``"<component_id>/<version>"``) with that version's links embedded.

Single-document writes run on their own (they work on a standalone server too):

* ``upsert_component``: create is an upsert that only inserts (``$setOnInsert``, a write token in
  ``_ops``): resendable, and a resend that finds the document recognises its own token. An update is
  a ``$set`` of whole values filtered on the component being live (and owned): resendable.

Everything that spans documents is one transaction (:func:`~agno_mongo.ops.command.atomically`):
``create_component_with_config``, ``upsert_config``, ``delete_config``, ``set_current_version``,
``delete_component`` (with the schedules it disables), ``restore_component``. Inside a transaction
every command is sent once and the whole transaction is what is retried, so no command there needs
``resend=False``: a lost reply aborts and re-runs the transaction from a fresh read, and a lost
``commitTransaction`` reply is retried as a commit (applied at most once by the server).

Compare-and-set guards ride the writes (the filter of the component update carries the expected
``current_version`` / high-water ``versions``), and each transaction also writes (``_guard``) every
component document whose state it relied on, so under snapshot isolation two transactions that
read each other's inputs conflict and one of them is re-run: of N racing writers exactly one wins.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agno.db.base import (
    DELETED_CONFIG_STAGE,
    PIN_LINK_KINDS,
    ComponentArchivedError,
    ComponentCycleError,
    ComponentDependencyError,
    ComponentDraftRequiredError,
    ComponentLastConfigError,
    ComponentVersionConflictError,
    current_version_matches,
    expects_no_live_version,
    project_config_identity,
)
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.ops import schedules as schedule_ops
from agno_mongo.ops.command import Command, Plan, Written, atomically
from agno_mongo.schema.codec import MARKER, encode_fields, encode_free_form
from agno_mongo.schema.components import (
    COMPONENT_FREE_FORM,
    CONFIG_FREE_FORM,
    SCHEMA_VERSION,
    ComponentDocument,
    ConfigDocument,
    component_of,
    config_key,
    config_of,
)

COMPONENTS = "components"
CONFIGS = "component_configs"
SCHEDULES = schedule_ops.SCHEDULES

VERSIONS = "versions"
"""High-water mark of allocated version numbers, tombstones included (never shown to agno)."""
GUARD = "_guard"
"""Bumped by every transaction on each component it relies on, to force write conflicts."""
OPS = "_ops"
"""Write tokens of the last creates (never shown to agno)."""
OPS_KEPT = 8

NEWEST_FIRST = [("created_at", DESCENDING), ("_id", ASCENDING)]
"""agno's listing order (``created_at DESC, component_id``)."""
BY_VERSION = [("component_id", ASCENDING), ("version", DESCENDING)]

COMPONENT_INDEXES = [
    IndexModel(NEWEST_FIRST, name="created"),
    IndexModel([("component_type", ASCENDING), *NEWEST_FIRST], name="type_created"),
    IndexModel([("name", ASCENDING), *NEWEST_FIRST], name="name_created"),
]

CONFIG_INDEXES = [
    # Every per-component read: latest visible, list_configs (newest first), high-water, delete.
    IndexModel(BY_VERSION, name="component_version", unique=True),
    # Labels are unique per component among live versions: a tombstone clears its label, so a
    # partial index on string labels is agno's partial uniqueness (MongoDB 6.0 partial filters
    # have no $ne, so the tombstone must not keep the label).
    IndexModel(
        [("component_id", ASCENDING), ("label", ASCENDING)],
        name="component_label",
        unique=True,
        partialFilterExpression={"label": {"$type": "string"}},
    ),
    # get_dependents, the dependency guards and the hard delete's link cleanup.
    IndexModel([("links.child_component_id", ASCENDING), ("links.child_version", ASCENDING)], name="link_child"),
]

ROLES = (COMPONENTS, CONFIGS)
"""The roles every catalog transaction touches (``delete_component`` adds the schedules): the
driver builds their indexes before the transaction starts."""


def token() -> str:
    """A fresh write token."""
    return secrets.token_hex(8)


# --- reads -------------------------------------------------------------------------------------


def live() -> dict[str, Any]:
    return {"deleted_at": None}


def visible_to(user_id: str) -> dict[str, Any]:
    """agno's catalog visibility: own rows, unowned (shared) rows, and live published rows."""
    return {
        "$or": [
            {"user_id": user_id},
            {"user_id": None},
            {"current_version": {"$ne": None}, "deleted_at": None},
        ]
    }


def pointer_guard(expected: int) -> int | None:
    """The stored ``current_version`` an ``expected_current_version`` names (0: no live version)."""
    return None if expects_no_live_version(expected) else expected


def find_component(component_id: str, **conditions: Any) -> Command:
    return Command(COMPONENTS, "find_one", {"filter": {"_id": component_id, **conditions}})


def find_config(component_id: str, version: int, **conditions: Any) -> Command:
    return Command(CONFIGS, "find_one", {"filter": {"_id": config_key(component_id, version), **conditions}})


def visible_configs(component_id: str) -> dict[str, Any]:
    return {"component_id": component_id, "stage": {"$ne": DELETED_CONFIG_STAGE}}


def latest_visible(component_id: str, projection: dict[str, Any] | None = None) -> Command:
    kwargs: dict[str, Any] = {"filter": visible_configs(component_id), "sort": [("version", DESCENDING)]}
    if projection is not None:
        kwargs["projection"] = projection
    return Command(CONFIGS, "find_one", kwargs)


def highest_version(component_id: str) -> Command:
    """The highest stored version number of a component, tombstones included."""
    return Command(
        CONFIGS,
        "find_one",
        {"filter": {"component_id": component_id}, "sort": [("version", DESCENDING)], "projection": {"version": True}},
    )


def read_component_plan(component_id: str, **conditions: Any) -> Plan[ComponentDocument | None]:
    document: dict[str, Any] | None = yield find_component(component_id, **conditions)
    return None if document is None else component_of(document)


def read_config_plan(component_id: str, version: int, **conditions: Any) -> Plan[ConfigDocument | None]:
    document: dict[str, Any] | None = yield find_config(component_id, version, **conditions)
    return None if document is None else config_of(document)


def touch_plan(component_ids: Iterable[str]) -> Plan[None]:
    """Write ``_guard`` on each existing component: a concurrent transaction that writes one of
    them (an archive, a pointer move, a link) now conflicts with this one."""
    ids = sorted(set(component_ids))
    if ids:
        yield Command(COMPONENTS, "update_many", {"filter": {"_id": {"$in": ids}}, "update": {"$inc": {GUARD: 1}}})


def dependents_plan(
    component_id: str,
    version: int | None,
    *,
    active_parents_only: bool,
    parent_user_id: str | None = None,
) -> Plan[list[dict[str, Any]]]:
    """agno's ``get_dependents``: every link row pointing at the component (at ``version`` if given).

    ``active_parents_only`` keeps links whose parent component exists and is live and whose parent
    version is not tombstoned; ``parent_user_id`` keeps parents owned by that user or unowned (both
    need the parent row, as agno's join does)."""
    match: dict[str, Any] = {"child_component_id": component_id}
    if version is not None:
        match["child_version"] = version
    documents: list[dict[str, Any]] = yield Command(
        CONFIGS, "find", {"filter": {"links": {"$elemMatch": match}}, "sort": [("component_id", 1), ("version", 1)]}
    )
    configs = [config_of(document) for document in documents]
    parents: dict[str, ComponentDocument] = {}
    if configs and (active_parents_only or parent_user_id is not None):
        parent_ids = sorted({config.component_id for config in configs})
        rows: list[dict[str, Any]] = yield Command(COMPONENTS, "find", {"filter": {"_id": {"$in": parent_ids}}})
        parents = {row.component_id: row for row in (component_of(row) for row in rows)}
    answer: list[dict[str, Any]] = []
    for config in configs:
        if active_parents_only or parent_user_id is not None:
            parent = parents.get(config.component_id)
            if parent is None:
                continue
            if active_parents_only and (parent.deleted_at is not None or config.stage == DELETED_CONFIG_STAGE):
                continue
            if parent_user_id is not None and parent.user_id not in (parent_user_id, None):
                continue
        for link in config.link_rows():
            if link["child_component_id"] == component_id and (version is None or link["child_version"] == version):
                answer.append(link)
    return answer


def refuse_if_dependents_plan(
    component_id: str, *, active_parents_only: bool, parent_user_id: str | None
) -> Plan[None]:
    """``ComponentDependencyError`` when another component pins this one (agno's wording)."""
    found = yield from dependents_plan(
        component_id, None, active_parents_only=active_parents_only, parent_user_id=parent_user_id
    )
    if found:
        parents = sorted({str(link["parent_component_id"]) for link in found if link.get("parent_component_id")})
        raise ComponentDependencyError(f"Cannot delete {component_id}: referenced by {', '.join(parents)}")


def validate_links_plan(parent_component_id: str, links: list[dict[str, Any]]) -> Plan[None]:
    """Children exist or are code-defined (no row), are not archived, and close no cycle.

    agno's ``_validate_links_in_session``: the cycle walk follows every stored link (any version)
    from the new children. Each child and each component the walk passes through is touched, so a
    concurrent archive of a child or a concurrent link closing the cycle from the other end
    conflicts with this transaction."""
    child_ids = {link["child_component_id"] for link in links if link.get("child_component_id")}
    if parent_component_id in child_ids:
        raise ComponentCycleError(f"Component {parent_component_id} cannot reference itself")
    if not child_ids:
        return
    rows: list[dict[str, Any]] = yield Command(
        COMPONENTS, "find", {"filter": {"_id": {"$in": sorted(child_ids)}}, "projection": {"deleted_at": True}}
    )
    found = {row["_id"]: row.get("deleted_at") for row in rows}
    for child_id in sorted(child_ids):
        if child_id in found and found[child_id] is not None:
            raise ComponentArchivedError(f"Cannot link {parent_component_id} to archived component {child_id}")
    visited: set[str] = set()
    frontier = sorted(child_ids)
    while frontier:
        current = frontier.pop()
        if current in visited:
            continue
        visited.add(current)
        outgoing: list[dict[str, Any]] = yield Command(
            CONFIGS, "find", {"filter": {"component_id": current}, "projection": {"links.child_component_id": True}}
        )
        for document in outgoing:
            for link in document.get("links") or []:
                following = link.get("child_component_id")
                if following == parent_component_id:
                    raise ComponentCycleError(
                        f"Linking {parent_component_id} -> {current} would close a reference cycle"
                    )
                if isinstance(following, str) and following not in visited:
                    frontier.append(following)
    yield from touch_plan({parent_component_id} | visited)


def refuse_archived_pins_plan(component_id: str, version: int, links: list[dict[str, Any]], mode: str) -> Plan[None]:
    """The pinned children (``PIN_LINK_KINDS``) of a version going live must be live themselves.

    ``mode`` is ``"create"`` / ``"publish"`` (each pinned child version must also be published:
    agno's publish gate, checked link by link in order) or ``"current"`` (a pointer move: only
    liveness). Agno's messages. Every pinned child is touched, so a concurrent archive of one
    conflicts with this transaction."""
    pinned = [link for link in links if link.get("link_kind") in PIN_LINK_KINDS]
    if not pinned:
        return
    child_ids = sorted({link["child_component_id"] for link in pinned})
    rows: list[dict[str, Any]] = yield Command(
        COMPONENTS, "find", {"filter": {"_id": {"$in": child_ids}}, "projection": {"deleted_at": True}}
    )
    archived = {row["_id"] for row in rows if row.get("deleted_at") is not None}
    if mode == "current":
        if archived:
            raise ComponentDependencyError(
                f"Cannot make {component_id} v{version} current: pinned child(ren) "
                f"{', '.join(sorted(archived))} are archived. Restore them first."
            )
    else:
        for link in pinned:
            kind, child, child_version = link["link_kind"], link["child_component_id"], link["child_version"]
            found = yield from read_config_plan(child, child_version)
            child_stage = None if found is None else found.stage
            if child_stage != "published":
                start = f"publish {component_id} v{version}"
                if mode == "create":
                    start = f"create {component_id} as published"
                raise ComponentDependencyError(
                    f"Cannot {start}: pinned {kind} '{child}' v{child_version} is {child_stage or 'missing'}; "
                    "publish the child first."
                )
            if child in archived:
                raise ComponentDependencyError(
                    f"Cannot publish {component_id} v{version}: pinned {kind} '{child}' is archived; restore it first."
                )
    yield from touch_plan(child_ids)


# --- documents -----------------------------------------------------------------------------------


def component_document(columns: Mapping[str, Any], versions: int, write_token: str) -> dict[str, Any]:
    """A new component's whole document."""
    values = {("_id" if key == "component_id" else key): value for key, value in columns.items()}
    encode_free_form(values, COMPONENT_FREE_FORM)
    if not values[MARKER]:
        del values[MARKER]
    values[VERSIONS] = versions
    values[GUARD] = 0
    values[OPS] = [write_token]
    values["schema_version"] = SCHEMA_VERSION
    return values


def link_documents(links: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """Checked input links as stored (agno stamps ``created_at`` on insert, never ``updated_at``)."""
    return [
        {
            "link_kind": link["link_kind"],
            "link_key": link["link_key"],
            "child_component_id": link["child_component_id"],
            "child_version": link["child_version"],
            "position": link["position"],
            "meta": link.get("meta"),
            "created_at": now,
            "updated_at": None,
        }
        for link in links
    ]


def config_document(
    component_id: str,
    version: int,
    *,
    label: str | None,
    stage: str,
    config: Any,
    notes: str | None,
    links: list[dict[str, Any]],
    now: int,
) -> dict[str, Any]:
    """A new config version's whole document, links embedded."""
    values: dict[str, Any] = {
        "_id": config_key(component_id, version),
        "component_id": component_id,
        "version": version,
        "label": label,
        "stage": stage,
        "config": config,
        "notes": notes,
        "created_at": now,
        "updated_at": None,
        "links": links,
    }
    encode_free_form(values, CONFIG_FREE_FORM)
    if not values[MARKER]:
        del values[MARKER]
    values["schema_version"] = SCHEMA_VERSION
    return values


def set_update(changes: Mapping[str, Any], free_form: tuple[str, ...]) -> dict[str, Any]:
    """``$set`` of ``changes`` (free-form ones through the codec, markers kept right)."""
    free = {key: value for key, value in changes.items() if key in free_form}
    to_set, to_unset = encode_fields(free)
    update: dict[str, Any] = {"$set": {**{k: v for k, v in changes.items() if k not in free_form}, **to_set}}
    if to_unset:
        update["$unset"] = to_unset
    return update


# --- upsert_component --------------------------------------------------------------------------


def upsert_component_plan(
    component_id: str,
    component_type: str | None,
    name: str | None,
    description: str | None,
    current_version: int | None,
    metadata: dict[str, Any] | None,
    user_id: str | None,
    now: int,
) -> Plan[dict[str, Any]]:
    """agno's ``upsert_component``: create (one upsert that only inserts) or update (one ``$set``
    filtered on live and owned). The stored document after the write."""
    write_token = token()
    for _ in range(4):
        existing = yield from read_component_plan(component_id)
        if existing is None:
            if component_type is None:
                raise ValueError("component_type is required when creating a new component")
            columns = {
                "component_id": component_id,
                "component_type": component_type,
                "name": name or component_id,
                "user_id": user_id,
                "description": description,
                "current_version": None,
                "metadata": metadata,
                "created_at": now,
                "updated_at": None,
                "deleted_at": None,
            }
            document = component_document(columns, 0, write_token)
            before: dict[str, Any] | None = yield Command(
                COMPONENTS,
                "find_one_and_update",
                {
                    "filter": {"_id": component_id},
                    "update": {"$setOnInsert": document},
                    "upsert": True,
                    "return_document": ReturnDocument.BEFORE,
                },
            )
            if before is None or write_token in (before.get(OPS) or []):
                return document
            continue  # created by someone else meanwhile: update it instead
        if user_id is not None and existing.user_id != user_id:
            raise ValueError(f"Component {component_id} not found")
        if existing.deleted_at is not None:
            raise ComponentArchivedError(
                f"Component {component_id} is archived; restore it explicitly before writing to it"
            )
        changes: dict[str, Any] = {"updated_at": now}
        if component_type is not None:
            if existing.component_type != component_type:
                raise ValueError(
                    f"Cannot change component {component_id} from {existing.component_type} "
                    f"to {component_type}; a component's type is fixed at creation."
                )
            changes["component_type"] = component_type
        if name is not None:
            changes["name"] = name
        if description is not None:
            changes["description"] = description
        if current_version is not None:
            # A published version stays published (configs are immutable once published and never
            # tombstoned), so this check cannot be overtaken; the update re-asserts liveness.
            target = yield from read_config_plan(component_id, current_version)
            stage = None if target is None else target.stage
            if stage == DELETED_CONFIG_STAGE:
                raise ValueError(f"Cannot set deleted config {component_id} v{current_version} as current")
            if stage is None:
                raise ValueError(f"Cannot set missing config {component_id} v{current_version} as current")
            if stage != "published":
                raise ValueError(
                    f"Cannot set draft config {component_id} v{current_version} as current. "
                    "Only published configs can be current."
                )
            changes["current_version"] = current_version
        if metadata is not None:
            changes["metadata"] = metadata
        query: dict[str, Any] = {"_id": component_id, "deleted_at": None}
        if user_id is not None:
            query["user_id"] = user_id
        after: dict[str, Any] | None = yield Command(
            COMPONENTS,
            "find_one_and_update",
            {
                "filter": query,
                "update": set_update(changes, COMPONENT_FREE_FORM),
                "return_document": ReturnDocument.AFTER,
            },
        )
        if after is None:
            raise ComponentArchivedError(
                f"Component {component_id} is archived; restore it explicitly before writing to it"
            )
        return after
    raise ComponentVersionConflictError(f"Component {component_id} kept being created and deleted concurrently")


# --- create_component_with_config ----------------------------------------------------------------


def create_with_config_steps(
    columns: dict[str, Any],
    config: Any,
    label: str | None,
    stage: str,
    notes: str | None,
    links: list[dict[str, Any]] | None,
    now: int,
) -> Plan[tuple[dict[str, Any], dict[str, Any]]]:
    """One transaction: the component and its version 1 (and its links), or nothing."""
    component_id = columns["component_id"]
    existing: dict[str, Any] | None = yield find_component(component_id)
    if existing is not None:
        raise ValueError(f"Component ID {component_id} is not available")
    if links:
        yield from validate_links_plan(component_id, links)
        if stage == "published":
            yield from refuse_archived_pins_plan(component_id, 1, links, "create")
    published = stage == "published"
    component = component_document({**columns, "current_version": 1 if published else None}, 1, token())
    configuration = config_document(
        component_id,
        1,
        label=label,
        stage=stage,
        config=config,
        notes=notes,
        links=link_documents(links or [], now),
        now=now,
    )
    yield Command(COMPONENTS, "insert_one", {"document": component})
    yield Command(CONFIGS, "insert_one", {"document": configuration})
    return component, configuration


def create_with_config_plan(
    columns: dict[str, Any],
    config: Any,
    label: str | None,
    stage: str,
    notes: str | None,
    links: list[dict[str, Any]] | None,
    now: int,
) -> Plan[tuple[dict[str, Any], dict[str, Any]]]:
    try:
        answer = yield from atomically(
            lambda: create_with_config_steps(columns, config, label, stage, notes, links, now),
            "create_component_with_config",
            ROLES,
        )
    except DuplicateKeyError:
        raise ValueError(f"Component ID {columns['component_id']} is not available") from None
    return answer


# --- upsert_config -------------------------------------------------------------------------------


def archived_error(component_id: str) -> ComponentArchivedError:
    return ComponentArchivedError(f"Component {component_id} is archived; restore it explicitly before writing to it")


def upsert_config_steps(
    component_id: str,
    config: Any,
    version: int | None,
    label: str | None,
    stage: str | None,
    notes: str | None,
    links: list[dict[str, Any]] | None,
    expected_latest_version: int | None,
    expected_current_version: int | None,
    user_id: str | None,
    now: int,
) -> Plan[dict[str, Any]]:
    """One transaction: append (``version=None``) or edit a draft, replace its links, and on publish
    move the live pointer and re-project the config's identity onto the component."""
    component = yield from read_component_plan(component_id)
    if component is None or (user_id is not None and component.user_id != user_id):
        raise ValueError(f"Component {component_id} not found")
    if component.deleted_at is not None:
        raise archived_error(component_id)

    if expected_latest_version is not None:
        latest: dict[str, Any] | None = yield latest_visible(component_id, {"version": True})
        latest_number = None if latest is None else latest["version"]
        if latest_number != expected_latest_version:
            raise ComponentVersionConflictError(
                f"Component {component_id} latest version is {latest_number}, expected {expected_latest_version}"
            )

    if links:
        yield from validate_links_plan(component_id, links)

    if label is not None:
        query: dict[str, Any] = {**visible_configs(component_id), "label": label}
        if version is not None:
            query["version"] = {"$ne": version}
        taken: dict[str, Any] | None = yield Command(
            CONFIGS, "find_one", {"filter": query, "projection": {"_id": True}}
        )
        if taken is not None:
            raise ValueError(f"Label '{label}' already exists for {component_id}")

    stored_links = None if links is None else link_documents(links, now)
    # The component is written in every branch, with the observed high-water mark in the filter:
    # the allocation is a compare-and-set, and concurrent writers of this component conflict.
    allocation: dict[str, Any] = {"_id": component_id, "deleted_at": None, VERSIONS: component.versions}
    if version is None:
        if config is None:
            raise ValueError("config is required when creating a new version")
        final_stage = stage or "draft"
        highest: dict[str, Any] | None = yield highest_version(component_id)
        final_version = max(component.versions, 0 if highest is None else int(highest["version"])) + 1
        bumped: Written = yield Command(
            COMPONENTS,
            "update_one",
            {"filter": allocation, "update": {"$set": {VERSIONS: final_version}, "$inc": {GUARD: 1}}},
        )
        if not bumped.matched_count:
            raise ComponentVersionConflictError(
                f"Concurrent append on {component_id}: version {final_version} was taken"
            )
        document = config_document(
            component_id,
            final_version,
            label=label,
            stage=final_stage,
            config=config,
            notes=notes,
            links=stored_links or [],
            now=now,
        )
        yield Command(CONFIGS, "insert_one", {"document": document})
        published_config = config
        version_links = stored_links or []
    else:
        existing = yield from read_config_plan(component_id, version)
        if existing is None or existing.stage == DELETED_CONFIG_STAGE:
            raise ValueError(f"Config {component_id} v{version} not found")
        if existing.stage == "published":
            raise ValueError(f"Cannot update published config {component_id} v{version}")
        final_version = version
        final_stage = stage or existing.stage
        changes: dict[str, Any] = {"updated_at": now}
        if label is not None:
            changes["label"] = label
        if stage is not None:
            changes["stage"] = stage
        if config is not None:
            changes["config"] = config
        if notes is not None:
            changes["notes"] = notes
        if stored_links is not None:
            changes["links"] = stored_links
        edited: Written = yield Command(
            CONFIGS,
            "update_one",
            {
                "filter": {"_id": config_key(component_id, version), "stage": "draft"},
                "update": set_update(changes, CONFIG_FREE_FORM),
            },
        )
        if not edited.matched_count:
            raise ValueError(f"Cannot update published config {component_id} v{version}")
        touched: Written = yield Command(
            COMPONENTS, "update_one", {"filter": allocation, "update": {"$inc": {GUARD: 1}}}
        )
        if not touched.matched_count:
            raise archived_error(component_id)
        published_config = config if config is not None else existing.config
        version_links = stored_links if stored_links is not None else [link.model_dump() for link in existing.links]

    if final_stage == "published":
        yield from refuse_archived_pins_plan(component_id, final_version, version_links, "publish")
        projection: dict[str, Any] = {"current_version": final_version, "updated_at": now}
        if isinstance(published_config, dict):
            projection.update(project_config_identity(published_config))
        pointer: dict[str, Any] = {"_id": component_id, "deleted_at": None}
        if expected_current_version is not None:
            pointer["current_version"] = pointer_guard(expected_current_version)
        moved: Written = yield Command(
            COMPONENTS, "update_one", {"filter": pointer, "update": set_update(projection, COMPONENT_FREE_FORM)}
        )
        if not moved.matched_count:
            still = yield from read_component_plan(component_id, deleted_at=None)
            if still is None:
                raise archived_error(component_id)
            raise ComponentVersionConflictError(
                f"Component {component_id} current version changed; expected {expected_current_version}"
            )
    written: dict[str, Any] = yield find_config(component_id, final_version)
    return written


def upsert_config_plan(
    component_id: str, label: str | None, steps: Callable[[], Plan[dict[str, Any]]]
) -> Plan[dict[str, Any]]:
    try:
        written = yield from atomically(steps, "upsert_config", ROLES)
    except DuplicateKeyError as error:
        if "label" in str(error):
            raise ValueError(f"Label '{label}' already exists for {component_id}") from None
        raise ComponentVersionConflictError(f"Concurrent append on {component_id}: the version was taken") from None
    return written


# --- delete_config -------------------------------------------------------------------------------


def delete_config_steps(component_id: str, version: int, user_id: str | None, now: int) -> Plan[bool]:
    """One transaction: tombstone a draft version (number kept, label and links dropped)."""
    component = yield from read_component_plan(component_id)
    if user_id is not None and (component is None or component.user_id != user_id):
        return False
    if component is not None and component.deleted_at is not None:
        raise archived_error(component_id)
    target = yield from read_config_plan(component_id, version)
    if target is None or target.stage == DELETED_CONFIG_STAGE:
        return False
    if target.stage == "published":
        raise ComponentDraftRequiredError(
            f"Cannot delete published config {component_id} v{version}; only drafts are deletable"
        )
    if component is not None and component.current_version == version:
        raise ValueError(f"Cannot delete current config {component_id} v{version}")
    visible: int = yield Command(CONFIGS, "count_documents", {"filter": visible_configs(component_id)})
    if visible <= 1:
        raise ComponentLastConfigError(f"Cannot delete the last visible config of {component_id}")
    pins = yield from dependents_plan(component_id, version, active_parents_only=False)
    pinning = sorted({link["parent_component_id"] for link in pins})
    if pinning:
        # A pin is released only by proof that the parent is archived (a tombstoned parent version
        # holds no links, and a parent without a row keeps its pin, as in agno).
        parent_rows: list[dict[str, Any]] = yield Command(
            COMPONENTS, "find", {"filter": {"_id": {"$in": pinning}}, "projection": {"deleted_at": True}}
        )
        archived = {row["_id"] for row in parent_rows if row.get("deleted_at") is not None}
        holding = [parent for parent in pinning if parent not in archived]
        if holding:
            raise ComponentDependencyError(f"Cannot delete {component_id} v{version}: pinned by {', '.join(holding)}")
    result: Written = yield Command(
        CONFIGS,
        "update_one",
        {
            "filter": {"_id": config_key(component_id, version), "stage": "draft"},
            "update": {"$set": {"stage": DELETED_CONFIG_STAGE, "label": None, "updated_at": now, "links": []}},
        },
    )
    if not result.matched_count:
        return False
    yield from touch_plan([component_id])
    return True


# --- set_current_version -------------------------------------------------------------------------


def set_current_steps(
    component_id: str, version: int, expected_current_version: int | None, user_id: str | None, now: int
) -> Plan[bool]:
    """One transaction: move the live pointer to a published version whose pins are all live."""
    component = yield from read_component_plan(component_id, deleted_at=None)
    if component is None or (user_id is not None and component.user_id != user_id):
        return False
    target = yield from read_config_plan(component_id, version)
    if target is None:
        return False
    if target.stage != "published":
        raise ValueError(
            f"Cannot set draft config {component_id} v{version} as current. Only published configs can be current."
        )
    if expected_current_version is not None and not current_version_matches(
        component.current_version, expected_current_version
    ):
        raise ComponentVersionConflictError(
            f"Component {component_id} current version is {component.current_version}, "
            f"expected {expected_current_version}"
        )
    query: dict[str, Any] = {"_id": component_id, "deleted_at": None}
    if user_id is not None:
        query["user_id"] = user_id
    if expected_current_version is not None:
        query["current_version"] = pointer_guard(expected_current_version)
    moved: Written = yield Command(
        COMPONENTS,
        "update_one",
        {"filter": query, "update": {"$set": {"current_version": version, "updated_at": now}, "$inc": {GUARD: 1}}},
    )
    if not moved.matched_count:
        still = yield from read_component_plan(component_id, deleted_at=None)
        if still is None or (user_id is not None and still.user_id != user_id):
            return False
        raise ComponentVersionConflictError(
            f"Component {component_id} current version changed; expected {expected_current_version}"
        )
    links = [link.model_dump() for link in target.links]
    yield from refuse_archived_pins_plan(component_id, version, links, "current")
    return True


# --- delete_component / restore_component ------------------------------------------------------


def delete_component_steps(
    component_id: str,
    hard_delete: bool,
    user_id: str | None,
    expected_current_version: int | None,
    require_no_dependents: bool,
    now: int,
) -> Plan[tuple[bool, int]]:
    """One transaction: archive (or remove) the component and disable every schedule aimed at it.
    ``(deleted, schedules disabled)``."""
    component = yield from read_component_plan(component_id)
    if user_id is not None and (
        component is None or component.user_id != user_id or (not hard_delete and component.deleted_at is not None)
    ):
        return False, 0
    if require_no_dependents:
        yield from refuse_if_dependents_plan(component_id, active_parents_only=not hard_delete, parent_user_id=user_id)
    if component is None:
        return False, 0
    if expected_current_version is not None and not current_version_matches(
        component.current_version, expected_current_version
    ):
        raise ComponentVersionConflictError(
            f"Component {component_id} current version is {component.current_version}, "
            f"expected {expected_current_version}"
        )
    query: dict[str, Any] = {"_id": component_id}
    if user_id is not None:
        query["user_id"] = user_id
    if expected_current_version is not None:
        query["current_version"] = pointer_guard(expected_current_version)
    if hard_delete:
        yield Command(CONFIGS, "delete_many", {"filter": {"component_id": component_id}})
        yield Command(
            CONFIGS,
            "update_many",
            {
                "filter": {"links.child_component_id": component_id},
                "update": {"$pull": {"links": {"child_component_id": component_id}}},
            },
        )
        result: Written = yield Command(COMPONENTS, "delete_one", {"filter": query})
        affected = result.deleted_count
    else:
        result = yield Command(
            COMPONENTS,
            "update_one",
            {"filter": {**query, "deleted_at": None}, "update": {"$set": {"deleted_at": now, "updated_at": now}}},
        )
        affected = result.matched_count
    if not affected:
        return False, 0
    from agno.db.schemas.scheduler import build_run_endpoint

    kind = component.component_type
    disabled = yield from schedule_ops.disable_for_target_plan(
        kind, component_id, build_run_endpoint(kind, component_id), f"target_archived:{kind}:{component_id}", now
    )
    return True, disabled


def restore_component_steps(component_id: str, user_id: str | None, now: int) -> Plan[bool]:
    """One transaction: clear ``deleted_at``, refused if the live version pins an archived child."""
    component = yield from read_component_plan(component_id)
    if component is None or (user_id is not None and component.user_id != user_id):
        return False
    query: dict[str, Any] = {"_id": component_id, "deleted_at": {"$ne": None}}
    if user_id is not None:
        query["user_id"] = user_id
    result: Written = yield Command(
        COMPONENTS, "update_one", {"filter": query, "update": {"$set": {"deleted_at": None, "updated_at": now}}}
    )
    if not result.matched_count:
        return False
    if component.current_version is not None:
        live_version = yield from read_config_plan(component_id, component.current_version)
        if live_version is not None:
            pinned = sorted(
                {link.child_component_id for link in live_version.links if link.link_kind in PIN_LINK_KINDS}
            )
            if pinned:
                rows: list[dict[str, Any]] = yield Command(
                    COMPONENTS, "find", {"filter": {"_id": {"$in": pinned}}, "projection": {"deleted_at": True}}
                )
                archived = sorted(row["_id"] for row in rows if row.get("deleted_at") is not None)
                if archived:
                    raise ComponentDependencyError(
                        f"Cannot restore {component_id}: pinned child(ren) "
                        f"{', '.join(archived)} are archived. Restore them first."
                    )
                yield from touch_plan(pinned)
    return True
