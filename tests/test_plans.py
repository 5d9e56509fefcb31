"""Plans checked without a server: commands out, results in (the way h11 is tested).

These pin down the write patterns themselves: which command, which filter, and what the plan does
with each possible answer. The integration tests run the same plans on real servers.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import RunTooLargeError, SessionOwnershipError
from agno_mongo.ops import runs, sessions
from agno_mongo.ops.command import Command, Plan

BUDGET = 10_000


def drive(plan: Plan[Any], answers: list[Any]) -> tuple[list[Command], Any]:
    """Feed ``answers`` (values, or exceptions to throw) to a plan; return its commands and result."""
    commands: list[Command] = []
    value: Any = None
    send = plan.send
    try:
        while True:
            commands.append(send(value))
            answer = answers.pop(0)
            value, send = (answer, plan.throw) if isinstance(answer, Exception) else (answer, plan.send)
    except StopIteration as stop:
        return commands, stop.value


def matched(n: int) -> SimpleNamespace:
    return SimpleNamespace(matched_count=n, modified_count=n)


RUN = {"run_id": "r1", "agent_id": "a", "content": "hi"}


def test_new_run_is_one_guarded_push() -> None:
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    commands, new = drive(plan, [matched(1)])
    assert new is True and len(commands) == 1
    (push,) = commands
    assert push.op == "update_one" and push.kwargs["upsert"] is True
    assert push.kwargs["filter"] == {
        "_id": "s1",
        "user_id": {"$in": ["alice", None]},
        "runs.run_id": {"$ne": "r1"},
        "runs_bytes": {"$not": {"$gt": BUDGET - runs.bson_size(RUN)}},
    }
    assert dict(push.kwargs["update"]["$push"]["runs"]) == RUN  # encoded once, sent as raw BSON


def test_known_run_is_one_positional_set() -> None:
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=True)
    commands, new = drive(plan, [matched(1)])
    assert new is False and [dict(c.kwargs["update"]["$set"]["runs.$"]) for c in commands] == [RUN]


def test_push_refused_then_set_lands_means_the_run_existed() -> None:
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    commands, new = drive(plan, [DuplicateKeyError("dup"), matched(1)])
    assert new is False and "$push" in commands[0].kwargs["update"] and "runs.$" in commands[1].kwargs["update"]["$set"]


def test_another_owner_is_refused_after_one_read() -> None:
    plan = runs.upsert_run_plan("s1", "bob", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    with pytest.raises(SessionOwnershipError):
        drive(plan, [DuplicateKeyError("dup"), matched(0), {"_id": "s1", "user_id": "alice", "runs": []}])


def test_full_session_moves_oldest_runs_out_then_pushes() -> None:
    old = [{"run_id": f"o{i}", "content": "x" * 1000} for i in range(8)]
    state = {"_id": "s1", "user_id": "alice", "runs": old, "runs_bytes": sum(runs.bson_size(r) for r in old)}
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    commands, new = drive(plan, [DuplicateKeyError("full"), matched(0), state, matched(1), matched(1), matched(1)])
    assert new is True
    copy, pull, push = commands[3:]
    moved = copy.kwargs["update"]["$addToSet"]["runs"]["$each"]
    assert copy.collection == "overflow" and copy.kwargs["filter"] == {"_id": "s1:000000"}
    assert moved == old[: len(moved)] and len(moved) >= 4  # at least half the budget freed
    assert pull.kwargs["filter"] == {"_id": "s1", "overflow": {"$in": [0, None]}}
    assert pull.kwargs["update"]["$pull"] == {"runs": {"run_id": {"$in": [r["run_id"] for r in moved]}}}
    assert pull.kwargs["update"]["$inc"]["runs_bytes"] == -sum(runs.bson_size(r) for r in moved)
    assert "$push" in push.kwargs["update"]


def test_a_run_that_can_never_fit_is_refused_before_any_command() -> None:
    huge = {"run_id": "big", "content": "x" * BUDGET}
    plan = runs.upsert_run_plan("s1", "alice", huge, "agent", 100, budget=BUDGET, likely_exists=False)
    with pytest.raises(RunTooLargeError):
        next(plan)


def test_upsert_session_is_one_find_and_modify_with_the_owner_in_the_filter() -> None:
    from agno.session import AgentSession

    from agno_mongo.schema.session import SessionFields

    fields = SessionFields.from_session(AgentSession(session_id="s1", user_id="alice", session_data={"a": 1}))
    command = sessions.upsert_session(fields, 100)
    assert command.op == "find_one_and_update" and command.kwargs["upsert"] is True
    assert command.kwargs["filter"] == {"_id": "s1", "user_id": {"$in": ["alice", None]}}
    assert command.kwargs["update"]["$setOnInsert"] == {"created_at": 100, "runs": []}
    assert command.kwargs["update"]["$set"]["session_data"] == {"a": 1}
    assert "runs" not in command.kwargs["update"]["$set"]


def test_recent_history_read_is_one_aggregate_when_the_session_holds_enough() -> None:
    plan = sessions.get_session("s1", None, 3)
    commands, document = drive(plan, [[{"_id": "s1", "runs": [{}, {}, {}], "overflow": 2}]])
    assert [c.op for c in commands] == ["aggregate"] and len(document["runs"]) == 3
