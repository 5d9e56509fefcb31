"""Plans checked without a server: commands out, results in (the way h11 is tested).

These pin down the write patterns themselves: which command, which filter, and what the plan does
with each possible answer. The integration tests run the same plans on real servers.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import RunTooLargeError, SessionOwnershipError
from agno_mongo.ops import runs, sessions
from agno_mongo.ops.command import Written
from agno_mongo.schema.codec import RUN_REV, WRITE_TOKEN
from tests import plans

BUDGET = 10_000

# These plans' tests never asked a plan to use every answer it is given.
drive = partial(plans.drive, use_every_answer=False)


def matched(n: int) -> SimpleNamespace:
    return Written(matched_count=n, modified_count=n)


RUN = {"run_id": "r1", "agent_id": "a", "content": "hi"}


def test_new_run_is_one_guarded_push() -> None:
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    commands, new = drive(plan, [matched(1)])
    assert new is True and len(commands) == 1
    (push,) = commands
    assert push.op == "update_one" and push.kwargs["upsert"] is True
    revision = push.kwargs["update"]["$set"]["rev"]
    assert push.kwargs["filter"] == {
        "_id": "s1",
        "user_id": {"$in": ["alice", None]},
        "runs.run_id": {"$ne": "r1"},
        "spilled.ids": {"$ne": "r1"},
        "runs_bytes": {"$not": {"$gt": BUDGET - len(push.kwargs["update"]["$push"]["runs"].raw)}},
        "rev": {"$not": {"$gte": revision}},  # written at a revision past the session's
    }
    assert push.kwargs["update"]["$set"]["rev"] == revision
    sent = dict(push.kwargs["update"]["$push"]["runs"])  # encoded once, sent as raw BSON
    assert len(sent.pop(WRITE_TOKEN)) == 16 and sent.pop(RUN_REV) == revision and sent == RUN


def test_known_run_is_one_positional_set() -> None:
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=True)
    commands, new = drive(plan, [matched(1)])
    assert new is False and len(commands) == 1
    (replace,) = commands
    assert replace.kwargs["filter"]["runs.run_id"] == "r1" and "rev" not in replace.kwargs["filter"]
    advance, rewrite = replace.kwargs["update"]  # a pipeline: advance rev, then stamp the run with it
    assert "rev" in advance["$set"]
    stamped = rewrite["$set"]["runs"]["$map"]["in"]["$cond"][1]["$mergeObjects"]
    assert stamped[1] == {RUN_REV: "$rev"}
    sent = dict(stamped[0]["$literal"])  # the run, sent once, as a literal (no "$" in it is a path)
    assert {k: v for k, v in sent.items() if k not in (WRITE_TOKEN, RUN_REV)} == RUN


def test_push_refused_then_set_lands_means_the_run_existed() -> None:
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    commands, new = drive(plan, [DuplicateKeyError("dup"), matched(1)])
    assert new is False and "$push" in commands[0].kwargs["update"] and isinstance(commands[1].kwargs["update"], list)


def test_another_owner_is_refused_after_one_read() -> None:
    plan = runs.upsert_run_plan("s1", "bob", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    with pytest.raises(SessionOwnershipError):
        drive(plan, [DuplicateKeyError("dup"), matched(0), {"_id": "s1", "user_id": "alice", "runs": []}])


def test_full_session_moves_oldest_runs_out_then_pushes() -> None:
    old = [{"run_id": f"o{i}", "content": "x" * 1000, WRITE_TOKEN: f"w{i}"} for i in range(8)]
    state = {
        "_id": "s1",
        "user_id": "alice",
        "inc": "i1",
        "spill_rev": 3,
        "spilled": [],
        "runs": old,
        "runs_bytes": BUDGET - 10,
    }
    plan = runs.upsert_run_plan("s1", "alice", RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    commands, new = drive(plan, [DuplicateKeyError("full"), matched(0), state, matched(1), matched(1), matched(1)])
    assert new is True
    copy, commit, push = commands[3:]
    moved = copy.kwargs["update"]["$setOnInsert"]["runs"]
    chunk_id = copy.kwargs["filter"]["_id"]
    assert copy.collection == "overflow" and copy.kwargs["upsert"] is True
    assert moved == old[: len(moved)] and len(moved) >= 4  # at least half the budget freed
    pairs = [{"run_id": r["run_id"], WRITE_TOKEN: r[WRITE_TOKEN]} for r in moved]
    assert commit.resend is False  # a compare-and-set: after a lost reply the plan reads instead
    assert commit.kwargs["filter"] == {
        "_id": "s1",
        "inc": "i1",
        "spill_rev": 3,
        "user_id": {"$in": ["alice", None]},
        "runs": {"$all": [{"$elemMatch": pair} for pair in pairs]},
    }
    update = commit.kwargs["update"]
    assert update["$pull"] == {"runs": {"$or": pairs}}  # exactly the copied versions
    assert update["$push"] == {"spilled": {"c": chunk_id, "ids": [r["run_id"] for r in moved]}}
    assert update["$inc"]["spill_rev"] == 1
    assert "$push" in push.kwargs["update"]


def test_a_spill_that_misses_deletes_its_chunk_and_tries_again() -> None:
    old = [{"run_id": f"o{i}", "content": "x" * 1000, WRITE_TOKEN: f"w{i}"} for i in range(8)]
    state = {"_id": "s1", "user_id": None, "inc": "i1", "spill_rev": 0, "runs": old, "runs_bytes": BUDGET - 10}
    plan = runs.upsert_run_plan("s1", None, RUN, "agent", 100, budget=BUDGET, likely_exists=False)
    commands, new = drive(
        plan, [DuplicateKeyError("full"), matched(0), state, matched(1), matched(0), matched(1), matched(1)]
    )
    assert new is True
    chunk, commit, drop, push = commands[3:]
    assert drop.op == "delete_one" and drop.kwargs["filter"] == {"_id": chunk.kwargs["filter"]["_id"]}
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
    on_insert = command.kwargs["update"]["$setOnInsert"]
    assert on_insert == {
        "created_at": 100,
        "runs": [],
        "spilled": [],
        "spill_rev": 0,
        "inc": on_insert["inc"],
        "shape": on_insert["shape"],
    }
    assert command.kwargs["update"]["$inc"] == {"rev": 1}  # every write advances the revision
    assert on_insert["inc"] != sessions.upsert_session(fields, 100).kwargs["update"]["$setOnInsert"]["inc"]
    assert command.kwargs["update"]["$set"]["session_data"] == {"a": 1}
    assert "runs" not in command.kwargs["update"]["$set"]


def test_recent_history_read_is_one_aggregate_when_the_session_holds_enough() -> None:
    plan = sessions.get_session_plan("s1", None, 3)
    commands, document = drive(plan, [[{"_id": "s1", "runs": [{}, {}, {}], "spilled": True}]])
    assert [c.op for c in commands] == ["aggregate"] and len(document["runs"]) == 3


def test_plans_and_command_builders_say_which_they_are_by_name() -> None:
    """In ``agno_mongo.ops`` a generator is a plan (``yield from``) and ends in ``_plan`` or
    ``_steps``; anything else builds values (``yield`` a Command) and does not. ``command`` holds
    the machinery itself (``atomically``)."""
    import importlib
    import inspect
    import pkgutil

    import agno_mongo.ops

    misnamed: list[str] = []
    for module_info in pkgutil.iter_modules(agno_mongo.ops.__path__):
        if module_info.name == "command":
            continue
        module = importlib.import_module(f"agno_mongo.ops.{module_info.name}")
        for name, function in vars(module).items():
            if not inspect.isfunction(function) or function.__module__ != module.__name__:
                continue
            says_plan = name.endswith(("_plan", "_steps"))
            if inspect.isgeneratorfunction(function) != says_plan:
                misnamed.append(f"{module_info.name}.{name}")
    assert misnamed == []


def test_contract_classes_read_only_the_state_they_declare_and_the_stores_provide_it() -> None:
    """A contract class's plans read instance state only through attributes it annotates
    (``_names``, ``_run_hints``, ...); both storage classes set every one of them, and the fake
    ``self`` the plan walks use (``tests/test_shard_targeting.py``) has them too."""
    import ast
    import importlib
    import inspect
    import pkgutil

    import agno_mongo.contract
    from agno_mongo import AsyncMongoDb, MongoDb
    from tests.test_shard_targeting import contract_self

    stores = [MongoDb(db_url="mongodb://127.0.0.1:1", db_name="d"), AsyncMongoDb(db_url="mongodb://127.0.0.1:1")]
    fake = contract_self()
    problems: list[str] = []
    for module_info in pkgutil.iter_modules(agno_mongo.contract.__path__):
        module = importlib.import_module(f"agno_mongo.contract.{module_info.name}")
        for node in ast.parse(inspect.getsource(module)).body:
            if not (isinstance(node, ast.ClassDef) and node.name.endswith("Contract")):
                continue
            cls = getattr(module, node.name)
            declared = set(inspect.get_annotations(cls))
            read = {
                attribute.attr
                for attribute in ast.walk(node)
                if isinstance(attribute, ast.Attribute)
                and isinstance(attribute.value, ast.Name)
                and attribute.value.id == "self"
            }
            problems += [
                f"{node.name} reads undeclared self.{name}" for name in sorted(read - declared - set(dir(cls)))
            ]
            for name in sorted(declared):
                problems += [f"{type(s).__name__} lacks {name}" for s in stores if not hasattr(s, name)]
                problems += [f"contract_self() lacks {name}"] if not hasattr(fake, name) else []
    assert problems == []
