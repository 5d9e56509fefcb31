"""Daily metrics through MongoDb / AsyncMongoDb, checked against agno 3.1.10's own MongoDb.

The same sessions and runs go through agno's objects into both stores (agno's keeps a separate runs
collection, ours embeds the runs); both calculate their metrics and the records must agree field by
field (ids and timestamps aside). Each test runs once per client flavour (see ``store`` in conftest).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from agno.db.mongo import MongoDb as AgnoMongoDb
from agno.metrics import RunMetrics
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.run.team import TeamRunOutput
from agno.run.workflow import WorkflowRunOutput
from agno.session import AgentSession, TeamSession, WorkflowSession
from pymongo import MongoClient

from agno_mongo import InvalidInputError
from agno_mongo.ops import metrics as ops
from agno_mongo.schema.metrics import metric_id
from tests.conftest import Store, call

DAY = 86400


@dataclass
class Spec:
    """One session to seed into both stores: its type, owner, age and runs (model, provider, tokens)."""

    session_id: str
    kind: str
    user_id: str | None
    created_at: int
    runs: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    extra_tokens: dict[str, int] = field(default_factory=dict)
    content: str = "hello"


def session_of(spec: Spec) -> Any:
    """The agno session, its ``session_metrics`` summed from its runs as agno's agents keep them."""
    totals: dict[str, int] = dict(spec.extra_tokens)
    for _, _, tokens in spec.runs:
        for name, value in {"input_tokens": tokens, "output_tokens": 2 * tokens, "total_tokens": 3 * tokens}.items():
            totals[name] = totals.get(name, 0) + value
    common: dict[str, Any] = {
        "session_id": spec.session_id,
        "user_id": spec.user_id,
        "session_data": {"session_metrics": totals, "session_name": spec.session_id} if totals else None,
        "created_at": spec.created_at,
    }
    if spec.kind == "agent":
        return AgentSession(agent_id="agent-1", **common)
    if spec.kind == "team":
        return TeamSession(team_id="team-1", **common)
    return WorkflowSession(workflow_id="wf-1", **common)


def runs_of(spec: Spec) -> list[Any]:
    runs: list[Any] = []
    for index, (model, provider, tokens) in enumerate(spec.runs):
        common: dict[str, Any] = {
            "run_id": f"{spec.session_id}-r{index}",
            "session_id": spec.session_id,
            "status": RunStatus.completed,
            "content": spec.content,
            "created_at": spec.created_at + index,
        }
        if spec.kind == "workflow":
            runs.append(WorkflowRunOutput(workflow_id="wf-1", **common))
            continue
        metrics = RunMetrics(input_tokens=tokens, output_tokens=2 * tokens, total_tokens=3 * tokens)
        cls = RunOutput if spec.kind == "agent" else TeamRunOutput
        owner = {"agent_id": "agent-1"} if spec.kind == "agent" else {"team_id": "team-1"}
        runs.append(cls(model=model, model_provider=provider, metrics=metrics, **owner, **common))
    return runs


def specs(now: int) -> list[Spec]:
    """Three users (one of them nobody), all three session types, four days, assorted models."""
    today = now - 30
    return [
        Spec("a1", "agent", "alice", today - 3 * DAY, [("gpt-4o", "OpenAI", 10), ("gpt-4o", "OpenAI", 5)]),
        Spec("a2", "agent", "alice", today - 3 * DAY + 60, [("claude", "Anthropic", 7)], {"reasoning_tokens": 4}),
        Spec("a3", "agent", "bob", today - 3 * DAY, [("gpt-4o", None, 1), (None, None, 2)]),
        Spec("t1", "team", "alice", today - 2 * DAY, [("gpt-4o", "OpenAI", 3)], {"cache_read_tokens": 9}),
        Spec("t2", "team", None, today - 2 * DAY, [("o3", "OpenAI", 4), ("o3", "OpenAI", 4), ("claude", "Anth", 1)]),
        Spec("w1", "workflow", "bob", today - 2 * DAY, [(None, None, 0), (None, None, 0)]),
        Spec("a4", "agent", None, today - DAY, []),
        Spec("a5", "agent", "carol", today - DAY, [("gpt-4o", "", 6)], {"audio_total_tokens": 2}),
        Spec("a6", "agent", "alice", today, [("gpt-4o", "OpenAI", 2)]),
        Spec("t3", "team", "bob", today, [("claude", "Anthropic", 8)]),
        Spec("f1", "agent", "alice", today + 3 * DAY, [("gpt-4o", "OpenAI", 99)]),  # future: never counted
    ]


async def seed(store: Store, agno: AgnoMongoDb, items: list[Spec]) -> None:
    """The same sessions and runs through each store's own API."""
    for spec in items:
        session = session_of(spec)
        await call(store.db.upsert_session(session))
        agno.upsert_session(session)
        for index, run in enumerate(runs_of(spec)):
            await call(store.db.upsert_run(run, spec.session_id, spec.user_id))
            agno.upsert_run(run, spec.session_id, spec.user_id, run_index=index)


def comparable(records: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Records without their ids and timestamps, model counts in a fixed order, sorted by (day, owner)."""
    if records is None:
        return None
    out = []
    for record in records:
        row = {k: v for k, v in record.items() if k not in {"id", "created_at", "updated_at"}}
        row["model_metrics"] = sorted(row["model_metrics"], key=lambda m: (m["model_id"], m["model_provider"]))
        out.append(row)
    return sorted(out, key=lambda r: (r["date"], r["user_id"] or ""))


@pytest.fixture
def agno(mongodb_url: str, db_name: str) -> Iterator[AgnoMongoDb]:
    """agno's own MongoDb on a sibling database of the same server."""
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield AgnoMongoDb(db_client=client, db_name=db_name + "_agno")
    client.drop_database(db_name + "_agno")
    client.close()


async def test_records_match_agnos_field_by_field(store: Store, agno: AgnoMongoDb) -> None:
    now = int(time.time())
    await seed(store, agno, specs(now))

    ours = await call(store.db.calculate_metrics())
    theirs = agno.calculate_metrics()
    assert comparable(ours) == comparable(theirs)
    assert len(ours) == 9  # (day, owner) buckets: 2 + 3 + 2 + 2, see specs()
    by_key = {(r["date"], r["user_id"]): r for r in ours}
    day0 = (datetime.fromtimestamp(now - 30, tz=UTC).date() - timedelta(days=3)).isoformat()
    alice = by_key[(day0, "alice")]
    assert alice["agent_sessions_count"] == 2 and alice["agent_runs_count"] == 3 and alice["users_count"] == 1
    assert alice["token_metrics"]["input_tokens"] == 22 and alice["token_metrics"]["reasoning_tokens"] == 4
    assert alice["model_metrics"] == [
        {"model_id": "claude", "model_provider": "Anthropic", "count": 1},
        {"model_id": "gpt-4o", "model_provider": "OpenAI", "count": 2},
    ]
    assert alice["completed"] is True and alice["aggregation_period"] == "daily"
    # a run without a provider is keyed "None", as agno's runs-collection path does
    assert by_key[(day0, "bob")]["model_metrics"] == [{"model_id": "gpt-4o", "model_provider": "None", "count": 1}]
    unowned = [r for r in ours if r["user_id"] == ""]
    assert unowned and all(r["users_count"] == 0 for r in unowned)

    alices, _ = await call(store.db.get_metrics(user_id="alice"))
    assert alices and {r["user_id"] for r in alices} == {"alice"}
    nobodys, _ = await call(store.db.get_metrics(user_id=""))
    assert nobodys and {r["user_id"] for r in nobodys} == {None}  # the unowned bucket, as agno returns it
    assert await call(store.db.get_metrics(user_id="mallory")) == ([], None)
    for args in [(), (None, None, "alice"), (None, None, ""), (date.fromisoformat(day0), None, None)]:
        mine, mine_latest = await call(store.db.get_metrics(*args))
        agnos, agnos_latest = agno.get_metrics(*args)
        assert comparable(mine) == comparable(agnos), args
        assert (mine_latest is None) == (agnos_latest is None)


async def test_recalculation_rewrites_only_open_days_and_keeps_identity(store: Store, agno: AgnoMongoDb) -> None:
    now = int(time.time())
    items = specs(now)
    await seed(store, agno, items)
    first = await call(store.db.calculate_metrics())
    agno.calculate_metrics()

    # new traffic today: a new session, and another run in an existing one
    more = [Spec("a7", "agent", "dave", now - 30, [("gpt-4o", "OpenAI", 1)])]
    await seed(store, agno, more)
    a6 = next(spec for spec in items if spec.session_id == "a6")
    a6.runs.append(("o3", "OpenAI", 3))
    await seed(store, agno, [a6])

    second = await call(store.db.calculate_metrics())
    theirs = agno.calculate_metrics()
    assert comparable(second) == comparable(theirs)
    assert {r["date"] for r in second} == {datetime.fromtimestamp(now - 30, tz=UTC).date().isoformat()}
    before = {r["id"]: r for r in first}
    for record in second:
        if record["id"] in before:
            assert record["created_at"] == before[record["id"]]["created_at"]
    mine, _ = await call(store.db.get_metrics())
    agnos, _ = agno.get_metrics()
    assert comparable(mine) == comparable(agnos)
    assert store.raw.agno_metrics.count_documents({}) == len(mine) == 10


async def test_repeating_a_calculation_adds_nothing(store: Store, agno: AgnoMongoDb) -> None:
    await seed(store, agno, specs(int(time.time())))
    first = await call(store.db.calculate_metrics())
    again = await call(store.db.calculate_metrics())
    assert comparable(again) == [r for r in comparable(first) or [] if r["completed"] is False]
    assert store.raw.agno_metrics.count_documents({}) == len(first)


async def test_stored_record_is_native_and_keyed_by_its_id(store: Store, agno: AgnoMongoDb) -> None:
    now = int(time.time())
    await seed(store, agno, specs(now)[:1])
    [record] = await call(store.db.calculate_metrics())
    raw = store.raw.agno_metrics.find_one({"_id": record["id"]})
    assert raw["id"] == record["id"] == metric_id(record["date"], "alice")
    assert isinstance(raw["token_metrics"], dict) and isinstance(raw["model_metrics"], list)
    assert raw["user_id"] == "alice" and raw["date"] == record["date"] and raw["schema_version"] == 1


async def test_calculation_is_three_commands(store: Store, agno: AgnoMongoDb) -> None:
    await seed(store, agno, specs(int(time.time())))
    store.commands.clear()
    await call(store.db.calculate_metrics())  # first use of the metrics collection creates its indexes
    assert store.commands.names == ["createIndexes", "aggregate", "aggregate", "update"]
    store.commands.clear()
    await call(store.db.calculate_metrics())
    assert store.commands.names == ["aggregate", "aggregate", "update"]
    store.commands.clear()
    await call(store.db.get_metrics(user_id="alice"))
    assert store.commands.names == ["find"]


async def test_overflowed_runs_are_counted(store: Store, agno: AgnoMongoDb) -> None:
    store.db.max_runs_bytes = 4096  # long sessions move their oldest runs to overflow documents
    now = int(time.time())
    runs = [("gpt-4o", "OpenAI", i) for i in range(12)] + [("claude", None, 1)] * 3
    long = Spec("long", "agent", "alice", now - 2 * DAY, runs, content="x" * 700)
    await seed(store, agno, [long, *specs(now)[:3]])
    assert store.raw.agno_sessions.find_one({"_id": "long"})["spilled"]

    store.commands.clear()
    ours = await call(store.db.calculate_metrics())
    sent = [name for name in store.commands.names if name != "createIndexes"]
    assert sent == ["aggregate", "aggregate", "aggregate", "update"]  # the third reads the overflowed runs
    assert comparable(ours) == comparable(agno.calculate_metrics())
    long_day = next(r for r in ours if r["user_id"] == "alice" and r["agent_runs_count"] == 15)
    assert long_day["model_metrics"] == [
        {"model_id": "claude", "model_provider": "None", "count": 3},
        {"model_id": "gpt-4o", "model_provider": "OpenAI", "count": 12},
    ]


async def test_nothing_to_count(store: Store, agno: AgnoMongoDb) -> None:
    assert await call(store.db.calculate_metrics()) is None
    assert agno.calculate_metrics() is None
    assert await call(store.db.get_metrics()) == ([], None)
    # sessions only in the future: nothing to count yet, as agno says
    await seed(store, agno, specs(int(time.time()))[-1:])
    assert await call(store.db.calculate_metrics()) is None
    assert agno.calculate_metrics() is None


async def test_bad_arguments_send_no_command(store: Store) -> None:
    store.commands.clear()
    for kwargs, name in [
        ({"user_id": {"$ne": None}}, "user_id"),
        ({"user_id": 7}, "user_id"),
        ({"starting_date": "2024-01-01"}, "starting_date"),
        ({"ending_date": {"$gt": ""}}, "ending_date"),
    ]:
        with pytest.raises(InvalidInputError) as error:
            await call(store.db.get_metrics(**kwargs))
        assert error.value.field == name
    assert store.commands.names == []


def test_resume_point_follows_agno() -> None:
    """agno's rule, on the records one aggregate returns: the earliest incomplete day after the last completed."""
    state = [
        {"_id": "c", "date": "2026-01-05", "completed": True, "created_at": 1},
        {"_id": "orphan", "date": "2026-01-03", "completed": False, "created_at": 2},
        {"_id": "x", "date": "2026-01-08", "completed": False, "created_at": 3},
        {"_id": "y", "date": "2026-01-07", "completed": False, "created_at": 4},
        {"_id": "bad", "date": "not a day", "completed": False, "created_at": 5},
    ]
    resume, created = ops.resume_point(state)
    assert resume == date(2026, 1, 7) and created == {"x": 3, "y": 4}
    assert ops.resume_point(state[:1])[0] == date(2026, 1, 6)
    assert ops.resume_point([]) == (None, {})


async def test_records_fit_agentos_metrics_endpoint(store: Store, agno: AgnoMongoDb) -> None:
    """What AgentOS's /metrics does with the records: collapse per day, or name them per owner."""
    from agno.db.utils import aggregate_metrics_by_date, identify_metrics_by_owner
    from agno.os.routers.metrics.schemas import DayAggregatedMetrics

    await seed(store, agno, specs(int(time.time())))
    await call(store.db.calculate_metrics())
    agno.calculate_metrics()
    mine, _ = await call(store.db.get_metrics())
    agnos, _ = agno.get_metrics()
    days = [
        DayAggregatedMetrics.from_dict(m).model_dump(exclude={"created_at", "updated_at"})
        for m in aggregate_metrics_by_date(mine)
    ]
    theirs = [
        DayAggregatedMetrics.from_dict(m).model_dump(exclude={"created_at", "updated_at"})
        for m in aggregate_metrics_by_date(agnos)
    ]
    for rows in (days, theirs):
        for row in rows:
            row["model_metrics"] = sorted(row["model_metrics"], key=lambda m: (m["model_id"], m["model_provider"]))
    assert sorted(days, key=lambda r: r["date"]) == sorted(theirs, key=lambda r: r["date"])
    alice, _ = await call(store.db.get_metrics(user_id="alice"))
    assert [DayAggregatedMetrics.from_dict(m).id for m in identify_metrics_by_owner(alice, "alice")]


def test_concurrent_first_insert_is_sent_again() -> None:
    """A record another calculation inserted between our read and our write still lands, once."""
    from pymongo.errors import BulkWriteError

    from agno_mongo.schema.metrics import MetricsFields

    record = MetricsFields.model_validate(
        {
            "id": "r1",
            "date": "2026-01-01",
            "user_id": "alice",
            "completed": True,
            "users_count": 1,
            **dict.fromkeys(ops.COUNT_FIELDS, 0),
            "token_metrics": {},
            "model_metrics": [],
            "created_at": 1,
            "updated_at": 1,
        }
    )
    plan = ops.write_records_plan([record])
    first = next(plan)
    assert first.op == "bulk_write"
    again = plan.throw(BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "dup"}]}))
    assert again.op == "bulk_write" and len(again.kwargs["requests"]) == 1
    with pytest.raises(StopIteration):
        plan.send(None)
