"""The registry of stored domains: one line per domain, read by both storage classes.

A :class:`Domain` says which plan role it serves (the ``collection`` of its commands), which
``BaseDb`` attribute names its collection (so the user's ``*_collection`` arguments apply), the
indexes that collection needs, and the contract class whose public methods are its plans.
:func:`bind` gives ``MongoDb`` and ``AsyncMongoDb`` every contract method from this one list, so
adding a domain is a schema, an ops module, a contract class and one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import IndexModel

from agno_mongo.contract.approvals import ApprovalContract
from agno_mongo.contract.auth_tokens import AuthTokenContract
from agno_mongo.contract.authz import AuthzContract
from agno_mongo.contract.compactions import CompactionContract
from agno_mongo.contract.company import CompanyContract
from agno_mongo.contract.components import ComponentContract
from agno_mongo.contract.evals import EvalContract
from agno_mongo.contract.knowledge import KnowledgeContract
from agno_mongo.contract.learnings import LearningContract
from agno_mongo.contract.memories import MemoryContract
from agno_mongo.contract.metrics import MetricsContract
from agno_mongo.contract.schedules import ScheduleContract
from agno_mongo.contract.service_accounts import ServiceAccountContract
from agno_mongo.contract.sessions import SessionContract
from agno_mongo.contract.traces import TraceContract
from agno_mongo.contract.transcripts import TranscriptContract
from agno_mongo.contract.versions import VersionContract
from agno_mongo.ops.approvals import APPROVAL_INDEXES
from agno_mongo.ops.authz import EVENT_INDEXES, META_INDEXES, NAMES_INDEXES, USER_INDEXES
from agno_mongo.ops.compactions import COMPACTION_INDEXES
from agno_mongo.ops.company import PRODUCT_INDEXES, PROJECT_INDEXES, SOURCE_INDEXES, TASK_INDEXES
from agno_mongo.ops.components import COMPONENT_INDEXES, CONFIG_INDEXES
from agno_mongo.ops.evals import EVAL_INDEXES
from agno_mongo.ops.knowledge import KNOWLEDGE_INDEXES
from agno_mongo.ops.learnings import LEARNING_INDEXES
from agno_mongo.ops.memories import MEMORY_INDEXES
from agno_mongo.ops.metrics import METRICS_INDEXES
from agno_mongo.ops.schedules import SCHEDULE_INDEXES, SCHEDULE_RUN_INDEXES
from agno_mongo.ops.service_accounts import SERVICE_ACCOUNT_INDEXES
from agno_mongo.ops.sessions import OVERFLOW_INDEXES, SESSION_INDEXES
from agno_mongo.ops.traces import SPAN_INDEXES, TRACE_INDEXES
from agno_mongo.ops.transcripts import TRANSCRIPT_INDEXES


@dataclass(frozen=True)
class Domain:
    """One stored domain: plan role, collection name source, indexes, contract."""

    role: str
    """The ``Command.collection`` value its plans use."""
    table: str
    """The ``BaseDb`` attribute holding its collection name (``session_table_name``, ...)."""
    indexes: Sequence[IndexModel] = ()
    contract: type | None = None
    """The class whose public methods are this domain's plans; ``None`` for a collection that
    another domain's plans also write (the overflow chunks, the spans)."""
    suffix: str = ""
    """Appended to the name read from ``table`` (the overflow collection is ``<sessions>_overflow``)."""
    sync_only: bool = False
    """Bound on ``MongoDb`` only: agno calls these methods synchronously even on an async store
    (it checks for them by name), so ``AsyncMongoDb`` must not have coroutine versions."""

    def collection_name(self, db: Any) -> str:
        """The user's collection name for this role on ``db``."""
        return f"{getattr(db, self.table)}{self.suffix}"


DOMAINS: tuple[Domain, ...] = (
    Domain("sessions", "session_table_name", SESSION_INDEXES, SessionContract),
    Domain("overflow", "session_table_name", OVERFLOW_INDEXES, suffix="_overflow"),
    Domain("memories", "memory_table_name", MEMORY_INDEXES, MemoryContract),
    Domain("learnings", "learnings_table_name", LEARNING_INDEXES, LearningContract),
    Domain("metrics", "metrics_table_name", METRICS_INDEXES, MetricsContract),
    Domain("evals", "eval_table_name", EVAL_INDEXES, EvalContract),
    Domain("knowledge", "knowledge_table_name", KNOWLEDGE_INDEXES, KnowledgeContract),
    Domain("traces", "trace_table_name", TRACE_INDEXES, TraceContract),
    Domain("spans", "span_table_name", SPAN_INDEXES),
    Domain("versions", "versions_table_name", (), VersionContract),
    Domain("approvals", "approvals_table_name", APPROVAL_INDEXES, ApprovalContract),
    Domain("compactions", "compactions_table_name", COMPACTION_INDEXES, CompactionContract, sync_only=True),
    Domain("transcripts", "transcripts_table_name", TRANSCRIPT_INDEXES, TranscriptContract),
    Domain("service_accounts", "service_accounts_table_name", SERVICE_ACCOUNT_INDEXES, ServiceAccountContract),
    Domain("auth_tokens", "auth_tokens_table_name", (), AuthTokenContract),
    Domain("schedules", "schedules_table_name", SCHEDULE_INDEXES, ScheduleContract),
    Domain("schedule_runs", "schedule_runs_table_name", SCHEDULE_RUN_INDEXES),
    Domain("authz", "authz_policy_table_name", NAMES_INDEXES, AuthzContract),
    Domain("authz_roles", "authz_roles_table_name", META_INDEXES),
    Domain("authz_users", "authz_users_table_name", USER_INDEXES),
    Domain("authz_audit", "authz_audit_table_name", EVENT_INDEXES),
    Domain("authz_decisions", "authz_decisions_table_name", EVENT_INDEXES),
    Domain("company_products", "products_table_name", PRODUCT_INDEXES, CompanyContract),
    Domain("company_projects", "projects_table_name", PROJECT_INDEXES),
    Domain("company_tasks", "tasks_table_name", TASK_INDEXES),
    Domain("company_sources", "sources_table_name", SOURCE_INDEXES),
    Domain("components", "components_table_name", COMPONENT_INDEXES, ComponentContract, sync_only=True),
    Domain("component_configs", "component_configs_table_name", CONFIG_INDEXES),
)

INDEXES: dict[str, list[IndexModel]] = {domain.role: list(domain.indexes) for domain in DOMAINS if domain.indexes}
"""Indexes per collection role, created once per process before the first command on it."""


def collection_names(db: Any) -> dict[str, str]:
    """Map every plan role to the user's collection name on ``db``."""
    return {domain.role: domain.collection_name(db) for domain in DOMAINS}


def plans(*, asynchronous: bool = False) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every contract method of every domain, by name (a name in two contracts is a bug);
    ``asynchronous=True`` leaves out the sync-only domains."""
    seen: dict[str, type] = {}
    for domain in DOMAINS:
        if domain.contract is None or (asynchronous and domain.sync_only):
            continue
        for name, plan in vars(domain.contract).items():
            if name.startswith("_") or not callable(plan):
                continue
            if name in seen:
                raise TypeError(f"{name} is in both {seen[name].__name__} and {domain.contract.__name__}")
            seen[name] = domain.contract
            yield name, plan


def contract_base(runner: Callable[[Callable[..., Any]], Callable[..., Any]], name: str, *, asynchronous: bool) -> Any:
    """A base class holding every contract method, run by ``runner`` (blocking or awaiting).

    ``MongoDb`` and ``AsyncMongoDb`` list it first among their bases. It is typed ``Any`` on
    purpose: the static types of these methods are the ones agno's ``BaseDb`` / ``AsyncBaseDb``
    declare (``tests/test_registry.py`` checks the signatures match), and the few methods agno does
    not declare are bound once more in the class body so they have types too.
    """
    return type(name, (), {method: runner(plan) for method, plan in plans(asynchronous=asynchronous)})
