"""Aggregations bounded in memory and in output size, for MongoDB 6.0+ (no I/O).

A real server refuses what the embedded test server lets through: a ``$sort`` or ``$group`` past
100 MB without ``allowDiskUse``, a ``$push`` / ``$addToSet`` array past 100 MB (those accumulators
never spill to disk: ``ExceededMemoryLimit``, code 146), and any single result document past
16 MiB: a ``$facet`` answer, a ``distinct`` answer, a grouped array. The rules every pipeline here
follows (checked by ``tests/test_bounded_aggregations.py``; see ``docs/aggregations.md``):

* ``allowDiskUse: True`` on every ``aggregate`` that sorts, groups or windows (:func:`aggregate`);
* no ``$facet`` and no ``distinct`` command: many documents through a cursor instead;
* ``$push`` / ``$addToSet`` only where the group holds a bounded number of values;
* operators of MongoDB 6.0 only (no ``$percentile`` / ``$median``): percentiles through
  ``$setWindowFields`` ranks over a sorted stream.

A page and the total number of matches travel in one ``aggregate``: the page's rows, then one
document ``{TOTAL: n}`` that a ``$unionWith`` of the counting pipeline appends to the stream
(:func:`page_with_total`). Each row is its own document, so the answer has no size limit, and the
count streams through ``$count``.
"""

from __future__ import annotations

from typing import Any

from agno_mongo.ops.command import Command, Plan

TOTAL = "_total"
"""The field of the one document the counting branch appends after a page's rows."""

LARGE_PAGE = 5000
"""A page larger than this is counted by a command of its own (``count_documents`` can be served by
an index alone); smaller pages carry their total in the same ``aggregate``."""


def aggregate(collection: str, pipeline: list[dict[str, Any]]) -> Command:
    """An ``aggregate`` command that may spill its sorts and groups to disk."""
    return Command(collection, "aggregate", {"pipeline": pipeline, "allowDiskUse": True})


def paged(pipeline: list[dict[str, Any]], skip: int, limit: int | None) -> list[dict[str, Any]]:
    """``pipeline`` then ``$skip`` / ``$limit`` (each only when it does something)."""
    page = [*pipeline]
    if skip:
        page.append({"$skip": skip})
    if limit is not None:
        page.append({"$limit": limit})
    return page


def with_total(
    rows: list[dict[str, Any]], collection_name: str, counting: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``rows`` followed by ONE document ``{TOTAL: n}``: how many documents ``counting`` yields
    (run on ``collection_name``, the real name of the collection ``rows`` reads)."""
    return [*rows, {"$unionWith": {"coll": collection_name, "pipeline": [*counting, {"$count": TOTAL}]}}]


def split_total(documents: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The rows and the total of a :func:`with_total` answer (no count document means none matched)."""
    if documents and set(documents[-1]) == {TOTAL}:
        return documents[:-1], int(documents[-1][TOTAL])
    return documents, 0


def count_plan(collection: str, counting: list[dict[str, Any]]) -> Plan[int]:
    """How many documents ``counting`` yields: one ``aggregate`` ending in ``$count``."""
    counted: list[dict[str, Any]] = yield aggregate(collection, [*counting, {"$count": TOTAL}])
    return int(counted[0][TOTAL]) if counted else 0


def page_with_total_plan(
    collection: str,
    collection_name: str,
    pipeline: list[dict[str, Any]],
    counting: list[dict[str, Any]],
    skip: int,
    limit: int | None,
) -> Plan[tuple[list[dict[str, Any]], int]]:
    """A page of ``pipeline`` (sorted rows) and how many documents ``counting`` yields.

    ``limit=None``: every row, and their number is the total. ``limit=0`` (SQL's ``LIMIT 0``, an
    empty page): the count alone. A page up to :data:`LARGE_PAGE`: one ``aggregate`` whose stream
    ends with the count (:func:`with_total`). A larger page: the page, then the count.
    """
    if limit is None:
        everything: list[dict[str, Any]] = yield aggregate(collection, paged(pipeline, skip, None))
        return everything, len(everything)
    if limit == 0:
        total = yield from count_plan(collection, counting)
        return [], total
    if limit > LARGE_PAGE:
        rows: list[dict[str, Any]] = yield aggregate(collection, paged(pipeline, skip, limit))
        total = yield from count_plan(collection, counting)
        return rows, total
    documents: list[dict[str, Any]] = yield aggregate(
        collection, with_total(paged(pipeline, skip, limit), collection_name, counting)
    )
    return split_total(documents)
