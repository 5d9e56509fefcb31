"""Shared fixtures: a real MongoDB-compatible server and the three client flavours.

Every integration test runs against a wire server through real drivers: ``MONGODB_URI`` when set,
else a testcontainers MongoDB when Docker answers, else the embedded mongoeco server.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import bson
import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring, uri_parser

from agno_mongo import AsyncMongoDb, InvalidInputError, MongoDb
from agno_mongo.testing.faults import ReplyDroppingProxy
from agno_mongo.testing.pytest_plugin import db_name, mongodb_url  # noqa: F401  (fixtures)

pytest.register_assert_rewrite("tests.differential", "tests.plans")  # their asserts report like a test's

FLAVOURS = ["pymongo", "pymongo-async", "motor"]


@dataclass
class Commands(monitoring.CommandListener):
    """Records every command a client sends (its name and body) and the size of each reply."""

    names: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[int] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in {"hello", "isMaster", "ping", "endSessions", "killCursors"}:
            self.names.append(event.command_name)
            self.sent.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name not in {"hello", "isMaster", "ping", "endSessions", "killCursors"}:
            self.received.append(len(bson.encode(event.reply)))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def clear(self) -> None:
        self.names.clear()
        self.sent.clear()
        self.received.clear()

    def writes(self) -> list[str]:
        return [name for name in self.names if name in {"update", "insert", "delete", "findAndModify"}]


async def call(result: Any) -> Any:
    """Await a result if the class under test is async; lets one test body cover both classes."""
    return await result if inspect.isawaitable(result) else result


async def assert_refused(store: Store, method: str, kwargs: dict[str, Any], field: str) -> None:
    """``method(**kwargs)`` raises InvalidInputError naming ``field``, and no command reached the server."""
    store.commands.clear()
    with pytest.raises(InvalidInputError) as error:
        await call(getattr(store.db, method)(**kwargs))
    assert error.value.field == field
    assert store.commands.names == []


@dataclass
class Store:
    """A storage class under test, its listener and a sync client for checking raw documents."""

    db: MongoDb | AsyncMongoDb
    commands: Commands
    raw: Any  # pymongo Database, for assertions on stored documents
    flavour: str

    @property
    def is_async(self) -> bool:
        return isinstance(self.db, AsyncMongoDb)


def make_db(
    flavour: str, url: str, name: str, commands: Commands | None = None, **options: Any
) -> MongoDb | AsyncMongoDb:
    """A storage class on a client of ``flavour``; ``options`` go to the client, ``commands`` listens."""
    if commands is not None:
        options["event_listeners"] = [commands]
    if flavour == "pymongo":
        return MongoDb(db_client=MongoClient(url, **options), db_name=name)
    if flavour == "pymongo-async":
        return AsyncMongoDb(db_client=AsyncMongoClient(url, **options), db_name=name)
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncMongoDb(db_client=AsyncIOMotorClient(url, **options), db_name=name)


async def close(db: MongoDb | AsyncMongoDb) -> None:
    """Close the client under a storage class (awaited where the client's close is a coroutine)."""
    closed = db.db_client.close()
    if inspect.isawaitable(closed):
        await closed


@pytest.fixture(params=FLAVOURS)
async def store(request: pytest.FixtureRequest, mongodb_url: str, db_name: str) -> AsyncIterator[Store]:  # noqa: F811
    commands = Commands()
    db = make_db(request.param, mongodb_url, db_name, commands)
    raw_client: MongoClient[Any] = MongoClient(mongodb_url)
    yield Store(db=db, commands=commands, raw=raw_client[db_name], flavour=request.param)
    raw_client.close()
    await close(db)


@pytest.fixture(params=FLAVOURS)
async def through(
    request: pytest.FixtureRequest,
    mongodb_url: str,  # noqa: F811
    db_name: str,  # noqa: F811
) -> AsyncIterator[SimpleNamespace]:
    """A store whose connection goes through a :class:`ReplyDroppingProxy`, and direct ones for checking.

    ``db``: the store of this flavour, on a client through ``proxy`` with ``retryWrites`` off (so a
    dropped reply reaches the store's own handling, not the driver's retry). ``raw``: the pymongo
    database on a direct connection. ``direct``: a sync ``MongoDb`` on that same direct connection.
    A test that needs one flavour only asks for it: ``@pytest.mark.parametrize("through", ["pymongo"],
    indirect=True)``.
    """
    host, port = uri_parser.parse_uri(mongodb_url)["nodelist"][0]
    with ReplyDroppingProxy(host, port) as proxy:
        db = make_db(request.param, proxy.url(), db_name, retryWrites=False, serverSelectionTimeoutMS=5000)
        direct: MongoClient[Any] = MongoClient(mongodb_url)
        try:
            yield SimpleNamespace(
                db=db, proxy=proxy, raw=direct[db_name], direct=MongoDb(db_client=direct, db_name=db_name)
            )
        finally:
            direct.close()
            await close(db)


@pytest.fixture(params=["sync", "async"])
def os_db(request: pytest.FixtureRequest, mongodb_url: str, db_name: str) -> MongoDb | AsyncMongoDb:  # noqa: F811
    """The store an AgentOS app and its agents share, on ``db_url`` (the async class then opens a
    client per event loop, and AgentOS runs more than one)."""
    return (
        MongoDb(db_url=mongodb_url, db_name=db_name)
        if request.param == "sync"
        else AsyncMongoDb(db_url=mongodb_url, db_name=db_name)
    )


ORACLE_TABLES = (
    "sessions runs memories metrics evals knowledge versions learnings traces spans schedules schedule_runs "
    "approvals service_accounts auth_tokens transcripts"
).split()


@pytest.fixture
async def oracle(store: Store, tmp_path: Any) -> AsyncIterator[Any]:
    """agno's own SQLite store, sync or async like ``store``: the differential tests' reference.

    ``SqliteDb`` runs in-process with no server; a scenario is played on both stores and the answers
    compared after :func:`tests.differential.normalised`.
    """
    from agno.db.sqlite import AsyncSqliteDb, SqliteDb

    path = str(tmp_path / "oracle.sqlite")
    db: Any = AsyncSqliteDb(db_file=path) if store.is_async else SqliteDb(db_file=path)
    if store.is_async:  # agno's AsyncSqliteDb writes nothing to a table it has not created yet
        for table_type in ORACLE_TABLES:
            await db._get_table(table_type, create_table_if_not_found=True)
    yield db
    closed = db.close() if hasattr(db, "close") else None
    if inspect.isawaitable(closed):
        await closed
