"""``MongoDb`` and ``AsyncMongoDb``: agno's ``BaseDb`` / ``AsyncBaseDb`` on MongoDB.

Both are thin: every storage method is a plan from a contract class in :mod:`agno_mongo.contract`
(listed per domain in :mod:`agno_mongo.domains`), run by
:func:`~agno_mongo.drivers.blocking` on a PyMongo ``MongoClient`` or by
:func:`~agno_mongo.drivers.awaiting` on a PyMongo ``AsyncMongoClient`` (or a Motor client you pass in).
What differs is only how a command reaches the server.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from agno.db.base import AsyncBaseDb, BaseDb
from agno.utils.string import generate_id
from pymongo import AsyncMongoClient, IndexModel, MongoClient
from pymongo.driver_info import DriverInfo
from pymongo.errors import OperationFailure

from agno_mongo import drivers
from agno_mongo.contract.evals import EvalContract
from agno_mongo.contract.memories import MemoryContract
from agno_mongo.contract.sessions import RunHints, SessionContract
from agno_mongo.domains import INDEXES, collection_names, contract_base
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops.command import Command
from agno_mongo.ops.sessions import DEFAULT_RUNS_BUDGET, ttl_index
from agno_mongo.session_cache import DEFAULT_BYTES as DEFAULT_CACHE_BYTES
from agno_mongo.session_cache import DEFAULT_SESSIONS as DEFAULT_CACHE_SESSIONS
from agno_mongo.session_cache import SessionCache, check_cache_bounds

DRIVER_INFO = DriverInfo(name="agno-mongo", version=metadata.version("agno-mongo"))

_INDEXED: set[tuple[str, str, str, int | None]] = set()
"""(server, database, collection, ttl) whose indexes this process has created: once per process.
``server`` is the ``db_url``, or for a client passed in a key that lives only as long as that client
(:func:`_client_key`). ``ttl`` is the instance's ``session_ttl_seconds`` on the sessions collection,
``None`` elsewhere."""

LOG = logging.getLogger(__name__)

TTL_INDEX_NAME: str = ttl_index(1).document["name"]
"""The TTL index's name on the sessions collection (``ttl_touched_at``)."""
MAX_TTL_SECONDS = 2**31 - 1
"""The largest ``expireAfterSeconds`` MongoDB accepts (a 32-bit signed int)."""
INDEX_CONFLICT_CODES = frozenset({85, 86})
"""IndexOptionsConflict, IndexKeySpecsConflict: an index of that name or key exists with other options."""
NOTHING_TO_DROP_CODES = frozenset({26, 27})
"""NamespaceNotFound, IndexNotFound: dropping the TTL index found nothing to drop."""

_B = drivers.blocking
_A = drivers.awaiting


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
    create_indexes_on_first_use: bool
    _server_key: str
    _names: dict[str, str]
    _run_hints: RunHints
    _session_cache: SessionCache

    @property
    def collection_names(self) -> dict[str, str]:
        """Collection name per role ("sessions", "overflow", "memories", ...), for tools that read raw."""
        return dict(self._names)


def _configure(db: Any, base_init: Callable[..., None], options: dict[str, Any]) -> None:
    """The constructor work both classes share: check the arguments, name the collections."""
    if options["db_client"] is None and options["db_url"] is None:
        raise InvalidInputError("db_url", "One of db_url or db_client must be provided", standalone=True)
    db.db_name = options["db_name"] or "agno"
    default_id = _default_id(options["db_url"], options["db_client"], db.db_name)
    base_init(db, id=options["id"] or default_id, **_table_kwargs(options))
    db.db_url = options["db_url"]
    db._server_key = options["db_url"] or _client_key(options["db_client"])
    db._names = collection_names(db)
    db._run_hints = RunHints()
    db._session_cache = SessionCache(
        *check_cache_bounds(options["session_cache_sessions"], options["session_cache_bytes"])
    )
    db.max_runs_bytes = _check_budget(options["max_runs_bytes"])
    db.session_ttl_seconds = _check_ttl(options["session_ttl_seconds"])
    if not isinstance(options["create_indexes_on_first_use"], bool):
        raise InvalidInputError("create_indexes_on_first_use", "must be True or False")
    db.create_indexes_on_first_use = options["create_indexes_on_first_use"]


def _check_budget(max_runs_bytes: object) -> int:
    """The runs budget must leave the session document under MongoDB's 16 MiB."""
    if isinstance(max_runs_bytes, bool) or not isinstance(max_runs_bytes, int):
        raise InvalidInputError("max_runs_bytes", "must be an integer")
    if not 1024 <= max_runs_bytes <= DEFAULT_RUNS_BUDGET:
        raise InvalidInputError("max_runs_bytes", f"must be between 1024 and {DEFAULT_RUNS_BUDGET}")
    return max_runs_bytes


def _check_ttl(seconds: object) -> int | None:
    """``None`` or whole seconds from 1 to :data:`MAX_TTL_SECONDS` (a bool is not a number here)."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_TTL_SECONDS:
        raise InvalidInputError("session_ttl_seconds", f"must be whole seconds from 1 to {MAX_TTL_SECONDS}, or None")
    return seconds


# --- indexes -----------------------------------------------------------------------------------
# Index work is a tiny plan too (steps sent, answers or errors thrown back), so the same decisions
# run on the sync and async clients. It is not a contract plan: collMod is a database command.


@dataclass(frozen=True)
class _IndexStep:
    """One index command on a collection: ``create`` (createIndexes of ``models``), ``ttl`` (collMod
    of the TTL index to ``seconds``) or ``drop`` (dropIndexes of the TTL index)."""

    op: str
    models: tuple[IndexModel, ...] = ()
    seconds: int = 0


_IndexPlan = Generator[_IndexStep, Any, None]


def _conflict(error: OperationFailure) -> bool:
    """The server refused an index because one with that name or key exists with other options
    (the embedded server sends this refusal without a code for a key held under another name)."""
    return error.code in INDEX_CONFLICT_CODES or (error.code is None and "Conflicting index" in str(error))


def _index_plan(models: Sequence[IndexModel], ttl: int | None, *, strict: bool, where: str) -> _IndexPlan:
    """Create ``models``; with ``ttl`` also the TTL index expiring after ``ttl`` seconds.

    If the TTL index exists with another expiry, createIndexes is refused (IndexOptionsConflict):
    the other indexes are then created alone and the TTL index changed in place with collMod. When
    collMod fails too, ``strict`` raises; otherwise (indexes made on first use) a warning is logged
    and the index keeps its expiry, so the user's call goes on: it never fails on every call.
    """
    if ttl is None:
        if models:
            yield _IndexStep("create", tuple(models))
        return
    try:
        yield _IndexStep("create", (*models, ttl_index(ttl)))
        return
    except OperationFailure as error:
        if not _conflict(error):
            raise
    if models:
        yield _IndexStep("create", tuple(models))
    try:
        yield _IndexStep("ttl", seconds=ttl)
    except OperationFailure as error:
        if strict:
            raise
        LOG.warning(
            "%s: index %s keeps its expireAfterSeconds: changing it to %d failed (%s); "
            "call set_session_ttl(%d) with a user allowed to run collMod",
            where,
            TTL_INDEX_NAME,
            ttl,
            error,
            ttl,
        )


def _ttl_plan(ttl: int | None, where: str) -> _IndexPlan:
    """Set the TTL index to ``ttl`` seconds (created or changed with collMod); ``None`` drops it."""
    if ttl is not None:
        yield from _index_plan((), ttl, strict=True, where=where)
        return
    try:
        yield _IndexStep("drop")
    except OperationFailure as error:
        if error.code not in NOTHING_TO_DROP_CODES:
            raise


def _role_plan(db: MongoDb | AsyncMongoDb, role: str, *, strict: bool) -> _IndexPlan:
    """The indexes a collection role needs on this instance: the declared set, and on the sessions
    collection the TTL index when ``session_ttl_seconds`` is set (an unset TTL leaves it as it is)."""
    ttl = db.session_ttl_seconds if role == "sessions" else None
    return _index_plan(INDEXES.get(role, ()), ttl, strict=strict, where=f"{db.db_name}.{db._names[role]}")


def _index_key(db: MongoDb | AsyncMongoDb, role: str) -> tuple[str, str, str, int | None]:
    return (db._server_key, db.db_name, db._names[role], db.session_ttl_seconds if role == "sessions" else None)


def _index_names(db: MongoDb | AsyncMongoDb, role: str) -> list[str]:
    names = [model.document["name"] for model in INDEXES.get(role, ())]
    return [*names, TTL_INDEX_NAME] if role == "sessions" and db.session_ttl_seconds is not None else names


def _ttl_command(collection: Any, seconds: int) -> dict[str, Any]:
    return {"collMod": collection.name, "index": {"name": TTL_INDEX_NAME, "expireAfterSeconds": seconds}}


def _index_step_sync(collection: Any, step: _IndexStep) -> Any:
    if step.op == "create":
        return collection.create_indexes(list(step.models))
    if step.op == "ttl":
        return collection.database.command(_ttl_command(collection, step.seconds))
    return collection.drop_index(TTL_INDEX_NAME)


async def _index_step_async(collection: Any, step: _IndexStep) -> Any:
    if step.op == "create":
        return await collection.create_indexes(list(step.models))
    if step.op == "ttl":
        return await collection.database.command(_ttl_command(collection, step.seconds))
    return await collection.drop_index(TTL_INDEX_NAME)


def _run_indexes_sync(collection: Any, plan: _IndexPlan) -> None:
    """Drive an index plan on a PyMongo collection: each step resent after network errors (they
    are idempotent), a refusal thrown into the plan."""
    send: Callable[[Any], _IndexStep] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration:
            return
        try:
            value, send = drivers.with_retries_sync(functools.partial(_index_step_sync, collection, step)), plan.send
        except OperationFailure as error:
            value, send = error, plan.throw


async def _run_indexes_async(collection: Any, plan: _IndexPlan) -> None:
    """Async twin of :func:`_run_indexes_sync` (PyMongo async or Motor)."""
    send: Callable[[Any], _IndexStep] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration:
            return
        try:
            value = await drivers.with_retries_async(functools.partial(_index_step_async, collection, step))
            send = plan.send
        except OperationFailure as error:
            value, send = error, plan.throw


def _client_key(client: Any) -> str:
    """The index cache's key for a client passed in: shared by every instance on that client, and
    forgotten when the client is freed, before its ``id`` can be reused by a client of another server."""
    key = f"client-{builtins.id(client)}"
    if key not in _WATCHED:
        _WATCHED.add(key)
        weakref.finalize(client, _forget_indexes, key)
    return key


_WATCHED: set[str] = set()
"""The client keys whose clients are watched by a finalizer (one each)."""


def _forget_indexes(server_key: str) -> None:
    """Drop a freed client's entries from the index cache."""
    _WATCHED.discard(server_key)
    for entry in [entry for entry in list(_INDEXED) if entry[0] == server_key]:
        _INDEXED.discard(entry)


def _default_id(db_url: str | None, db_client: Any, db_name: str) -> str:
    """The same id agno's MongoDb derives, so configs that reference it keep working."""
    return generate_id(f"{db_url or str(db_client)}#{db_name}")


_SyncPlans: Any = contract_base(_B, "_SyncPlans", asynchronous=False)
_AsyncPlans: Any = contract_base(_A, "_AsyncPlans", asynchronous=True)


class MongoDb(_SyncPlans, _Settings, BaseDb):  # type: ignore[misc]  # _SyncPlans: see contract_base
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
        approvals_collection: str | None = None,
        auth_tokens_collection: str | None = None,
        service_accounts_collection: str | None = None,
        create_indexes_on_first_use: bool = True,
        session_cache_sessions: int = DEFAULT_CACHE_SESSIONS,
        session_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        """Check the arguments and name the collections; nothing is sent to the server yet.

        ``session_ttl_seconds``: expire a session that many seconds after its last write (1 to
        2147483647; MongoDB's TTL monitor deletes it, roughly once a minute). The TTL index is created
        on the first use of the sessions collection, or changed with ``collMod`` if it exists with
        another expiry (once per process). ``None`` (the default) leaves an existing TTL index alone:
        a store built without a TTL (the CLI, the dashboard, a script) never switches a deployment's
        expiry off. To stop expiry call :meth:`set_session_ttl` with ``None``.

        ``create_indexes_on_first_use``: ``True`` (the default) creates a collection's indexes before
        the first command on it, once per process. ``False`` never creates them lazily: run
        :meth:`create_indexes` (or ``agno-mongo doctor --create-indexes``) at deploy time instead,
        as you should for large existing collections, where a first request would wait for the builds.

        ``session_cache_sessions`` / ``session_cache_bytes``: bounds of the revision-checked session
        cache (:mod:`agno_mongo.session_cache`): a whole-session read still asks the server every
        time, which sends only what changed since this instance last read it. ``0`` switches it off.
        """
        _configure(self, BaseDb.__init__, {key: value for key, value in locals().items() if key != "self"})
        self._owns_client = db_client is None
        self.db_client: MongoClient[Any] = db_client or MongoClient(db_url, driver=DRIVER_INFO)

    @property
    def database(self) -> Any:
        """The PyMongo ``Database`` in use."""
        return self.db_client[self.db_name]

    def _start_session(self) -> Any:
        """A client session for a transaction (see :class:`~agno_mongo.ops.command.Atomically`)."""
        return self.db_client.start_session()

    def _ensure_indexes(self, role: str) -> Any:
        """The role's collection, its indexes created first (once per process, unless turned off)."""
        collection = self.database[self._names[role]]
        if self.create_indexes_on_first_use and role in INDEXES and _index_key(self, role) not in _INDEXED:
            _run_indexes_sync(collection, _role_plan(self, role, strict=False))
            _INDEXED.add(_index_key(self, role))
        return collection

    def create_indexes(self) -> dict[str, list[str]]:
        """Create every collection's indexes now (and the TTL index if ``session_ttl_seconds`` is set).

        For deployments onto large existing collections: run it once at deploy time rather than
        making the first request wait for the builds. Existing indexes are left as they are; a
        refusal (a conflicting index, missing rights) is raised. Returns index names per collection.
        """
        created: dict[str, list[str]] = {}
        for role in INDEXES:
            collection = self.database[self._names[role]]
            _run_indexes_sync(collection, _role_plan(self, role, strict=True))
            _INDEXED.add(_index_key(self, role))
            created[collection.name] = _index_names(self, role)
        return created

    def set_session_ttl(self, seconds: int | None) -> None:
        """Change session expiry now: whole seconds create the TTL index or change it with ``collMod``;
        ``None`` drops it, and sessions stop expiring. Also this instance's ``session_ttl_seconds``."""
        ttl = _check_ttl(seconds)
        collection = self.database[self._names["sessions"]]
        _run_indexes_sync(collection, _ttl_plan(ttl, f"{self.db_name}.{collection.name}"))
        self.session_ttl_seconds = ttl

    def _execute(self, command: Command, session: Any = None) -> Any:
        return drivers.send_sync(self._ensure_indexes(command.collection), command, session)

    def close(self) -> None:
        """Close the client if this instance created it."""
        if self._owns_client:
            self.db_client.close()

    # Every contract method in agno_mongo.domains comes from _SyncPlans; the few that agno's BaseDb
    # does not declare are bound here too, so they have static types.
    delete_orphaned_overflow = _B(SessionContract.delete_orphaned_overflow)
    get_eval_run_raw = _B(EvalContract.get_eval_run_raw)
    delete_eval_run = _B(EvalContract.delete_eval_run)


async def _close_with_loop(client: AsyncMongoClient[Any]) -> AsyncIterator[None]:
    """Parked async generator: when ``asyncio.run`` shuts the loop down it closes this client."""
    try:
        yield
    finally:
        await client.close()


def _start(closer: AsyncIterator[None]) -> None:
    """Run a fresh async generator to its first ``yield`` without awaiting.

    Its first step registers it with the running loop (so ``loop.shutdown_asyncgens`` finalises
    it) and does no I/O, so it finishes in one ``send``; ``database`` can then be a property.
    """
    step = closer.__anext__()
    try:
        step.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return
    raise RuntimeError("the client closer awaited before its first yield")


class AsyncMongoDb(_AsyncPlans, _Settings, AsyncBaseDb):  # type: ignore[misc]
    """Async MongoDB storage for agno: ``Agent(db=AsyncMongoDb(db_url=...))`` with ``arun``.

    With ``db_url`` it uses PyMongo's ``AsyncMongoClient``, one per event loop (an async client is
    bound to the loop it first ran on), closed when that loop shuts down, so a process may call
    ``asyncio.run()`` many times. A client passed as ``db_client`` (PyMongo async or Motor) is used
    as is, on the loop it belongs to.
    """

    CLIENT_TYPE_MOTOR = "motor"
    CLIENT_TYPE_PYMONGO_ASYNC = "pymongo_async"
    CLIENT_TYPE_UNKNOWN = "unknown"

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
        approvals_collection: str | None = None,
        auth_tokens_collection: str | None = None,
        service_accounts_collection: str | None = None,
        create_indexes_on_first_use: bool = True,
        session_cache_sessions: int = DEFAULT_CACHE_SESSIONS,
        session_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        """Check the arguments and name the collections; nothing is sent to the server yet.

        ``session_ttl_seconds``: expire a session that many seconds after its last write (1 to
        2147483647; MongoDB's TTL monitor deletes it, roughly once a minute). The TTL index is created
        on the first use of the sessions collection, or changed with ``collMod`` if it exists with
        another expiry (once per process). ``None`` (the default) leaves an existing TTL index alone:
        a store built without a TTL (the CLI, the dashboard, a script) never switches a deployment's
        expiry off. To stop expiry call :meth:`set_session_ttl` with ``None``.

        ``create_indexes_on_first_use``: ``True`` (the default) creates a collection's indexes before
        the first command on it, once per process. ``False`` never creates them lazily: run
        :meth:`create_indexes` (or ``agno-mongo doctor --create-indexes``) at deploy time instead,
        as you should for large existing collections, where a first request would wait for the builds.

        ``session_cache_sessions`` / ``session_cache_bytes``: bounds of the revision-checked session
        cache (:mod:`agno_mongo.session_cache`): a whole-session read still asks the server every
        time, which sends only what changed since this instance last read it. ``0`` switches it off.
        """
        _configure(self, AsyncBaseDb.__init__, {key: value for key, value in locals().items() if key != "self"})
        self.db_client = db_client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> Any:
        """The client for the running loop: the user's, or one of ours created for this loop."""
        if self.db_client is not None:
            return self.db_client
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            client: AsyncMongoClient[Any] = AsyncMongoClient(self.db_url, driver=DRIVER_INFO)
            closer = _close_with_loop(client)
            _start(closer)
            entry = self._clients[loop] = (client, closer)
        return entry[0]

    @property
    def database(self) -> Any:
        """The database handle on the running loop's client (a property, as on agno's class)."""
        return self._client()[self.db_name]

    def _start_session(self) -> Any:
        """A client session (PyMongo async) or a coroutine for one (Motor), for a transaction."""
        return self._client().start_session()

    async def _ensure_indexes(self, role: str) -> Any:
        """The role's collection, its indexes created first (once per process, unless turned off)."""
        collection = self.database[self._names[role]]
        if self.create_indexes_on_first_use and role in INDEXES and _index_key(self, role) not in _INDEXED:
            await _run_indexes_async(collection, _role_plan(self, role, strict=False))
            _INDEXED.add(_index_key(self, role))
        return collection

    async def create_indexes(self) -> dict[str, list[str]]:
        """Create every collection's indexes now (and the TTL index if ``session_ttl_seconds`` is set).

        For deployments onto large existing collections: run it once at deploy time rather than
        making the first request wait for the builds. Existing indexes are left as they are; a
        refusal (a conflicting index, missing rights) is raised. Returns index names per collection.
        """
        created: dict[str, list[str]] = {}
        for role in INDEXES:
            collection = self.database[self._names[role]]
            await _run_indexes_async(collection, _role_plan(self, role, strict=True))
            _INDEXED.add(_index_key(self, role))
            created[collection.name] = _index_names(self, role)
        return created

    async def set_session_ttl(self, seconds: int | None) -> None:
        """Change session expiry now: whole seconds create the TTL index or change it with ``collMod``;
        ``None`` drops it, and sessions stop expiring. Also this instance's ``session_ttl_seconds``."""
        ttl = _check_ttl(seconds)
        collection = self.database[self._names["sessions"]]
        await _run_indexes_async(collection, _ttl_plan(ttl, f"{self.db_name}.{collection.name}"))
        self.session_ttl_seconds = ttl

    async def _execute(self, command: Command, session: Any = None) -> Any:
        return await drivers.send_async(await self._ensure_indexes(command.collection), command, session)

    async def close(self) -> None:
        """Close the clients this instance created (the running loop's now; others with their loop)."""
        entry = self._clients.pop(asyncio.get_running_loop(), None) if self.db_client is None else None
        if entry is not None:
            await entry[1].aclose()

    # From _AsyncPlans like every contract method; bound here too where agno's AsyncBaseDb lacks them.
    upsert_sessions = _A(SessionContract.upsert_sessions)
    upsert_memories = _A(MemoryContract.upsert_memories)
    delete_orphaned_overflow = _A(SessionContract.delete_orphaned_overflow)
    get_eval_run_raw = _A(EvalContract.get_eval_run_raw)
    delete_eval_run = _A(EvalContract.delete_eval_run)
