"""The component catalog's documents: one per component, one per config version (links embedded).

``ComponentDocument`` (collection ``components_table_name``): ``_id`` is the ``component_id``. Besides
agno's columns (``COMPONENT_COLUMNS``) it keeps the version high-water mark ``versions`` (every number
ever allocated, tombstones included, so a number is never reused) and ``_guard``, a counter the
catalog's transactions bump on every component whose state they rely on, so two transactions that
depend on each other's documents always conflict (MongoDB's snapshot isolation would otherwise
allow write skew, e.g. two links closing a cycle from both ends).

``ConfigDocument`` (collection ``component_configs_table_name``): ``_id`` is
``"<component_id>/<version>"`` (the version is digits, so the id is unambiguous), with agno's
columns (``CONFIG_COLUMNS``) and the version's outgoing ``links`` embedded: a version's links are
written with it, replaced with it and tombstoned with it, in one document.

``config``, ``metadata`` and ``links`` are free-form and go through the codec
(:mod:`agno_mongo.schema.codec`); the link fields the catalog queries (``child_component_id``,
``child_version``, ``link_kind``) are plain strings and ints, which the codec leaves as they are.

Input models (``LinkInput``) are strict: a bad link is refused naming its index before any command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agno.db.base import ComponentType
from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, Text, from_stored, validated

__all__ = [
    "COMPONENT_COLUMNS",
    "CONFIG_COLUMNS",
    "CONFIG_FREE_FORM",
    "COMPONENT_FREE_FORM",
    "LINK_COLUMNS",
    "SCHEMA_VERSION",
    "ComponentDocument",
    "ConfigDocument",
    "LinkInput",
    "check_component_type",
    "check_links",
    "check_stage",
    "component_row",
    "config_row",
    "config_key",
]

COMPONENT_COLUMNS = (
    "component_id",
    "component_type",
    "name",
    "user_id",
    "description",
    "current_version",
    "metadata",
    "created_at",
    "updated_at",
    "deleted_at",
)
"""agno's component columns, in its table's order: the keys of every component row dict."""

CONFIG_COLUMNS = ("component_id", "version", "label", "stage", "config", "notes", "created_at", "updated_at")
"""agno's config columns, in its table's order."""

CONFIG_SUMMARY_COLUMNS = tuple(column for column in CONFIG_COLUMNS if column != "config")
"""What ``list_configs(include_config=False)`` answers per version."""

LINK_COLUMNS = (
    "parent_component_id",
    "parent_version",
    "link_kind",
    "link_key",
    "child_component_id",
    "child_version",
    "position",
    "meta",
    "created_at",
    "updated_at",
)
"""agno's link columns, in its table's order: the keys of every link row dict."""

COMPONENT_FREE_FORM = ("metadata",)
CONFIG_FREE_FORM = ("config", "links")

STAGES = ("draft", "published")
"""The stages a caller may write; ``_deleted`` (agno's ``DELETED_CONFIG_STAGE``) is the tombstone."""

_TYPES = {member.value for member in ComponentType}


def config_key(component_id: str, version: int) -> str:
    """A config document's ``_id``: the version is digits after the last ``/``, so distinct
    ``(component_id, version)`` pairs never share one."""
    return f"{component_id}/{version}"


def check_component_type(name: str, value: object, *, required: bool) -> str | None:
    """A ``ComponentType`` (or its exact value) as the stored string; ``None`` when allowed."""
    if value is None:
        if required:
            raise InvalidInputError(name, "is required (agent, team or workflow)")
        return None
    if isinstance(value, ComponentType):
        return value.value
    if isinstance(value, str) and value in _TYPES:
        return value
    raise InvalidInputError(name, f"must be a ComponentType ('agent', 'team' or 'workflow'), got {value!r}")


def check_stage(value: object, *, required: bool) -> str | None:
    """``"draft"`` or ``"published"`` (agno's ``Invalid stage`` ValueError otherwise)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or value not in STAGES:
        raise InvalidInputError("stage", f"Invalid stage: {value}", standalone=True)
    return value


class LinkInput(BaseModel):
    """One link as agno's callers build it (``Team.save``, ``Step.get_links``, the components routes).

    ``child_version`` is required (agno: "child_version is required for link to ..."); keys agno's
    table does not have are ignored, as its insert ignores them."""

    model_config = ConfigDict(extra="ignore", strict=True)

    link_kind: Text
    link_key: Text
    child_component_id: IdStr
    child_version: Int64 = Field(ge=1)
    position: Int64
    meta: Any = None


def check_links(name: str, links: object) -> list[dict[str, Any]] | None:
    """``None`` or a list of link dicts, each validated (the error names ``links[i].field``)."""
    if links is None:
        return None
    if not isinstance(links, list | tuple):
        raise InvalidInputError(name, f"must be a list of link dicts, got {type(links).__name__}")
    checked: list[dict[str, Any]] = []
    for index, link in enumerate(links):
        if not isinstance(link, Mapping):
            raise InvalidInputError(f"{name}[{index}]", f"must be a dict, got {type(link).__name__}")
        if link.get("child_version") is None:
            child = link.get("child_component_id")
            raise InvalidInputError(
                f"{name}[{index}].child_version", f"child_version is required for link to {child}", standalone=True
            )
        model = validated(LinkInput, link, f"{name}[{index}].")
        checked.append(model.model_dump())
    return checked


class ComponentDocument(BaseModel):
    """A stored component as read back."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    component_id: IdStr = Field(alias="_id")
    component_type: str
    name: str | None = None
    user_id: str | None = None
    description: str | None = None
    current_version: Int64 | None = None
    metadata: Any = None
    created_at: Int64
    updated_at: Int64 | None = None
    deleted_at: Int64 | None = None
    versions: Int64 = 0
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self) -> dict[str, Any]:
        """agno's component row dict, its columns in its order."""
        return {column: getattr(self, column) for column in COMPONENT_COLUMNS}


class StoredLink(BaseModel):
    """One embedded link as stored."""

    model_config = ConfigDict(extra="ignore", strict=False)

    link_kind: str
    link_key: str
    child_component_id: str
    child_version: Int64 | None = None
    position: Int64
    meta: Any = None
    created_at: Int64 | None = None
    updated_at: Int64 | None = None


class ConfigDocument(BaseModel):
    """A stored config version as read back (links included)."""

    model_config = ConfigDict(extra="ignore", strict=False)

    component_id: IdStr
    version: Int64
    label: str | None = None
    stage: str
    config: Any = None
    notes: str | None = None
    created_at: Int64
    updated_at: Int64 | None = None
    links: list[StoredLink] = []
    schema_version: int = SCHEMA_VERSION

    def to_agno_dict(self, *, include_config: bool = True) -> dict[str, Any]:
        """agno's config row dict (without ``config`` for a version summary)."""
        columns = CONFIG_COLUMNS if include_config else CONFIG_SUMMARY_COLUMNS
        return {column: getattr(self, column) for column in columns}

    def link_rows(self) -> list[dict[str, Any]]:
        """The version's links as agno's link row dicts, in stored order."""
        return [
            {
                "parent_component_id": self.component_id,
                "parent_version": self.version,
                **{column: getattr(link, column) for column in LINK_COLUMNS[2:]},
            }
            for link in self.links
        ]


def component_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored component as agno's row dict (validated; a malformed one raises ``CorruptDocumentError``)."""
    return from_stored(ComponentDocument, document, "components").to_agno_dict()


def component_of(document: Mapping[str, Any]) -> ComponentDocument:
    """A stored component, validated."""
    return from_stored(ComponentDocument, document, "components")


def config_of(document: Mapping[str, Any]) -> ConfigDocument:
    """A stored config version, decoded and validated."""
    return from_stored(ConfigDocument, document, "component_configs")


def config_row(document: Mapping[str, Any], *, include_config: bool = True) -> dict[str, Any]:
    """A stored config version as agno's row dict."""
    return config_of(document).to_agno_dict(include_config=include_config)
