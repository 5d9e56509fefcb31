"""Managed roles end to end: ``AgentOS(authorization=Authorization(..., audit=True))`` on MongoDb and
AsyncMongoDb, driven through FastAPI's ``TestClient`` with HS256 JWTs (PyJWT).

Before agno-mongo implemented the authz contract, AgentOS refused to start here ("MongoDb does not
support authorization storage"). Now: roles are defined through the ``Authorization`` object (sync:
``define_role`` / ``seed`` / ``assign`` at setup; async: its ``aset_role_scopes`` / ``aassign`` runtime
API, since agno refuses setup writes on an async db), enforced on AgentOS's routes from what MongoDB
holds, changed through the ``/authz`` admin API (enforced on the next request: nothing is cached), and
both audit trails are written to and read back from MongoDB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from agno.agent import Agent
from agno.models.openai import OpenAIChat
from agno.os import AgentOS
from agno.os.authz import Authorization
from fastapi.testclient import TestClient
from pymongo import MongoClient

from agno_mongo import AsyncMongoDb, MongoDb

jwt = pytest.importorskip("jwt")

SECRET = "authz-test-secret-" + "x" * 32
RUNNER = ["agents:*:read", "agents:*:run"]


def bearer(subject: str) -> dict[str, str]:
    """A token asserting only who the caller is: what they may do comes from the stored roles."""
    claims = {"sub": subject, "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield client[db_name]
    client.close()


def app_for(db: MongoDb | AsyncMongoDb, authz: Authorization) -> Any:
    agent = Agent(
        id="helper", name="Helper", model=OpenAIChat(id="gpt-4o-mini", base_url="http://127.0.0.1:9", api_key="x")
    )
    return AgentOS(id="authz-os", agents=[agent], db=db, authorization=authz, telemetry=False).get_app()


def exercise(client: TestClient, raw: Any) -> None:
    """The same checks on either class: roles enforced, changed through /authz, audited."""
    carol, dave, root = bearer("carol"), bearer("dave"), bearer("root")
    assert client.get("/agents").status_code == 401
    assert client.get("/agents", headers=carol).status_code == 200  # holds "runner"
    assert client.get("/agents", headers=dave).status_code == 403  # holds nothing
    assert client.get("/authz/roles", headers=carol).status_code == 403  # not an admin
    names = raw.agno_authz_policy
    assert names.find_one({"_id": "carol"})["roles"] == ["runner"]
    assert {p["resource"] for p in names.find_one({"_id": "runner"})["policies"]} == {"agents/*"}

    listed = client.get("/authz/roles", headers=root)
    assert listed.status_code == 200, listed.text
    assert {role["slug"] for role in listed.json()["data"]} >= {"admin", "runner"}

    # Give dave the role through the admin API: enforced on his next request.
    granted = client.post("/authz/subjects/dave/roles", headers=root, json={"role": "runner"})
    assert granted.status_code == 200 and granted.json()["role"] == "runner", granted.text
    assert names.find_one({"_id": "dave"})["roles"] == ["runner"]
    assert client.get("/agents", headers=dave).status_code == 200

    # A new role defined through the API, then the old one removed: both enforced at once.
    created = client.post("/authz/roles", headers=root, json={"slug": "reader", "name": "Reader"})
    assert created.status_code == 201, created.text
    scoped = client.put("/authz/roles/reader/scopes", headers=root, json={"scopes": ["agents:*:read"]})
    assert scoped.status_code == 200, scoped.text
    assert client.delete("/authz/roles/runner", headers=root).status_code == 200
    assert client.get("/agents", headers=carol).status_code == 403
    assert names.count_documents({"roles": "runner"}) == 0 and names.find_one({"_id": "runner"}) is None
    assert raw.agno_authz_roles.find_one({"_id": "runner"}) is None
    assert client.post("/authz/subjects/carol/roles", headers=root, json={"role": "reader"}).status_code == 200
    assert client.get("/agents", headers=carol).status_code == 200

    # Both trails, in MongoDB and read back through /authz.
    assert raw.agno_authz_audit.count_documents({"action": "role.removed", "target": "runner"}) == 1
    audit = client.get("/authz/audit", headers=root)
    assert audit.status_code == 200, audit.text
    assert any(event["action"] == "role.removed" for event in audit.json()["data"])
    # agno's JWT gate records one decision per authenticated request (the route's own scope check
    # then answers the 403s above without another row): every caller's requests are in the trail.
    assert {"carol", "dave", "root"} <= set(raw.agno_authz_decisions.distinct("actor"))
    decisions = client.get("/authz/decisions", headers=root)
    assert decisions.status_code == 200, decisions.text
    assert decisions.json()["meta"]["total_count"] == raw.agno_authz_decisions.count_documents({})


def test_managed_roles_on_mongodb(mongodb_url: str, db_name: str, raw: Any) -> None:
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    authz = Authorization(db=db, audit=True, verification_keys=[SECRET], algorithm="HS256")
    authz.define_role("admin", ["agent_os:admin"]).define_role("runner", RUNNER)
    authz.seed(admin="root").assign("carol", "runner")
    with TestClient(app_for(db, authz)) as client:
        exercise(client, raw)


async def test_managed_roles_on_async_mongodb(mongodb_url: str, db_name: str, raw: Any) -> None:
    db = AsyncMongoDb(db_url=mongodb_url, db_name=db_name)
    authz = Authorization(db=db, audit=True, verification_keys=[SECRET], algorithm="HS256")
    await authz.aset_role_scopes("admin", ["agent_os:admin"])
    await authz.aset_role_scopes("runner", RUNNER)
    await authz.aassign("root", "admin")
    await authz.aassign("carol", "runner")
    with TestClient(app_for(db, authz)) as client:
        exercise(client, raw)


def test_the_os_db_is_adopted_without_passing_it_twice(mongodb_url: str, db_name: str, raw: Any) -> None:
    """``Authorization(audit=True)`` with no ``db=`` borrows ``AgentOS(db=MongoDb(...))``."""
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    authz = Authorization(audit=True, verification_keys=[SECRET], algorithm="HS256")
    authz.define_role("admin", ["agent_os:admin"]).define_role("runner", RUNNER).seed(admin="root")
    authz.assign("carol", "runner")
    with TestClient(app_for(db, authz)) as client:
        assert client.get("/agents", headers=bearer("carol")).status_code == 200
        assert client.get("/agents", headers=bearer("dave")).status_code == 403
    assert raw.agno_authz_policy.find_one({"_id": "root"})["roles"] == ["admin"]
