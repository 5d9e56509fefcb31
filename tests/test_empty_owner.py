"""``user_id=""`` is a real owner, as in agno: distinct from ``None`` and from every other user.

agno's SQL stores filter ``user_id = ''`` for it, so a session, memory, knowledge, learning or trace
row written by the empty owner is theirs alone to read, rename and delete, while ``None`` still
means "unscoped".
Each scenario is played on agno's ``SqliteDb`` too (the ``oracle``) and the answers compared.
"""

from __future__ import annotations

from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.schemas.memory import UserMemory
from agno.session import AgentSession

from tests.conftest import Store, call


async def sessions_scenario(db: Any) -> dict[str, Any]:
    await call(db.upsert_session(AgentSession(session_id="empty", agent_id="a", user_id="", created_at=1)))
    await call(db.upsert_session(AgentSession(session_id="bobs", agent_id="a", user_id="bob", created_at=2)))
    await call(db.upsert_session(AgentSession(session_id="nobody", agent_id="a", created_at=3)))
    answers: dict[str, Any] = {
        "listed_by_empty": sorted(s.session_id for s in await call(db.get_sessions(SessionType.AGENT, user_id=""))),
        "listed_unscoped": sorted(s.session_id for s in await call(db.get_sessions(SessionType.AGENT))),
        "bob_reads_empty": await call(db.get_session("empty", SessionType.AGENT, user_id="bob")),
        "empty_reads_bobs": await call(db.get_session("bobs", SessionType.AGENT, user_id="")),
        "empty_reads_own": (await call(db.get_session("empty", SessionType.AGENT, user_id=""))).user_id,
        "empty_renames_bobs": await call(db.rename_session("bobs", SessionType.AGENT, "x", user_id="")),
    }
    await call(db.delete_session("bobs", user_id=""))
    await call(db.delete_session("empty", user_id="bob"))
    answers["left_after_foreign_deletes"] = sorted(s.session_id for s in await call(db.get_sessions(SessionType.AGENT)))
    await call(db.delete_session("empty", user_id=""))
    answers["left_after_own_delete"] = sorted(s.session_id for s in await call(db.get_sessions(SessionType.AGENT)))
    return answers


async def test_sessions_of_the_empty_owner_match_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await sessions_scenario(store.db)
    assert ours == await sessions_scenario(oracle)
    assert ours["listed_by_empty"] == ["empty"]
    assert ours["bob_reads_empty"] is None and ours["empty_reads_bobs"] is None
    assert ours["left_after_foreign_deletes"] == ["bobs", "empty", "nobody"]
    assert ours["left_after_own_delete"] == ["bobs", "nobody"]


async def memories_scenario(db: Any) -> dict[str, Any]:
    await call(db.upsert_user_memory(UserMemory(memory="mine", memory_id="m-empty", user_id="")))
    await call(db.upsert_user_memory(UserMemory(memory="bob's", memory_id="m-bob", user_id="bob")))
    answers = {
        "empty_lists": [m.memory_id for m in await call(db.get_user_memories(user_id=""))],
        "empty_reads_bobs": await call(db.get_user_memory("m-bob", user_id="")),
    }
    await call(db.delete_user_memory("m-bob", user_id=""))
    answers["all_after_foreign_delete"] = sorted(m.memory_id for m in await call(db.get_user_memories()))
    return answers


async def test_memories_of_the_empty_owner_match_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await memories_scenario(store.db)
    assert ours == await memories_scenario(oracle)
    assert ours == {
        "empty_lists": ["m-empty"],
        "empty_reads_bobs": None,
        "all_after_foreign_delete": ["m-bob", "m-empty"],
    }


async def learnings_scenario(db: Any) -> dict[str, Any]:
    for learning_id, user_id in (("l-empty", ""), ("l-bob", "bob"), ("l-none", None)):
        content = {"v": learning_id}
        await call(db.upsert_learning(id=learning_id, learning_type="profile", content=content, user_id=user_id))
    ids = lambda rows: sorted(row["learning_id"] for row in rows)  # noqa: E731
    listed, listed_total = await call(db.list_learnings(user_id=""))
    with_global, with_global_total = await call(db.list_learnings(user_id="", include_global=True))
    stats, stats_total = await call(db.get_learnings_user_stats())
    own_stats, own_stats_total = await call(db.get_learnings_user_stats(user_id=""))
    answers: dict[str, Any] = {
        "empty_reads": await call(db.get_learning("profile", user_id="")),
        "empty_gets": ids(await call(db.get_learnings(user_id=""))),
        "empty_lists": (ids(listed), listed_total),
        "empty_lists_with_global": (ids(with_global), with_global_total),
        "stats_users": (sorted(row["user_id"] for row in stats), stats_total),
        "own_stats_users": ([row["user_id"] for row in own_stats], own_stats_total),
        "empty_deletes": await call(db.delete_user_learnings("")),
    }
    answers["left"] = ids(await call(db.get_learnings()))
    return answers


async def test_learnings_of_the_empty_owner_match_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await learnings_scenario(store.db)
    assert ours == await learnings_scenario(oracle)
    assert ours == {
        "empty_reads": {"content": {"v": "l-empty"}},
        "empty_gets": ["l-empty"],
        "empty_lists": (["l-empty"], 1),
        "empty_lists_with_global": (["l-empty", "l-none"], 2),
        "stats_users": (["", "bob"], 2),
        "own_stats_users": ([""], 1),
        "empty_deletes": 1,
        "left": ["l-bob", "l-none"],
    }
    rows = await call(store.db.search_learnings("l-", user_id=""))  # agno's AsyncSqliteDb has no search
    assert [row["learning_id"] for row in rows] == []  # "l-empty" was deleted above
    await call(store.db.upsert_learning(id="l2", learning_type="profile", content={"v": "l-2"}, user_id=""))
    assert [row["learning_id"] for row in await call(store.db.search_learnings("l-", user_id=""))] == ["l2"]


def owned_trace(trace_id: str, user_id: str | None, session_id: str) -> Any:
    from datetime import UTC, datetime

    from agno.tracing.schemas import Trace

    moment = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    return Trace(
        trace_id=trace_id,
        name="assistant.run",
        status="OK",
        start_time=moment,
        end_time=moment,
        duration_ms=0,
        total_spans=0,
        error_count=0,
        run_id=f"run-{trace_id}",
        session_id=session_id,
        user_id=user_id,
        agent_id="assistant",
        team_id=None,
        workflow_id=None,
        created_at=moment,
    )


async def traces_scenario(db: Any) -> dict[str, Any]:
    for trace_id, user_id in (("t-empty", ""), ("t-bob", "bob"), ("t-none", None)):
        await call(db.upsert_trace(owned_trace(trace_id, user_id, f"s-{trace_id}")))
    empty, empty_total = await call(db.get_traces(user_id=""))
    everyone, everyone_total = await call(db.get_traces())
    stats, stats_total = await call(db.get_trace_stats(user_id=""))
    by_agent, _ = await call(db.get_trace_stats(user_id="", group_by="agent"))
    stored = await call(db.get_trace("t-empty"))
    return {
        "empty_lists": ([t.trace_id for t in empty], empty_total),
        "everyone": (sorted(t.trace_id for t in everyone), everyone_total),
        "empty_stats": ([(row["session_id"], row["user_id"]) for row in stats], stats_total),
        "empty_agent_traces": [(row["agent_id"], row["total_traces"]) for row in by_agent],
        "stored_owner": stored.user_id,
    }


async def test_traces_of_the_empty_owner_match_agnos_sqlite(store: Store, oracle: Any) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="agno.tracing needs opentelemetry-sdk")
    ours = await traces_scenario(store.db)
    assert ours == await traces_scenario(oracle)
    assert ours == {
        "empty_lists": (["t-empty"], 1),
        "everyone": (["t-bob", "t-empty", "t-none"], 3),
        "empty_stats": ([("s-t-empty", "")], 1),
        "empty_agent_traces": [("assistant", 1)],
        "stored_owner": "",
    }
