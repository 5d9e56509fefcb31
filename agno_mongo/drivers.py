"""Run plans on a real client: PyMongo (sync), PyMongo async, or Motor.

A plan yields :class:`~agno_mongo.ops.command.Command` values; a driver executes each one and sends
the result back (or throws the driver's exception into the plan, so the plan decides what a
duplicate key means). A command marked ``resend=True`` is sent again after a network error for a
bounded time (:data:`RETRY_WINDOW_SECONDS`): its second arrival changes nothing and answers the
same. A command marked ``resend=False`` is sent once; if its connection breaks the plan gets
:class:`~agno_mongo.ops.command.ReplyLost` and checks by a read what happened. A
:class:`~agno_mongo.ops.command.Pause` step sleeps. An
:class:`~agno_mongo.ops.command.Atomically` step runs a sub-plan in one multi-document transaction,
whose commands are sent once each with the session: the transaction as a whole is what is retried.

The storage classes give the drivers three things: ``_execute(command, session)`` (send one command,
``session`` ``None`` outside a transaction), ``_ensure_indexes(role)`` (called for an ``Atomically``
step's roles before its transaction starts) and ``_start_session()``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from pymongo.errors import (
    AutoReconnect,
    ConfigurationError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.results import BulkWriteResult, DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from agno_mongo.errors import ReplicaSetRequiredError
from agno_mongo.ops.command import WRITE_OPS, Atomically, Command, Pause, Plan, ReplyLost, Written, backoff

P = ParamSpec("P")
T = TypeVar("T")

RETRY_WINDOW_SECONDS = 10.0
"""How long a command cut by network errors keeps being retried before the last error is raised.
A count would not do: after a cut PyMongo pauses the connection pool until its monitor has seen the
server again, and every attempt in that gap fails at once ("connection pool paused")."""
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 1.0


def pauses(window: float = RETRY_WINDOW_SECONDS) -> Iterator[float]:
    """Pauses between attempts: doubling from 50 ms to at most 1 s, while the window lasts."""
    deadline = time.monotonic() + window
    pause = FIRST_PAUSE
    while time.monotonic() + pause < deadline:
        yield pause
        pause = min(pause * 2, LONGEST_PAUSE)


CHANGES = WRITE_OPS | {"find_one_and_update", "find_one_and_delete"}
"""The ops that change documents: each is refused on a ``w=0`` collection before it is sent."""


def acknowledged(collection: Any, command: Command) -> None:
    """Refuse, before sending, a write whose collection has write concern ``w=0``: no plan could
    tell what such a write did (whether it matched, whether it landed)."""
    if not collection.write_concern.acknowledged:
        raise ConfigurationError(
            f"{command.op} on {collection.name}: agno-mongo needs acknowledged writes, and this client or "
            "database has write concern w=0 (leave w at its default, or set it to 1 or more)"
        )


def written(command: Command, result: Any) -> Written:
    """A PyMongo write result (the same classes on every driver) as :class:`Written`."""
    match result:
        case BulkWriteResult():
            counts = (result.matched_count, result.modified_count, result.deleted_count, result.inserted_count)
            return Written(*counts, upserted_count=result.upserted_count)
        case UpdateResult():
            upserted = 0 if result.upserted_id is None else 1
            return Written(result.matched_count, result.modified_count, upserted_count=upserted)
        case DeleteResult():
            return Written(deleted_count=result.deleted_count)
        case InsertManyResult():
            return Written(inserted_count=len(result.inserted_ids))
        case InsertOneResult():
            return Written(inserted_count=1)
    raise TypeError(f"{command.op} answered {type(result).__name__}, not a PyMongo write result")


def execute_sync(collection: Any, command: Command, session: Any = None) -> Any:
    """Execute one command on a PyMongo ``Collection``; cursors are drained into lists, write
    results become :class:`Written`. ``list_collection_names`` runs on the collection's database."""
    method = getattr(collection.database if command.op == "list_collection_names" else collection, command.op)
    kwargs = command.kwargs if session is None else {**command.kwargs, "session": session}
    if command.op in ("find", "aggregate"):
        return list(method(**kwargs))
    if command.op in CHANGES:
        acknowledged(collection, command)
    if command.op in WRITE_OPS:
        return written(command, method(**kwargs))
    return method(**kwargs)


async def execute_async(collection: Any, command: Command, session: Any = None) -> Any:
    """Async twin of :func:`execute_sync`, for PyMongo async and Motor collections."""
    method = getattr(collection.database if command.op == "list_collection_names" else collection, command.op)
    kwargs = command.kwargs if session is None else {**command.kwargs, "session": session}
    if command.op in ("find", "aggregate"):
        cursor = method(**kwargs)
        if inspect.isawaitable(cursor):  # PyMongo async: aggregate() is a coroutine; Motor's is not
            cursor = await cursor
        return await cursor.to_list(None)
    if command.op in CHANGES:
        acknowledged(collection, command)
    if command.op in WRITE_OPS:
        return written(command, await method(**kwargs))
    return await method(**kwargs)


def retryable(error: AutoReconnect) -> bool:
    """A cut connection is worth retrying; a server that could not be selected at all is not
    (selection already waited ``serverSelectionTimeoutMS``: retrying would multiply that wait)."""
    return not isinstance(error, ServerSelectionTimeoutError)


def with_retries_sync(call: Callable[[], T]) -> T:
    """Call, retrying after network errors for at most :data:`RETRY_WINDOW_SECONDS`."""
    for delay in pauses():
        try:
            return call()
        except AutoReconnect as error:
            if not retryable(error):
                raise
            time.sleep(delay)
    return call()


async def with_retries_async(call: Callable[[], Awaitable[T]]) -> T:
    """Async twin of :func:`with_retries_sync`."""
    for delay in pauses():
        try:
            return await call()
        except AutoReconnect as error:
            if not retryable(error):
                raise
            await asyncio.sleep(delay)
    return await call()


def send_sync(collection: Any, command: Command, session: Any = None) -> Any:
    """Execute ``command``: resent after network errors if it says it may be, else sent once.
    Inside a transaction (``session`` given) it is sent once: the transaction is what is retried."""
    if session is not None:
        return execute_sync(collection, command, session)
    if command.resend:
        return with_retries_sync(lambda: execute_sync(collection, command))
    try:
        return execute_sync(collection, command)
    except AutoReconnect as error:
        if not retryable(error):
            raise  # never sent: nothing to find out
        raise ReplyLost(command, error) from error


async def send_async(collection: Any, command: Command, session: Any = None) -> Any:
    """Async twin of :func:`send_sync`."""
    if session is not None:
        return await execute_async(collection, command, session)
    if command.resend:
        return await with_retries_async(lambda: execute_async(collection, command))
    try:
        return await execute_async(collection, command)
    except AutoReconnect as error:
        if not retryable(error):
            raise
        raise ReplyLost(command, error) from error


def no_transactions(error: OperationFailure) -> bool:
    """A standalone ``mongod`` refuses a transaction's first command with IllegalOperation (20)."""
    return error.code == 20 and "Transaction numbers are only allowed" in str(error)


def run_sync(db: Any, plan: Plan[T], session: Any = None) -> T:
    """Drive a plan to its answer on ``db`` (blocking); inside a transaction when ``session`` is given.

    Outside a transaction a failed command is thrown into the plan. Inside one it ends the
    transaction (MongoDB aborts a transaction whose command fails), so it is raised out of it: the
    plan that yielded the :class:`Atomically` step gets it thrown in, with nothing written.
    """
    send: Callable[[Any], Any] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send = plan.send
        if isinstance(step, Pause):
            if session is not None:
                raise TypeError("a plan cannot pause inside a transaction")
            time.sleep(step.seconds)
            value = None
        elif session is not None:
            value = run_sync(db, step.steps(), session) if isinstance(step, Atomically) else db._execute(step, session)
        else:
            try:
                value = transact_sync(db, step) if isinstance(step, Atomically) else db._execute(step)
            except PyMongoError as error:
                value, send = error, plan.throw


def transact_sync(db: Any, step: Atomically) -> Any:
    """Run ``step``'s plan in one transaction, retried as ``with_transaction`` does."""
    for role in step.roles:
        db._ensure_indexes(role)
    with db._start_session() as session:
        try:
            return session.with_transaction(lambda session: run_sync(db, step.steps(), session))
        except OperationFailure as error:
            if no_transactions(error):
                raise ReplicaSetRequiredError(step.what) from error
            raise


async def run_async(db: Any, plan: Plan[T], session: Any = None) -> T:
    """Async twin of :func:`run_sync`."""
    send: Callable[[Any], Any] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send = plan.send
        if isinstance(step, Pause):
            if session is not None:
                raise TypeError("a plan cannot pause inside a transaction")
            await asyncio.sleep(step.seconds)
            value = None
        elif session is not None:
            inner = run_async(db, step.steps(), session) if isinstance(step, Atomically) else db._execute(step, session)
            value = await inner
        else:
            try:
                value = await (transact_async(db, step) if isinstance(step, Atomically) else db._execute(step))
            except PyMongoError as error:
                value, send = error, plan.throw


TRANSACTION_WINDOW_SECONDS = 120.0
"""How long an async transaction is retried, as PyMongo's ``with_transaction`` does."""


async def transact_async(db: Any, step: Atomically) -> Any:
    """Async twin of :func:`transact_sync`, for PyMongo async and Motor sessions alike.

    It is ``with_transaction``'s algorithm written out, because Motor's ``with_transaction`` commits
    in a context manager's exit, outside its own retry loop: a lost ``commitTransaction`` reply then
    reaches the caller as a network error although the commit may have applied.
    """
    for role in step.roles:
        await db._ensure_indexes(role)
    session = db._start_session()
    if inspect.isawaitable(session):  # Motor: start_session() is a coroutine
        session = await session
    deadline = time.monotonic() + TRANSACTION_WINDOW_SECONDS
    async with session:
        for round_number in itertools.count():
            if round_number:
                await asyncio.sleep(backoff(round_number).seconds)
            started = session.start_transaction()
            if inspect.isawaitable(started):  # PyMongo async: a coroutine; Motor: already started
                await started
            try:
                answer = await run_async(db, step.steps(), session)
            except BaseException as error:
                if session.in_transaction:
                    await session.abort_transaction()
                if isinstance(error, PyMongoError) and labelled(error, "TransientTransactionError", deadline):
                    continue
                if isinstance(error, OperationFailure) and no_transactions(error):
                    raise ReplicaSetRequiredError(step.what) from error
                raise
            while True:
                try:
                    await session.commit_transaction()
                    return answer
                except PyMongoError as error:
                    timed_out = isinstance(error, OperationFailure) and error.code == 50  # MaxTimeMSExpired
                    if not timed_out and labelled(error, "UnknownTransactionCommitResult", deadline):
                        continue  # committing again is safe: the server applies a commit once
                    if labelled(error, "TransientTransactionError", deadline):
                        break
                    raise
    raise AssertionError("unreachable")


def labelled(error: PyMongoError, label: str, deadline: float) -> bool:
    """Whether ``error`` carries ``label`` and there is time left to retry."""
    return error.has_error_label(label) and time.monotonic() < deadline


def blocking(plan: Callable[Concatenate[Any, P], Plan[T]]) -> Callable[Concatenate[Any, P], T]:
    """Turn a plan-building method into a sync method that runs it on the instance's client."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(self, plan(self, *args, **kwargs))

    functools.update_wrapper(method, plan)
    return method


def awaiting(plan: Callable[Concatenate[Any, P], Plan[T]]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """Turn a plan-building method into an async method that runs it on the instance's client."""

    async def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_async(self, plan(self, *args, **kwargs))

    functools.update_wrapper(method, plan)
    return method
