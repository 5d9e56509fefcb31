"""Deterministic interleavings: two callers on one session, one command at a time, in every order.

Plans are generators, so a test can run the first ``k`` commands of plan A, then all of plan B, then
the rest of A, against one real server. For every pair (A, B) and every split point ``k``, what the
store then shows must equal one of the two serial orders (A then B, or B then A) applied to a plain
in-memory model: every acknowledged run exactly once, with its latest content, in order, through
every read; deleted runs and sessions never back; a re-created session sees nothing of the old one.

The sessions are kept at a small runs budget so that A's writes spill (move runs to overflow).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from agno_mongo import MongoDb, SessionOwnershipError
from agno_mongo.contract.sessions import SessionContract
from agno_mongo.ops.command import Pause, Plan

BUDGET = 8192
SIZE = 1500
SID = "s"


# --- the model ---------------------------------------------------------------------------------


@dataclass
class Model:
    """What the store must show: owner and ordered runs (id -> (content, status))."""

    exists: bool = True
    owner: str | None = "alice"
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def upsert(self, user: str | None, run_id: str, content: str, status: str = "COMPLETED") -> None:
        if self.exists and self.owner not in (None, user):
            raise SessionOwnershipError(SID, user)
        if not self.exists:
            self.exists, self.owner, self.runs = True, user, {}
        self.runs[run_id] = (content, status)

    def delete_run(self, run_id: str) -> None:
        self.runs.pop(run_id, None)

    def delete_session(self) -> None:
        self.exists, self.owner, self.runs = False, None, {}

    def recreate(self, owner: str) -> None:
        self.exists, self.owner, self.runs = True, owner, {}

    def reassign(self, previous: str, new: str) -> None:
        active = any(status in ("PENDING", "RUNNING", "PAUSED") for _, status in self.runs.values())
        if self.exists and self.owner == previous and not active:
            self.owner = new

    def cancel(self, run_id: str) -> None:
        if run_id in self.runs and self.runs[run_id][1] == "PENDING":
            self.runs[run_id] = (self.runs[run_id][0] or "x", "CANCELLED")  # the reason, if it had no content


# --- running plans on a real server ------------------------------------------------------------


def steps(db: MongoDb, plan: Plan[Any]) -> Iterator[None]:
    """Run a plan one command per ``next()``; its answer or exception lands in ``.outcome``."""
    send: Callable[[Any], Any] = plan.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as stop:
            steps_outcome[id(plan)] = ("ok", stop.value)
            return
        except Exception as error:  # noqa: BLE001 - the outcome is compared with the model's
            steps_outcome[id(plan)] = ("error", type(error).__name__)
            return
        if isinstance(step, Pause):
            value, send = None, plan.send
            continue
        try:
            value, send = db._execute(step), plan.send
        except PyMongoError as error:
            value, send = error, plan.throw
        yield


steps_outcome: dict[int, tuple[str, Any]] = {}


def run(content: str, run_id: str, status: str = "COMPLETED") -> RunOutput:
    return RunOutput(run_id=run_id, agent_id="a", session_id=SID, content=content, status=RunStatus(status))


@dataclass
class Op:
    """An operation: how to build its plan for the store, and what it does to the model."""

    name: str
    plan: Callable[[MongoDb, dict[str, Any]], Plan[Any]]
    model: Callable[[Model, dict[str, Any]], None]


def pick(raw: dict[str, Any], where: str) -> str:
    """A run id chosen from the seeded session: the oldest embedded one, or the first overflowed one."""
    if where == "embedded":
        return str(raw["runs"][0]["run_id"])
    return str(raw["spilled"][0]["ids"][0])


def upsert_op(name: str, user: str, target: str, content: str) -> Op:
    def plan(db: MongoDb, raw: dict[str, Any]) -> Plan[Any]:
        run_id = target if target.startswith("new") else pick(raw, target)
        return SessionContract.upsert_run(db, run(content, run_id), SID, user)

    def model(m: Model, raw: dict[str, Any]) -> None:
        run_id = target if target.startswith("new") else pick(raw, target)
        m.upsert(user, run_id, content)

    return Op(name, plan, model)


def delete_run_op(name: str, where: str) -> Op:
    return Op(
        name,
        lambda db, raw: SessionContract.delete_run(db, pick(raw, where)),
        lambda m, raw: m.delete_run(pick(raw, where)),
    )


def recreate_plan(db: MongoDb, raw: dict[str, Any]) -> Plan[Any]:
    yield from SessionContract.delete_session(db, SID)
    yield from SessionContract.upsert_session(db, AgentSession(session_id=SID, agent_id="a", user_id="bob"))


OPS_A = [
    upsert_op("append-spills", "alice", "new-a", "A" * SIZE),
    upsert_op("update-embedded-spills", "alice", "embedded", "U" * (SIZE * 2)),
    upsert_op("update-overflowed", "alice", "overflowed", "V" * SIZE),
    Op("delete-session", lambda db, raw: SessionContract.delete_session(db, SID), lambda m, raw: m.delete_session()),
]
OPS_B = [
    upsert_op("append", "alice", "new-b", "B" * SIZE),
    upsert_op("update-embedded", "alice", "embedded", "E" * 200),
    upsert_op("update-overflowed", "alice", "overflowed", "O" * 200),
    delete_run_op("delete-embedded", "embedded"),
    delete_run_op("delete-overflowed", "overflowed"),
    Op("recreate-for-bob", recreate_plan, lambda m, raw: m.recreate("bob")),
    Op(
        "reassign",
        lambda db, raw: SessionContract.reassign_session_owner(db, SID, previous_user_id="alice", user_id="carol"),
        lambda m, raw: m.reassign("alice", "carol"),
    ),
    Op(
        "cancel-newest",
        lambda db, raw: SessionContract.cancel_pending_run(
            db, raw["runs"][-1]["run_id"], session_id=SID, reason="x", user_id="alice"
        ),
        lambda m, raw: m.cancel(raw["runs"][-1]["run_id"]),
    ),
    upsert_op("append-spills", "alice", "new-c", "C" * SIZE),
]


def seed(db: MongoDb, raw_db: Any, pending_newest: bool) -> Model:
    """A session with overflowed runs whose own document is full: the next big write spills."""
    model = Model()
    db.upsert_session(AgentSession(session_id=SID, agent_id="a", user_id="alice"))
    i = 0
    while True:
        doc = raw_db.agno_sessions.find_one({"_id": SID})
        if doc.get("spilled") and doc["runs_bytes"] + SIZE + 200 > BUDGET:
            break
        db.upsert_run(run(f"{i}:" + "s" * SIZE, f"r{i:02d}"), SID, "alice")
        model.upsert("alice", f"r{i:02d}", f"{i}:" + "s" * SIZE)
        i += 1
    if pending_newest:
        db.upsert_run(run("", "p", "PENDING"), SID, "alice")
        model.upsert("alice", "p", "", "PENDING")
    return model


def observed(db: MongoDb) -> tuple[bool, str | None, list[tuple[str, str, str]]]:
    """What every read shows, checked to agree with each other."""
    session = db.get_session(SID, deserialize=False)
    if session is None:
        assert db.get_runs(session_id=SID) == []
        return False, None, []
    runs = [(r["run_id"], short(r.get("content")), r.get("status") or "") for r in session["runs"]]
    rows = db.get_runs(session_id=SID, deserialize=False)[0]
    assert [(r["run_id"], short(r["run_data"].get("content")), r["status"]) for r in rows] == runs
    recent = db.get_session(SID, runs_limit=2, deserialize=False)
    context = [r for r in runs if r[2] not in ("CANCELLED", "ERROR")]
    assert [r["run_id"] for r in recent["runs"]] == [r[0] for r in context[-2:]]
    for run_id, content, _ in runs:
        one = db.get_run(run_id, deserialize=False)
        assert one is not None and short(one["run_data"].get("content")) == content
    return True, session.get("user_id"), runs


def expected(model: Model) -> tuple[bool, str | None, list[tuple[str, str, str]]]:
    if not model.exists:
        return False, None, []
    return True, model.owner, [(run_id, short(content), status) for run_id, (content, status) in model.runs.items()]


def short(content: Any) -> str:
    """Content as compared: its first characters and length (the runs are kilobytes long)."""
    text = content or ""
    return f"{text[:3]}~{len(text)}"


def apply(model: Model, op: Op, raw: dict[str, Any]) -> tuple[Model, tuple[str, Any]]:
    after = copy.deepcopy(model)
    try:
        op.model(after, raw)
    except SessionOwnershipError:
        return after, ("error", "SessionOwnershipError")
    return after, ("ok", None)


CASES = [(a, b) for a in OPS_A for b in OPS_B]


@pytest.mark.parametrize(("a", "b"), CASES, ids=[f"{a.name}|{b.name}" for a, b in CASES])
def test_every_interleaving_matches_a_serial_order(mongodb_url: str, db_name: str, a: Op, b: Op) -> None:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    try:
        split = 0
        while True:
            name = f"{db_name}_{split}"
            client.drop_database(name)
            db = MongoDb(db_client=client, db_name=name, max_runs_bytes=BUDGET)
            model = seed(db, client[name], pending_newest=b.name == "cancel-newest")
            raw = client[name].agno_sessions.find_one({"_id": SID})
            plan_a, plan_b = a.plan(db, raw), b.plan(db, raw)
            stepper = steps(db, plan_a)
            ran = 0
            finished = False
            for _ in range(split):
                try:
                    next(stepper)
                    ran += 1
                except StopIteration:
                    finished = True
                    break
            for _ in steps(db, plan_b):
                pass
            for _ in stepper:
                pass
            outcome_a = steps_outcome.pop(id(plan_a))
            outcome_b = steps_outcome.pop(id(plan_b))
            seen = observed(db)
            orders = []
            for first, second in ((a, b), (b, a)):
                m1, o1 = apply(model, first, raw)
                m2, o2 = apply(m1, second, raw)
                want_a, want_b = (o1, o2) if first is a else (o2, o1)
                orders.append((expected(m2), want_a[0], want_b[0]))
            assert (seen, outcome_a[0], outcome_b[0]) in orders, (
                f"split {split}: A {a.name} -> {outcome_a}, B {b.name} -> {outcome_b}\n"
                f"seen     {seen}\nA then B {orders[0]}\nB then A {orders[1]}"
            )
            client.drop_database(name)
            if finished or ran < split:
                break
            split += 1
    finally:
        client.close()
