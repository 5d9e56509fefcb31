"""End to end: real agno Agents with user memories and with learning, on agno-mongo, through ``OpenAIChat``.

The model is ``LocalOpenAIServer`` with a scripted ``responder``: when agno's memory manager or learning
stores offer their tools (``add_memory``, ``update_profile``), it calls them, the way a real model would.
What they store must then be visible through the storage API (``get_user_memories``, ``get_learnings``) and
come back into the next run's prompt, for the right user only. Runs once per client flavour.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from agno.agent import Agent
from agno.db.schemas.memory import UserMemory
from agno.models.openai import OpenAIChat

from agno_mongo.testing.models import answer_from_messages
from agno_mongo.testing.openai_server import LocalOpenAIServer, tool_call
from tests.conftest import Store, call

MEMORY_TEXT = "The user likes green tea"


def scripted(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Call the memory/learning tools when offered; after a tool result, or with no tools, just answer."""
    tools = {tool["function"]["name"]: tool["function"] for tool in body.get("tools") or []}
    messages = body["messages"]
    if messages and messages[-1].get("role") == "tool":
        return {"content": "Done."}
    if "update_profile" in tools:
        return {"tool_calls": [tool_call("update_profile", {"name": "Alice Liddell", "preferred_name": "Alice"})]}
    if "add_memory" in tools:
        arguments: dict[str, Any] = {"memory": MEMORY_TEXT}
        if "topics" in tools["add_memory"].get("parameters", {}).get("properties", {}):
            arguments["topics"] = ["drinks"]
        return {"tool_calls": [tool_call("add_memory", arguments)]}
    return {"content": answer_from_messages(messages)}


@pytest.fixture
def llm() -> Iterator[LocalOpenAIServer]:
    with LocalOpenAIServer(responder=scripted) as server:
        yield server


def model(server: LocalOpenAIServer) -> OpenAIChat:
    return OpenAIChat(id="gpt-4o-mini", base_url=server.base_url, api_key="test")


async def run(store: Store, agent: Agent, message: str, user_id: str, session_id: str) -> Any:
    if store.is_async:
        return await agent.arun(message, user_id=user_id, session_id=session_id)
    return agent.run(message, user_id=user_id, session_id=session_id)


def system_prompt(request: Mapping[str, Any]) -> str:
    return "\n".join(str(m.get("content")) for m in request["messages"] if m.get("role") in {"system", "developer"})


def chat_requests(server: LocalOpenAIServer) -> list[dict[str, Any]]:
    """The agent's own turns (no tools offered), not the memory/learning extraction calls."""
    return [r for r in server.requests if not r.get("tools")]


async def test_agent_with_user_memories_stores_them_and_recalls_them(store: Store, llm: LocalOpenAIServer) -> None:
    agent = Agent(
        id="memory-agent", model=model(llm), db=store.db, update_memory_on_run=True, add_memories_to_context=True
    )
    first = await run(store, agent, "I really like green tea.", "alice", "s1")
    assert first.content

    # The memory manager called add_memory through the model; the memory is in MongoDB and in the API.
    offered = [r for r in llm.requests if r.get("tools")]
    assert offered and "add_memory" in {t["function"]["name"] for t in offered[0]["tools"]}
    memories = await call(store.db.get_user_memories(user_id="alice"))
    assert [(m.memory, m.topics, m.user_id) for m in memories] == [(MEMORY_TEXT, ["drinks"], "alice")]
    assert isinstance(memories[0], UserMemory) and memories[0].agent_id == "memory-agent"
    assert memories[0].input == "I really like green tea."
    rows, total = await call(store.db.get_user_memories(user_id="alice", deserialize=False))
    assert total == 1 and rows[0]["memory"] == MEMORY_TEXT
    raw = store.raw.agno_memories.find_one({"_id": memories[0].memory_id})
    assert raw["topics"] == ["drinks"] and raw["user_id"] == "alice"
    assert await call(store.db.get_all_memory_topics(user_id="alice")) == ["drinks"]
    stats, users = await call(store.db.get_user_memory_stats())
    assert users == 1 and stats[0]["user_id"] == "alice" and stats[0]["total_memories"] == 1

    # The next run for alice carries the memory in its prompt; a run for bob does not.
    llm.clear_requests()
    await run(store, agent, "What do I like to drink?", "alice", "s2")
    assert MEMORY_TEXT in system_prompt(chat_requests(llm)[0])
    llm.clear_requests()
    await run(store, agent, "What do I like to drink?", "bob", "s3")
    assert MEMORY_TEXT not in system_prompt(chat_requests(llm)[0])
    bob = await call(store.db.get_user_memories(user_id="bob"))
    assert [m.memory for m in bob] == [MEMORY_TEXT]  # bob got his own memory, with his own id
    assert bob[0].memory_id != memories[0].memory_id
    assert await call(store.db.get_user_memory(memories[0].memory_id, user_id="bob")) is None


async def test_agent_with_learning_stores_profile_and_memories(store: Store, llm: LocalOpenAIServer) -> None:
    agent = Agent(id="learning-agent", model=model(llm), db=store.db, learning=True)
    first = await run(store, agent, "Hi, I'm Alice Liddell, call me Alice. I like green tea.", "alice", "s1")
    assert first.content

    offered = {t["function"]["name"] for r in llm.requests for t in r.get("tools") or []}
    assert {"update_profile", "add_memory"} <= offered

    learnings = await call(store.db.get_learnings(user_id="alice"))
    by_type = {row["learning_type"]: row for row in learnings}
    assert {"user_profile", "user_memory"} <= set(by_type)
    profile = by_type["user_profile"]
    assert profile["content"]["name"] == "Alice Liddell" and profile["content"]["preferred_name"] == "Alice"
    assert profile["user_id"] == "alice" and profile["agent_id"] == "learning-agent"
    assert MEMORY_TEXT in str(by_type["user_memory"]["content"])
    assert await call(store.db.get_learning("user_profile", user_id="alice")) == {"content": profile["content"]}
    raw = store.raw.agno_learnings.find_one({"_id": profile["learning_id"]})
    assert isinstance(raw["content"], dict)  # a native subdocument, not a JSON string

    listed, total = await call(store.db.list_learnings(user_id="alice"))
    assert total == len(learnings) and {r["learning_id"] for r in listed} == {r["learning_id"] for r in learnings}
    users, count = await call(store.db.get_learnings_user_stats())
    assert count == 1 and users[0]["user_id"] == "alice"

    # The profile comes back into alice's next prompt, and only hers.
    llm.clear_requests()
    await run(store, agent, "Do you remember me?", "alice", "s2")
    assert "Alice Liddell" in system_prompt(chat_requests(llm)[0])
    llm.clear_requests()
    await run(store, agent, "Do you remember me?", "bob", "s3")
    assert "Alice Liddell" not in system_prompt(chat_requests(llm)[0])
    assert await call(store.db.delete_user_learnings("alice")) == len(learnings)
    assert await call(store.db.get_learning("user_profile", user_id="alice")) is None


@pytest.mark.parametrize("stream", [False, True])
async def test_responder_tool_calls_reach_agno_plain_and_streamed(stream: bool) -> None:
    """The ``responder`` hook: a scripted tool call runs the agent's tool, then the scripted answer follows."""
    seen: list[str] = []

    def remember(fact: str) -> str:
        """Remember a fact."""
        seen.append(fact)
        return "ok"

    def respond(body: Mapping[str, Any]) -> Mapping[str, Any]:
        if body["messages"][-1].get("role") == "tool":
            return {"content": "Remembered."}
        return {"tool_calls": [{"function": {"name": "remember", "arguments": {"fact": "tea"}}}]}

    with LocalOpenAIServer(responder=respond) as server:
        agent = Agent(model=model(server), tools=[remember])
        if stream:
            text = "".join(str(e.content) for e in agent.run("go", stream=True) if getattr(e, "content", None))
            assert text.endswith("Remembered.")
        else:
            assert agent.run("go").content == "Remembered."
        assert seen == ["tea"]
        assert [bool(r.get("stream")) for r in server.requests] == [stream, stream]
