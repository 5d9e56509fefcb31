"""Argument checks shared by every part of the contract: refuse bad input before any command.

Each check raises :class:`~agno_mongo.errors.InvalidInputError` naming the argument, so nothing is
written and the caller learns which value was wrong.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection

from agno.db.base import SessionType
from agno.run.base import RunStatus

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import (
    INT64_MAX,
    INT64_MIN,
    LONE_SURROGATE,
    check_id,
    check_optional_id,
    check_owner,
    is_utf8,
)

__all__ = [
    "check_choice",
    "check_id",
    "check_ids",
    "check_int",
    "check_optional_id",
    "check_optional_str",
    "check_owner",
    "check_page",
    "check_session_type",
    "check_skip",
    "check_sort",
    "check_status",
    "check_str",
    "check_table_name",
    "now",
]

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_SORT_ALIASES = {"session_name": "session_data.session_name"}


def now() -> int:
    """Epoch seconds, the unit agno stores."""
    return int(time.time())


def check_int(name: str, value: object, *, minimum: int | None = None) -> int | None:
    """``None`` or an int (not a bool) at least ``minimum`` that fits in a signed 64-bit BSON int,
    else :class:`InvalidInputError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(name, f"must be an integer, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(name, f"must be at least {minimum}, got {value}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidInputError(name, f"must fit in a signed 64-bit integer ({INT64_MIN} to {INT64_MAX})")
    return value


def check_session_type(value: object) -> str | None:
    """A ``SessionType`` (or its string value) as the stored string."""
    if value is None:
        return None
    if isinstance(value, SessionType):
        return value.value
    if isinstance(value, str) and value in {"agent", "team", "workflow"}:
        return value
    raise InvalidInputError("session_type", f"must be a SessionType or 'agent'/'team'/'workflow', got {value!r}")


def check_ids(name: str, values: object) -> list[str]:
    """A list of ids, each checked like a single id."""
    if not isinstance(values, list | tuple):
        raise InvalidInputError(name, f"must be a list of strings, got {type(values).__name__}")
    return [check_id(f"{name}[{index}]", value) for index, value in enumerate(values)]


def check_sort(sort_by: object, sort_order: object, allowed: set[str]) -> tuple[str | None, int]:
    """Validate a sort field and order; ``desc`` unless ``asc`` is asked for."""
    if sort_order is not None and (not isinstance(sort_order, str) or sort_order.lower() not in {"asc", "desc"}):
        raise InvalidInputError("sort_order", f"must be 'asc' or 'desc', got {sort_order!r}")
    direction = 1 if isinstance(sort_order, str) and sort_order.lower() == "asc" else -1
    if sort_by is None:
        return None, direction
    if not isinstance(sort_by, str) or not _FIELD_NAME.match(sort_by):
        raise InvalidInputError("sort_by", f"must be a field name, got {sort_by!r}")
    field = _SORT_ALIASES.get(sort_by, sort_by)
    if field not in allowed:
        raise InvalidInputError("sort_by", f"must be one of {sorted(allowed)}, got {sort_by!r}")
    return field, direction


def check_page(limit: object, page: object) -> tuple[int | None, int]:
    """``(limit, skip)`` from agno's 1-based ``page``; a page without a limit is a caller bug."""
    checked_limit = check_int("limit", limit, minimum=0)
    checked_page = check_int("page", page, minimum=1)
    if checked_page is not None and checked_limit is None:
        raise InvalidInputError("page", "was given without limit; pass both to paginate")
    if checked_limit == 0:
        checked_limit = None
    skip = (checked_page - 1) * checked_limit if checked_page and checked_limit else 0
    check_skip(skip)
    return checked_limit, skip


def check_skip(skip: int) -> int:
    """The number of rows a page skips, ``(page - 1) * limit``, must fit in 64 bits too."""
    if skip > INT64_MAX:
        raise InvalidInputError("page", f"skips {skip} rows; (page - 1) * limit must be at most {INT64_MAX}")
    return skip


def check_str(name: str, value: object) -> str:
    """A plain string that encodes as UTF-8 (no lone surrogate), else :class:`InvalidInputError`."""
    if not isinstance(value, str):
        raise InvalidInputError(name, f"must be a string, got {type(value).__name__}")
    if not is_utf8(value):
        raise InvalidInputError(name, LONE_SURROGATE)
    return value


def check_optional_str(name: str, value: object) -> str | None:
    """``None`` or a string as :func:`check_str` accepts it."""
    return None if value is None else check_str(name, value)


def check_table_name(name: str, value: object) -> str:
    """A collection name as agno passes it (``table_name``): a non-empty UTF-8 string without NUL
    that does not start with ``$``, so an operator dict or ``$``-name never reaches a filter."""
    checked = check_id(name, value)
    if checked.startswith("$") or "\0" in checked:
        raise InvalidInputError(name, f"is not a valid collection name: {checked!r}")
    return checked


def check_choice(name: str, value: object, allowed: Collection[str]) -> str:
    """One of the strings in ``allowed``; anything else (a dict, a number, another string) is
    :class:`InvalidInputError` naming ``name``, never a ``TypeError`` from an unhashable value."""
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(name, f"must be one of {sorted(allowed)}, got {value!r}")
    return value


def check_status(status: object) -> str:
    """A ``RunStatus`` (or its value, any case) as the stored string."""
    if isinstance(status, RunStatus):
        return status.value
    if isinstance(status, str):
        try:
            return RunStatus(status.upper()).value
        except ValueError:
            pass
    raise InvalidInputError("status", f"must be a RunStatus, got {status!r}")
