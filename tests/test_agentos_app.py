"""examples/agentos_app.py served by uvicorn on loopback, driven over HTTP by httpx.

The endpoints must answer with what MongoDB holds: each check compares the HTTP answer with the
stored documents read directly with PyMongo.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from agentos_app import build_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app_url(mongodb_url: str, db_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(mongodb_url, db_name), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "AgentOS did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def run(client: httpx.Client, message: str, session_id: str, user_id: str) -> dict[str, Any]:
    response = client.post(
        "/agents/assistant/runs",
        data={"message": message, "session_id": session_id, "user_id": user_id, "stream": "false"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_sessions_and_runs_over_http_match_mongodb(app_url: str, mongodb_url: str, db_name: str) -> None:
    raw = MongoClient(mongodb_url)[db_name]
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for i in range(3):
            run(client, f"hello {i}", f"alice-{i}", "alice")
        run(client, "What is the capital of France?", "alice-0", "alice")
        answer = run(client, "What was my last question?", "alice-0", "alice")
        assert answer["content"] == "Your last question was: What is the capital of France?"
        run(client, "hi from bob", "bob-0", "bob")

        listed = client.get("/sessions", params={"type": "agent", "user_id": "alice", "limit": 2, "page": 1}).json()
        assert listed["meta"]["total_count"] == raw.agno_sessions.count_documents({"user_id": "alice"}) == 3
        assert len(listed["data"]) == 2
        page_two = client.get("/sessions", params={"type": "agent", "user_id": "alice", "limit": 2, "page": 2}).json()
        seen = {s["session_id"] for s in listed["data"] + page_two["data"]}
        assert seen == {"alice-0", "alice-1", "alice-2"}

        runs = client.get("/sessions/alice-0/runs", params={"type": "agent", "user_id": "alice"}).json()
        stored = raw.agno_sessions.find_one({"_id": "alice-0"})["runs"]
        assert [r["run_id"] for r in runs] == [r["run_id"] for r in stored] and len(stored) == 3

        renamed = client.post(
            "/sessions/alice-1/rename",
            params={"type": "agent", "user_id": "alice"},
            json={"session_name": "Trip planning"},
        )
        assert renamed.status_code == 200, renamed.text
        assert raw.agno_sessions.find_one({"_id": "alice-1"})["session_data"]["session_name"] == "Trip planning"
        shown = client.get("/sessions/alice-1", params={"type": "agent", "user_id": "alice"}).json()
        assert shown["session_name"] == "Trip planning"

        # Bob's id neither reads nor deletes Alice's session.
        assert client.get("/sessions/alice-2", params={"type": "agent", "user_id": "bob"}).status_code == 404
        client.delete("/sessions/alice-2", params={"type": "agent", "user_id": "bob"})
        assert raw.agno_sessions.find_one({"_id": "alice-2"}) is not None

        deleted = client.delete("/sessions/alice-2", params={"type": "agent", "user_id": "alice"})
        assert deleted.status_code in (200, 204), deleted.text
        assert raw.agno_sessions.find_one({"_id": "alice-2"}) is None


def test_memories_and_metrics_over_http_match_mongodb(app_url: str, mongodb_url: str, db_name: str) -> None:
    raw = MongoClient(mongodb_url)[db_name]
    with httpx.Client(base_url=app_url, timeout=60) as client:
        created = client.post(
            "/memories", json={"memory": "Likes window seats", "user_id": "alice", "topics": ["travel"]}
        )
        assert created.status_code == 200, created.text
        client.post("/memories", json={"memory": "Vegetarian", "user_id": "bob", "topics": ["food"]})
        listed = client.get("/memories", params={"user_id": "alice"}).json()
        assert [m["memory"] for m in listed["data"]] == ["Likes window seats"]
        assert raw.agno_memories.count_documents({"user_id": "alice"}) == 1

        for i in range(2):
            run(client, f"hello {i}", "metrics-session", "alice")
        refreshed = client.post("/metrics/refresh")
        assert refreshed.status_code == 200, refreshed.text
        metrics = client.get("/metrics").json()["metrics"]
        assert sum(day["agent_runs_count"] for day in metrics) == 2
        assert sum(day["agent_sessions_count"] for day in metrics) == 1
        stored = list(raw.agno_metrics.find())
        assert sum(record["agent_runs_count"] for record in stored) == 2
