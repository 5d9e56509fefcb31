"""The same hostile calls against agno 3.1.10's built-in MongoDb and against agno-mongo.

This pins down the claims in README: agno's adapter lets another user's id take over or read a
session; agno-mongo refuses each call. If agno fixes one of these, its half of the test says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.mongo import MongoDb as AgnoMongoDb
from agno.run.agent import RunOutput
from agno.session import AgentSession
from pymongo import MongoClient

from agno_mongo import InvalidInputError, MongoDb, SessionOwnershipError


@pytest.fixture
def both(mongodb_url: str, db_name: str) -> Iterator[tuple[Any, MongoDb, Any]]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    agno = AgnoMongoDb(db_client=client, db_name=db_name + "_agno")
    ours = MongoDb(db_client=client, db_name=db_name)
    for db in (agno, ours):
        db.upsert_session(
            AgentSession(
                session_id="alice-chat", agent_id="a", user_id="alice", session_data={"session_state": {"secret": 42}}
            )
        )
    yield agno, ours, client
    client.drop_database(db_name + "_agno")
    client.close()


def test_bulk_upsert_cannot_hand_a_session_to_another_user(both: tuple[Any, MongoDb, Any]) -> None:
    agno, ours, _ = both
    takeover = [AgentSession(session_id="alice-chat", agent_id="a", user_id="mallory")]
    agno.upsert_sessions(takeover)
    assert agno.get_session("alice-chat", deserialize=False)["user_id"] == "mallory"  # agno: taken over

    ours.upsert_sessions(takeover)
    assert ours.get_session("alice-chat", deserialize=False)["user_id"] == "alice"


def test_upsert_run_cannot_add_a_run_to_another_users_session(both: tuple[Any, MongoDb, Any]) -> None:
    agno, ours, _ = both
    run = RunOutput(run_id="injected", agent_id="a", session_id="alice-chat", content="hi")
    agno.upsert_run(run, session_id="alice-chat", user_id="mallory")
    assert [r.run_id for r in agno.get_session("alice-chat").runs] == ["injected"]  # agno: added

    with pytest.raises(SessionOwnershipError):
        ours.upsert_run(run, session_id="alice-chat", user_id="mallory")
    assert ours.get_session("alice-chat").runs in (None, [])


def test_operator_shaped_ids_cannot_reach_other_users_sessions(both: tuple[Any, MongoDb, Any]) -> None:
    agno, ours, _ = both
    wildcard: Any = {"$ne": None}
    leaked = agno.get_session(wildcard, user_id="alice")
    assert leaked is not None and leaked.session_data["session_state"]["secret"] == 42  # agno: read
    assert agno.rename_session(wildcard, SessionType.AGENT, "pwned") is not None  # agno: renamed
    assert agno.delete_session(wildcard) is True  # agno: deleted

    for call in (
        lambda: ours.get_session(wildcard, user_id="alice"),
        lambda: ours.rename_session(wildcard, SessionType.AGENT, "pwned"),
        lambda: ours.delete_session(wildcard),
    ):
        with pytest.raises(InvalidInputError):
            call()
    assert ours.get_session("alice-chat").session_data["session_state"]["secret"] == 42
