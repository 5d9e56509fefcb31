"""Pure command builders and plans, one module per collection; no I/O."""

from typing import Any

from agno_mongo.ops.sessions import OVERFLOW_INDEXES, SESSION_INDEXES

INDEXES: dict[str, list[Any]] = {
    "sessions": SESSION_INDEXES,
    "overflow": OVERFLOW_INDEXES,
}
"""Indexes per collection role, created once per process before the first command on it."""
