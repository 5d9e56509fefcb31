"""Commands as plain values: what to run on which collection, with no I/O.

A plan is a generator that yields :class:`Command` values and receives each result (or has the
driver's exception thrown into it). The same plan runs on PyMongo, PyMongo async and Motor, and a
test can check a plan's commands without a server, the way h11 is tested with bytes in, events out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pymongo.errors import AutoReconnect, OperationFailure

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
    "list_collection_names",
]

WRITE_OPS: frozenset[str] = frozenset(
    {"update_one", "update_many", "delete_one", "delete_many", "bulk_write", "insert_one", "insert_many", "replace_one"}
)
"""The ops a driver answers with :class:`Written`."""

T = TypeVar("T")


@dataclass(frozen=True)
class Written:
    """What a write did, the same on PyMongo, PyMongo async and Motor.

    The driver turns every ``UpdateResult``, ``DeleteResult``, ``InsertOneResult``,
    ``InsertManyResult`` and ``BulkWriteResult`` into this, so plans read plain counts (named as
    PyMongo names them) and a test answers a plan with the value a driver would send it.
    """

    matched_count: int = 0
    modified_count: int = 0
    deleted_count: int = 0
    inserted_count: int = 0
    upserted_count: int = 0


@dataclass(frozen=True)
class Command:
    """One MongoDB command: ``collection.<op>(**kwargs)``.

    ``collection`` is a role ("sessions", "memories", ...) that the class maps to a real collection
    name, so plans do not depend on the user's naming. ``find`` and ``aggregate`` results arrive as
    lists; ``list_collection_names`` runs on the database that collection is in.

    ``resend`` says whether the driver may send the command again after a network error. True means
    a second arrival changes nothing *and* answers the same (a guarded ``$push``, a ``$set`` of whole
    values, a read). False means the answer after a lost reply would mislead (a compare-and-set whose
    first arrival already applied now matches nothing): the driver then throws :class:`ReplyLost`
    into the plan, which finds out by a read what happened (see :mod:`agno_mongo.ops.runs`).
    """

    collection: str
    op: Op
    kwargs: dict[str, Any] = field(default_factory=dict)
    resend: bool = True


@dataclass(frozen=True)
class Pause:
    """Not a command: the driver sleeps ``seconds`` (``asyncio.sleep`` on async), then resumes the plan.

    Plans yield it to back off between rounds of a contended write, so contention is resolved
    rather than reported.
    """

    seconds: float


def backoff(round_number: int) -> Pause:
    """A jittered pause that doubles per round from ~5 ms up to ~250 ms."""
    return Pause(min(0.005 * 2**round_number, 0.25) * random.uniform(0.5, 1.0))


class ReplyLost(AutoReconnect):
    """A command that is not safe to resend lost its connection: it may or may not have been applied.

    Thrown into the plan that yielded it (the plan checks by a read); raised to the caller only if
    the plan cannot tell, which is a bug in that plan.
    """

    def __init__(self, command: Command, cause: BaseException) -> None:
        self.command = command
        super().__init__(f"reply lost for {command.op} on {command.collection}: {cause}")


@dataclass(frozen=True)
class Atomically:
    """Not a command: the commands of the plan ``steps()`` builds commit together or not at all.

    The driver starts a client session and runs that plan inside one multi-document transaction
    (``with_transaction`` semantics): each of its commands is sent once, with the session; on a
    ``TransientTransactionError`` the transaction is aborted and ``steps()`` is called again for a
    fresh plan, so it must build one from scratch; an ``UnknownTransactionCommitResult`` retries
    the commit. The outer plan receives the inner plan's answer; a command that fails inside ends the
    transaction (MongoDB aborts it) and its error is thrown into the outer plan, with nothing
    written. A :class:`Pause` inside is refused (a transaction holds locks). ``what`` names the operation in
    the error raised when the server has no transactions (a standalone ``mongod``):
    :class:`~agno_mongo.errors.ReplicaSetRequiredError`, before anything is written.
    """

    steps: Callable[[], Generator[Any, Any, Any]]
    what: str
    roles: tuple[str, ...] = ()
    """The collection roles the transaction may touch: the driver creates their indexes before it
    starts, since an index build on a collection a transaction uses aborts that transaction."""


Step = Command | Pause | Atomically
Plan = Generator[Step, Any, T]
"""A multi-step operation: yields commands (or pauses, or transactions), receives results, returns
the answer."""


WRITE_CONFLICT = 112
"""MongoDB's WriteConflict error code."""

CONFLICT_ROUNDS = 16
"""Runs of a transaction that keeps losing a write conflict the driver did not retry by itself."""


def write_conflict(error: OperationFailure) -> bool:
    """A transaction that lost a race on a document: MongoDB's WriteConflict (code 112), or a server
    that reports it at commit without the ``TransientTransactionError`` label the drivers retry."""
    return error.code == WRITE_CONFLICT or "write conflict" in str(error).lower()


def atomically(steps: Callable[[], Generator[Any, Any, T]], what: str, roles: Iterable[str]) -> Plan[T]:
    """``Atomically(steps, what, roles=roles)``, run again (after a :func:`backoff` pause) when it
    lost a write conflict the driver did not retry, so racing writers are serialised, not refused.
    The answer is the inner plan's; any other error (and the last conflict) reaches the caller.

    A labelled ``TransientTransactionError`` is retried inside the driver already; this loop covers
    a conflict reported unlabelled (at commit). ``roles``: the collections the transaction touches,
    whose indexes the driver builds before it starts (an index build inside aborts it)."""
    touched = tuple(roles)
    for round_number in range(CONFLICT_ROUNDS):
        try:
            answer: T = yield Atomically(steps, what, roles=touched)
            return answer
        except OperationFailure as error:
            if not write_conflict(error) or round_number == CONFLICT_ROUNDS - 1:
                raise
        yield backoff(round_number)
    raise AssertionError("unreachable")  # pragma: no cover
