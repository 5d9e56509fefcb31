"""Knowledge contents: agno's contract as plans (check arguments, build commands, map answers).

``KnowledgeContract`` holds what the sync and async classes share; each method has agno's signature
and returns a plan. Every single-row call is one command; a listing is one ``find`` plus a count only
when the page does not already tell the total. Owner rules (agno's): a scoped read sees the user's
rows and shared ones, a scoped delete only the user's own, and an upsert never overwrites a row whose
owner differs from the row's ``user_id`` (refused in the same command, see
:mod:`agno_mongo.ops.knowledge`).
"""

from __future__ import annotations

from agno.db.schemas.knowledge import KnowledgeRow

from agno_mongo.contract.checks import check_id, check_owner, check_page, check_sort, check_str, now
from agno_mongo.errors import KnowledgeOwnershipError
from agno_mongo.ops import knowledge as ops
from agno_mongo.ops.command import Plan
from agno_mongo.ops.common import listing_sort, page_of_plan
from agno_mongo.schema.knowledge import KnowledgeFields, knowledge_out

KNOWLEDGE_SORT_FIELDS = {
    "id",
    "name",
    "description",
    "type",
    "size",
    "linked_to",
    "access_count",
    "status",
    "status_message",
    "user_id",
    "created_at",
    "updated_at",
    "external_id",
}
DEFAULT_ORDER = [("created_at", 1), ("_id", 1)]
"""Order without ``sort_by``: the order rows were created in (agno's adapter leaves it to the server)."""


class KnowledgeContract:
    """The knowledge contents part of agno's ``BaseDb`` contract, as plans."""

    def upsert_knowledge_content(self, knowledge_row: KnowledgeRow) -> Plan[KnowledgeRow | None]:
        """Create or update a row in one command and return it.

        Every field is written as given (agno rewrites whole rows). Raises
        :class:`KnowledgeOwnershipError` if the stored row with this id has a different owner (a row
        another writer with the same owner created first, in a race, is overwritten as usual).
        """
        fields = KnowledgeFields.from_row(knowledge_row)
        if not (yield from ops.upsert_knowledge_plan(fields, now())):
            raise KnowledgeOwnershipError(fields.id, fields.user_id)
        return knowledge_row

    def get_knowledge_content(self, id: str, user_id: str | None = None) -> Plan[KnowledgeRow | None]:
        """One row by id; with ``user_id``, only if it is that user's or shared."""
        check_id("id", id)
        check_owner("user_id", user_id)
        document = yield ops.get_knowledge(id, user_id)
        return None if document is None else knowledge_out(document)

    def get_knowledge_contents(
        self,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        linked_to: str | None = None,
        user_id: str | None = None,
    ) -> Plan[tuple[list[KnowledgeRow], int]]:
        """Rows of one knowledge instance (``linked_to``), sorted and paged, with the total count.

        With ``user_id``: that user's rows plus shared ones.
        """
        query = ops.knowledge_list_filter(
            None if linked_to is None else check_str("linked_to", linked_to), check_owner("user_id", user_id)
        )
        field, direction = check_sort(sort_by, sort_order, KNOWLEDGE_SORT_FIELDS)
        sort = DEFAULT_ORDER if field is None else listing_sort(field, direction, id_field="id")
        page_limit, skip = check_page(limit, page)
        documents, total = yield from page_of_plan(ops.KNOWLEDGE, query, sort, page_limit, skip, None, count=True)
        return [knowledge_out(document) for document in documents], int(total or 0)

    def delete_knowledge_content(self, id: str, user_id: str | None = None) -> Plan[None]:
        """Delete one row; with ``user_id``, only that user's own (shared rows go only unscoped)."""
        check_id("id", id)
        check_owner("user_id", user_id)
        yield ops.delete_knowledge(id, user_id)
        return None
