"""Eval runs through MongoDb / AsyncMongoDb on PyMongo, PyMongo async and Motor.

Each test runs once per client flavour (see ``store`` in conftest) against a real wire server.
"""

from __future__ import annotations

from typing import Any

import pytest
from agno.db.schemas.evals import EvalFilterType, EvalRunRecord, EvalType
from agno.os.routers.evals.schemas import EvalSchema
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import EvalRunOwnershipError
from tests.conftest import Store, assert_refused, call


def record(run_id: str, eval_type: EvalType = EvalType.ACCURACY, **extra: Any) -> EvalRunRecord:
    return EvalRunRecord(
        run_id=run_id,
        eval_type=eval_type,
        eval_data=extra.pop("eval_data", {"avg_score": 8.5, "results": [{"score": 8}, {"score": 9}]}),
        eval_input=extra.pop("eval_input", {"input": "2+2?", "expected_output": "4"}),
        **extra,
    )


async def seed(store: Store, *records: EvalRunRecord, owners: dict[str, str] | None = None) -> None:
    """Create runs, then give them distinct ``created_at`` (1, 2, 3 ... in order) and owners."""
    for index, item in enumerate(records):
        await call(store.db.create_eval_run(item))
        store.raw.agno_eval_runs.update_one({"_id": item.run_id}, {"$set": {"created_at": index + 1}})
    for run_id, owner in (owners or {}).items():
        await call(store.db.update_eval_run_user_id(run_id, owner))


async def test_round_trip_stores_native_fields_under_the_run_id(store: Store) -> None:
    created = await call(store.db.create_eval_run(record("e1", agent_id="agent-1", model_id="gpt", name="first")))
    assert isinstance(created, EvalRunRecord) and created.run_id == "e1"

    raw = store.raw.agno_eval_runs.find_one({"_id": "e1"})
    assert raw["run_id"] == "e1" and raw["eval_type"] == "accuracy" and raw["user_id"] is None
    assert raw["eval_data"] == {"avg_score": 8.5, "results": [{"score": 8}, {"score": 9}]}  # a subdocument
    assert isinstance(raw["created_at"], int) and raw["created_at"] == raw["updated_at"]
    assert raw["schema_version"] == 1

    loaded = await call(store.db.get_eval_run("e1"))
    assert isinstance(loaded, EvalRunRecord)
    assert (loaded.eval_type, loaded.agent_id, loaded.name) == (EvalType.ACCURACY, "agent-1", "first")
    row = await call(store.db.get_eval_run("e1", deserialize=False))
    assert "_id" not in row and row["created_at"] == raw["created_at"] and row["user_id"] is None
    schema = EvalSchema.from_dict(row)  # what AgentOS does with it
    assert schema.id == "e1" and schema.eval_data["avg_score"] == 8.5 and schema.created_at is not None
    assert await call(store.db.get_eval_run_raw("e1")) == row
    assert await call(store.db.get_eval_run("missing")) is None
    assert await call(store.db.get_eval_run_raw("missing")) is None


async def test_create_is_safe_to_resend_but_refuses_another_record_under_a_taken_id(store: Store) -> None:
    await call(store.db.create_eval_run(record("e1", name="original")))
    first = store.raw.agno_eval_runs.find_one({"_id": "e1"})
    store.commands.clear()
    await call(store.db.create_eval_run(record("e1", name="original")))  # a retry that lands twice
    assert store.commands.names == ["findAndModify"]
    assert store.raw.agno_eval_runs.find_one({"_id": "e1"}) == first

    with pytest.raises(DuplicateKeyError):
        await call(store.db.create_eval_run(record("e1", name="impostor", eval_data={"other": True})))
    assert store.raw.agno_eval_runs.find_one({"_id": "e1"}) == first
    assert store.raw.agno_eval_runs.count_documents({}) == 1


async def test_each_call_is_one_command(store: Store) -> None:
    await call(store.db.create_eval_run(record("e0")))  # first use creates indexes
    store.commands.clear()
    await call(store.db.create_eval_run(record("e1")))
    assert store.commands.names == ["findAndModify"]
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any], list[str]]] = [
        ("get_eval_run", ("e1",), {}, ["find"]),
        ("get_eval_run", ("e1",), {"user_id": "alice"}, ["find"]),
        ("get_eval_runs", (), {}, ["find"]),
        ("get_eval_runs", (), {"deserialize": False}, ["find"]),
        ("get_eval_runs", (), {"limit": 1, "page": 1, "deserialize": False}, ["find", "aggregate"]),
        ("rename_eval_run", ("e1", "renamed"), {}, ["findAndModify"]),
        ("update_eval_run_user_id", ("e1", "alice"), {}, ["findAndModify"]),
        ("delete_eval_run", ("e0",), {}, ["delete"]),
        ("delete_eval_runs", (["e1", "e2"],), {"user_id": "alice"}, ["delete"]),
    ]
    for method, args, kwargs, expected in calls:
        store.commands.clear()
        await call(getattr(store.db, method)(*args, **kwargs))
        assert store.commands.names == expected, (method, kwargs)


async def test_filters_sorting_and_pagination(store: Store) -> None:
    await seed(
        store,
        record("a1", EvalType.ACCURACY, agent_id="agent-1", model_id="gpt", name="b"),
        record("a2", EvalType.PERFORMANCE, agent_id="agent-2", model_id="claude", name="d"),
        record("t1", EvalType.RELIABILITY, team_id="team-1", model_id="gpt", name="a"),
        record("w1", EvalType.AGENT_AS_JUDGE, workflow_id="wf-1", name="c"),
        owners={"a1": "alice", "t1": "alice", "a2": "bob"},
    )
    ids = lambda items: [r.run_id for r in items]  # noqa: E731
    assert ids(await call(store.db.get_eval_runs())) == ["w1", "t1", "a2", "a1"]  # newest first
    assert ids(await call(store.db.get_eval_runs(sort_by="created_at", sort_order="asc"))) == ["a1", "a2", "t1", "w1"]
    assert ids(await call(store.db.get_eval_runs(sort_by="name", sort_order="asc"))) == ["t1", "a1", "w1", "a2"]
    assert ids(await call(store.db.get_eval_runs(agent_id="agent-1"))) == ["a1"]
    assert ids(await call(store.db.get_eval_runs(team_id="team-1"))) == ["t1"]
    assert ids(await call(store.db.get_eval_runs(workflow_id="wf-1"))) == ["w1"]
    assert ids(await call(store.db.get_eval_runs(model_id="gpt"))) == ["t1", "a1"]
    assert ids(await call(store.db.get_eval_runs(user_id="alice"))) == ["t1", "a1"]
    assert ids(await call(store.db.get_eval_runs(filter_type=EvalFilterType.AGENT))) == ["a2", "a1"]
    assert ids(await call(store.db.get_eval_runs(filter_type=EvalFilterType.TEAM))) == ["t1"]
    assert ids(await call(store.db.get_eval_runs(filter_type="workflow"))) == ["w1"]  # type: ignore[arg-type]
    # an explicit agent id is kept when filter_type says "agent" (agno's adapter drops it)
    assert ids(await call(store.db.get_eval_runs(agent_id="agent-2", filter_type=EvalFilterType.AGENT))) == ["a2"]
    both = [EvalType.ACCURACY, EvalType.RELIABILITY]
    assert ids(await call(store.db.get_eval_runs(eval_type=both))) == ["t1", "a1"]
    assert ids(await call(store.db.get_eval_runs(eval_type=[]))) == ["w1", "t1", "a2", "a1"]
    assert ids(await call(store.db.get_eval_runs(eval_type=both, user_id="bob"))) == []

    store.commands.clear()
    rows, total = await call(store.db.get_eval_runs(limit=3, page=1, deserialize=False))
    assert [r["run_id"] for r in rows] == ["w1", "t1", "a2"] and total == 4
    assert rows[1]["user_id"] == "alice" and "_id" not in rows[0]
    assert store.commands.names == ["find", "aggregate"]  # count_documents
    store.commands.clear()
    rows, total = await call(store.db.get_eval_runs(limit=3, page=2, deserialize=False))
    assert [r["run_id"] for r in rows] == ["a1"] and total == 4
    assert store.commands.names == ["find"]  # a short page already tells the total
    rows, total = await call(store.db.get_eval_runs(limit=3, page=5, deserialize=False))
    assert rows == [] and total == 4
    assert await call(store.db.get_eval_runs(user_id="nobody", deserialize=False)) == ([], 0)
    assert await call(store.db.get_eval_runs(limit=2, page=3)) == []


async def test_agentos_sort_order_enum_is_accepted(store: Store) -> None:
    from agno.os.schema import SortOrder

    await seed(store, record("e1"), record("e2"))
    rows, total = await call(
        store.db.get_eval_runs(sort_by="created_at", sort_order=SortOrder.ASC, limit=20, page=1, deserialize=False)
    )
    assert [r["run_id"] for r in rows] == ["e1", "e2"] and total == 2


async def test_rename_is_scoped_and_returns_the_run(store: Store) -> None:
    await seed(store, record("e1", name="old"), owners={"e1": "alice"})
    before = store.raw.agno_eval_runs.find_one({"_id": "e1"})["updated_at"]
    assert await call(store.db.rename_eval_run("e1", "stolen", user_id="bob")) is None
    assert store.raw.agno_eval_runs.find_one({"_id": "e1"})["name"] == "old"

    renamed = await call(store.db.rename_eval_run("e1", "new", user_id="alice"))
    assert isinstance(renamed, EvalRunRecord) and renamed.name == "new"
    row = await call(store.db.rename_eval_run("e1", "newer", deserialize=False))
    assert row["name"] == "newer" and row["updated_at"] >= before and row["user_id"] == "alice"
    assert await call(store.db.rename_eval_run("missing", "x")) is None


async def test_another_users_run_is_neither_read_renamed_nor_deleted(store: Store) -> None:
    await seed(store, record("e1"), record("e2"), record("shared"), owners={"e1": "alice", "e2": "alice"})
    assert await call(store.db.get_eval_run("e1", user_id="bob")) is None
    assert (await call(store.db.get_eval_run("e1", user_id="alice"))).run_id == "e1"
    assert await call(store.db.get_eval_run("shared", user_id="alice")) is None  # unowned runs are not theirs
    await call(store.db.delete_eval_runs(["e1", "e2"], user_id="bob"))
    await call(store.db.delete_eval_run("e1", user_id="bob"))
    assert store.raw.agno_eval_runs.count_documents({}) == 3
    await call(store.db.delete_eval_runs(["e1", "shared"], user_id="alice"))
    assert sorted(d["_id"] for d in store.raw.agno_eval_runs.find()) == ["e2", "shared"]
    await call(store.db.delete_eval_runs(["e2", "shared"]))
    assert store.raw.agno_eval_runs.count_documents({}) == 0
    store.commands.clear()
    await call(store.db.delete_eval_runs([]))
    assert store.commands.names == []


async def test_owner_stamp_claims_only_an_unowned_run(store: Store) -> None:
    await call(store.db.create_eval_run(record("e1")))
    await call(store.db.update_eval_run_user_id("e1", "alice"))
    assert store.raw.agno_eval_runs.find_one({"_id": "e1"})["user_id"] == "alice"
    await call(store.db.update_eval_run_user_id("e1", "alice"))  # idempotent
    with pytest.raises(EvalRunOwnershipError):
        await call(store.db.update_eval_run_user_id("e1", "bob"))
    assert store.raw.agno_eval_runs.find_one({"_id": "e1"})["user_id"] == "alice"
    await call(store.db.update_eval_run_user_id("missing", "bob"))  # a no-op, as in agno
    assert store.raw.agno_eval_runs.count_documents({}) == 1
    # an id that looks like a field path is stored literally
    await call(store.db.create_eval_run(record("e2")))
    await call(store.db.update_eval_run_user_id("e2", "$user_id"))
    assert store.raw.agno_eval_runs.find_one({"_id": "e2"})["user_id"] == "$user_id"


HOSTILE = {"$ne": None}


@pytest.mark.parametrize(
    ("method", "kwargs", "field"),
    [
        ("get_eval_run", {"eval_run_id": HOSTILE}, "eval_run_id"),
        ("get_eval_run", {"eval_run_id": "e1", "user_id": HOSTILE}, "user_id"),
        ("get_eval_run_raw", {"eval_run_id": HOSTILE}, "eval_run_id"),
        ("get_eval_runs", {"user_id": HOSTILE}, "user_id"),
        ("get_eval_runs", {"agent_id": HOSTILE}, "agent_id"),
        ("get_eval_runs", {"team_id": 7}, "team_id"),
        ("get_eval_runs", {"workflow_id": HOSTILE}, "workflow_id"),
        ("get_eval_runs", {"model_id": HOSTILE}, "model_id"),
        ("get_eval_runs", {"eval_type": [HOSTILE]}, "eval_type[0]"),
        ("get_eval_runs", {"eval_type": "accuracy"}, "eval_type"),
        ("get_eval_runs", {"filter_type": HOSTILE}, "filter_type"),
        ("get_eval_runs", {"filter_type": "session"}, "filter_type"),
        ("get_eval_runs", {"sort_by": "$where"}, "sort_by"),
        ("get_eval_runs", {"sort_by": "eval_data"}, "sort_by"),
        ("get_eval_runs", {"sort_order": "sideways"}, "sort_order"),
        ("get_eval_runs", {"page": 2}, "page"),
        ("get_eval_runs", {"limit": -1}, "limit"),
        ("rename_eval_run", {"eval_run_id": HOSTILE, "name": "x"}, "eval_run_id"),
        ("rename_eval_run", {"eval_run_id": "e1", "name": HOSTILE}, "name"),
        ("rename_eval_run", {"eval_run_id": "e1", "name": "x", "user_id": HOSTILE}, "user_id"),
        ("update_eval_run_user_id", {"eval_run_id": "e1", "user_id": HOSTILE}, "user_id"),
        ("update_eval_run_user_id", {"eval_run_id": "e1", "user_id": None}, "user_id"),
        ("update_eval_run_user_id", {"eval_run_id": HOSTILE, "user_id": "alice"}, "eval_run_id"),
        ("delete_eval_run", {"eval_run_id": HOSTILE}, "eval_run_id"),
        ("delete_eval_runs", {"eval_run_ids": [HOSTILE]}, "eval_run_ids[0]"),
        ("delete_eval_runs", {"eval_run_ids": "e1"}, "eval_run_ids"),
        ("delete_eval_runs", {"eval_run_ids": ["e1"], "user_id": HOSTILE}, "user_id"),
        ("create_eval_run", {"eval_run": {"run_id": "e1"}}, "eval_run"),
        (
            "create_eval_run",
            {"eval_run": EvalRunRecord.model_construct(run_id=HOSTILE, eval_type=EvalType.ACCURACY, eval_data={})},
            "eval_run.run_id",
        ),
        (
            "create_eval_run",
            {"eval_run": EvalRunRecord.model_construct(run_id="e1", eval_type=EvalType.ACCURACY, eval_data="{}")},
            "eval_run.eval_data",
        ),
        (
            "create_eval_run",
            {"eval_run": EvalRunRecord.model_construct(run_id="e1", eval_type="bogus", eval_data={})},
            "eval_run.eval_type",
        ),
    ],
)
async def test_hostile_input_is_refused_before_any_command(
    store: Store, method: str, kwargs: dict[str, Any], field: str
) -> None:
    await assert_refused(store, method, kwargs, field)


async def test_indexes_are_created_once(store: Store) -> None:
    await call(store.db.create_eval_run(record("e1")))
    await call(store.db.get_eval_runs(user_id="alice"))
    await call(store.db.get_eval_run("e1"))
    assert store.commands.names.count("createIndexes") == 1
    names = {index["name"] for index in store.raw.agno_eval_runs.list_indexes()}
    assert {"created_id", "user_created_id", "agent_created_id", "team_created_id"} <= names
