"""Compare agno-mongo's answers with agno's ``SqliteDb`` after removing what may legitimately differ.

``normalised`` replaces generated ids by their order of first appearance (``<id0>``, ``<id1>``, ...)
and timestamps by a marker, recursively through dicts, lists and tuples, so two stores that did the
same thing give equal values. Only the keys named are touched: anything else must match exactly.
"""

from __future__ import annotations

from typing import Any

TIMESTAMPS = frozenset({"created_at", "updated_at"})


def normalised(value: Any, *, ids: frozenset[str] = frozenset(), times: frozenset[str] = TIMESTAMPS) -> Any:
    """``value`` with the values under ``ids`` keys renumbered and under ``times`` keys masked."""
    seen: dict[Any, str] = {}

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            out: dict[Any, Any] = {}
            for key, inner in item.items():
                if key in times and inner is not None:
                    out[key] = "<time>"
                elif key in ids and inner is not None:
                    out[key] = seen.setdefault(inner, f"<id{len(seen)}>")
                else:
                    out[key] = walk(inner)
            return out
        if isinstance(item, list | tuple):
            return type(item)(walk(inner) for inner in item)
        return item

    return walk(value)


def assert_same_answers(ours: list[Any], theirs: list[Any], *, times: frozenset[str] | None = None) -> None:
    """Answer by answer, ours equals agno's: exactly, or with the values under ``times`` keys masked."""
    assert len(ours) == len(theirs)
    for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        if times is not None:
            mine, reference = normalised(mine, times=times), normalised(reference, times=times)
        assert mine == reference, f"answer {index}"
