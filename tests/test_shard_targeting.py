"""Every single-document write on a shardable collection carries its shard key (issue 12). No server.

MongoDB 6.0 and 7.0 refuse ``update_one``, ``find_one_and_update``, ``find_one_and_delete``,
``delete_one`` and ``replace_one`` (alone or inside a bulk) on a sharded collection unless the filter
has an equality on the whole shard key; an upsert needs it too. Multi-document writes
(``update_many``, ``delete_many``, ``UpdateMany`` in a bulk) fan out to every shard and are allowed.

``SHARD_KEYS`` is the table the README shows. The test drives every contract plan
(``agno_mongo.domains.plans()``) with canned answers under several answer policies (nothing found,
everything matched, every non-resendable reply lost, a duplicate key first, documents found), and
the session and run plans through explicit scenarios that reach their slow paths (spill, rewrite of
an overflowed run, lost commits, chunk clean-up). Every command they yield is checked against the
table.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from agno.db.base import ComponentType, SessionType
from agno.db.schemas.evals import EvalRunRecord, EvalType
from agno.db.schemas.knowledge import KnowledgeRow
from agno.db.schemas.memory import UserMemory
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession
from agno.tracing.schemas import Span, Trace
from pymongo import DeleteOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from agno_mongo.contract.sessions import RunHints, SessionContract
from agno_mongo.domains import DOMAINS, plans
from agno_mongo.ops.command import Atomically, Command, Pause, Plan, ReplyLost, Written
from agno_mongo.schema.codec import WRITE_TOKEN
from agno_mongo.session_cache import SessionCache

# --- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sharding:
    """How a collection role may be sharded: on ``key`` (equality fields), or not at all (``key`` empty)."""

    key: tuple[str, ...]
    why: str


ID = ("_id",)
SHARD_KEYS: dict[str, Sharding] = {
    "sessions": Sharding(ID, "{_id: 'hashed'}; listings by user or component fan out"),
    "overflow": Sharding(ID, "{_id: 'hashed'}; a session's chunks are deleted by (session_id, inc) with delete_many"),
    "memories": Sharding(ID, "every single write by _id"),
    "learnings": Sharding(ID, "every single write by _id"),
    "metrics": Sharding(ID, "upserts by _id (one document per day and kind)"),
    "evals": Sharding(ID, "every single write by _id"),
    "knowledge": Sharding(ID, "every single write by _id"),
    "traces": Sharding(ID, "upsert by _id (the trace id)"),
    "spans": Sharding(ID, "inserts only (documents carry _id)"),
    "versions": Sharding((), "agno's schema stamps: upserted by table_name, a handful of documents"),
    "approvals": Sharding(ID, "every single write by _id; run status changes are update_many"),
    "compactions": Sharding(ID, "upsert by _id; per-session deletes are delete_many"),
    "transcripts": Sharding(
        ("framework", "project_key", "session_id"), "ranged; both unique indexes start with it (docs/transcripts.md)"
    ),
    "service_accounts": Sharding((), "unique token_hash and active name not prefixed by a shard key"),
    "auth_tokens": Sharding(ID, "one document per (provider, user, service), keyed by _id"),
    "schedules": Sharding((), "unique (user_id, name); the claim picks by due time (docs/schedules.md)"),
    "schedule_runs": Sharding((), "read and trimmed by schedule_id and by _id (docs/schedules.md)"),
    "authz": Sharding(ID, "one document per name; every single write by _id"),
    "authz_roles": Sharding(ID, "every single write by _id"),
    "authz_users": Sharding(ID, "every single write by _id"),
    "authz_audit": Sharding(ID, "inserts only"),
    "authz_decisions": Sharding(ID, "inserts only"),
    "company_products": Sharding(ID, "every single write by _id"),
    "company_projects": Sharding(ID, "every single write by _id"),
    "company_tasks": Sharding((), "unique (product_id, dedupe_key) not prefixed by _id"),
    "company_sources": Sharding(ID, "every single write by _id"),
    "components": Sharding(ID, "one document per component; every single write by _id"),
    "component_configs": Sharding((), "unique (component_id, version) and (component_id, label) not prefixed by _id"),
}
"""Collection role -> shard key. The README's table is this one."""

SINGLE = {"update_one", "find_one_and_update", "find_one_and_delete", "delete_one", "replace_one"}
SINGLE_IN_BULK = (UpdateOne, ReplaceOne, DeleteOne)


def is_equality(value: Any) -> bool:
    """A filter value that pins one shard-key value: a scalar, or ``{"$eq": scalar}``."""
    if isinstance(value, dict):
        return set(value) == {"$eq"} and not isinstance(value["$eq"], dict | list)
    return not isinstance(value, list)


def single_writes(command: Command) -> Iterator[tuple[dict[str, Any], bool]]:
    """The ``(filter, upsert)`` of each single-document write in a command (bulks included)."""
    if command.op in SINGLE:
        yield command.kwargs.get("filter") or {}, bool(command.kwargs.get("upsert"))
    elif command.op == "bulk_write":
        for request in command.kwargs["requests"]:
            if isinstance(request, SINGLE_IN_BULK):
                yield request._filter, bool(getattr(request, "_upsert", False))


def untargeted(command: Command) -> list[str]:
    """What in ``command`` a sharded cluster would refuse: the single writes missing the shard key."""
    sharding = SHARD_KEYS[command.collection]
    if not sharding.key:
        return []
    problems = []
    for filter_, upsert in single_writes(command):
        missing = [field for field in sharding.key if field not in filter_ or not is_equality(filter_[field])]
        if missing:
            kind = "upsert" if upsert else "single write"
            problems.append(f"{command.op} ({kind}) on {command.collection} without equality on {missing}: {filter_}")
    if command.op in ("insert_one", "insert_many"):
        documents = [command.kwargs["document"]] if command.op == "insert_one" else command.kwargs["documents"]
        for document in documents:
            missing = [field for field in sharding.key if field != "_id" and field not in document]
            if missing:
                problems.append(f"{command.op} on {command.collection} without shard key fields {missing}")
    return problems


def test_the_table_names_every_collection_and_its_unique_indexes_allow_its_key() -> None:
    """A sharded collection can only enforce a unique index that starts with its shard key."""
    assert set(SHARD_KEYS) == {domain.role for domain in DOMAINS}
    for domain in DOMAINS:
        key = SHARD_KEYS[domain.role].key
        if not key:
            continue
        for index in domain.indexes:
            document = index.document
            if document.get("unique"):
                prefix = tuple(document["key"])[: len(key)]
                assert prefix == key, f"{domain.role}: unique index {document['name']} does not start with {key}"


# --- driving plans without a server -----------------------------------------------------------------------


def wrote(n: int) -> Written:
    """What a driver answers a write that matched (and changed, deleted or inserted) ``n`` documents."""
    return Written(matched_count=n, modified_count=n, deleted_count=n, inserted_count=n)


Answerer = Callable[[Command], Any]
"""Makes the answer to one command: a value to send, or an exception to throw into the plan."""

WRITES = {"update_one", "update_many", "find_one_and_update", "find_one_and_delete", "delete_one", "delete_many"}
WRITES |= {"bulk_write", "insert_one", "insert_many", "replace_one"}


def plain(command: Command, *, matched: int, found: bool = False) -> Any:
    """Reads find nothing (or an echo of the filter's equalities), writes match ``matched`` documents."""
    echo = {k: v for k, v in (command.kwargs.get("filter") or {}).items() if not k.startswith("$") and is_equality(v)}
    if command.op in ("find", "aggregate"):
        return [echo] if found and echo else []
    if command.op == "distinct":
        return []
    if command.op == "find_one":
        return echo if found and echo else None
    if command.op == "count_documents":
        return matched
    if command.op in ("find_one_and_update", "find_one_and_delete"):
        return echo if matched and echo else None
    return wrote(matched)


def policies() -> dict[str, Callable[[], Answerer]]:
    """Fresh answerers, each steering plans down other paths."""

    def lost_once() -> Answerer:
        seen: set[int] = set()

        def answer(command: Command) -> Any:
            if not command.resend and id(command) not in seen:
                seen.add(id(command))
                return ReplyLost(command, OSError("connection reset"))
            return plain(command, matched=1)

        return answer

    def duplicate_first() -> Answerer:
        state = {"thrown": False}

        def answer(command: Command) -> Any:
            if command.op in WRITES and not state["thrown"]:
                state["thrown"] = True
                if command.op == "bulk_write":
                    return BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "dup"}]})
                return DuplicateKeyError("E11000 duplicate key", 11000)
            return plain(command, matched=1)

        return answer

    return {
        "nothing matches": lambda: lambda command: plain(command, matched=0),
        "everything matches": lambda: lambda command: plain(command, matched=1),
        "found": lambda: lambda command: plain(command, matched=1, found=True),
        "replies lost": lost_once,
        "duplicate key first": duplicate_first,
    }


def collect(plan: Plan[Any], answer: Answerer, limit: int = 300) -> tuple[list[Command], BaseException | None]:
    """Run ``plan`` on canned answers (transactions' inner plans too); its commands, and what it raised."""
    commands: list[Command] = []

    def run(steps: Plan[Any]) -> Any:
        value: Any = None
        send: Callable[[Any], Any] = steps.send
        while True:
            try:
                step = send(value)
            except StopIteration as stop:
                return stop.value
            if isinstance(step, Pause):
                value, send = None, steps.send
            elif isinstance(step, Atomically):
                try:
                    value, send = run(step.steps()), steps.send
                except Exception as error:  # the transaction's failure goes to the outer plan
                    value, send = error, steps.throw
            else:
                assert isinstance(step, Command)
                commands.append(step)
                assert len(commands) <= limit, f"more than {limit} commands: {commands[-3:]}"
                value = answer(step)
                send = steps.throw if isinstance(value, BaseException) else steps.send

    try:
        run(plan)
    except AssertionError:
        raise
    except Exception as error:  # a plan may refuse the canned answer: its commands so far still count
        return commands, error
    return commands, None


def contract_self() -> SimpleNamespace:
    """What the contract methods read from ``self``."""
    return SimpleNamespace(
        _names=defaultdict(lambda: "collection"),
        max_runs_bytes=4096,
        _run_hints=RunHints(),
        _session_cache=SessionCache(),
    )


# --- arguments for the methods whose required parameters are records -------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run_output(run_id: str = "r1", status: RunStatus = RunStatus.completed, size: int = 10) -> RunOutput:
    return RunOutput(run_id=run_id, agent_id="a", session_id="s", content="x" * size, status=status)


RECORDS: dict[str, Callable[[], dict[str, Any]]] = {
    "upsert_session": lambda: {"session": AgentSession(session_id="s", agent_id="a", user_id="u")},
    "upsert_sessions": lambda: {"sessions": [AgentSession(session_id="s", user_id="u"), AgentSession(session_id="t")]},
    "rename_session": lambda: {"session_id": "s", "session_type": SessionType.AGENT, "session_name": "n"},
    "upsert_run": lambda: {"run": run_output(), "session_id": "s", "user_id": "u"},
    "upsert_user_memory": lambda: {"memory": UserMemory(memory="tea", memory_id="m", user_id="u")},
    "upsert_memories": lambda: {"memories": [UserMemory(memory="tea", memory_id="m", user_id="u")]},
    "create_eval_run": lambda: {"eval_run": EvalRunRecord(run_id="e", eval_type=EvalType.ACCURACY, eval_data={})},
    "upsert_knowledge_content": lambda: {"knowledge_row": KnowledgeRow(id="k", name="n", description="d")},
    "upsert_trace": lambda: {
        "trace": Trace(
            trace_id="t",
            name="run",
            status="OK",
            start_time=T0,
            end_time=T0,
            duration_ms=0,
            total_spans=1,
            error_count=0,
            run_id="r",
            session_id="s",
            user_id="u",
            agent_id="a",
            team_id=None,
            workflow_id=None,
            created_at=T0,
        )
    },
    "create_span": lambda: {"span": span()},
    "create_spans": lambda: {"spans": [span(), span("sp2")]},
    "create_approval": lambda: {
        "approval_data": {
            "id": "ap",
            "run_id": "r",
            "session_id": "s",
            "status": "pending",
            "approval_type": "required",
            "pause_type": "confirmation",
            "source_type": "agent",
            "created_at": 1,
        }
    },
    "update_approval_run_status": lambda: {"run_id": "r", "run_status": RunStatus.completed},
    "create_component_with_config": lambda: {
        "component_id": "c",
        "component_type": ComponentType.AGENT,
        "name": "n",
        "config": {"model": "m"},
    },
    "get_latest_configs": lambda: {"component_ids": {"c", "d"}},
    "upsert_compaction": lambda: {
        "row": {
            "compaction_id": "c",
            "session_id": "s",
            "run_id": "r",
            "user_id": "u",
            "first_kept_message_id": "m",
            "summary": "s",
            "archived_messages": "a",
            "messages_compacted": 1,
            "tokens_before": 2,
            "tokens_after": 1,
            "created_at": 1,
        }
    },
    "append_transcript_entries": lambda: {
        "framework": "f",
        "project_key": "p",
        "session_id": "s",
        "entries": [{"type": "user", "uuid": "u1", "message": {"role": "user", "content": "hi"}}],
        "agno_session_id": "ag",
    },
    "create_service_account": lambda: {"account_data": service_account()},
    "update_service_account": lambda: {"service_account_id": "sa", "revoked_at": 5},
    "upsert_auth_token": lambda: {
        "token": {"provider": "p", "user_id": "u", "service": "s", "token_data": {"t": 1}, "granted_scopes": []}
    },
    "create_schedule": lambda: {"schedule_data": schedule_record()},
    "create_schedule_run": lambda: {"run_data": schedule_run_record()},
    "update_schedule": lambda: {"schedule_id": "sc", "description": "d"},
    "update_schedule_run": lambda: {"schedule_run_id": "sr", "status": "success"},
    "set_authz_role_policies": lambda: {"role": "r", "rows": [("agents", "run", "allow")]},
    "upsert_authz_role_meta": lambda: {"slug": "r", "values": {"is_default": False, "created_at": 1, "updated_at": 1}},
    "upsert_authz_user": lambda: {
        "user_id": "u",
        "values": {"email": "e", "name": "n", "disabled": False, "created_at": 1, "updated_at": 1, "metadata": None},
    },
    "record_authz_audit_event": lambda: {"values": {"event_id": "e", "created_at": 1, "action": "a"}},
    "record_authz_decision": lambda: {"values": {"event_id": "e", "created_at": 1, "action": "a"}},
    "create_product": lambda: {"product_data": {"id": "p", "name": "P", "purpose": "x", "created_at": 1}},
    "create_source": lambda: {
        "source_data": {"id": "so", "product_id": "p", "type": "markdown", "reference": "r", "created_at": 1}
    },
    "create_project": lambda: {
        "project_data": {
            "id": "pj",
            "product_id": "p",
            "name": "n",
            "outcome": "o",
            "status": "proposed",
            "created_at": 1,
        }
    },
    "create_task": lambda: {
        "task_data": {"id": "t", "product_id": "p", "title": "t", "brief": "b", "status": "backlog", "created_at": 1}
    },
    "update_source": lambda: {"source_id": "so", "reference": "r2"},
    "update_product": lambda: {"product_id": "p", "name": "P2"},
    "update_project": lambda: {"project_id": "pj", "name": "n2"},
    "update_task": lambda: {"task_id": "t", "title": "t2"},
    "update_approval": lambda: {"approval_id": "ap", "expected_status": "pending", "status": "approved"},
    "stamp_schedule_provenance": lambda: {"schedule_id": "sc", "managed_by": "company"},
    "get_trace": lambda: {"trace_id": "t"},
}


def span(span_id: str = "sp") -> Span:
    return Span(
        span_id=span_id,
        trace_id="t",
        parent_span_id=None,
        name="s",
        span_kind="INTERNAL",
        status_code="OK",
        status_message=None,
        start_time=T0,
        end_time=T0,
        duration_ms=0,
        attributes={},
        created_at=T0,
    )


def service_account() -> dict[str, Any]:
    from agno.db.schemas.service_accounts import ServiceAccount

    return dict(ServiceAccount(id="sa", name="ci", created_at=1, token_hash="h", token_prefix="p", scopes=[]).to_dict())


def schedule_record() -> dict[str, Any]:
    from agno.db.schemas.scheduler import Schedule

    return dict(Schedule(id="sc", name="n", created_at=1, cron_expr="*/5 * * * *", endpoint="/agents/a/runs").to_dict())


def schedule_run_record() -> dict[str, Any]:
    from agno.db.schemas.scheduler import ScheduleRun

    return dict(ScheduleRun(id="sr", schedule_id="sc", created_at=1, triggered_at=1).to_dict())


def arguments(name: str, function: Callable[..., Any]) -> dict[str, Any]:
    """Keyword arguments for a contract method: a record where it needs one, else a plain value per
    required parameter (ids as strings, lists of one id, ints)."""
    if name in RECORDS:
        return RECORDS[name]()
    out: dict[str, Any] = {}
    for parameter in list(inspect.signature(function).parameters.values())[1:]:
        if parameter.default is not parameter.empty or parameter.kind in (
            parameter.VAR_KEYWORD,
            parameter.VAR_POSITIONAL,
        ):
            continue
        annotation = str(parameter.annotation)
        if annotation.startswith("list"):
            out[parameter.name] = [f"{parameter.name}-1"]
        elif annotation.startswith("dict"):
            out[parameter.name] = {}
        elif annotation.startswith("int"):
            out[parameter.name] = 1
        elif annotation.startswith("bool"):
            out[parameter.name] = False
        else:
            out[parameter.name] = f"{parameter.name}-1"
    return out


# --- explicit scenarios for the session and run plans ------------------------------------------------------

SESSION_WRITE_METHODS = {
    "upsert_session",
    "upsert_sessions",
    "rename_session",
    "delete_session",
    "delete_sessions",
    "reassign_session_owner",
    "delete_orphaned_overflow",
    "upsert_run",
    "delete_run",
    "delete_runs",
    "cancel_pending_run",
}


def stored_run(i: int, size: int = 600) -> dict[str, Any]:
    return {"run_id": f"r{i}", "agent_id": "a", "status": "COMPLETED", "content": "x" * size, WRITE_TOKEN: f"w{i}"}


FULL_STATE = {
    "_id": "s",
    "user_id": "u",
    "inc": "i1",
    "runs": [stored_run(i) for i in range(6)],
    "runs_bytes": 4000,
    "spilled": [],
    "spill_rev": 0,
}
OVERFLOWED_STATE = {**FULL_STATE, "runs": [stored_run(5)], "runs_bytes": 800, "spilled": [{"c": "c0", "ids": ["r1"]}]}


def is_push(command: Command) -> bool:
    update = command.kwargs.get("update", {})
    return command.op == "update_one" and isinstance(update, dict) and "$push" in update


def is_set_run(command: Command) -> bool:
    """The in-place rewrite of an embedded run: a pipeline update filtered on the run's id."""
    update = command.kwargs.get("update")
    return command.op == "update_one" and isinstance(update, list) and "runs.run_id" in command.kwargs["filter"]


def slow_path(state: dict[str, Any], commit: Any) -> Answerer:
    """``upsert_run`` that misses both fast writes once, reads ``state``, writes a chunk and commits
    with ``commit`` (a match count, or an exception); after that the push lands."""
    seen = {"push": 0}

    def answer(command: Command) -> Any:
        if command.collection == "overflow":
            return wrote(1)
        if is_push(command) and command.resend:
            seen["push"] += 1
            return DuplicateKeyError("E11000", 11000) if seen["push"] == 1 else wrote(1)
        if is_set_run(command):
            return wrote(0)
        if command.op == "find_one":
            return state if "projection" in command.kwargs and "runs_bytes" in command.kwargs["projection"] else None
        if command.op == "update_one" and not command.resend:
            return commit(command) if callable(commit) else wrote(commit)
        return plain(command, matched=1)

    return answer


def lost(command: Command) -> ReplyLost:
    return ReplyLost(command, OSError("connection reset"))


def session_scenarios() -> Iterator[tuple[str, str, dict[str, Any], Answerer]]:
    """(label, method, arguments, answerer) for the session and run writes' main and slow paths."""
    everything = policies()
    for policy, make in everything.items():
        for method in sorted(SESSION_WRITE_METHODS):
            yield f"{method}: {policy}", method, arguments(method, getattr(SessionContract, method)), make()
    gone = {"_id": "s", "inc": "i1", "spilled": [{"c": "c0"}]}
    yield (
        "delete_session with overflow",
        "delete_session",
        {"session_id": "s"},
        lambda c: gone if c.op == "find_one_and_delete" else plain(c, matched=1),
    )
    yield (
        "delete_sessions unscoped",
        "delete_sessions",
        {"session_ids": ["s", "t"]},
        lambda c: [gone] if c.op == "find" else plain(c, matched=1),
    )
    yield (
        "delete_sessions scoped",
        "delete_sessions",
        {"session_ids": ["s", "t"], "user_id": "u"},
        lambda c: [gone] if c.op == "find" else plain(c, matched=1),
    )
    orphans = [{"_id": "c0", "session_id": "s"}, {"_id": "c1", "session_id": "s"}]
    yield (
        "delete_orphaned_overflow with orphans",
        "delete_orphaned_overflow",
        {},
        lambda c: orphans if c.op == "find" and c.collection == "overflow" else plain(c, matched=1),
    )
    run_args = {"run": run_output("r6", size=600), "session_id": "s", "user_id": "u"}
    yield "upsert_run spills", "upsert_run", run_args, slow_path(FULL_STATE, 1)
    yield "upsert_run spill commit misses", "upsert_run", run_args, slow_path(FULL_STATE, 0)
    yield "upsert_run spill commit reply lost", "upsert_run", run_args, slow_path(FULL_STATE, lost)
    rewrite_args = {"run": run_output("r1", size=900), "session_id": "s", "user_id": "u"}
    yield "upsert_run rewrites an overflowed run", "upsert_run", rewrite_args, slow_path(OVERFLOWED_STATE, 1)
    yield "upsert_run rewrite misses", "upsert_run", rewrite_args, slow_path(OVERFLOWED_STATE, 0)
    yield (
        "upsert_run carries itself in a spill",
        "upsert_run",
        {**run_args, "run": run_output("r2", size=900)},
        (slow_path(FULL_STATE, 1)),
    )
    yield "upsert_run at an index", "upsert_run", {**run_args, "run_index": 0}, slow_path(OVERFLOWED_STATE, 1)
    yield (
        "rename_session too big",
        "rename_session",
        arguments("rename_session", SessionContract.rename_session),
        (lambda c: [{"_id": "s", "size": 1 << 30}] if c.op == "aggregate" else plain(c, matched=0)),
    )
    cancel = {"run_id": "r1", "session_id": "s", "reason": "stop", "user_id": "u"}
    yield (
        "cancel_pending_run second statement",
        "cancel_pending_run",
        cancel,
        lambda c: wrote(0 if "runs_bytes" in c.kwargs["filter"] else 1),
    )


def run_scenario(method: str, kwargs: dict[str, Any], answer: Answerer) -> tuple[list[Command], BaseException | None]:
    self = contract_self()
    if method == "upsert_run" and kwargs["run"].run_id == "r2":
        self._run_hints.add(("s", "r2"))  # a run this process wrote: the positional $set goes first
    return collect(getattr(SessionContract, method)(self, **kwargs), answer)


# --- the checks ---------------------------------------------------------------------------------------------


def test_every_session_and_run_write_is_targeted_on_every_path() -> None:
    problems: list[str] = []
    writes: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for label, method, kwargs, answer in session_scenarios():
        commands, _ = run_scenario(method, kwargs, answer)
        for command in commands:
            problems += [f"{label}: {problem}" for problem in untargeted(command)]
            if command.op in WRITES:
                writes[method].add((command.collection, command.op))
    assert problems == []
    assert SESSION_WRITE_METHODS <= set(writes), f"never wrote: {SESSION_WRITE_METHODS - set(writes)}"
    every = set().union(*writes.values())
    assert {("overflow", "update_one"), ("overflow", "delete_one"), ("overflow", "delete_many")} <= every
    assert {("sessions", "update_one"), ("sessions", "bulk_write"), ("sessions", "find_one_and_update")} <= every
    assert ("sessions", "find_one_and_delete") in every and ("sessions", "delete_many") in every


def test_the_slow_paths_of_upsert_run_were_reached() -> None:
    """The scenarios do reach the spill and rewrite commits (else the check above proves little)."""
    reached: dict[str, list[str]] = {}
    for label, method, kwargs, answer in session_scenarios():
        if label.startswith("upsert_run ") and ":" not in label:
            commands, error = run_scenario(method, kwargs, answer)
            assert error is None, f"{label}: {error!r}"
            reached[label] = [f"{c.collection}.{c.op}{'' if c.resend else '!'}" for c in commands]
    assert "overflow.update_one" in reached["upsert_run spills"]
    assert "sessions.update_one!" in reached["upsert_run spills"]
    assert "overflow.delete_one" in reached["upsert_run spill commit misses"]
    assert reached["upsert_run rewrites an overflowed run"].count("overflow.update_one") == 1
    assert "overflow.delete_one" in reached["upsert_run rewrite misses"]


def test_delete_runs_fans_out_by_design_and_settles_a_lost_reply_by_its_token() -> None:
    """No session id is known from a run id; two ``UpdateMany`` statements in one bulk need no shard
    key (atomic per document), and after a lost reply a read of the ``_ops`` token decides."""
    commands, error = collect(SessionContract.delete_run(contract_self(), "r1"), policies()["replies lost"]())
    assert error is None
    bulk, check, *rest = commands
    assert bulk.op == "bulk_write" and not bulk.resend
    assert [type(request).__name__ for request in bulk.kwargs["requests"]] == ["UpdateMany", "UpdateMany"]
    assert check.op == "find_one" and set(check.kwargs["filter"]) == {"_ops"}
    assert rest == [bulk]  # not found: the same command, same token, sent again


def every_plan() -> Iterator[tuple[str, Callable[..., Any]]]:
    yield from plans()


@pytest.mark.parametrize("name,function", list(every_plan()), ids=[name for name, _ in every_plan()])
def test_every_contract_plan_sends_only_targeted_single_document_writes(name: str, function: Any) -> None:
    problems: list[str] = []
    sent = 0
    for policy, make in policies().items():
        try:
            plan = function(contract_self(), **arguments(name, function))
        except Exception as error:  # pragma: no cover - a refusal here means RECORDS needs an entry
            pytest.fail(f"{name}: refused its arguments: {error!r}")
        commands, _ = collect(plan, make())
        sent += len(commands)
        problems += [f"{policy}: {problem}" for command in commands for problem in untargeted(command)]
    assert sent, f"{name} sent no command under any policy: give it arguments in RECORDS"
    assert problems == []


def test_the_check_refuses_what_a_sharded_cluster_refuses() -> None:
    """The shapes issue 12 found (before delete_run fanned out) and their allowed counterparts."""
    old_delete_run = Command("sessions", "update_one", {"filter": {"runs.run_id": "r1"}, "update": {"$pull": {}}})
    old_overflow_pull = Command("overflow", "update_one", {"filter": {"runs.run_id": "r1"}, "update": {"$pull": {}}})
    ranged = Command("sessions", "delete_one", {"filter": {"_id": {"$in": ["a", "b"]}}})
    in_bulk = Command("sessions", "bulk_write", {"requests": [UpdateOne({"user_id": "u"}, {"$set": {"x": 1}})]})
    unkeyed_insert = Command("transcripts", "insert_one", {"document": {"framework": "f", "session_id": "s"}})
    for refused in (old_delete_run, old_overflow_pull, ranged, in_bulk, unkeyed_insert):
        assert untargeted(refused), refused
    fan_out = Command("sessions", "update_many", {"filter": {"runs.run_id": "r1"}, "update": {"$pull": {}}})
    targeted = Command("sessions", "update_one", {"filter": {"_id": {"$eq": "s"}, "user_id": "u"}, "update": {}})
    unsharded = Command("schedules", "find_one_and_update", {"filter": {"next_run_at": {"$lte": 1}}, "update": {}})
    for allowed in (fan_out, targeted, unsharded):
        assert untargeted(allowed) == [], allowed
