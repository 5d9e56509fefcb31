"""Sessions and runs through MongoDb / AsyncMongoDb on PyMongo, PyMongo async and Motor.

Each test runs once per client flavour (see ``store`` in conftest) against a real wire server.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.run.team import TeamRunOutput
from agno.run.workflow import WorkflowRunOutput
from agno.session import AgentSession, TeamSession, WorkflowSession

from agno_mongo import InvalidInputError, SessionOwnershipError
from tests.conftest import Store, call


def agent_session(session_id: str, user_id: str | None = "alice", **extra: Any) -> AgentSession:
    return AgentSession(
        session_id=session_id,
        agent_id=extra.pop("agent_id", "agent-1"),
        user_id=user_id,
        session_data=extra.pop("session_data", {"session_state": {"cart": ["apple"], "n": 1}}),
        metadata=extra.pop("metadata", {"source": "test"}),
        **extra,
    )


def run(run_id: str, session_id: str, content: str = "hello", **extra: Any) -> RunOutput:
    return RunOutput(
        run_id=run_id,
        agent_id=extra.pop("agent_id", "agent-1"),
        session_id=session_id,
        content=content,
        status=extra.pop("status", RunStatus.completed),
        **extra,
    )


async def test_session_round_trip_stores_native_subdocuments(store: Store) -> None:
    saved = await call(store.db.upsert_session(agent_session("s1")))
    assert isinstance(saved, AgentSession)
    assert saved.session_data == {"session_state": {"cart": ["apple"], "n": 1}}

    raw = store.raw.agno_sessions.find_one({"_id": "s1"})
    assert raw["session_id"] == "s1" and raw["session_type"] == "agent" and raw["runs"] == []
    assert isinstance(raw["session_data"], dict) and isinstance(raw["created_at"], int)
    assert raw["schema_version"] == 1

    loaded = await call(store.db.get_session("s1", SessionType.AGENT))
    assert isinstance(loaded, AgentSession)
    assert (loaded.user_id, loaded.agent_id, loaded.metadata) == ("alice", "agent-1", {"source": "test"})
    as_dict = await call(store.db.get_session("s1", deserialize=False))
    assert as_dict["session_data"]["session_state"]["cart"] == ["apple"]
    assert await call(store.db.get_session("missing")) is None


async def test_team_and_workflow_sessions(store: Store) -> None:
    await call(store.db.upsert_session(TeamSession(session_id="t1", team_id="team-1", user_id="alice")))
    await call(store.db.upsert_session(WorkflowSession(session_id="w1", workflow_id="wf-1", workflow_name="etl")))
    await call(store.db.upsert_run(TeamRunOutput(run_id="tr1", team_id="team-1", session_id="t1"), "t1", "alice"))
    await call(store.db.upsert_run(WorkflowRunOutput(run_id="wr1", workflow_id="wf-1", session_id="w1"), "w1"))
    team = await call(store.db.get_session("t1", SessionType.TEAM))
    workflow = await call(store.db.get_session("w1", SessionType.WORKFLOW))
    assert isinstance(team, TeamSession) and [r.run_id for r in team.runs] == ["tr1"]
    assert isinstance(workflow, WorkflowSession) and workflow.workflow_name == "etl"
    assert [r.run_id for r in workflow.runs] == ["wr1"]


async def test_write_costs_one_command_without_a_read(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1")))  # creates indexes on first use
    store.commands.clear()
    await call(store.db.upsert_session(agent_session("s1", metadata={"v": 2})))
    assert store.commands.names == ["findAndModify"]

    store.commands.clear()
    await call(store.db.upsert_run(run("r1", "s1"), "s1", "alice"))
    assert store.commands.names == ["update"]

    store.commands.clear()
    await call(store.db.upsert_run(run("r1", "s1", content="edited"), "s1", "alice"))
    assert store.commands.names == ["update"]

    store.commands.clear()
    session = await call(store.db.get_session("s1", user_id="alice"))
    assert store.commands.names == ["find"]
    assert [(r.run_id, r.content) for r in session.runs] == [("r1", "edited")]

    store.commands.clear()
    await call(store.db.get_session("s1", user_id="alice", runs_limit=3))
    assert store.commands.names == ["aggregate"]


async def test_upsert_session_answers_with_the_callers_runs_as_agnos_sqlite_does(store: Store, oracle: Any) -> None:
    """``upsert_session`` writes only the session's fields; like agno's SQL stores, the session it
    returns carries the caller's own run objects (not a to_dict/from_dict copy of the whole
    history, which cost a long session's every run on every turn), and their dicts when not
    deserialised. Other fields are the stored ones."""
    for db in (store.db, oracle):
        session = agent_session("s-runs", runs=[run("r1", "s-runs"), run("r2", "s-runs", content="two")])
        saved = await call(db.upsert_session(session))
        assert isinstance(saved, AgentSession) and saved is not session
        assert saved.runs is session.runs
        assert saved.session_data == {"session_state": {"cart": ["apple"], "n": 1}}
        as_dict = await call(db.upsert_session(session, deserialize=False))
        assert as_dict["runs"] == [r.to_dict() for r in session.runs]
        [many] = await call(db.upsert_sessions([session]))
        assert [(r.run_id, r.content) for r in many.runs] == [("r1", "hello"), ("r2", "two")]
    # upsert_session never writes runs: agno saves each with upsert_run
    assert (await call(store.db.get_session("s-runs", user_id="alice"))).runs == []


async def test_indexes_are_created_once_per_process(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1")))
    await call(store.db.upsert_run(run("r1", "s1"), "s1", "alice"))
    await call(store.db.get_sessions())
    assert store.commands.names.count("createIndexes") == 1
    names = {index["name"] for index in store.raw.agno_sessions.list_indexes()}
    assert {"runs_run_id", "user_created_id", "created_id"} <= names


async def test_runs_limit_returns_latest_context_runs_in_order(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1")))
    for i in range(8):
        status = RunStatus.cancelled if i == 6 else RunStatus.completed
        await call(store.db.upsert_run(run(f"r{i}", "s1", content=f"answer {i}", status=status), "s1", "alice"))
    await call(store.db.upsert_run(run("member", "s1", parent_run_id="r7"), "s1", "alice"))

    recent = await call(store.db.get_session("s1", runs_limit=3))
    assert [r.run_id for r in recent.runs] == ["r4", "r5", "r7"]
    everything = await call(store.db.get_session("s1"))
    assert [r.run_id for r in everything.runs] == [f"r{i}" for i in range(8)] + ["member"]
    none = await call(store.db.get_session("s1", runs_limit=0))
    assert none.runs in (None, [])


async def test_get_sessions_filters_sorts_pages_and_counts(store: Store) -> None:
    for i in range(5):
        session = agent_session(
            f"a{i}",
            user_id="alice" if i % 2 == 0 else "bob",
            agent_id=f"agent-{i % 2}",
            created_at=1_000 + i,
            session_data={"session_name": f"Chat number {i}"},
        )
        await call(store.db.upsert_session(session))
    await call(store.db.upsert_session(TeamSession(session_id="t0", team_id="team-1", created_at=2_000)))

    alice = await call(store.db.get_sessions(user_id="alice"))
    assert sorted(s.session_id for s in alice) == ["a0", "a2", "a4"]
    agents = await call(store.db.get_sessions(session_type=SessionType.AGENT, sort_by="created_at", sort_order="asc"))
    assert [s.session_id for s in agents] == ["a0", "a1", "a2", "a3", "a4"]
    by_component = await call(store.db.get_sessions(session_type=SessionType.AGENT, component_id="agent-1"))
    assert sorted(s.session_id for s in by_component) == ["a1", "a3"]
    any_component = await call(store.db.get_sessions(component_id="team-1"))
    assert [s.session_id for s in any_component] == ["t0"]
    named = await call(store.db.get_sessions(session_name="NUMBER 3"))
    assert [s.session_id for s in named] == ["a3"]
    window = await call(store.db.get_sessions(start_timestamp=1_001, end_timestamp=1_003, sort_order="asc"))
    assert [s.session_id for s in window] == ["a1", "a2", "a3"]

    page, total = await call(
        store.db.get_sessions(
            session_type=SessionType.AGENT, limit=2, page=2, sort_by="created_at", sort_order="desc", deserialize=False
        )
    )
    assert [s["session_id"] for s in page] == ["a2", "a1"] and total == 5
    last, total = await call(
        store.db.get_sessions(session_type=SessionType.AGENT, limit=2, page=3, sort_order="desc", deserialize=False)
    )
    assert [s["session_id"] for s in last] == ["a0"] and total == 5
    beyond, total = await call(store.db.get_sessions(limit=2, page=9, deserialize=False))
    assert beyond == [] and total == 6


async def test_get_sessions_without_runs(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1")))
    await call(store.db.upsert_run(run("r1", "s1"), "s1", "alice"))
    rows, _ = await call(store.db.get_sessions(include_runs=False, deserialize=False))
    assert rows[0]["runs"] == []
    rows, _ = await call(store.db.get_sessions(deserialize=False))
    assert [r["run_id"] for r in rows[0]["runs"]] == ["r1"]


async def test_rename_delete_and_reassign(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1", session_data=None)))
    renamed = await call(store.db.rename_session("s1", SessionType.AGENT, "Trip planning", user_id="alice"))
    assert renamed.session_data == {"session_name": "Trip planning"}

    await call(store.db.upsert_run(run("r1", "s1", status=RunStatus.running), "s1", "alice"))
    assert not await call(store.db.reassign_session_owner("s1", previous_user_id="alice", user_id="carol"))
    await call(store.db.upsert_run(run("r1", "s1"), "s1", "alice"))
    assert not await call(store.db.reassign_session_owner("s1", previous_user_id="bob", user_id="carol"))
    assert await call(store.db.reassign_session_owner("s1", previous_user_id="alice", user_id="carol"))
    assert store.raw.agno_sessions.find_one({"_id": "s1"})["user_id"] == "carol"

    assert await call(store.db.delete_session("s1", user_id="carol"))
    assert not await call(store.db.delete_session("s1"))
    assert store.raw.agno_sessions.count_documents({}) == 0

    for i in range(3):
        await call(store.db.upsert_session(agent_session(f"m{i}")))
    await call(store.db.delete_sessions(["m0", "m1"], user_id="alice"))
    assert [d["_id"] for d in store.raw.agno_sessions.find()] == ["m2"]


async def test_runs_api(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1")))
    await call(store.db.upsert_session(agent_session("s2", user_id="bob", agent_id="agent-2")))
    await call(store.db.upsert_run(run("r1", "s1", created_at=10), "s1", "alice"))
    await call(store.db.upsert_run(run("r2", "s1", created_at=20, status=RunStatus.error), "s1", "alice"))
    await call(store.db.upsert_run(run("r3", "s2", agent_id="agent-2", created_at=15), "s2", "bob"))

    one = await call(store.db.get_run("r2"))
    assert isinstance(one, RunOutput) and one.status == RunStatus.error
    row = await call(store.db.get_run("r3", deserialize=False))
    assert (row["session_id"], row["user_id"], row["run_type"]) == ("s2", "bob", "agent")
    assert await call(store.db.get_run("nope")) is None

    assert [r.run_id for r in await call(store.db.get_runs())] == ["r1", "r3", "r2"]
    assert [r.run_id for r in await call(store.db.get_runs(session_id="s1"))] == ["r1", "r2"]
    assert [r.run_id for r in await call(store.db.get_runs(user_id="bob"))] == ["r3"]
    assert [r.run_id for r in await call(store.db.get_runs(agent_id="agent-2"))] == ["r3"]
    assert [r.run_id for r in await call(store.db.get_runs(status=RunStatus.error))] == ["r2"]
    rows, total = await call(
        store.db.get_runs(sort_by="created_at", sort_order="desc", limit=2, page=1, deserialize=False)
    )
    assert [r["run_id"] for r in rows] == ["r2", "r3"] and total == 3
    assert [r["run_index"] for r in rows] == [1, 0]

    assert await call(store.db.delete_run("r1"))
    assert not await call(store.db.delete_run("r1"))
    await call(store.db.delete_runs(["r2", "r3"]))
    assert await call(store.db.get_runs()) == []


async def test_cancel_pending_run_is_conditional(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1")))
    await call(store.db.upsert_run(run("p1", "s1", content=None, status=RunStatus.pending), "s1", "alice"))
    await call(store.db.upsert_run(run("done", "s1", status=RunStatus.completed), "s1", "alice"))

    assert not await call(store.db.cancel_pending_run("p1", session_id="s1", reason="x", user_id="bob"))
    assert not await call(
        store.db.cancel_pending_run("p1", session_id="s1", reason="x", expected_status="RUNNING", user_id="alice")
    )
    assert await call(store.db.cancel_pending_run("p1", session_id="s1", reason="worker died", user_id="alice"))
    assert not await call(store.db.cancel_pending_run("p1", session_id="s1", reason="again", user_id="alice"))
    assert not await call(store.db.cancel_pending_run("done", session_id="s1", reason="x", user_id="alice"))
    cancelled = await call(store.db.get_run("p1"))
    assert cancelled.status == RunStatus.cancelled and cancelled.content == "worker died"
    assert (await call(store.db.get_run("done"))).status == RunStatus.completed
    with pytest.raises(InvalidInputError, match="expected_status"):
        await call(store.db.cancel_pending_run("done", session_id="s1", reason="x", expected_status="COMPLETED"))


async def test_sixteen_concurrent_writers_lose_nothing(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("busy")))
    ids = [f"w{i}" for i in range(16)]
    if store.is_async:
        await asyncio.gather(*(store.db.upsert_run(run(i, "busy"), "busy", "alice") for i in ids))  # type: ignore[misc]
    else:
        barrier = threading.Barrier(len(ids))

        def write(run_id: str) -> None:
            barrier.wait()
            store.db.upsert_run(run(run_id, "busy"), "busy", "alice")

        threads = [threading.Thread(target=write, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stored = [r["run_id"] for r in store.raw.agno_sessions.find_one({"_id": "busy"})["runs"]]
    assert sorted(stored) == sorted(ids)


async def test_retried_upsert_run_never_duplicates(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("s1")))
    for _ in range(3):
        await call(store.db.upsert_run(run("same", "s1"), "s1", "alice"))
    # A second instance has no hint that the run exists: its push must still not duplicate.
    other = type(store.db)(db_client=store.db.db_client, db_name=store.db.db_name)
    await call(other.upsert_run(run("same", "s1", content="from elsewhere"), "s1", "alice"))
    runs = store.raw.agno_sessions.find_one({"_id": "s1"})["runs"]
    assert [(r["run_id"], r["content"]) for r in runs] == [("same", "from elsewhere")]


async def test_upsert_run_creates_the_session_when_missing(store: Store) -> None:
    await call(store.db.upsert_run(run("r1", "fresh"), "fresh", "alice"))
    session = await call(store.db.get_session("fresh", user_id="alice"))
    assert session.agent_id == "agent-1" and [r.run_id for r in session.runs] == ["r1"]
    await call(store.db.upsert_session(agent_session("fresh")))
    session = await call(store.db.get_session("fresh"))
    assert [r.run_id for r in session.runs] == ["r1"] and session.metadata == {"source": "test"}


async def test_other_users_cannot_touch_a_session(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("secret", user_id="alice")))
    await call(store.db.upsert_run(run("r1", "secret"), "secret", "alice"))
    before = store.raw.agno_sessions.find_one({"_id": "secret"})

    assert await call(store.db.upsert_session(agent_session("secret", user_id="bob", metadata={"x": 1}))) is None
    assert await call(store.db.upsert_session(agent_session("secret", user_id=None))) is None
    assert (
        await call(
            store.db.upsert_sessions([agent_session("secret", user_id="bob"), agent_session("bobs", user_id="bob")])
        )
        != []
    )
    with pytest.raises(SessionOwnershipError):
        await call(store.db.upsert_run(run("evil", "secret"), "secret", "bob"))
    with pytest.raises(SessionOwnershipError):
        await call(store.db.upsert_run(run("r1", "secret", content="overwritten"), "secret", "bob"))
    assert await call(store.db.get_session("secret", user_id="bob")) is None
    assert await call(store.db.rename_session("secret", SessionType.AGENT, "mine", user_id="bob")) is None
    assert not await call(store.db.delete_session("secret", user_id="bob"))
    await call(store.db.delete_sessions(["secret"], user_id="bob"))
    assert not await call(store.db.cancel_pending_run("r1", session_id="secret", reason="x", user_id="bob"))
    assert await call(store.db.get_runs(user_id="bob")) == []

    assert store.raw.agno_sessions.find_one({"_id": "secret"}) == before
    assert store.raw.agno_sessions.find_one({"_id": "bobs"})["user_id"] == "bob"


@pytest.mark.parametrize(
    "method, args, field",
    [
        ("get_session", {"session_id": {"$ne": None}}, "session_id"),
        ("get_session", {"session_id": "s1", "user_id": {"$ne": None}}, "user_id"),
        ("delete_session", {"session_id": {"$ne": None}}, "session_id"),
        ("delete_session", {"session_id": "s1", "user_id": {"$exists": True}}, "user_id"),
        ("delete_sessions", {"session_ids": [{"$ne": None}]}, "session_ids[0]"),
        ("delete_sessions", {"session_ids": {"$ne": None}}, "session_ids"),
        ("rename_session", {"session_id": {"$ne": None}, "session_type": None, "session_name": "x"}, "session_id"),
        ("rename_session", {"session_id": "s1", "session_type": None, "session_name": {"$set": 1}}, "session_name"),
        ("get_sessions", {"user_id": {"$ne": None}}, "user_id"),
        ("get_sessions", {"component_id": {"$gt": ""}}, "component_id"),
        ("get_sessions", {"sort_by": "$where"}, "sort_by"),
        ("get_sessions", {"limit": "10"}, "limit"),
        ("get_sessions", {"page": 2}, "page"),
        ("get_runs", {"session_id": {"$ne": None}}, "session_id"),
        ("get_runs", {"status": {"$ne": None}}, "status"),
        ("get_run", {"run_id": {"$ne": None}}, "run_id"),
        ("delete_run", {"run_id": {"$ne": None}}, "run_id"),
        ("delete_runs", {"run_ids": [None]}, "run_ids[0]"),
        ("upsert_run", {"run": {"run_id": {"$ne": None}}, "session_id": "s1"}, "run.run_id"),
        ("upsert_run", {"run": {"run_id": "r9"}, "session_id": {"$ne": None}}, "session_id"),
        ("upsert_run", {"run": {"run_id": "r9"}, "session_id": "s1", "user_id": {"$ne": None}}, "user_id"),
        ("upsert_session", {"session": {"session_id": "s1"}}, "session"),
        (
            "reassign_session_owner",
            {"session_id": "s1", "previous_user_id": {"$ne": None}, "user_id": "x"},
            "previous_user_id",
        ),
        ("cancel_pending_run", {"run_id": {"$ne": None}, "session_id": "s1", "reason": "x"}, "run_id"),
    ],
)
async def test_operator_shaped_input_is_refused_before_any_command(
    store: Store, method: str, args: dict[str, Any], field: str
) -> None:
    await call(store.db.upsert_session(agent_session("s1")))
    await call(store.db.upsert_run(run("r1", "s1"), "s1", "alice"))
    before = list(store.raw.agno_sessions.find())
    store.commands.clear()
    with pytest.raises(InvalidInputError) as caught:
        await call(getattr(store.db, method)(**args))
    assert caught.value.field == field
    assert store.commands.names == []
    assert list(store.raw.agno_sessions.find()) == before


async def test_bad_session_fields_are_refused(store: Store) -> None:
    bad = agent_session("s1")
    bad.user_id = {"$ne": None}  # type: ignore[assignment]
    with pytest.raises(InvalidInputError) as caught:
        await call(store.db.upsert_session(bad))
    assert caught.value.field == "session.user_id"
    with pytest.raises(InvalidInputError) as caught:
        await call(store.db.upsert_sessions([agent_session("ok"), bad]))
    assert caught.value.field == "sessions[1].user_id"
    assert store.commands.writes() == []
    assert store.raw.agno_sessions.count_documents({}) == 0


async def test_bulk_upsert_is_two_commands_and_preserves_updated_at(store: Store) -> None:
    await call(store.db.upsert_session(agent_session("warm")))
    store.commands.clear()
    sessions = [agent_session(f"b{i}", created_at=100 + i, updated_at=200 + i) for i in range(20)]
    out = await call(store.db.upsert_sessions(sessions, preserve_updated_at=True))
    assert store.commands.names == ["update", "find"]
    assert [s.session_id for s in out] == [f"b{i}" for i in range(20)]
    raw = store.raw.agno_sessions.find_one({"_id": "b3"})
    assert (raw["created_at"], raw["updated_at"]) == (103, 203)


async def test_session_ttl_option_creates_a_ttl_index_on_server_time(store: Store) -> None:
    import datetime

    db = type(store.db)(db_client=store.db.db_client, db_name=store.db.db_name, session_ttl_seconds=3600)
    await call(db.upsert_session(agent_session("s1")))
    await call(db.upsert_run(run("r1", "s1"), "s1", "alice"))
    indexes = {index["name"]: index for index in store.raw.agno_sessions.list_indexes()}
    assert indexes["ttl_touched_at"]["expireAfterSeconds"] == 3600
    assert isinstance(store.raw.agno_sessions.find_one({"_id": "s1"})["touched_at"], datetime.datetime)
    with pytest.raises(InvalidInputError, match="session_ttl_seconds"):
        type(store.db)(db_client=store.db.db_client, session_ttl_seconds=-5)
