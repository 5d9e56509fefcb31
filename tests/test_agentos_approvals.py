"""Approvals end to end: agno's AgentOS (FastAPI, driven by ``TestClient``) on MongoDb and AsyncMongoDb.

An agent's tool is decorated with agno's ``@approval``; the offline model (``LocalOpenAIServer`` with a
scripted ``responder``) calls it, so the run pauses and agno writes an approval record. AgentOS's
``/approvals`` routes then list, count and resolve it (a second resolution is refused with agno's 409),
and the run is continued. Every HTTP answer is checked against the documents MongoDB holds.

The security gate: with authorization on, a caller without ``approvals:write`` may not continue a run
that waits for an admin's approval (agno's ``require_approval_resolved`` dependency on the
``/continue`` route, which calls our ``get_approvals``); an admin passes it, and so does anyone once
the approval is resolved. A store that cannot answer makes the gate refuse, never pass. AgentOS's JWT
middleware needs PyJWT, which is not among agno-mongo's dependencies: the JWT test runs where it is
installed, and the same route gate is also driven with a stand-in for the middleware that sets the
request state the JWT middleware sets after verifying a token (authorization on, scopes, user id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from agno.agent import Agent
from agno.approval import approval
from agno.models.openai import OpenAIChat
from agno.os import AgentOS
from agno.os.auth import run_continuation_blocked_reason
from agno.tools import tool
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from pymongo import MongoClient
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.testing.openai_server import LocalOpenAIServer, tool_call

GATE_REFUSAL = "This run requires admin approval before it can be continued"
GATE_UNVERIFIED = "This run's approval state could not be verified; try again"
USER_SCOPES = ["agents:run", "agents:read", "approvals:read"]


def scripted(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Call ``pay`` when it is offered; after its result, say it is done."""
    messages = body["messages"]
    if messages and messages[-1].get("role") == "tool":
        return {"content": "Payment done."}
    if any(offered["function"]["name"] == "pay" for offered in body.get("tools") or []):
        return {"tool_calls": [tool_call("pay", {"amount": 5, "to": "bob"})]}
    return {"content": "Nothing to pay."}


@pytest.fixture
def llm() -> Iterator[LocalOpenAIServer]:
    with LocalOpenAIServer(responder=scripted) as server:
        yield server


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield client[db_name].agno_approvals
    client.close()


def build_app(
    db: MongoDb | AsyncMongoDb, llm: LocalOpenAIServer, paid: list[tuple[int, str]], **agentos: Any
) -> FastAPI:
    """AgentOS with one agent whose ``pay`` tool needs an admin's approval; ``paid`` records each payment."""

    @approval
    @tool
    def pay(amount: int, to: str) -> str:
        """Pay ``amount`` to ``to``."""
        paid.append((amount, to))
        return f"paid {amount} to {to}"

    agent = Agent(
        id="payer",
        name="Payer",
        model=OpenAIChat(id="gpt-4o-mini", base_url=llm.base_url, api_key="test"),
        db=db,
        tools=[pay],
    )
    return AgentOS(id="approvals-os", agents=[agent], db=db, telemetry=False, **agentos).get_app()


def start_run(client: TestClient, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    data = {"message": "pay bob 5", "session_id": "s1", "stream": "false"}
    if headers is None:
        data["user_id"] = "alice"
    response = client.post("/agents/payer/runs", data=data, headers=dict(headers or {}))
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert body["status"] == "PAUSED", body
    return body


def continue_run(client: TestClient, run_id: str, headers: Mapping[str, str] | None = None) -> Any:
    data = {"tools": "", "session_id": "s1", "stream": "false"}
    if headers is None:
        data["user_id"] = "alice"
    return client.post(f"/agents/payer/runs/{run_id}/continue", data=data, headers=dict(headers or {}))


def test_a_paused_run_is_listed_resolved_once_and_continued(
    os_db: MongoDb | AsyncMongoDb, llm: LocalOpenAIServer, raw: Any
) -> None:
    paid: list[tuple[int, str]] = []
    with TestClient(build_app(os_db, llm, paid)) as client:
        run_id = start_run(client)["run_id"]
        stored = raw.find_one({"run_id": run_id})
        assert stored is not None and (stored["status"], stored["approval_type"]) == ("pending", "required")
        assert stored["tool_args"] == {"amount": 5, "to": "bob"}  # a subdocument, not JSON text
        assert (stored["user_id"], stored["agent_id"], stored["run_status"]) == ("alice", "payer", "PAUSED")
        approval_id = stored["_id"]

        listed = client.get("/approvals").json()
        assert listed["meta"]["total_count"] == 1 and [a["id"] for a in listed["data"]] == [approval_id]
        assert listed["data"][0]["tool_name"] == "pay" and listed["data"][0]["created_at"] == stored["created_at"]
        for params, expected in (
            ({"status": "pending", "user_id": "alice"}, 1),
            ({"run_id": run_id, "approval_type": "required"}, 1),
            ({"status": "approved"}, 0),
            ({"user_id": "bob"}, 0),
        ):
            assert client.get("/approvals", params=params).json()["meta"]["total_count"] == expected, params
        assert client.get("/approvals/count").json() == {"count": 1}
        assert client.get(f"/approvals/{approval_id}/status").json()["status"] == "pending"

        refused = continue_run(client, run_id)  # nobody has approved the payment yet
        assert refused.status_code == 400 and paid == []

        resolved = client.post(f"/approvals/{approval_id}/resolve", json={"status": "approved", "resolved_by": "ops"})
        assert resolved.status_code == 200, resolved.text
        assert (resolved.json()["status"], resolved.json()["resolved_by"]) == ("approved", "ops")
        again = client.post(f"/approvals/{approval_id}/resolve", json={"status": "rejected", "resolved_by": "eve"})
        assert again.status_code == 409 and "already 'approved'" in again.json()["detail"]
        stored = raw.find_one({"_id": approval_id})
        assert (stored["status"], stored["resolved_by"]) == ("approved", "ops")  # the second one changed nothing
        assert client.post("/approvals/missing/resolve", json={"status": "approved"}).status_code == 404

        done = continue_run(client, run_id)
        assert done.status_code == 200, done.text
        assert done.json()["content"] == "Payment done." and paid == [(5, "bob")]
        assert raw.find_one({"_id": approval_id})["run_status"] == "COMPLETED"  # update_approval_run_status
        assert client.get("/approvals/count").json() == {"count": 0}

        assert client.delete(f"/approvals/{approval_id}").status_code == 204
        assert raw.find_one({"_id": approval_id}) is None
        assert client.delete(f"/approvals/{approval_id}").status_code == 500  # agno's answer to "nothing deleted"


def test_concurrent_resolutions_over_http_have_one_winner(
    os_db: MongoDb | AsyncMongoDb, llm: LocalOpenAIServer, raw: Any
) -> None:
    n = 8
    with TestClient(build_app(os_db, llm, [])) as client:
        run_id = start_run(client)["run_id"]
        approval_id = raw.find_one({"run_id": run_id})["_id"]
        barrier = threading.Barrier(n)

        def resolve(who: int) -> Any:
            barrier.wait()
            status = "approved" if who % 2 else "rejected"
            return client.post(f"/approvals/{approval_id}/resolve", json={"status": status, "resolved_by": f"u{who}"})

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(resolve, range(n)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] + [409] * (n - 1), codes
    (winner,) = [answer.json() for answer in answers if answer.status_code == 200]
    stored = raw.find_one({"_id": approval_id})
    assert (stored["status"], stored["resolved_by"]) == (winner["status"], winner["resolved_by"])


class StandInAuth(BaseHTTPMiddleware):
    """Sets what AgentOS's JWT middleware sets on ``request.state`` after verifying a token
    (``authorization_enabled``, ``scopes``, ``user_id``), from test headers, so the routes' real
    authorization dependencies run without PyJWT."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        scopes = request.headers.get("x-test-scopes")
        if scopes is not None:
            request.state.authorization_enabled = True
            request.state.authenticated = True
            request.state.scopes = scopes.split()
            request.state.user_id = request.headers.get("x-test-user")
        return await call_next(request)


def stand_in(user_id: str, scopes: list[str]) -> dict[str, str]:
    return {"x-test-scopes": " ".join(scopes), "x-test-user": user_id}


def check_gate(
    client: TestClient,
    raw: Any,
    paid: list[tuple[int, str]],
    user: Mapping[str, str],
    admin: Mapping[str, str],
    resolve: Callable[[str], Any],
) -> None:
    """The gate, driven through the real ``/continue`` route of an app with authorization on."""
    run_id = start_run(client, user)["run_id"]
    approval_id = raw.find_one({"run_id": run_id})["_id"]

    blocked = continue_run(client, run_id, user)
    assert (blocked.status_code, blocked.json()["detail"]) == (403, GATE_REFUSAL) and paid == []
    # An admin is not stopped by the gate (agno then looks the run up under the admin's own user id,
    # and this session is alice's: 404, not the gate's 403).
    forced = continue_run(client, run_id, admin)
    assert forced.status_code != 403 and forced.json()["detail"] != GATE_REFUSAL

    # A store that cannot read the record must refuse the run, not pass it (an empty page would pass):
    # the pending record, edited by hand into a shape get_approvals refuses to hand to agno.
    created_at = raw.find_one({"_id": approval_id})["created_at"]
    raw.update_one({"_id": approval_id}, {"$set": {"created_at": "not a time"}})
    unverified = continue_run(client, run_id, user)
    assert (unverified.status_code, unverified.json()["detail"]) == (403, GATE_UNVERIFIED) and paid == []
    raw.update_one({"_id": approval_id}, {"$set": {"created_at": created_at}})

    resolved = resolve(approval_id)
    assert resolved.status_code == 200, resolved.text
    done = continue_run(client, run_id, user)
    assert done.status_code == 200, done.text
    assert done.json()["content"] == "Payment done." and paid == [(5, "bob")]


def test_the_continue_gate_holds_a_non_admin_until_an_admin_approves(
    os_db: MongoDb | AsyncMongoDb, llm: LocalOpenAIServer, raw: Any
) -> None:
    paid: list[tuple[int, str]] = []
    app = build_app(os_db, llm, paid)
    app.add_middleware(StandInAuth)
    with TestClient(app) as client:
        no_run_scope = stand_in("alice", ["agents:read"])
        check_gate(
            client,
            raw,
            paid,
            stand_in("alice", USER_SCOPES),
            stand_in("root", ["agent_os:admin"]),
            lambda approval_id: client.post(f"/approvals/{approval_id}/resolve", json={"status": "approved"}),
        )
        run_id = start_run(client, stand_in("alice", USER_SCOPES))["run_id"]
        assert continue_run(client, run_id, no_run_scope).status_code == 403  # the route's own scope check


def test_the_continue_gate_with_agentos_jwt_authorization(
    os_db: MongoDb | AsyncMongoDb, llm: LocalOpenAIServer, raw: Any
) -> None:
    """``AgentOS(authorization=True)`` with HS256 JWTs: nothing beyond the approvals methods is needed
    from the store (the default scope provider decides). Needs PyJWT, which agno's JWT middleware imports."""
    jwt = pytest.importorskip("jwt")
    from agno.os.config import AuthorizationConfig

    secret = "approvals-test-secret-" + "x" * 24

    def bearer(user_id: str, scopes: list[str]) -> dict[str, str]:
        claims = {"sub": user_id, "scopes": scopes, "exp": int(time.time()) + 600}
        return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}

    paid: list[tuple[int, str]] = []
    config = AuthorizationConfig(verification_keys=[secret], algorithm="HS256")
    with TestClient(build_app(os_db, llm, paid, authorization=True, authorization_config=config)) as client:
        user, admin = bearer("alice", USER_SCOPES), bearer("root", ["agent_os:admin"])
        assert client.get("/approvals").status_code == 401  # no token, no listing
        listed = client.get("/approvals", headers=user)
        assert listed.status_code == 200 and listed.json()["data"] == []

        def resolve(approval_id: str) -> Any:
            by_user = client.post(f"/approvals/{approval_id}/resolve", headers=user, json={"status": "approved"})
            assert by_user.status_code == 403  # approvals:write is an admin's
            assert raw.find_one({"_id": approval_id})["status"] == "pending"
            return client.post(f"/approvals/{approval_id}/resolve", headers=admin, json={"status": "approved"})

        check_gate(client, raw, paid, user, admin, resolve)
        (stored,) = raw.find({"status": "approved"})
        assert stored["resolved_by"] == "root"  # AgentOS records the token's subject, not the body's


async def test_agnos_gate_function_reads_our_store(os_db: MongoDb | AsyncMongoDb) -> None:
    """``run_continuation_blocked_reason`` (shared by the REST, WebSocket, AG-UI and MCP continue paths)
    on our store: a pending required approval blocks a non-admin, not an admin; a resolved one, an audit
    record or another run's approval blocks nobody."""

    async def maybe(result: Any) -> Any:
        return await result if isinstance(os_db, AsyncMongoDb) else result

    def record(approval_id: str, run_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": approval_id,
            "run_id": run_id,
            "session_id": "s1",
            "status": "pending",
            "source_type": "agent",
            "approval_type": "required",
            "pause_type": "confirmation",
            "created_at": 10,
            **extra,
        }

    async def reason(run_id: str, scopes: list[str]) -> str | None:
        return await run_continuation_blocked_reason(os_db, run_id, authorization_enabled=True, user_scopes=scopes)

    await maybe(os_db.create_approval(record("A", "r1")))
    await maybe(os_db.create_approval(record("B", "r2", approval_type="audit")))
    await maybe(os_db.create_approval(record("C", "r3", status="approved")))
    assert await reason("r1", USER_SCOPES) == GATE_REFUSAL
    assert await reason("r1", ["approvals:write"]) is None
    assert await reason("r2", USER_SCOPES) is None and await reason("r3", USER_SCOPES) is None
    assert await reason("r4", USER_SCOPES) is None
    assert await maybe(os_db.update_approval("A", expected_status="pending", status="approved")) is not None
    assert await reason("r1", USER_SCOPES) is None
