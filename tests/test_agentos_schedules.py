"""Schedules end to end: agno's AgentOS with ``scheduler=True`` on MongoDb and AsyncMongoDb.

AgentOS's scheduler reads schedules at startup and polls them while it runs; its ``/schedules``
routes create, list, read, update, disable and delete them. Each HTTP answer is checked against the
documents MongoDB holds, and a duplicate name answers agno's 409 with nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agno.agent import Agent
from agno.os import AgentOS
from fastapi.testclient import TestClient
from pymongo import MongoClient

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.testing import OfflineStandInModel

NIGHTLY = {"name": "nightly", "cron_expr": "0 3 * * *", "endpoint": "/agents/helper/runs", "payload": {"message": "hi"}}


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield client[db_name]
    client.close()


@pytest.fixture
def client(os_db: MongoDb | AsyncMongoDb) -> Iterator[TestClient]:
    agent = Agent(id="helper", name="Helper", model=OfflineStandInModel(), db=os_db)
    app = AgentOS(
        id="schedules-os", agents=[agent], db=os_db, telemetry=False, scheduler=True, scheduler_poll_interval=1
    ).get_app()
    with TestClient(app) as test_client:  # runs the lifespan: the scheduler's poller starts
        yield test_client


def test_agentos_with_the_scheduler_starts_and_serves_schedules_from_mongodb(client: TestClient, raw: Any) -> None:
    created = client.post("/schedules", json=NIGHTLY)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert (schedule["name"], schedule["cron_expr"], schedule["enabled"]) == ("nightly", "0 3 * * *", True)
    assert schedule["next_run_at"] is not None  # computed from the cron expression
    stored = raw.agno_schedules.find_one({"_id": schedule["id"]})
    assert (stored["name"], stored["endpoint"]) == ("nightly", "/agents/helper/runs")
    assert stored["payload"] == {"message": "hi"}

    duplicate = client.post("/schedules", json={**NIGHTLY, "cron_expr": "0 4 * * *"})
    assert duplicate.status_code == 409, duplicate.text
    assert raw.agno_schedules.count_documents({}) == 1
    assert raw.agno_schedules.find_one({"_id": schedule["id"]})["cron_expr"] == "0 3 * * *"

    listed = client.get("/schedules")
    assert listed.status_code == 200, listed.text
    assert [row["id"] for row in listed.json()["data"]] == [schedule["id"]]
    assert client.get(f"/schedules/{schedule['id']}").json()["name"] == "nightly"

    updated = client.patch(f"/schedules/{schedule['id']}", json={"description": "every night"})
    assert updated.status_code == 200, updated.text
    assert raw.agno_schedules.find_one({"_id": schedule["id"]})["description"] == "every night"

    disabled = client.post(f"/schedules/{schedule['id']}/disable")
    assert disabled.status_code == 200, disabled.text
    assert raw.agno_schedules.find_one({"_id": schedule["id"]})["enabled"] is False

    assert client.delete(f"/schedules/{schedule['id']}").status_code == 204
    assert raw.agno_schedules.count_documents({}) == 0
    assert client.get(f"/schedules/{schedule['id']}").status_code == 404
