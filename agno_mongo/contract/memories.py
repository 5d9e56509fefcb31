"""User memories: agno's contract as plans (check arguments, build commands, map answers).

``MemoryContract`` holds what the sync and async classes share; each method has agno's signature and
returns a plan that :func:`~agno_mongo.drivers.blocking` or :func:`~agno_mongo.drivers.awaiting` runs.
Every single-memory call is one command; a bulk upsert is one command for any number of memories.
An upsert that collides on ``_id`` costs one read of the stored owner, plus a resend when the
collision was a lost create race rather than another user's memory.
"""

from __future__ import annotations

from typing import Any

from agno.db.schemas.memory import UserMemory

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
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import memories as ops
from agno_mongo.ops.command import Plan
from agno_mongo.ops.common import listing_sort, page_of_plan
from agno_mongo.schema.memories import MemoryFields, memory_out

MEMORY_SORT_FIELDS = {
    "memory_id",
    "memory",
    "user_id",
    "agent_id",
    "team_id",
    "created_at",
    "updated_at",
    "input",
    "feedback",
}
DEFAULT_ORDER = [("created_at", 1), ("_id", 1)]
"""Order without ``sort_by``: the order memories were created in (what SQL stores give unsorted)."""


def check_topics(topics: object) -> list[str] | None:
    """``None`` or a list of plain strings (an operator dict would widen the filter)."""
    if topics is None:
        return None
    if not isinstance(topics, list | tuple):
        raise InvalidInputError("topics", f"must be a list of strings, got {type(topics).__name__}")
    return [check_str(f"topics[{index}]", topic) for index, topic in enumerate(topics)]


class MemoryContract:
    """The user memory part of agno's ``BaseDb`` contract, as plans."""

    _names: dict[str, str]

    def upsert_user_memory(self, memory: UserMemory, deserialize: bool | None = True) -> Plan[Any]:
        """Create or update one memory in one command; ``None`` if another user owns its id.

        A memory the same user (or nobody) created first under this id, in a race, is updated.

        A memory without ``memory_id`` gets a uuid4 (set on the object too, as agno does).
        """
        fields = MemoryFields.from_memory(memory)
        document = yield from ops.upsert_memory_plan(fields, now())
        return None if document is None else memory_out(document, deserialize)

    def upsert_memories(
        self, memories: list[UserMemory], deserialize: bool | None = True, preserve_updated_at: bool = False
    ) -> Plan[list[Any]]:
        """Upsert many memories in ONE bulk command; those owned by other users are left out.

        Memories that lost a create race to a writer of the same user (or nobody) are written by one
        owner read and one more bulk for just those.

        Each record is written whole (``created_at`` included, as agno's bulk path does), so the
        answer is built from what was sent, without reading back.
        """
        if not isinstance(memories, list | tuple):
            raise InvalidInputError("memories", f"must be a list, got {type(memories).__name__}")
        items = [MemoryFields.from_memory(m, name=f"memories[{i}]") for i, m in enumerate(memories) if m is not None]
        stamp = now()
        records = [ops.stored_record(fields, stamp, preserve_updated_at=preserve_updated_at) for fields in items]
        refused = yield from ops.upsert_memories_plan(records)
        accepted: dict[str, dict[str, Any]] = {}
        for index, record in enumerate(records):
            if index not in refused:
                accepted[record["memory_id"]] = record
        return [memory_out({"_id": memory_id, **record}, deserialize) for memory_id, record in accepted.items()]

    def get_user_memory(self, memory_id: str, deserialize: bool | None = True, user_id: str | None = None) -> Plan[Any]:
        """One memory by id; with ``user_id``, only if it is that user's."""
        check_id("memory_id", memory_id)
        check_owner("user_id", user_id)
        document = yield ops.get_memory(memory_id, user_id)
        return None if document is None else memory_out(document, deserialize)

    def get_user_memories(
        self,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        topics: list[str] | None = None,
        search_content: str | None = None,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        deserialize: bool | None = True,
    ) -> Plan[Any]:
        """Filter, sort and page memories; with ``deserialize=False`` also the total count.

        ``topics`` matches memories with any of them; ``search_content`` is a case-insensitive
        substring of the memory text. One ``find``, plus a count only when the page is full.
        """
        query = ops.memory_list_filter(
            user_id=check_owner("user_id", user_id),
            agent_id=check_optional_id("agent_id", agent_id),
            team_id=check_optional_id("team_id", team_id),
            topics=check_topics(topics),
            search_content=None if search_content is None else check_str("search_content", search_content),
        )
        field, direction = check_sort(sort_by, sort_order, MEMORY_SORT_FIELDS)
        sort = DEFAULT_ORDER if field is None else listing_sort(field, direction, id_field="memory_id")
        page_limit, skip = check_page(limit, page)
        documents, total = yield from page_of_plan(
            ops.MEMORIES, query, sort, page_limit, skip, None, count=not deserialize
        )
        if deserialize:
            return [memory_out(document, True) for document in documents]
        return [memory_out(document, False) for document in documents], total

    def get_user_memory_stats(
        self, limit: int | None = None, page: int | None = None, user_id: str | None = None
    ) -> Plan[tuple[list[dict[str, Any]], int]]:
        """Per user: how many memories and the last update, newest first; plus the number of users.

        One ``aggregate`` (agno's own adapter sends two).
        """
        check_owner("user_id", user_id)
        page_limit, skip = check_page(limit, page)
        result = yield from ops.memory_stats_plan(user_id, page_limit, skip, self._names[ops.MEMORIES])
        return result

    def get_all_memory_topics(self, user_id: str | None = None) -> Plan[list[str]]:
        """Every topic in use (one ``aggregate`` grouping by topic, read through its cursor), only
        the caller's when ``user_id`` is given."""
        check_owner("user_id", user_id)
        topics: list[dict[str, Any]] = yield ops.memory_topics(user_id)
        return [topic["_id"] for topic in topics if isinstance(topic.get("_id"), str) and topic["_id"]]

    def delete_user_memory(self, memory_id: str, user_id: str | None = None) -> Plan[None]:
        """Delete one memory; with ``user_id``, only if it is that user's."""
        check_id("memory_id", memory_id)
        check_owner("user_id", user_id)
        yield ops.delete_memories([memory_id], user_id)
        return None

    def delete_user_memories(self, memory_ids: list[str], user_id: str | None = None) -> Plan[None]:
        """Delete many memories in one command; with ``user_id``, only that user's."""
        ids = check_ids("memory_ids", memory_ids)
        check_owner("user_id", user_id)
        if ids:
            yield ops.delete_memories(ids, user_id)
        return None

    def clear_memories(self) -> Plan[None]:
        """Delete every memory of every user."""
        yield ops.clear_memories()
        return None
