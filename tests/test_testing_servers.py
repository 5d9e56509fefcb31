"""The test helpers themselves: embedded MongoDB server, server choice, offline model and local OpenAI server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agno.agent import Agent
from agno.db.in_memory import InMemoryDb
from agno.models.openai import OpenAIChat
from agno.run.agent import RunContentEvent
from pymongo import MongoClient, monitoring
from pymongo.collection import Collection

import agno_mongo.testing.server as server_module
from agno_mongo.testing import (
    EmbeddedServer,
    LocalOpenAIServer,
    OfflineStandInModel,
    answer_from_messages,
    describe_server_choice,
    docker_available,
    mongodb_server,
    mongoeco_available,
    server_is_reachable,
)
from agno_mongo.testing.models import FIRST_QUESTION_ANSWER

needs_mongoeco = pytest.mark.skipif(not mongoeco_available(), reason="embedded server needs mongoeco (Python 3.13)")


@needs_mongoeco
def test_embedded_server_keeps_data_across_restart(tmp_path: Path) -> None:
    server = EmbeddedServer(path=tmp_path / "data.sqlite")
    with server:
        client: MongoClient[dict[str, Any]] = MongoClient(server.url, serverSelectionTimeoutMS=5000)
        client.app.notes.insert_one({"_id": "n1", "text": "survives a restart"})
        client.close()
    assert not server.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url

    with server:
        client = MongoClient(server.url, serverSelectionTimeoutMS=5000)
        assert client.app.notes.find_one({"_id": "n1"}) == {"_id": "n1", "text": "survives a restart"}
        client.close()


@needs_mongoeco
def test_embedded_server_reports_stderr_when_it_cannot_start(tmp_path: Path) -> None:
    # A directory is not a valid SQLite file: the child dies before READY and its traceback is in the error.
    with pytest.raises(RuntimeError, match="before READY(.|\n)*unable to open database file"):
        EmbeddedServer(path=tmp_path).start()


def test_embedded_server_explains_what_to_do_without_mongoeco(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "mongoeco_available", lambda: False)
    with pytest.raises(RuntimeError, match="MONGODB_URL or\\s+MONGODB_URI(.|\n)*Python 3.13"):
        EmbeddedServer().start()


def test_mongodb_server_yields_a_url_that_answers_ping() -> None:
    with mongodb_server() as url:
        assert server_is_reachable(url, timeout_s=5)
        assert describe_server_choice() in {"env", "docker", "embedded"}
    if describe_server_choice() == "embedded":
        assert not server_is_reachable(url, timeout_s=0.5)


def test_mongodb_url_fixture_and_db_name(mongodb_url: str, db_name: str) -> None:
    assert db_name.startswith("test_")
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    client[db_name].things.insert_one({"x": 1})
    assert client[db_name].things.count_documents({}) == 1
    client.close()


def test_docker_available_answers_fast() -> None:
    started = time.monotonic()
    assert isinstance(docker_available(), bool)
    assert time.monotonic() - started < 5


def test_answer_rules() -> None:
    assert answer_from_messages([{"role": "user", "content": "What is the capital of France?"}]) == (
        "The capital of France is Paris."
    )
    assert answer_from_messages([{"role": "user", "content": "what was my last question?"}]) == FIRST_QUESTION_ANSWER
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "Is it raining?"}]},
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "What was my last question?"},
    ]
    assert answer_from_messages(history) == "Your last question was: Is it raining?"
    assert answer_from_messages([{"role": "user", "content": "hello"}]) == "(offline stand-in) You said: hello"


async def test_offline_stand_in_model_runs_an_agent_with_history() -> None:
    agent = Agent(model=OfflineStandInModel(), db=InMemoryDb(), add_history_to_context=True, session_id="s1")
    first = agent.run("What is the capital of France?")
    assert first.content == "The capital of France is Paris."
    assert first.metrics is not None and first.metrics.output_tokens == 6

    streamed = "".join(
        str(e.content) for e in agent.run("hello there", stream=True) if isinstance(e, RunContentEvent) and e.content
    )
    assert streamed == "(offline stand-in) You said: hello there"

    again = await agent.arun("What was my last question?")
    assert again.content == "Your last question was: hello there"
    chunks = [e.content async for e in agent.arun("and now?", stream=True) if isinstance(e, RunContentEvent)]
    assert "".join(str(c) for c in chunks if c) == "(offline stand-in) You said: and now?"


async def test_local_openai_server_answers_openai_chat_through_an_agent() -> None:
    with LocalOpenAIServer() as srv:
        model = OpenAIChat(id="gpt-4o-mini", base_url=srv.base_url, api_key="test")
        agent = Agent(model=model, db=InMemoryDb(), add_history_to_context=True, session_id="s1")

        run = agent.run("What is the capital of France?")
        assert run.content == "The capital of France is Paris."
        assert run.metrics is not None and run.metrics.input_tokens > 0 and run.metrics.output_tokens == 6

        streamed = [e.content for e in agent.run("tell me more", stream=True) if isinstance(e, RunContentEvent)]
        assert "".join(str(c) for c in streamed if c) == "(offline stand-in) You said: tell me more"
        last = agent.get_last_run_output()
        assert last is not None and last.metrics is not None and last.metrics.total_tokens > 0

        arun = await agent.arun("What was my last question?")
        assert arun.content == "Your last question was: tell me more"
        achunks = [e.content async for e in agent.arun("bye", stream=True) if isinstance(e, RunContentEvent)]
        assert "".join(str(c) for c in achunks if c) == "(offline stand-in) You said: bye"

        requests = srv.requests
        assert [bool(r.get("stream")) for r in requests] == [False, True, False, True]
        assert all(r["model"] == "gpt-4o-mini" for r in requests)
        assert requests[1]["stream_options"] == {"include_usage": True}
        # History from the session reaches the model: the last request carries all earlier turns.
        assert [m["role"] for m in requests[-1]["messages"]].count("user") == 4
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.base_url


# --------------------------------------------------------------------------------------------------------------
# Cursor batches: the embedded server batches as MongoDB does (agno_mongo.testing.batches). These tests hold for
# a real server too (MONGODB_URI), which is the point: command counts measured here are the production ones.
# --------------------------------------------------------------------------------------------------------------

MiB = 1024 * 1024


class Batches(monitoring.CommandListener):
    """Records each cursor command and the size of the batch it answered: [("find", 101, open), ...]."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor")
        if isinstance(cursor, dict):
            batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
            self.seen.append((event.command_name, len(batch), cursor["id"] != 0))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def batched(mongodb_url: str, db_name: str) -> Iterator[tuple[Collection[dict[str, Any]], Batches]]:
    """A collection on the test server and a listener on its client."""
    listener = Batches()
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongodb_url, serverSelectionTimeoutMS=5000, event_listeners=[listener]
    )
    try:
        yield client[db_name].docs, listener
    finally:
        client.close()


def _insert_small(collection: Collection[dict[str, Any]], count: int) -> None:
    collection.insert_many([{"_id": i, "text": f"document {i}"} for i in range(count)])


def test_find_sends_get_more_after_101_documents(batched: tuple[Collection[dict[str, Any]], Batches]) -> None:
    collection, listener = batched
    _insert_small(collection, 250)
    listener.seen.clear()
    assert [d["_id"] for d in collection.find().sort("_id", 1)] == list(range(250))
    assert listener.seen == [("find", 101, True), ("getMore", 149, False)]


def test_aggregate_sends_get_more_after_101_documents(batched: tuple[Collection[dict[str, Any]], Batches]) -> None:
    collection, listener = batched
    _insert_small(collection, 250)
    listener.seen.clear()
    assert len(list(collection.aggregate([{"$match": {}}]))) == 250
    assert listener.seen == [("aggregate", 101, True), ("getMore", 149, False)]


def test_batch_size_is_honoured(batched: tuple[Collection[dict[str, Any]], Batches]) -> None:
    collection, listener = batched
    _insert_small(collection, 250)
    listener.seen.clear()
    assert len(list(collection.find(batch_size=100))) == 250
    assert listener.seen == [("find", 100, True), ("getMore", 100, True), ("getMore", 50, False)]


def test_limit_within_first_batch_is_one_batch_and_closes_the_cursor(
    batched: tuple[Collection[dict[str, Any]], Batches],
) -> None:
    collection, listener = batched
    _insert_small(collection, 250)
    listener.seen.clear()
    assert len(list(collection.find(limit=50))) == 50
    assert collection.find_one({"_id": 7}) == {"_id": 7, "text": "document 7"}
    assert listener.seen == [("find", 50, False), ("find", 1, False)]


def test_batches_are_capped_at_16_mib(batched: tuple[Collection[dict[str, Any]], Batches]) -> None:
    collection, listener = batched
    for i in range(3):
        collection.insert_one({"_id": i, "blob": "x" * (7 * MiB)})
    listener.seen.clear()
    assert [d["_id"] for d in collection.find().sort("_id", 1)] == [0, 1, 2]
    # Two 7 MiB documents fit in 16 MiB, a third does not: it waits for the getMore.
    assert listener.seen == [("find", 2, True), ("getMore", 1, False)]


def test_get_more_without_batch_size_fills_16_mib(batched: tuple[Collection[dict[str, Any]], Batches]) -> None:
    collection, listener = batched
    for i, mib in enumerate([7, 7, 7, 7, 7, 10]):
        collection.insert_one({"_id": i, "blob": "x" * (mib * MiB)})
    listener.seen.clear()
    # batchSize 0: the cursor opens empty, and each getMore (sent without batchSize) takes what fits in 16 MiB:
    # 7 + 7, 7 + 7, then 7 alone (7 + 10 > 16), then the 10 MiB document.
    found = list(collection.aggregate([{"$sort": {"_id": 1}}], batchSize=0))
    assert [d["_id"] for d in found] == [0, 1, 2, 3, 4, 5]
    assert listener.seen == [
        ("aggregate", 0, True),
        ("getMore", 2, True),
        ("getMore", 2, True),
        ("getMore", 1, True),
        ("getMore", 1, False),
    ]


@needs_mongoeco
def test_embedded_server_can_keep_mongoecos_one_batch() -> None:
    with EmbeddedServer(mongodb_batches=False) as server:
        listener = Batches()
        client: MongoClient[dict[str, Any]] = MongoClient(
            server.url, serverSelectionTimeoutMS=5000, event_listeners=[listener]
        )
        _insert_small(client.app.docs, 250)
        assert len(list(client.app.docs.find())) == 250
        assert listener.seen == [("find", 250, False)]
        client.close()
