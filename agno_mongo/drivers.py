"""Run plans on a real client: PyMongo (sync), PyMongo async, or Motor.

A plan yields :class:`~agno_mongo.ops.command.Command` values; a driver executes each one and sends
the result back (or throws the driver's exception into the plan, so the plan decides what a
duplicate key means). A command marked ``resend=True`` is sent again after a network error for a
bounded time (:data:`RETRY_WINDOW_SECONDS`): its second arrival changes nothing and answers the
same. A command marked ``resend=False`` is sent once; if its connection breaks the plan gets
:class:`~agno_mongo.ops.command.ReplyLost` and checks by a read what happened. A
:class:`~agno_mongo.ops.command.Pause` step sleeps.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from pymongo.errors import AutoReconnect, PyMongoError, ServerSelectionTimeoutError

from agno_mongo.ops.command import Command, Pause, Plan, ReplyLost

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


def execute_sync(collection: Any, command: Command) -> Any:
    """Execute one command on a PyMongo ``Collection``; cursors are drained into lists."""
    method = getattr(collection, command.op)
    if command.op in ("find", "aggregate"):
        return list(method(**command.kwargs))
    return method(**command.kwargs)


async def execute_async(collection: Any, command: Command) -> Any:
    """Execute one command on a PyMongo async or Motor collection."""
    method = getattr(collection, command.op)
    if command.op in ("find", "aggregate"):
        cursor = method(**command.kwargs)
        if inspect.isawaitable(cursor):  # PyMongo async: aggregate() is a coroutine; Motor's is not
            cursor = await cursor
        return await cursor.to_list(None)
    return await method(**command.kwargs)


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


def send_sync(collection: Any, command: Command) -> Any:
    """Execute ``command``: resent after network errors if it says it may be, else sent once."""
    if command.resend:
        return with_retries_sync(lambda: execute_sync(collection, command))
    try:
        return execute_sync(collection, command)
    except AutoReconnect as error:
        if not retryable(error):
            raise  # never sent: nothing to find out
        raise ReplyLost(command, error) from error


async def send_async(collection: Any, command: Command) -> Any:
    """Async twin of :func:`send_sync`."""
    if command.resend:
        return await with_retries_async(lambda: execute_async(collection, command))
    try:
        return await execute_async(collection, command)
    except AutoReconnect as error:
        if not retryable(error):
            raise
        raise ReplyLost(command, error) from error


def run_sync(execute: Callable[[Command], Any], plan: Plan[T]) -> T:
    """Drive a plan to its answer with a blocking ``execute``."""
    send: Callable[[Any], Any] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            value, send = None, plan.send
            continue
        try:
            value, send = execute(step), plan.send
        except PyMongoError as error:
            value, send = error, plan.throw


async def run_async(execute: Callable[[Command], Awaitable[Any]], plan: Plan[T]) -> T:
    """Drive a plan to its answer with an awaitable ``execute``."""
    send: Callable[[Any], Any] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            value, send = None, plan.send
            continue
        try:
            value, send = await execute(step), plan.send
        except PyMongoError as error:
            value, send = error, plan.throw


def blocking(plan: Callable[Concatenate[Any, P], Plan[T]]) -> Callable[Concatenate[Any, P], T]:
    """Turn a plan-building method into a sync method that runs it on the instance's client."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(self._execute, plan(self, *args, **kwargs))

    functools.update_wrapper(method, plan)
    return method


def awaiting(plan: Callable[Concatenate[Any, P], Plan[T]]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """Turn a plan-building method into an async method that runs it on the instance's client."""

    async def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_async(self._execute, plan(self, *args, **kwargs))

    functools.update_wrapper(method, plan)
    return method
