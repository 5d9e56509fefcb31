"""Lost replies: the server applies a write, its reply is dropped, and the call must still answer
right and leave the store right (no second copy, no False for a change that was made)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession
from pymongo import MongoClient, uri_parser

from agno_mongo import MongoDb
from agno_mongo.testing.faults import ReplyDroppingProxy


@pytest.fixture
def through(mongodb_url: str, db_name: str) -> Iterator[tuple[MongoDb, ReplyDroppingProxy, Any]]:
    host, port = uri_parser.parse_uri(mongodb_url)["nodelist"][0]
    with ReplyDroppingProxy(host, port) as proxy:
        client: MongoClient[Any] = MongoClient(proxy.url(), retryWrites=False, serverSelectionTimeoutMS=5000)
        direct: MongoClient[Any] = MongoClient(mongodb_url)
        db = MongoDb(db_client=client, db_name=db_name, max_runs_bytes=16 * 1024)
        db.get_session("warm-up")  # indexes built before anything is armed
        try:
            yield db, proxy, direct[db_name]
        finally:
            client.close()
            direct.close()


def run(run_id: str, content: str = "x", status: str = "COMPLETED") -> RunOutput:
    return RunOutput(run_id=run_id, agent_id="a", session_id="s", content=content, status=RunStatus(status))


def seed(db: MongoDb, runs: int = 3, size: int = 10) -> None:
    db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="alice"))
    for i in range(runs):
        db.upsert_run(run(f"r{i}", f"{i}:" + "x" * size), "s", "alice")


def test_reassign_answers_true_after_a_lost_reply(through: Any) -> None:
    db, proxy, raw = through
    seed(db)
    proxy.drop_next("update")
    assert db.reassign_session_owner("s", previous_user_id="alice", user_id="bob") is True
    assert proxy.dropped and raw.agno_sessions.find_one({"_id": "s"})["user_id"] == "bob"


def test_delete_run_answers_true_after_a_lost_reply(through: Any) -> None:
    db, proxy, raw = through
    seed(db)
    proxy.drop_next("update")
    assert db.delete_run("r1") is True
    assert proxy.dropped and [r.run_id for r in db.get_session("s").runs] == ["r0", "r2"]


def test_cancel_answers_true_after_a_lost_reply(through: Any) -> None:
    db, proxy, raw = through
    seed(db)
    db.upsert_run(run("p", "", "PENDING"), "s", "alice")
    proxy.drop_next("update")
    assert db.cancel_pending_run("p", session_id="s", reason="stop", user_id="alice") is True
    assert proxy.dropped and db.get_run("p").status == RunStatus.cancelled


def test_delete_session_answers_true_after_a_lost_reply(through: Any) -> None:
    db, proxy, raw = through
    seed(db, runs=8, size=3000)  # overflowed
    proxy.drop_next("findAndModify")
    assert db.delete_session("s") is True
    assert proxy.dropped and db.get_session("s") is None
    db.upsert_run(run("new"), "s", "bob")
    assert [r.run_id for r in db.get_session("s").runs] == ["new"]


def test_a_spill_commit_whose_reply_is_lost_is_not_repeated(through: Any) -> None:
    db, proxy, raw = through
    seed(db, runs=4, size=3000)
    proxy.drop_next(
        lambda name, command: (
            name == "update"
            and "$push" in str(command.get("updates", ""))
            and "spilled" in str(command.get("updates", ""))
        )
    )
    for i in range(4, 8):
        db.upsert_run(run(f"r{i}", f"{i}:" + "x" * 3000), "s", "alice")
    assert proxy.dropped, "no spill commit was dropped"
    ids = [r.run_id for r in db.get_session("s").runs]
    assert ids == [f"r{i}" for i in range(8)]
    assert [r.run_id for r in db.get_runs(session_id="s")] == ids


def test_appends_and_updates_whose_replies_are_lost_store_one_copy(through: Any) -> None:
    db, proxy, raw = through
    seed(db)
    proxy.drop_next("update", times=2)
    db.upsert_run(run("r9", "first"), "s", "alice")
    db.upsert_run(run("r9", "second"), "s", "alice")
    assert len(proxy.dropped) == 2
    runs = [(r.run_id, r.content) for r in db.get_session("s").runs]
    assert [r for r, _ in runs] == ["r0", "r1", "r2", "r9"] and runs[-1] == ("r9", "second")


def test_an_upserted_session_whose_reply_is_lost_is_not_refused(through: Any) -> None:
    db, proxy, raw = through
    proxy.drop_next("findAndModify")
    stored = db.upsert_session(AgentSession(session_id="t", agent_id="a", user_id="alice"))
    assert proxy.dropped and stored is not None and stored.user_id == "alice"
