"""Learnings: agno's contract as plans (check arguments, build commands, map answers).

``LearningContract`` holds what the sync and async classes share. Every call is one command. An
``upsert_learning`` onto a record another user owns is refused inside that command and raises
:class:`LearningOwnershipError` (agno's signature returns ``None``, so silence would hide the loss;
agno's learning stores catch and log errors from ``save``, so an agent run carries on).
"""

from __future__ import annotations

from typing import Any

from agno_mongo.contract.checks import (
    check_id,
    check_int,
    check_optional_id,
    check_optional_str,
    check_owner,
    check_page,
    check_sort,
    check_str,
    now,
)
from agno_mongo.errors import InvalidInputError, LearningOwnershipError
from agno_mongo.ops import learnings as ops
from agno_mongo.ops.command import Plan, Written
from agno_mongo.ops.common import page_of_plan
from agno_mongo.schema.base import reading
from agno_mongo.schema.codec import decode_fields
from agno_mongo.schema.learnings import LearningFields, learning_out

LEARNING_SORT_FIELDS = {
    "created_at",
    "updated_at",
    "learning_id",
    "learning_type",
    "namespace",
    "user_id",
    "agent_id",
    "team_id",
    "session_id",
    "entity_id",
    "entity_type",
}
STATS_SORT_FIELDS = {"user_id", "last_learning_updated_at"}


def check_filters(
    *,
    learning_type: object,
    user_id: object,
    agent_id: object,
    team_id: object,
    session_id: object,
    namespace: object,
    entity_id: object,
    entity_type: object,
) -> dict[str, str | None]:
    """Every filter value as a plain string or ``None``; operator dicts are refused by name."""
    return {
        "learning_type": check_optional_str("learning_type", learning_type),
        "user_id": check_owner("user_id", user_id),
        "agent_id": check_optional_id("agent_id", agent_id),
        "team_id": check_optional_id("team_id", team_id),
        "session_id": check_optional_id("session_id", session_id),
        "namespace": check_optional_str("namespace", namespace),
        "entity_id": check_optional_str("entity_id", entity_id),
        "entity_type": check_optional_str("entity_type", entity_type),
    }


def sort_or_default(sort_by: object, sort_order: object, allowed: set[str], default: str) -> tuple[str, int]:
    """agno's learnings API ignores an unknown sort field (falls back to the default); a non-name is refused."""
    if isinstance(sort_by, str) and sort_by not in allowed:
        sort_by = None
    field, direction = check_sort(sort_by, sort_order, allowed)
    return field or default, direction


def check_dict(name: str, value: object) -> dict[str, Any]:
    """A dict, stored as a native subdocument."""
    if not isinstance(value, dict):
        raise InvalidInputError(name, f"must be a dict, got {type(value).__name__}")
    return value


def check_optional_dict(name: str, value: object) -> dict[str, Any] | None:
    """``None`` or a dict."""
    return None if value is None else check_dict(name, value)


class LearningContract:
    """The learnings part of agno's ``BaseDb`` contract, as plans."""

    _names: dict[str, str]

    def get_learning(
        self,
        learning_type: str,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        session_id: str | None = None,
        namespace: str | None = None,
        entity_id: str | None = None,
        entity_type: str | None = None,
    ) -> Plan[dict[str, Any] | None]:
        """``{"content": ...}`` of the newest matching record, or ``None``: one ``find``."""
        check_str("learning_type", learning_type)
        values = check_filters(
            learning_type=learning_type,
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            session_id=session_id,
            namespace=namespace,
            entity_id=entity_id,
            entity_type=entity_type,
        )
        document = yield ops.get_learning(ops.learning_filter(values))
        if document is None:
            return None
        with reading("learnings", document):
            return {"content": decode_fields(document).get("content")}

    def upsert_learning(
        self,
        id: str,
        learning_type: str,
        content: dict[str, Any],
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        session_id: str | None = None,
        namespace: str | None = None,
        entity_id: str | None = None,
        entity_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Plan[None]:
        """Insert or update one record in one command; ``created_at`` is kept from the first write.

        Raises :class:`LearningOwnershipError` if another user owns ``id``. A record the same user
        (or nobody) created first, in a race, is updated, not refused (one owner read and a resend,
        only after such a collision).
        """
        check_id("id", id)
        check_str("learning_type", learning_type)
        check_dict("content", content)
        check_optional_dict("metadata", metadata)
        fields = LearningFields.build(
            learning_id=id,
            learning_type=learning_type,
            content=content,
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            session_id=session_id,
            namespace=namespace,
            entity_id=entity_id,
            entity_type=entity_type,
            metadata=metadata,
        )
        if not (yield from ops.upsert_learning_plan(fields, now())):
            raise LearningOwnershipError(id, user_id)
        return None

    def update_learning(self, id: str, content: dict[str, Any], metadata: dict[str, Any] | None = None) -> Plan[bool]:
        """Replace content and metadata of an existing record (never inserts); ``False`` if it is gone."""
        check_id("id", id)
        checked_content = check_dict("content", content)
        checked_metadata = check_optional_dict("metadata", metadata)
        result: Written = yield ops.update_learning(id, checked_content, checked_metadata, now())
        return bool(result.matched_count)

    def delete_learning(self, id: str) -> Plan[bool]:
        """Delete one record by id; ``True`` if it existed."""
        check_id("id", id)
        result: Written = yield ops.delete_learning(id)
        return bool(result.deleted_count)

    def delete_user_learnings(self, user_id: str, learning_type: str | None = None) -> Plan[int]:
        """Delete a user's records (optionally one type); ownerless records are untouched.

        ``""`` is a user like any other; ``None`` is refused (agno's SQL would delete every
        ownerless record, which no caller means)."""
        if check_owner("user_id", user_id) is None:
            raise InvalidInputError("user_id", "must be a string, got NoneType")
        check_optional_str("learning_type", learning_type)
        result: Written = yield ops.delete_user_learnings(user_id, learning_type)
        return result.deleted_count

    def get_learnings(
        self,
        learning_type: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        session_id: str | None = None,
        namespace: str | None = None,
        entity_id: str | None = None,
        entity_type: str | None = None,
        limit: int | None = None,
    ) -> Plan[list[dict[str, Any]]]:
        """Matching records, newest first, at most ``limit``: one ``find``."""
        values = check_filters(
            learning_type=learning_type,
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            session_id=session_id,
            namespace=namespace,
            entity_id=entity_id,
            entity_type=entity_type,
        )
        checked_limit = check_int("limit", limit, minimum=0) or None
        documents: list[dict[str, Any]] = yield ops.get_learnings(ops.learning_filter(values), checked_limit)
        return [learning_out(document) for document in documents]

    def search_learnings(
        self,
        query: str,
        learning_type: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        session_id: str | None = None,
        namespace: str | None = None,
        entity_id: str | None = None,
        entity_type: str | None = None,
        limit: int | None = None,
    ) -> Plan[list[dict[str, Any]]]:
        """Records whose ``content`` contains ``query``, newest first, at most ``limit``: one ``aggregate``.

        The match is agno's (``content ILIKE`` in its SQL stores): case-insensitive for A-Z, over
        the JSON text of ``content``, a run of spaces, ``_`` or ``-`` in the query matching any one
        character ("sarah chen" finds "sarah_chen"), everything else literal (see
        :func:`~agno_mongo.ops.learnings.search_regex`). A query of only ``%``, ``_`` and
        whitespace, and ``limit=0``, find nothing, as in agno. ``workflow_id`` filters too, though
        ``upsert_learning`` never sets it (agno's documented behaviour).
        """
        checked_query = check_str("query", query)
        values = check_filters(
            learning_type=learning_type,
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            session_id=session_id,
            namespace=namespace,
            entity_id=entity_id,
            entity_type=entity_type,
        )
        values["workflow_id"] = check_optional_id("workflow_id", workflow_id)
        checked_limit = check_int("limit", limit, minimum=0)
        regex = ops.search_regex(checked_query)
        if regex is None or checked_limit == 0:
            return []
        scope = ops.learning_filter(values, fields=(*ops.FILTER_FIELDS, "workflow_id"))
        documents = yield from ops.search_learnings_plan(scope, regex, checked_limit)
        return [learning_out(document) for document in documents]

    def get_learning_by_id(self, id: str) -> Plan[dict[str, Any] | None]:
        """One record by primary key, or ``None``."""
        check_id("id", id)
        document = yield ops.get_learning_by_id(id)
        return None if document is None else learning_out(document)

    def list_learnings(
        self,
        learning_type: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        session_id: str | None = None,
        namespace: str | None = None,
        entity_id: str | None = None,
        entity_type: str | None = None,
        include_global: bool = False,
        limit: int = 100,
        page: int = 1,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """A page of records and the total: one ``find``, plus a count only when the page is full.

        ``include_global`` with a ``user_id`` also lists ownerless records. Sorted by ``updated_at``
        (newest first) unless ``sort_by`` names another field; an unknown field is ignored, as
        agno's learnings API documents.
        """
        values = check_filters(
            learning_type=learning_type,
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            session_id=session_id,
            namespace=namespace,
            entity_id=entity_id,
            entity_type=entity_type,
        )
        if not isinstance(include_global, bool):
            raise InvalidInputError("include_global", f"must be a bool, got {type(include_global).__name__}")
        field, direction = sort_or_default(sort_by, sort_order, LEARNING_SORT_FIELDS, "updated_at")
        page_limit, skip = check_page(limit, page)
        query = ops.learning_filter(values, include_global=include_global)
        sort = ops.listing_sort(field, direction)
        documents, total = yield from page_of_plan(
            ops.LEARNINGS, query, sort, page_limit, skip, ops.WITHOUT_SEARCH_TEXT, count=True
        )
        return [learning_out(document) for document in documents], int(total or 0)

    def get_learnings_user_stats(
        self,
        learning_type: str | None = None,
        limit: int | None = None,
        page: int | None = None,
        user_id: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """Users owning records with their last update, and how many users: one ``aggregate``."""
        check_optional_str("learning_type", learning_type)
        check_owner("user_id", user_id)
        field, direction = sort_or_default(sort_by, sort_order, STATS_SORT_FIELDS, "last_learning_updated_at")
        page_limit, skip = check_page(limit, page)
        result = yield from ops.learning_user_stats_plan(
            learning_type, user_id, field, direction, page_limit, skip, self._names[ops.LEARNINGS]
        )
        return result
