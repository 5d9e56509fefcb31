"""Cut connections and a server that is down: writes neither lost nor duplicated, failures bounded.

A :class:`~agno_mongo.testing.faults.CuttingProxy` sits between the client and the server and closes
each connection after a random number of bytes, so commands die inside their request (never
applied) or inside their reply (applied, but the client does not know). The stored documents are
then read directly from the server, not through the proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from pymongo import AsyncMongoClient, MongoClient, monitoring, uri_parser
from pymongo.errors import ServerSelectionTimeoutError

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.testing.faults import Counted, CuttingProxy

SESSIONS = 5
RUNS_PER_SESSION = 60  # 300 appends per test
TIMEOUTS = {"connectTimeoutMS": 2000, "socketTimeoutMS": 5000, "serverSelectionTimeoutMS": 10_000}


@dataclass
class Outcomes(monitoring.CommandListener):
    """What happened on the wire: commands that died, and pushes that found their run already stored."""

    dead: dict[str, int] = field(default_factory=dict)
    replayed_pushes: int = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        errors = event.reply.get("writeErrors") or []
        if event.command_name == "update" and any(error.get("code") == 11000 for error in errors):
            self.replayed_pushes += 1  # a retried $push whose first attempt had been applied

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        name = type(event.failure).__name__ if isinstance(event.failure, BaseException) else str(event.failure)
        key = f"{event.command_name}: {name}"
        self.dead[key] = self.dead.get(key, 0) + 1


def target(url: str) -> tuple[str, int, dict[str, Any]]:
    """Host, port and credentials of the test server; the proxy needs a plain TCP connection."""
    parsed = uri_parser.parse_uri(url)
    options = parsed["options"]
    if url.startswith("mongodb+srv://") or options.get("tls") or options.get("ssl"):
        pytest.skip("the fault proxy forwards plain TCP; this server needs TLS")
    host, port = parsed["nodelist"][0]
    credentials = {}
    if parsed.get("username"):
        credentials = {"username": parsed["username"], "password": parsed["password"]}
        credentials["authSource"] = options.get("authsource") or parsed.get("database") or "admin"
    return host, port, credentials


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[Any]:
    """The test database, read directly (no proxy)."""
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield client[db_name]
    client.close()


def make_run(session_id: str, index: int) -> RunOutput:
    return RunOutput(
        run_id=f"{session_id}-run-{index:03d}",
        agent_id="agent",
        session_id=session_id,
        content=f"answer {index} " + "lorem ipsum " * 20,
        status=RunStatus.completed,
    )


def expected_runs() -> dict[str, list[str]]:
    return {f"session-{s}": [f"session-{s}-run-{i:03d}" for i in range(RUNS_PER_SESSION)] for s in range(SESSIONS)}


def check_stored(raw: Any, failures: list[str]) -> None:
    """0 calls failed, 0 runs lost, 0 duplicated, and each session's runs in the order they were saved."""
    assert failures == []
    stored = {doc["_id"]: [run["run_id"] for run in doc["runs"]] for doc in raw.agno_sessions.find()}
    expected = expected_runs()
    lost = {sid: sorted(set(ids) - set(stored.get(sid, []))) for sid, ids in expected.items()}
    duplicated = {sid: sorted({i for i in ids if ids.count(i) > 1}) for sid, ids in stored.items()}
    assert {sid: ids for sid, ids in lost.items() if ids} == {}
    assert {sid: ids for sid, ids in duplicated.items() if ids} == {}
    assert stored == expected


def report(proxy: CuttingProxy, outcomes: Outcomes) -> str:
    return f"{proxy}: {proxy.connections} connections; died: {outcomes.dead}; replayed: {outcomes.replayed_pushes}"


# Where the cuts land. Each connection dies after a random number of bytes, but never before it
# has carried its handshake and one command (a fresh connection costs ~380 bytes each way for the
# handshake; an append ~930 bytes out and 66 back, or 227 back when the retried $push meets its
# own earlier attempt), so a retry can always make progress and the outcome does not depend on
# luck. With budgets below that, a fresh connection often dies before its first command and four
# attempts in a row can all die: the call then raises AutoReconnect (its write may or may not have
# been applied, and calling again is safe); that is a property of the fault, not of the store.
CUT_MODES: list[tuple[Counted, tuple[int, int]]] = [
    ("both", (2_000, 30_000)),  # cuts anywhere, mostly inside requests: the server never saw the command
    ("to_client", (600, 2_000)),  # cuts inside replies: the server applied the write, the client never heard
]


@pytest.mark.parametrize(("counted", "cut_after"), CUT_MODES, ids=[mode for mode, _ in CUT_MODES])
def test_sync_appends_survive_cut_connections(
    mongodb_url: str, db_name: str, raw: Any, counted: Counted, cut_after: tuple[int, int]
) -> None:
    host, port, credentials = target(mongodb_url)
    outcomes = Outcomes()
    failures: list[str] = []
    with CuttingProxy(host, port, cut_after_bytes=cut_after, seed=11, counted=counted) as proxy:
        client: MongoClient[Any] = MongoClient(proxy.url(), event_listeners=[outcomes], **TIMEOUTS, **credentials)
        db = MongoDb(db_client=client, db_name=db_name)
        for index in range(RUNS_PER_SESSION):
            for s in range(SESSIONS):
                session_id = f"session-{s}"
                try:
                    db.upsert_run(make_run(session_id, index), session_id=session_id)
                except Exception as e:
                    failures.append(f"{session_id} run {index}: {e!r}")
        client.close()
    print(report(proxy, outcomes))
    check_stored(raw, failures)
    assert proxy.cuts > 0
    if counted == "to_client":
        assert outcomes.replayed_pushes > 0  # the case that matters happened, and was absorbed


@pytest.mark.parametrize(("counted", "cut_after"), CUT_MODES, ids=[mode for mode, _ in CUT_MODES])
async def test_async_appends_survive_cut_connections(
    mongodb_url: str, db_name: str, raw: Any, counted: Counted, cut_after: tuple[int, int]
) -> None:
    host, port, credentials = target(mongodb_url)
    outcomes = Outcomes()
    failures: list[str] = []
    with CuttingProxy(host, port, cut_after_bytes=cut_after, seed=12, counted=counted) as proxy:
        client: AsyncMongoClient[Any] = AsyncMongoClient(
            proxy.url(), event_listeners=[outcomes], **TIMEOUTS, **credentials
        )
        db = AsyncMongoDb(db_client=client, db_name=db_name)

        async def append_all(session_id: str) -> None:
            for index in range(RUNS_PER_SESSION):
                try:
                    await db.upsert_run(make_run(session_id, index), session_id=session_id)
                except Exception as e:
                    failures.append(f"{session_id} run {index}: {e!r}")

        await asyncio.gather(*(append_all(f"session-{s}") for s in range(SESSIONS)))
        await client.close()
    print(report(proxy, outcomes))
    check_stored(raw, failures)
    assert proxy.cuts > 0
    if counted == "to_client":
        assert outcomes.replayed_pushes > 0


def test_reads_survive_cut_connections(mongodb_url: str, db_name: str) -> None:
    host, port, credentials = target(mongodb_url)
    seed = MongoDb(db_client=MongoClient(mongodb_url), db_name=db_name)
    for index in range(20):
        seed.upsert_run(make_run("session-0", index), session_id="session-0")
    seed.db_client.close()
    with CuttingProxy(host, port, cut_after_bytes=(1_500, 20_000), seed=13) as proxy:
        client: MongoClient[Any] = MongoClient(proxy.url(), **TIMEOUTS, **credentials)
        db = MongoDb(db_client=client, db_name=db_name)
        for _ in range(40):
            session = db.get_session("session-0", runs_limit=3)
            assert session is not None and [run.run_id for run in session.runs] == [
                f"session-0-run-{i:03d}" for i in (17, 18, 19)
            ]
            assert len(db.get_session("session-0").runs) == 20
        client.close()
    assert proxy.cuts > 0


# --- a server that is down ------------------------------------------------------------------------

DOWN_TIMEOUT_MS = 2000


def test_a_call_fails_in_bounded_time_when_the_server_is_down() -> None:
    proxy = CuttingProxy("127.0.0.1", 9, cut_after_bytes=None).start()
    url = proxy.url(serverSelectionTimeoutMS=DOWN_TIMEOUT_MS, connectTimeoutMS=1000)
    proxy.stop()  # nothing listens there any more: connection refused
    client: MongoClient[Any] = MongoClient(url)
    db = MongoDb(db_client=client, db_name="down")
    start = time.monotonic()
    with pytest.raises(ServerSelectionTimeoutError) as error:
        db.upsert_run(make_run("session-0", 0), session_id="session-0")
    elapsed = time.monotonic() - start
    client.close()
    assert "Connection refused" in str(error.value) or "refused" in str(error.value).lower()
    assert elapsed < 2 * DOWN_TIMEOUT_MS / 1000 + 1, elapsed


async def test_an_async_call_fails_in_bounded_time_when_the_server_is_down() -> None:
    proxy = CuttingProxy("127.0.0.1", 9, cut_after_bytes=None).start()
    url = proxy.url(serverSelectionTimeoutMS=DOWN_TIMEOUT_MS, connectTimeoutMS=1000)
    proxy.stop()
    client: AsyncMongoClient[Any] = AsyncMongoClient(url)
    db = AsyncMongoDb(db_client=client, db_name="down")
    start = time.monotonic()
    with pytest.raises(ServerSelectionTimeoutError):
        await db.get_session("session-0")
    elapsed = time.monotonic() - start
    await client.close()
    assert elapsed < 2 * DOWN_TIMEOUT_MS / 1000 + 1, elapsed
