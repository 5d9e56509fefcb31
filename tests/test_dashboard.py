"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) on seeded data.

A screenshot is kept in ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from agno.metrics import RunMetrics
from agno.models.message import Message
from agno.run.agent import RunInput, RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

from agno_mongo import MongoDb
from agno_mongo.dashboard import build_app
from tests.test_agentos_app import free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DAY = 86_400


def seed(db: MongoDb) -> None:
    start = int(time.time()) - 3 * DAY
    topics = ["Trip to Lisbon", "Tax questions", "Birthday ideas"]
    for i, topic in enumerate(topics):
        sid = f"session-{i}"
        db.upsert_session(
            AgentSession(
                session_id=sid,
                agent_id="assistant",
                user_id="alice" if i < 2 else "bob",
                # what an Agent keeps there: the sum of its runs' metrics (agno's daily metrics read it)
                session_data={
                    "session_name": topic,
                    "session_metrics": {"total_tokens": sum(10 * (j + 1) + 5 for j in range(i + 1))},
                },
                created_at=start + i * DAY,
            )
        )
        for j in range(i + 1):
            question = f"Question {j} about {topic}"
            db.upsert_run(
                RunOutput(
                    run_id=f"{sid}-run-{j}",
                    agent_id="assistant",
                    session_id=sid,
                    status=RunStatus.completed,
                    input=RunInput(input_content=question),
                    content=f"Answer {j} about {topic}",
                    model="offline-stand-in",
                    created_at=start + i * DAY + j,
                    messages=[
                        Message(role="user", content=question),
                        Message(role="assistant", content=f"Answer {j} about {topic}"),
                    ],
                    metrics=RunMetrics(input_tokens=10 * (j + 1), output_tokens=5, total_tokens=10 * (j + 1) + 5),
                ),
                sid,
                "alice" if i < 2 else "bob",
            )


@pytest.fixture
def dashboard(mongodb_url: str, db_name: str) -> Iterator[str]:
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    seed(db)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(db), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    db.close()


def test_api_answers_from_mongodb(dashboard: str) -> None:
    import httpx

    listed = httpx.get(f"{dashboard}/api/sessions", params={"q": "lisbon"}).json()
    assert listed["total"] == 1 and listed["sessions"][0]["session_id"] == "session-0"
    shown = httpx.get(f"{dashboard}/api/sessions/session-2").json()
    assert [t["input"] for t in shown["runs"]] == [f"Question {j} about Birthday ideas" for j in range(3)]
    assert httpx.get(f"{dashboard}/api/sessions/nope").status_code == 404
    assert httpx.get(f"{dashboard}/api/stats").json() == []  # nothing calculated yet, and a GET does not
    refreshed = httpx.post(f"{dashboard}/api/stats/refresh").json()
    assert refreshed == httpx.get(f"{dashboard}/api/stats").json()
    assert [row["runs"] for row in refreshed] == [1, 2, 3]
    assert [row["tokens"] for row in refreshed] == [15, 25 + 15, 35 + 25 + 15]


def test_transcript_is_the_cli_transcript(dashboard: str, mongodb_url: str, db_name: str) -> None:
    """One shaping: the dashboard answers exactly what ``agno-mongo sessions show --json`` prints."""
    import json

    import httpx
    from typer.testing import CliRunner

    from agno_mongo.cli import app

    shown = CliRunner().invoke(app, ["sessions", "show", "session-1", "--json", "--url", mongodb_url, "--db", db_name])
    assert httpx.get(f"{dashboard}/api/sessions/session-1").json() == json.loads(shown.stdout)


def test_search_matches_names_session_ids_and_user_ids(dashboard: str) -> None:
    import httpx

    def found(query: str) -> list[str]:
        return [
            row["session_id"] for row in httpx.get(f"{dashboard}/api/sessions", params={"q": query}).json()["sessions"]
        ]

    assert found("BOB") == ["session-2"]  # the user id, any case
    assert found("ssion-1") == ["session-1"]  # part of a session id
    assert found("tax") == ["session-1"]  # the name
    assert found("alice") == ["session-1", "session-0"]  # last updated first
    assert found("a.*") == []  # text, not a pattern


def test_reading_the_dashboard_writes_nothing(mongodb_url: str, db_name: str) -> None:
    """Every GET reads only, on a store that would otherwise create indexes on first use (the metrics
    collection here has none yet); the refresh POST is the one that writes."""
    from fastapi.testclient import TestClient
    from pymongo import MongoClient

    from tests.conftest import Commands

    seed(MongoDb(db_url=mongodb_url, db_name=db_name))
    commands = Commands()
    db = MongoDb(db_client=MongoClient(mongodb_url, event_listeners=[commands]), db_name=db_name)
    client = TestClient(build_app(db))
    writes = {"insert", "update", "delete", "findAndModify", "createIndexes", "bulkWrite", "drop", "create"}
    try:
        for path in ("/", "/api/sessions", "/api/sessions?q=bob", "/api/sessions/session-0", "/api/stats"):
            assert client.get(path).status_code == 200
        assert commands.names and not writes & set(commands.names), commands.names
        assert client.post("/api/stats/refresh").status_code == 200
        assert writes & set(commands.names)
    finally:
        db.db_client.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (apt-get install chromium)")
def test_dashboard_in_headless_chromium(dashboard: str) -> None:
    playwright_api: Any = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(dashboard)
        page.wait_for_selector("#rows tr")
        assert page.locator("#rows tr").count() == 3
        assert page.text_content("#total") == "(3)"

        page.fill("#search", "tax")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 1")
        assert "Tax questions" in (page.text_content("#rows") or "")

        page.fill("#search", "bob")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 1")
        page.fill("#search", "")
        page.wait_for_function("document.querySelectorAll('#rows tr').length === 3")
        page.click("text=Birthday ideas")
        page.wait_for_selector(".turn")
        assert page.locator(".turn").count() == 3
        assert "Answer 2 about Birthday ideas" in (page.text_content("#transcript") or "")
        assert page.url.endswith("?session=session-2")
        assert page.locator("svg.runs rect").count() == 0  # no stored metrics until Refresh
        page.click("#refresh")
        page.wait_for_selector("svg.runs rect")
        assert page.locator("svg.runs rect").count() == 3
        direct = browser.new_page()
        direct.goto(f"{dashboard}/?session=session-1")
        direct.wait_for_selector(".turn")
        assert "Tax questions" in (direct.text_content("#title") or "")
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
