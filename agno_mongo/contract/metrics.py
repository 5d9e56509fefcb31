"""Daily metrics: agno's contract as plans (check arguments, build commands, map answers).

``MetricsContract`` holds what the sync and async classes share. ``calculate_metrics`` counts on the
server (see :mod:`agno_mongo.ops.metrics`) instead of loading the sessions into Python, and writes
every record in one bulk command; ``get_metrics`` is one ``find``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from agno_mongo.contract.checks import check_str, now
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import metrics as ops
from agno_mongo.ops.command import Plan
from agno_mongo.schema.base import MAX_ID_LENGTH


def check_day(name: str, value: object) -> date | None:
    """``None`` or a day; a ``datetime`` counts as its day (agno would compare its full ISO text)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise InvalidInputError(name, f"must be a date, got {type(value).__name__}")


def check_owner(value: object) -> str | None:
    """``None`` (every owner), ``""`` (the unowned bucket, agno's sentinel) or a user id string."""
    if value is None:
        return None
    owner = check_str("user_id", value)
    if len(owner) > MAX_ID_LENGTH:
        raise InvalidInputError("user_id", f"must be at most {MAX_ID_LENGTH} characters long")
    return owner


class MetricsContract:
    """The metrics part of agno's ``BaseDb`` contract, as plans."""

    _names: dict[str, str]

    def calculate_metrics(self) -> Plan[list[dict[str, Any]] | None]:
        """Rebuild the daily records agno would (from its resume day through today); return them.

        Three commands for any number of sessions and days (four when a long session's runs
        overflowed): where to resume, the totals per day and owner, one bulk of upserts.
        """
        return (yield from ops.calculate_metrics_plan(self._names[ops.METRICS], now(), self._names["overflow"]))

    def get_metrics(
        self,
        starting_date: date | None = None,
        ending_date: date | None = None,
        user_id: str | None = None,
    ) -> Plan[tuple[list[dict[str, Any]], int | None]]:
        """Records in the day range (inclusive), one owner's when ``user_id`` is given; and the latest ``updated_at``.

        ``user_id=""`` asks for the bucket of sessions without a user, as agno's AgentOS does.
        """
        start = check_day("starting_date", starting_date)
        end = check_day("ending_date", ending_date)
        owner = check_owner(user_id)
        return (yield from ops.get_metrics_plan(start, end, owner))
