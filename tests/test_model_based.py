"""Model-based: random sequences of appends, updates, deletes, reassigns, session deletes and id reuse
at a tiny runs budget (a spill every few writes), every read compared with a plain in-memory model."""

from __future__ import annotations

from typing import Any

import pytest
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pymongo import MongoClient

from agno_mongo import MongoDb, SessionOwnershipError

USERS = ["alice", "bob"]
SESSIONS = ["s1", "s2"]


class Session:
    def __init__(self, owner: str | None) -> None:
        self.owner = owner
        self.runs: dict[str, str] = {}


class StoreMachine(RuleBasedStateMachine):
    url: str
    counter = 0
    spilled_reads = 0
    """How many invariant checks saw a session with overflowed runs (the test needs some)."""

    @initialize()
    def start(self) -> None:
        StoreMachine.counter += 1
        self.client: MongoClient[Any] = MongoClient(self.url)
        self.name = f"model_{StoreMachine.counter}"
        self.client.drop_database(self.name)
        self.db = MongoDb(db_client=self.client, db_name=self.name, max_runs_bytes=4096)
        self.model: dict[str, Session] = {}
        self.next_id = 0

    def teardown(self) -> None:
        self.client.drop_database(self.name)
        self.client.close()

    def write(self, session_id: str, user: str, run_id: str, size: int) -> None:
        content = f"{run_id}#{self.next_id}:" + "x" * size
        self.next_id += 1
        session = self.model.get(session_id)
        refused = session is not None and session.owner not in (None, user)
        try:
            run = RunOutput(run_id=run_id, agent_id="a", session_id=session_id, content=content)
            run.status = RunStatus.completed
            self.db.upsert_run(run, session_id, user)
        except SessionOwnershipError:
            assert refused
            return
        assert not refused, "a write to another user's session was accepted"
        if session is None:
            session = self.model[session_id] = Session(user)
        session.runs[run_id] = content

    @rule(session_id=st.sampled_from(SESSIONS), user=st.sampled_from(USERS), size=st.integers(100, 2500))
    def append(self, session_id: str, user: str, size: int) -> None:
        self.write(session_id, user, f"r{self.next_id}", size)

    @rule(session_id=st.sampled_from(SESSIONS), size=st.integers(800, 1500))
    def append_to_the_owner(self, session_id: str, size: int) -> None:
        session = self.model.get(session_id)
        self.write(session_id, (session.owner if session else None) or "alice", f"r{self.next_id}", size)

    @rule(data=st.data(), size=st.integers(10, 2000))
    def update(self, data: st.DataObject, size: int) -> None:
        candidates = [(sid, rid) for sid, s in self.model.items() for rid in s.runs]
        if not candidates:
            return
        session_id, run_id = data.draw(st.sampled_from(candidates))
        owner = self.model[session_id].owner or "alice"
        self.write(session_id, owner, run_id, size)

    @rule(data=st.data())
    def delete_run(self, data: st.DataObject) -> None:
        candidates = [(sid, rid) for sid, s in self.model.items() for rid in s.runs]
        if not candidates:
            return
        session_id, run_id = data.draw(st.sampled_from(candidates))
        assert self.db.delete_run(run_id)
        del self.model[session_id].runs[run_id]

    @rule(session_id=st.sampled_from(SESSIONS), new=st.sampled_from(USERS))
    def reassign(self, session_id: str, new: str) -> None:
        session = self.model.get(session_id)
        previous = session.owner if session and session.owner else "alice"
        changed = self.db.reassign_session_owner(session_id, previous_user_id=previous, user_id=new)
        assert changed == (session is not None and session.owner == previous)
        if changed and session is not None:
            session.owner = new

    @rule(session_id=st.sampled_from(SESSIONS))
    def delete_session(self, session_id: str) -> None:
        assert self.db.delete_session(session_id) == (session_id in self.model)
        self.model.pop(session_id, None)

    @rule(session_id=st.sampled_from(SESSIONS), user=st.sampled_from(USERS))
    def create_session(self, session_id: str, user: str) -> None:
        stored = self.db.upsert_session(AgentSession(session_id=session_id, agent_id="a", user_id=user))
        session = self.model.get(session_id)
        if session is not None and session.owner not in (None, user):
            assert stored is None
            return
        assert stored is not None
        if session is None:
            self.model[session_id] = Session(user)
        else:
            session.owner = user

    @invariant()
    def reads_match_the_model(self) -> None:
        if not hasattr(self, "db"):
            return
        for session_id in SESSIONS:
            want = self.model.get(session_id)
            got = self.db.get_session(session_id)
            if want is None:
                assert got is None
                assert self.db.get_runs(session_id=session_id) == []
                continue
            assert got is not None and got.user_id == want.owner
            raw = self.client[self.name].agno_sessions.find_one({"_id": session_id}, {"spilled": 1})
            StoreMachine.spilled_reads += bool(raw and raw.get("spilled"))
            stored = [(r.run_id, r.content) for r in got.runs or []]
            assert stored == list(want.runs.items())
            rows = self.db.get_runs(session_id=session_id)
            assert [(r.run_id, r.content) for r in rows] == stored
            recent = self.db.get_session(session_id, runs_limit=3)
            assert [r.run_id for r in recent.runs] == [run_id for run_id, _ in stored[-3:]]
            for user in USERS:
                visible = self.db.get_session(session_id, user_id=user)
                assert (visible is not None) == (want.owner == user)
        for run_id, content in [(rid, c) for s in self.model.values() for rid, c in s.runs.items()][:5]:
            assert self.db.get_run(run_id).content == content


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_random_sequences_match_the_model(mongodb_url: str) -> None:
    StoreMachine.url = mongodb_url
    machine = StoreMachine.TestCase
    machine.settings = settings(
        max_examples=30,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine().runTest()
    assert StoreMachine.spilled_reads > 50, "the sequences never overflowed a session"
