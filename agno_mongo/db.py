"""``MongoDb`` and ``AsyncMongoDb``: agno's ``BaseDb`` / ``AsyncBaseDb`` on MongoDB.

Both are thin: every storage method is a plan from :class:`~agno_mongo.plans.SessionContract`, run by
:func:`~agno_mongo.drivers.blocking` on a PyMongo ``MongoClient`` or by
:func:`~agno_mongo.drivers.awaiting` on a PyMongo ``AsyncMongoClient`` (or a Motor client you pass in).
What differs is only how a command reaches the server.
"""

from __future__ import annotations

import asyncio
import builtins
import weakref
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from typing import Any

from agno.db.base import AsyncBaseDb, BaseDb
from agno.utils.string import generate_id
from pymongo import AsyncMongoClient, MongoClient
from pymongo.driver_info import DriverInfo

from agno_mongo import drivers
from agno_mongo.contract.checks import check_str, check_table_name
from agno_mongo.contract.evals import EvalContract
from agno_mongo.contract.knowledge import KnowledgeContract
from agno_mongo.contract.learnings import LearningContract
from agno_mongo.contract.memories import MemoryContract
from agno_mongo.contract.metrics import MetricsContract
from agno_mongo.contract.sessions import RunHints, SessionContract
from agno_mongo.contract.traces import TraceContract
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import INDEXES
from agno_mongo.ops.command import Command
from agno_mongo.ops.sessions import DEFAULT_RUNS_BUDGET, ttl_index

DRIVER_INFO = DriverInfo(name="agno-mongo", version=metadata.version("agno-mongo"))
CURRENT_AGNO_SCHEMA = "3.0.0"
"""What ``get_latest_schema_version`` reports for unstamped tables: our documents are already in
the current layout, so agno's MigrationManager has nothing to migrate."""

_INDEXED: set[tuple[str, str, str, int | None]] = set()
"""(server, database, collection, ttl) whose indexes this process has created: once per process."""

_B = drivers.blocking
_A = drivers.awaiting


def _collection_names(db: BaseDb | AsyncBaseDb) -> dict[str, str]:
    """Map plan roles to the user's collection names."""
    return {
        "sessions": db.session_table_name,
        "memories": db.memory_table_name,
        "metrics": db.metrics_table_name,
        "evals": db.eval_table_name,
        "knowledge": db.knowledge_table_name,
        "traces": db.trace_table_name,
        "spans": db.span_table_name,
        "learnings": db.learnings_table_name,
        "versions": db.versions_table_name,
        "overflow": f"{db.session_table_name}_overflow",
    }


def _table_kwargs(options: dict[str, Any]) -> dict[str, str | None]:
    """agno's ``*_collection`` arguments as BaseDb's ``*_table`` arguments, each name checked."""
    names: dict[str, str | None] = {}
    for key, value in options.items():
        if not key.endswith("_collection"):
            continue
        if value is not None and (not isinstance(value, str) or not value or "$" in value or "\0" in value):
            raise InvalidInputError(key, f"is not a valid collection name: {value!r}")
        names[key.replace("_collection", "_table")] = value
    return names


class _Settings:
    """What both classes set up the same way in their constructors (see :func:`_configure`)."""

    db_name: str
    db_url: str | None
    max_runs_bytes: int
    session_ttl_seconds: int | None
    _server_key: str
    _names: dict[str, str]
    _run_hints: RunHints

    @property
    def collection_names(self) -> dict[str, str]:
        """Collection name per role ("sessions", "overflow", "memories", ...), for tools that read raw."""
        return dict(self._names)


def _configure(db: Any, base_init: Callable[..., None], options: dict[str, Any]) -> None:
    """The constructor work both classes share: check the arguments, name the collections."""
    if options["db_client"] is None and options["db_url"] is None:
        raise InvalidInputError("db_url", "one of db_url or db_client must be provided")
    db.db_name = options["db_name"] or "agno"
    default_id = _default_id(options["db_url"], options["db_client"], db.db_name)
    base_init(db, id=options["id"] or default_id, **_table_kwargs(options))
    db.db_url = options["db_url"]
    db._server_key = options["db_url"] or f"client-{builtins.id(options['db_client'])}"
    db._names = _collection_names(db)
    db._run_hints = RunHints()
    db.max_runs_bytes = _check_budget(options["max_runs_bytes"])
    db.session_ttl_seconds = _check_ttl(options["session_ttl_seconds"])


def _check_budget(max_runs_bytes: object) -> int:
    """The runs budget must leave the session document under MongoDB's 16 MiB."""
    if isinstance(max_runs_bytes, bool) or not isinstance(max_runs_bytes, int):
        raise InvalidInputError("max_runs_bytes", "must be an integer")
    if not 1024 <= max_runs_bytes <= DEFAULT_RUNS_BUDGET:
        raise InvalidInputError("max_runs_bytes", f"must be between 1024 and {DEFAULT_RUNS_BUDGET}")
    return max_runs_bytes


def _check_ttl(seconds: object) -> int | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise InvalidInputError("session_ttl_seconds", "must be a positive number of seconds or None")
    return seconds


def _indexes(db: MongoDb | AsyncMongoDb, role: str) -> list[Any]:
    """The indexes a collection role needs on this instance: the static set, plus the TTL index."""
    if role == "sessions" and db.session_ttl_seconds is not None:
        return [*INDEXES[role], ttl_index(db.session_ttl_seconds)]
    return INDEXES[role]


def _default_id(db_url: str | None, db_client: Any, db_name: str) -> str:
    """The same id agno's MongoDb derives, so configs that reference it keep working."""
    return generate_id(f"{db_url or str(db_client)}#{db_name}")


class MongoDb(_Settings, BaseDb):
    """Sync MongoDB storage for agno: ``Agent(db=MongoDb(db_url=...))``.

    Takes the arguments of ``agno.db.mongo.MongoDb``. Each session is one document with its runs
    embedded; every write is a single atomic update (``$push``/``$set``), never a whole-document
    replace, and carries the owner check inside its filter.
    """

    def __init__(
        self,
        db_client: MongoClient[Any] | None = None,
        db_name: str | None = None,
        db_url: str | None = None,
        session_collection: str | None = None,
        runs_collection: str | None = None,
        memory_collection: str | None = None,
        metrics_collection: str | None = None,
        eval_collection: str | None = None,
        knowledge_collection: str | None = None,
        traces_collection: str | None = None,
        spans_collection: str | None = None,
        schedules_collection: str | None = None,
        schedule_runs_collection: str | None = None,
        learnings_collection: str | None = None,
        id: str | None = None,
        max_runs_bytes: int = DEFAULT_RUNS_BUDGET,
        session_ttl_seconds: int | None = None,
    ) -> None:
        _configure(self, BaseDb.__init__, {key: value for key, value in locals().items() if key != "self"})
        self._owns_client = db_client is None
        self.db_client: MongoClient[Any] = db_client or MongoClient(db_url, driver=DRIVER_INFO)

    @property
    def database(self) -> Any:
        """The PyMongo ``Database`` in use."""
        return self.db_client[self.db_name]

    def _execute(self, command: Command) -> Any:
        name = self._names[command.collection]
        collection = self.database[name]
        key = (self._server_key, self.db_name, name, self.session_ttl_seconds)
        if key not in _INDEXED and command.collection in INDEXES:
            drivers.with_retries_sync(lambda: collection.create_indexes(_indexes(self, command.collection)))
            _INDEXED.add(key)
        return drivers.send_sync(collection, command)

    def close(self) -> None:
        """Close the client if this instance created it."""
        if self._owns_client:
            self.db_client.close()

    def table_exists(self, table_name: str) -> bool:
        """Whether the collection exists."""
        return table_name in self.database.list_collection_names()

    def get_latest_schema_version(self, table_name: str = "") -> str:
        """The agno schema stamp for a table; unstamped tables are current."""
        check_table_name("table_name", table_name)
        document = self.database[self.versions_table_name].find_one({"table_name": table_name})
        return str((document or {}).get("version") or CURRENT_AGNO_SCHEMA)

    def upsert_schema_version(self, table_name: str = "", version: str = "") -> None:
        """Record agno's schema stamp for a table (``table_name`` and ``version`` checked first)."""
        check_table_name("table_name", table_name)
        check_str("version", version)
        self.database[self.versions_table_name].update_one(
            {"table_name": table_name}, {"$set": {"table_name": table_name, "version": version}}, upsert=True
        )

    upsert_session = _B(SessionContract.upsert_session)
    upsert_sessions = _B(SessionContract.upsert_sessions)
    get_session = _B(SessionContract.get_session)
    get_sessions = _B(SessionContract.get_sessions)
    rename_session = _B(SessionContract.rename_session)
    delete_session = _B(SessionContract.delete_session)
    delete_sessions = _B(SessionContract.delete_sessions)
    reassign_session_owner = _B(SessionContract.reassign_session_owner)
    delete_orphaned_overflow = _B(SessionContract.delete_orphaned_overflow)
    upsert_run = _B(SessionContract.upsert_run)
    get_run = _B(SessionContract.get_run)
    get_runs = _B(SessionContract.get_runs)
    delete_run = _B(SessionContract.delete_run)
    delete_runs = _B(SessionContract.delete_runs)
    cancel_pending_run = _B(SessionContract.cancel_pending_run)

    # --- user memories and learnings ---
    upsert_user_memory = _B(MemoryContract.upsert_user_memory)
    upsert_memories = _B(MemoryContract.upsert_memories)
    get_user_memory = _B(MemoryContract.get_user_memory)
    get_user_memories = _B(MemoryContract.get_user_memories)
    get_user_memory_stats = _B(MemoryContract.get_user_memory_stats)
    get_all_memory_topics = _B(MemoryContract.get_all_memory_topics)
    delete_user_memory = _B(MemoryContract.delete_user_memory)
    delete_user_memories = _B(MemoryContract.delete_user_memories)
    clear_memories = _B(MemoryContract.clear_memories)
    get_learning = _B(LearningContract.get_learning)
    upsert_learning = _B(LearningContract.upsert_learning)
    update_learning = _B(LearningContract.update_learning)
    delete_learning = _B(LearningContract.delete_learning)
    delete_user_learnings = _B(LearningContract.delete_user_learnings)
    get_learnings = _B(LearningContract.get_learnings)
    get_learning_by_id = _B(LearningContract.get_learning_by_id)
    list_learnings = _B(LearningContract.list_learnings)
    get_learnings_user_stats = _B(LearningContract.get_learnings_user_stats)

    # --- metrics ---
    calculate_metrics = _B(MetricsContract.calculate_metrics)
    get_metrics = _B(MetricsContract.get_metrics)

    # --- eval runs and knowledge contents ---
    create_eval_run = _B(EvalContract.create_eval_run)
    get_eval_run = _B(EvalContract.get_eval_run)
    get_eval_run_raw = _B(EvalContract.get_eval_run_raw)
    get_eval_runs = _B(EvalContract.get_eval_runs)
    rename_eval_run = _B(EvalContract.rename_eval_run)
    update_eval_run_user_id = _B(EvalContract.update_eval_run_user_id)
    delete_eval_run = _B(EvalContract.delete_eval_run)
    delete_eval_runs = _B(EvalContract.delete_eval_runs)
    upsert_knowledge_content = _B(KnowledgeContract.upsert_knowledge_content)
    get_knowledge_content = _B(KnowledgeContract.get_knowledge_content)
    get_knowledge_contents = _B(KnowledgeContract.get_knowledge_contents)
    delete_knowledge_content = _B(KnowledgeContract.delete_knowledge_content)

    # --- traces and spans ---
    upsert_trace = _B(TraceContract.upsert_trace)
    get_trace = _B(TraceContract.get_trace)
    get_traces = _B(TraceContract.get_traces)
    get_trace_stats = _B(TraceContract.get_trace_stats)
    create_span = _B(TraceContract.create_span)
    create_spans = _B(TraceContract.create_spans)
    get_span = _B(TraceContract.get_span)
    get_spans = _B(TraceContract.get_spans)


async def _close_with_loop(client: AsyncMongoClient[Any]) -> AsyncIterator[None]:
    """Parked async generator: when ``asyncio.run`` shuts the loop down it closes this client."""
    try:
        yield
    finally:
        await client.close()


class AsyncMongoDb(_Settings, AsyncBaseDb):
    """Async MongoDB storage for agno: ``Agent(db=AsyncMongoDb(db_url=...))`` with ``arun``.

    With ``db_url`` it uses PyMongo's ``AsyncMongoClient``, one per event loop (an async client is
    bound to the loop it first ran on), closed when that loop shuts down, so a process may call
    ``asyncio.run()`` many times. A client passed as ``db_client`` (PyMongo async or Motor) is used
    as is, on the loop it belongs to.
    """

    def __init__(
        self,
        db_client: Any | None = None,
        db_name: str | None = None,
        db_url: str | None = None,
        session_collection: str | None = None,
        runs_collection: str | None = None,
        memory_collection: str | None = None,
        metrics_collection: str | None = None,
        eval_collection: str | None = None,
        knowledge_collection: str | None = None,
        traces_collection: str | None = None,
        spans_collection: str | None = None,
        learnings_collection: str | None = None,
        schedules_collection: str | None = None,
        schedule_runs_collection: str | None = None,
        id: str | None = None,
        max_runs_bytes: int = DEFAULT_RUNS_BUDGET,
        session_ttl_seconds: int | None = None,
    ) -> None:
        _configure(self, AsyncBaseDb.__init__, {key: value for key, value in locals().items() if key != "self"})
        self.db_client = db_client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    async def _client(self) -> Any:
        """The client for the running loop: the user's, or one of ours created for this loop."""
        if self.db_client is not None:
            return self.db_client
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            client: AsyncMongoClient[Any] = AsyncMongoClient(self.db_url, driver=DRIVER_INFO)
            closer = _close_with_loop(client)
            await closer.__anext__()
            entry = self._clients[loop] = (client, closer)
        return entry[0]

    async def database(self) -> Any:
        """The database handle on the running loop's client."""
        return (await self._client())[self.db_name]

    async def _execute(self, command: Command) -> Any:
        name = self._names[command.collection]
        collection = (await self.database())[name]
        key = (self._server_key, self.db_name, name, self.session_ttl_seconds)
        if key not in _INDEXED and command.collection in INDEXES:
            await drivers.with_retries_async(lambda: collection.create_indexes(_indexes(self, command.collection)))
            _INDEXED.add(key)
        return await drivers.send_async(collection, command)

    async def close(self) -> None:
        """Close the clients this instance created (the running loop's now; others with their loop)."""
        entry = self._clients.pop(asyncio.get_running_loop(), None) if self.db_client is None else None
        if entry is not None:
            await entry[1].aclose()

    async def table_exists(self, table_name: str) -> bool:
        """Whether the collection exists."""
        return table_name in await (await self.database()).list_collection_names()

    async def get_latest_schema_version(self, table_name: str = "") -> str:
        """The agno schema stamp for a table; unstamped tables are current."""
        check_table_name("table_name", table_name)
        document = await (await self.database())[self.versions_table_name].find_one({"table_name": table_name})
        return str((document or {}).get("version") or CURRENT_AGNO_SCHEMA)

    async def upsert_schema_version(self, table_name: str = "", version: str = "") -> None:
        """Record agno's schema stamp for a table (``table_name`` and ``version`` checked first)."""
        check_table_name("table_name", table_name)
        check_str("version", version)
        await (await self.database())[self.versions_table_name].update_one(
            {"table_name": table_name}, {"$set": {"table_name": table_name, "version": version}}, upsert=True
        )

    upsert_session = _A(SessionContract.upsert_session)
    upsert_sessions = _A(SessionContract.upsert_sessions)
    get_session = _A(SessionContract.get_session)
    get_sessions = _A(SessionContract.get_sessions)
    rename_session = _A(SessionContract.rename_session)
    delete_session = _A(SessionContract.delete_session)
    delete_sessions = _A(SessionContract.delete_sessions)
    reassign_session_owner = _A(SessionContract.reassign_session_owner)
    delete_orphaned_overflow = _A(SessionContract.delete_orphaned_overflow)
    upsert_run = _A(SessionContract.upsert_run)
    get_run = _A(SessionContract.get_run)
    get_runs = _A(SessionContract.get_runs)
    delete_run = _A(SessionContract.delete_run)
    delete_runs = _A(SessionContract.delete_runs)
    cancel_pending_run = _A(SessionContract.cancel_pending_run)

    # --- user memories and learnings ---
    upsert_user_memory = _A(MemoryContract.upsert_user_memory)
    upsert_memories = _A(MemoryContract.upsert_memories)
    get_user_memory = _A(MemoryContract.get_user_memory)
    get_user_memories = _A(MemoryContract.get_user_memories)
    get_user_memory_stats = _A(MemoryContract.get_user_memory_stats)
    get_all_memory_topics = _A(MemoryContract.get_all_memory_topics)
    delete_user_memory = _A(MemoryContract.delete_user_memory)
    delete_user_memories = _A(MemoryContract.delete_user_memories)
    clear_memories = _A(MemoryContract.clear_memories)
    get_learning = _A(LearningContract.get_learning)
    upsert_learning = _A(LearningContract.upsert_learning)
    update_learning = _A(LearningContract.update_learning)
    delete_learning = _A(LearningContract.delete_learning)
    delete_user_learnings = _A(LearningContract.delete_user_learnings)
    get_learnings = _A(LearningContract.get_learnings)
    get_learning_by_id = _A(LearningContract.get_learning_by_id)
    list_learnings = _A(LearningContract.list_learnings)
    get_learnings_user_stats = _A(LearningContract.get_learnings_user_stats)

    # --- metrics ---
    calculate_metrics = _A(MetricsContract.calculate_metrics)
    get_metrics = _A(MetricsContract.get_metrics)

    # --- eval runs and knowledge contents ---
    create_eval_run = _A(EvalContract.create_eval_run)
    get_eval_run = _A(EvalContract.get_eval_run)
    get_eval_run_raw = _A(EvalContract.get_eval_run_raw)
    get_eval_runs = _A(EvalContract.get_eval_runs)
    rename_eval_run = _A(EvalContract.rename_eval_run)
    update_eval_run_user_id = _A(EvalContract.update_eval_run_user_id)
    delete_eval_run = _A(EvalContract.delete_eval_run)
    delete_eval_runs = _A(EvalContract.delete_eval_runs)
    upsert_knowledge_content = _A(KnowledgeContract.upsert_knowledge_content)
    get_knowledge_content = _A(KnowledgeContract.get_knowledge_content)
    get_knowledge_contents = _A(KnowledgeContract.get_knowledge_contents)
    delete_knowledge_content = _A(KnowledgeContract.delete_knowledge_content)

    # --- traces and spans ---
    upsert_trace = _A(TraceContract.upsert_trace)
    get_trace = _A(TraceContract.get_trace)
    get_traces = _A(TraceContract.get_traces)
    get_trace_stats = _A(TraceContract.get_trace_stats)
    create_span = _A(TraceContract.create_span)
    create_spans = _A(TraceContract.create_spans)
    get_span = _A(TraceContract.get_span)
    get_spans = _A(TraceContract.get_spans)
