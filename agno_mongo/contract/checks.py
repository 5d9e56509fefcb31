"""Argument checks shared by every part of the contract: refuse bad input before any command.

Each check raises :class:`~agno_mongo.errors.InvalidInputError` naming the argument, so nothing is
written and the caller learns which value was wrong.
"""

from __future__ import annotations

import re
import time

from agno.db.base import SessionType
from agno.run.base import RunStatus

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.session import check_id, check_optional_id

__all__ = [
    "check_id",
    "check_ids",
    "check_int",
    "check_optional_id",
    "check_page",
    "check_session_type",
    "check_sort",
    "check_status",
    "check_str",
    "now",
]

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_SORT_ALIASES = {"session_name": "session_data.session_name"}


def now() -> int:
    """Epoch seconds, the unit agno stores."""
    return int(time.time())


def check_int(name: str, value: object, *, minimum: int | None = None) -> int | None:
    """``None`` or an int (not a bool) at least ``minimum``, else :class:`InvalidInputError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(name, f"must be an integer, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(name, f"must be at least {minimum}, got {value}")
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
    return checked_limit, skip


def check_str(name: str, value: object) -> str:
    """A plain string, else :class:`InvalidInputError`."""
    if not isinstance(value, str):
        raise InvalidInputError(name, f"must be a string, got {type(value).__name__}")
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
