"""Pure command builders and plans, one module per collection; no I/O."""

from typing import Any

from agno_mongo.ops.evals import EVAL_INDEXES
from agno_mongo.ops.knowledge import KNOWLEDGE_INDEXES
from agno_mongo.ops.learnings import LEARNING_INDEXES
from agno_mongo.ops.memories import MEMORY_INDEXES
from agno_mongo.ops.metrics import METRICS_INDEXES
from agno_mongo.ops.sessions import OVERFLOW_INDEXES, SESSION_INDEXES
from agno_mongo.ops.traces import SPAN_INDEXES, TRACE_INDEXES

INDEXES: dict[str, list[Any]] = {
    "sessions": SESSION_INDEXES,
    "overflow": OVERFLOW_INDEXES,
    "memories": MEMORY_INDEXES,
    "learnings": LEARNING_INDEXES,
    "metrics": METRICS_INDEXES,
    "evals": EVAL_INDEXES,
    "knowledge": KNOWLEDGE_INDEXES,
    "traces": TRACE_INDEXES,
    "spans": SPAN_INDEXES,
}
"""Indexes per collection role, created once per process before the first command on it."""
