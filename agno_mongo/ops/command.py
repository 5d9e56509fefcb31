"""Commands as plain values: what to run on which collection, with no I/O.

A plan is a generator that yields :class:`Command` values and receives each result (or has the
driver's exception thrown into it). The same plan runs on PyMongo, PyMongo async and Motor, and a
test can check a plan's commands without a server, the way h11 is tested with bytes in, events out.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Op = Literal[
    "find",
    "find_one",
    "aggregate",
    "count_documents",
    "update_one",
    "update_many",
    "find_one_and_update",
    "delete_one",
    "delete_many",
    "bulk_write",
    "insert_one",
    "insert_many",
    "replace_one",
    "distinct",
    "find_one_and_delete",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One MongoDB command: ``collection.<op>(**kwargs)``.

    ``collection`` is a role ("sessions", "memories", ...) that the class maps to a real collection
    name, so plans do not depend on the user's naming. ``find`` and ``aggregate`` results arrive as
    lists. Every command a plan yields is safe to send twice (writes are guarded or idempotent), which
    is what lets the driver retry it after a network error.
    """

    collection: str
    op: Op
    kwargs: dict[str, Any] = field(default_factory=dict)


Plan = Generator[Command, Any, T]
"""A multi-step operation: yields commands, receives results, returns the answer."""


def single(command: Command) -> Plan[Any]:
    """A plan of one command whose result is the answer."""
    return (yield command)
