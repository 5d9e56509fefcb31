"""``user_id=""`` is a real owner, as in agno: distinct from ``None`` and from every other user.

agno's SQL stores filter ``user_id = ''`` for it, so a session, memory or knowledge row written by
the empty owner is theirs alone to read, rename and delete, while ``None`` still means "unscoped".
Each scenario is played on agno's ``SqliteDb`` too (the ``oracle``) and the answers compared.
"""

from __future__ import annotations

from typing import Any

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
