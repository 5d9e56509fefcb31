"""The parts of agno's storage contract that agno-mongo has not built yet.

They raise ``NotImplementedError`` with a message that says so, instead of failing somewhere deeper
(README's status table lists them). Each one is removed from here when it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn

NOT_BUILT: tuple[str, ...] = ()


def _message(name: str) -> str:
    return f"agno-mongo: {name}() is not built yet (see the status table in README.md)"


def _sync(name: str) -> Callable[..., NoReturn]:
    def method(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(_message(name))

    method.__name__ = name
    return method


def _async(name: str) -> Callable[..., Coroutine[Any, Any, NoReturn]]:
    async def method(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(_message(name))

    method.__name__ = name
    return method


if TYPE_CHECKING:

    class PendingSync:
        """Mixin with a stub for each method in ``NOT_BUILT``."""

    class PendingAsync:
        """Async twin of ``PendingSync``."""

else:
    PendingSync = type("PendingSync", (), {name: _sync(name) for name in NOT_BUILT})
    PendingAsync = type("PendingAsync", (), {name: _async(name) for name in NOT_BUILT})
