"""Shared fixtures: a real MongoDB-compatible server and the three client flavours.

Every integration test runs against a wire server through real drivers: ``MONGODB_URI`` when set,
else a testcontainers MongoDB when Docker answers, else the embedded mongoeco server.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from agno_mongo import AsyncMongoDb, InvalidInputError, MongoDb
from agno_mongo.testing.pytest_plugin import db_name, mongodb_url  # noqa: F401  (fixtures)

FLAVOURS = ["pymongo", "pymongo-async", "motor"]


@dataclass
class Commands(monitoring.CommandListener):
    """Records every command a client sends: name and request size in bytes."""

    names: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in {"hello", "isMaster", "ping", "endSessions", "killCursors"}:
            self.names.append(event.command_name)
            self.sent.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def clear(self) -> None:
        self.names.clear()
        self.sent.clear()

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


def make_db(flavour: str, url: str, name: str, commands: Commands) -> MongoDb | AsyncMongoDb:
    if flavour == "pymongo":
        return MongoDb(db_client=MongoClient(url, event_listeners=[commands]), db_name=name)
    if flavour == "pymongo-async":
        return AsyncMongoDb(db_client=AsyncMongoClient(url, event_listeners=[commands]), db_name=name)
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncMongoDb(db_client=AsyncIOMotorClient(url, event_listeners=[commands]), db_name=name)


@pytest.fixture(params=FLAVOURS)
async def store(request: pytest.FixtureRequest, mongodb_url: str, db_name: str) -> AsyncIterator[Store]:  # noqa: F811
    commands = Commands()
    db = make_db(request.param, mongodb_url, db_name, commands)
    raw_client: MongoClient[Any] = MongoClient(mongodb_url)
    yield Store(db=db, commands=commands, raw=raw_client[db_name], flavour=request.param)
    raw_client.close()
    client = db.db_client
    closed = client.close()
    if inspect.isawaitable(closed):
        await closed


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
