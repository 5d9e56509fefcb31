"""Real agno Agents, Teams and Workflows on agno-mongo, sync and async, across processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agno.agent import Agent
from agno.models.openai import OpenAIChat
from agno.team import Team
from agno.workflow import Step, Workflow
from pymongo import MongoClient

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.testing import OfflineStandInModel
from agno_mongo.testing.openai_server import LocalOpenAIServer, tool_call
from tests.conftest import Commands, Store, call

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["What was my last question?", "What is the capital of France?", "What was my last question?"]


def make_agent(db: Any, model: Any = None, session_id: str = "fixed") -> Agent:
    return Agent(
        model=model or OfflineStandInModel(),
        db=db,
        session_id=session_id,
        add_history_to_context=True,
        num_history_runs=3,
    )


async def test_agent_history_survives_a_new_agent_instance(store: Store) -> None:
    agent = make_agent(store.db)
    first = await call(agent.arun(QUESTIONS[0]) if store.is_async else agent.run(QUESTIONS[0]))
    assert "first question" in first.content
    await call(agent.arun(QUESTIONS[1]) if store.is_async else agent.run(QUESTIONS[1]))

    fresh = make_agent(store.db)  # a new process would build exactly this
    store.commands.clear()
    answer = await call(fresh.arun(QUESTIONS[2]) if store.is_async else fresh.run(QUESTIONS[2]))
    assert answer.content == "Your last question was: What is the capital of France?"
    assert turn_cost(store.commands) == TURN, store.commands.sent

    stored = store.raw.agno_sessions.find_one({"_id": "fixed"})
    assert len(stored["runs"]) == 3 and stored["session_type"] == "agent"


# A steady-state turn: read the session, save it, append the run; then the approval-status update
# agno 3.1 sends after every run whatever the store (``update_approval_run_status``, a no-op match
# when the run has no approval).
TURN = [
    ("aggregate", "agno_sessions"),  # the revision-checked read: only what changed since the last one
    ("findAndModify", "agno_sessions"),
    ("update", "agno_sessions"),
    ("update", "agno_approvals"),
]


def turn_cost(commands: Commands) -> list[tuple[str, str]]:
    """Each command of a turn as (name, collection)."""
    return [(name, str(sent[name])) for name, sent in zip(commands.names, commands.sent, strict=True)]


def test_steady_state_agent_run_costs_three_commands_and_agnos_approval_update(mongodb_url: str, db_name: str) -> None:
    commands = Commands()
    client: MongoClient[Any] = MongoClient(mongodb_url, event_listeners=[commands])
    agent = make_agent(MongoDb(db_client=client, db_name=db_name))
    agent.run(QUESTIONS[0])
    assert [sent["createIndexes"] for sent in commands.sent if "createIndexes" in sent] == [
        "agno_sessions",
        "agno_approvals",
    ]
    for turn, question in enumerate(QUESTIONS[1:]):
        commands.clear()
        agent.run(question)
        # The first time this instance reads the session it reads it whole; after that it asks
        # for what changed since its copy (see agno_mongo.session_cache).
        assert turn_cost(commands) == ([("find", "agno_sessions")] if turn == 0 else TURN[:1]) + TURN[1:]
    client.close()


def test_async_db_url_survives_several_event_loops(mongodb_url: str, db_name: str) -> None:
    db = AsyncMongoDb(db_url=mongodb_url, db_name=db_name)

    async def turn(question: str) -> str:
        return str((await make_agent(db).arun(question)).content)

    for question in QUESTIONS[:2]:
        asyncio.run(turn(question))
    assert asyncio.run(turn(QUESTIONS[2])) == "Your last question was: What is the capital of France?"


async def test_team_runs_on_agno_mongo(store: Store) -> None:
    member = Agent(name="helper", model=OfflineStandInModel())
    team = Team(
        name="crew",
        members=[member],
        model=OfflineStandInModel(),
        db=store.db,
        session_id="team-session",
        add_history_to_context=True,
    )
    await call(team.arun("hello team") if store.is_async else team.run("hello team"))
    await call(team.arun("again") if store.is_async else team.run("again"))
    stored = store.raw.agno_sessions.find_one({"_id": "team-session"})
    assert stored["session_type"] == "team" and len([r for r in stored["runs"] if r.get("team_id")]) == 2
    session = await call(store.db.get_session("team-session", user_id=None))
    assert session.team_id == team.id


async def test_workflow_runs_on_agno_mongo(store: Store) -> None:
    step = Step(name="answer", agent=Agent(name="writer", model=OfflineStandInModel()))
    workflow = Workflow(name="flow", steps=[step], db=store.db, session_id="wf-session")
    await call(workflow.arun("go") if store.is_async else workflow.run("go"))
    stored = store.raw.agno_sessions.find_one({"_id": "wf-session"})
    assert stored["session_type"] == "workflow" and len(stored["runs"]) == 1
    assert stored["runs"][0]["workflow_id"] == workflow.id


def test_openai_chat_through_a_local_compatible_server(mongodb_url: str, db_name: str) -> None:
    from agno.models.openai import OpenAIChat

    with LocalOpenAIServer() as server:
        model = OpenAIChat(id="gpt-4o-mini", base_url=server.base_url, api_key="test-key")
        db = MongoDb(db_url=mongodb_url, db_name=db_name)
        make_agent(db, model).run(QUESTIONS[1])
        answer = make_agent(MongoDb(db_url=mongodb_url, db_name=db_name), model).run(QUESTIONS[2])
        assert answer.content == "Your last question was: What is the capital of France?"
        # The history sent to the model came from MongoDB.
        sent = [m["content"] for m in server.requests[-1]["messages"] if m["role"] == "user"]
        assert sent == [QUESTIONS[1], QUESTIONS[2]]


def test_example_history_survives_a_process_restart(mongodb_url: str, db_name: str, tmp_path: Path) -> None:
    env = {**os.environ, "MONGODB_URL": mongodb_url, "AGNO_MONGO_DB": db_name}
    env.pop("OPENAI_API_KEY", None)
    outputs = []
    for script in ("storage.py", "storage_async.py"):
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, str(ROOT / "examples" / script)],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
    assert "first question" in outputs[0]
    # The second process answers the first question from what the first process stored.
    second_run_first_answer = outputs[1].split("agent> ")[1]
    assert second_run_first_answer.startswith("Your last question was: What was my last question?")
    # The async example keeps its own session: its first process cannot answer yet, its second can.
    assert "first question" in outputs[2].split("agent> ")[1]
    assert outputs[3].split("agent> ")[1].startswith("Your last question was: What was my last question?")


def _lookup(city: str) -> str:
    """The weather in a city (the tool of the history-mutation test)."""
    return f"Sunny in {city}"


def _tool_then_answer(body: dict[str, Any]) -> dict[str, Any]:
    """Ask for the tool once per user turn, then answer."""
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    if any(m["role"] == "tool" for m in messages[last_user:]):
        return {"content": "It is sunny."}
    return {"content": None, "tool_calls": [tool_call("_lookup", {"city": "Paris"})]}


async def test_a_turn_never_changes_the_history_runs_agno_read(store: Store) -> None:
    """What agno 3.1 mutates in the session it read: the runs already stored are left as they were.

    With ``cache_session=True`` agno keeps one session object across turns; each turn (history in
    the context, a tool call) must leave every earlier run equal to what it was before the turn.
    Reusing run objects between reads (docs/session_cache.md) rests on this; an agno release that
    starts mutating history runs in place fails here first."""
    with LocalOpenAIServer(responder=_tool_then_answer) as server:
        agent = Agent(
            model=OpenAIChat(id="gpt-4o", base_url=server.base_url, api_key="local"),
            db=store.db,
            session_id="shared-history",
            tools=[_lookup],
            add_history_to_context=True,
            num_history_runs=3,
            cache_session=True,
        )
        for turn in range(4):
            session = agent._get_cached_session("shared-history") if turn else None
            before = [run.to_dict() for run in session.runs] if session is not None else []
            await call(agent.arun(f"Weather {turn}?") if store.is_async else agent.run(f"Weather {turn}?"))
            if session is not None:
                assert agent._get_cached_session("shared-history") is session  # agno kept its object
                after = [run.to_dict() for run in session.runs[: len(before)]]
                assert after == before, f"turn {turn} changed an earlier run"
                assert len(session.runs) == len(before) + 1
        roles = [m.role for m in agent._get_cached_session("shared-history").runs[-1].messages]
        assert "tool" in roles and roles.count("user") == 1  # the tool ran; history came as copies
