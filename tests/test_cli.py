"""The ``agno-mongo`` command line against a real wire server, on sessions seeded through the public API.

Runs are real ``RunOutput`` objects with agno ``Message`` lists (system, user, assistant tool calls,
tool replies, answers), saved with ``upsert_session``/``upsert_run`` as an agent would save them.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agno.metrics import RunMetrics
from agno.models.message import Message
from agno.run.agent import RunInput, RunOutput
from agno.run.base import RunStatus
from agno.run.team import TeamRunOutput
from agno.session import AgentSession, TeamSession
from pymongo import MongoClient
from typer.testing import CliRunner

from agno_mongo import MongoDb, local
from agno_mongo.cli import app
from agno_mongo.cli.common import Filters, parse_time
from agno_mongo.cli.export import few_shot_example, iter_sessions
from agno_mongo.cli.tail import poll_plan, runs_from_change
from agno_mongo.cli.views import sparkline
from agno_mongo.domains import INDEXES
from tests.conftest import Commands
from tests.test_agentos_app import free_port

DAY = 86_400
NOW = int(time.time())
TODAY = time.strftime("%Y-%m-%d", time.gmtime(NOW))


def run_output(
    run_id: str,
    agent_id: str,
    user_id: str,
    question: str,
    answer: str | None,
    created_at: int,
    *,
    tool: tuple[str, str, str] | None = None,
    status: RunStatus = RunStatus.completed,
    tokens: tuple[int, int] = (40, 12),
) -> RunOutput:
    """A run as agno records it: system prompt, question, optional tool round trip, answer, metrics."""
    messages = [Message(role="system", content=f"You are {agent_id}."), Message(role="user", content=question)]
    if tool is not None:
        name, arguments, result = tool
        call = {"id": f"call_{run_id}", "type": "function", "function": {"name": name, "arguments": arguments}}
        messages.append(Message(role="assistant", tool_calls=[call]))
        messages.append(Message(role="tool", tool_call_id=f"call_{run_id}", tool_name=name, content=result))
    if answer is not None:
        messages.append(Message(role="assistant", content=answer))
    return RunOutput(
        run_id=run_id,
        agent_id=agent_id,
        user_id=user_id,
        input=RunInput(input_content=question),
        content=answer,
        messages=messages,
        model="gpt-4o-mini",
        model_provider="OpenAI",
        status=status,
        created_at=created_at,
        metrics=RunMetrics(input_tokens=tokens[0], output_tokens=tokens[1], total_tokens=sum(tokens), duration=0.75),
    )


SESSIONS = [
    # session id, agent, user, name, days ago, turns: (question, answer, tool)
    (
        "trip-lisbon",
        "travel-agent",
        "alice",
        "Trip to Lisbon",
        3,
        [
            ("What's the weather in Lisbon?", "Sunny, 24C.", ("get_weather", '{"city": "Lisbon"}', "sunny 24C")),
            ("Best pastel de nata?", "Try Manteigaria.", None),
        ],
    ),
    (
        "taxes",
        "tax-agent",
        "alice",
        "Tax questions",
        2,
        [("Can I deduct my home office?", "Yes, if only for work.", None)],
    ),
    (
        "birthday",
        "travel-agent",
        "bob",
        "Birthday ideas",
        1,
        [("A weekend trip for a birthday?", "Porto.", None), ("Book it", None, None)],
    ),
    (
        "refund",
        "support-agent",
        "carol",
        "Refund request",
        0,
        [("Where is my refund?", "Issued today.", ("lookup_order", '{"order": "42"}', "refund issued"))],
    ),
]


def seed(db: MongoDb) -> None:
    """Four agent sessions over four days (one errored run) and one team session, via the public API."""
    for session_id, agent_id, user_id, name, days_ago, turns in SESSIONS:
        created = NOW - days_ago * DAY
        db.upsert_session(
            AgentSession(
                session_id=session_id,
                agent_id=agent_id,
                user_id=user_id,
                session_data={"session_name": name},
                created_at=created,
            )
        )
        for index, (question, answer, tool) in enumerate(turns):
            status = RunStatus.completed if answer is not None else RunStatus.error
            run = run_output(
                f"{session_id}-{index}",
                agent_id,
                user_id,
                question,
                answer,
                created + 60 * index,
                tool=tool,
                status=status,
            )
            db.upsert_run(run, session_id=session_id, user_id=user_id)
    db.upsert_session(TeamSession(session_id="team-1", team_id="research-team", user_id="dave", created_at=NOW))
    team_run = TeamRunOutput(
        run_id="team-1-0",
        team_id="research-team",
        user_id="dave",
        input=None,
        content="A summary.",
        messages=[Message(role="user", content="Summarise the news"), Message(role="assistant", content="A summary.")],
        model="gpt-4o",
        status=RunStatus.completed,
        created_at=NOW,
        metrics=RunMetrics(input_tokens=100, output_tokens=50, total_tokens=150),
    )
    db.upsert_run(team_run, session_id="team-1", user_id="dave")


@pytest.fixture
def store(mongodb_url: str, db_name: str) -> Iterator[MongoDb]:
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    seed(db)
    yield db
    db.close()


@pytest.fixture
def cli(mongodb_url: str, db_name: str) -> Any:
    """Run ``agno-mongo ARGS --url URL --db NAME``; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Any:
        return runner.invoke(app, [*args, "--url", mongodb_url, "--db", db_name], env={"COLUMNS": "200", **(env or {})})

    return invoke


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- connection ---------------------------------------------------------------------------------


def test_url_from_environment(store: MongoDb, mongodb_url: str, db_name: str) -> None:
    result = CliRunner().invoke(app, ["sessions", "list", "--db", db_name, "--json"], env={"MONGODB_URL": mongodb_url})
    assert json.loads(result.stdout)["total"] == 5


def test_unreachable_server_is_an_error_not_a_traceback() -> None:
    url = "mongodb://user:secret@127.0.0.1:1/?serverSelectionTimeoutMS=300"
    result = CliRunner().invoke(app, ["sessions", "list", "--url", url])
    assert result.exit_code == 1
    assert "cannot reach MongoDB" in result.output and "secret" not in result.output


# --- sessions list / show / rename --------------------------------------------------------------


def test_sessions_list_json_filters_and_paging(store: MongoDb, cli: Any) -> None:
    everything = as_json(cli("sessions", "list", "--json"))
    assert everything["total"] == 5
    updated = [s["updated_at"] for s in everything["sessions"]]
    assert updated == sorted(updated, reverse=True)  # latest update first

    alice = as_json(cli("sessions", "list", "--json", "--user", "alice"))
    assert {s["session_id"] for s in alice["sessions"]} == {"trip-lisbon", "taxes"}

    travel = as_json(cli("sessions", "list", "--json", "--agent", "travel-agent"))
    assert {s["session_id"] for s in travel["sessions"]} == {"trip-lisbon", "birthday"}
    assert (
        as_json(cli("sessions", "list", "--json", "--team", "research-team"))["sessions"][0]["session_id"] == "team-1"
    )

    named = as_json(cli("sessions", "list", "--json", "--name", "LISBON"))
    assert [s["name"] for s in named["sessions"]] == ["Trip to Lisbon"]

    window = as_json(
        cli("sessions", "list", "--json", "--since", "4d", "--until", time.strftime("%Y-%m-%d", time.gmtime(NOW - DAY)))
    )
    assert {s["session_id"] for s in window["sessions"]} == {"trip-lisbon", "taxes", "birthday"}

    pages = [
        as_json(cli("sessions", "list", "--json", "--limit", "2", "--page", str(page), "--sort", "created_at", "--asc"))
        for page in (1, 2, 3)
    ]
    ids = [s["session_id"] for page in pages for s in page["sessions"]]
    assert ids[:4] == ["trip-lisbon", "taxes", "birthday", "refund"] and len(ids) == 5
    assert all(page["total"] == 5 and page["limit"] == 2 for page in pages)


def test_sessions_list_table(store: MongoDb, cli: Any) -> None:
    result = cli("sessions", "list", "--user", "alice")
    assert result.exit_code == 0
    assert "Sessions 1-2 of 2" in result.stdout
    assert "trip-lisbon" in result.stdout and "Tax questions" in result.stdout and "alice" in result.stdout


def test_sessions_list_bad_input(store: MongoDb, cli: Any) -> None:
    assert cli("sessions", "list", "--agent", "a", "--team", "b").exit_code == 2
    bad_sort = cli("sessions", "list", "--sort", "nope")
    assert bad_sort.exit_code == 2 and "sort_by" in bad_sort.output
    assert cli("sessions", "list", "--since", "last tuesday").exit_code == 2


def test_sessions_show_json_transcript(store: MongoDb, cli: Any) -> None:
    shown = as_json(cli("sessions", "show", "trip-lisbon", "--json"))
    assert shown["name"] == "Trip to Lisbon" and shown["user_id"] == "alice" and len(shown["runs"]) == 2
    first = shown["runs"][0]
    assert first["status"] == "COMPLETED" and first["model"] == "gpt-4o-mini" and first["model_provider"] == "OpenAI"
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (40, 12, 52)
    assert first["duration"] == 0.75 and first["created_at"] == NOW - 3 * DAY
    roles = [m["role"] for m in first["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    call = first["messages"][2]["tool_calls"][0]
    assert call == {"id": "call_trip-lisbon-0", "name": "get_weather", "arguments": '{"city": "Lisbon"}'}


def test_sessions_show_transcript_text(store: MongoDb, cli: Any) -> None:
    result = cli("sessions", "show", "birthday")
    assert result.exit_code == 0
    text = result.stdout
    assert "Session birthday" in text and "Birthday ideas" in text and "user bob" in text
    assert "Run 1/2 · COMPLETED · gpt-4o-mini (OpenAI) · 52 tokens (40 in / 12 out) · 0.75 s" in text
    assert "Run 2/2 · ERROR" in text
    assert "A weekend trip for a birthday?" in text and "Porto." in text
    assert "You are travel-agent." not in text  # system prompts only with --system
    assert "You are travel-agent." in cli("sessions", "show", "birthday", "--system").stdout
    tools = cli("sessions", "show", "trip-lisbon").stdout
    assert '→ get_weather({"city": "Lisbon"})' in tools and "get_weather ⇒ sunny 24C" in tools


def test_sessions_show_respects_owner_and_missing(store: MongoDb, cli: Any) -> None:
    assert cli("sessions", "show", "trip-lisbon", "--user", "bob").exit_code == 1
    missing = cli("sessions", "show", "nope")
    assert missing.exit_code == 1 and "no session 'nope'" in missing.output


def test_sessions_rename(store: MongoDb, cli: Any) -> None:
    assert as_json(cli("sessions", "rename", "taxes", "Taxes 2026", "--json")) == {
        "session_id": "taxes",
        "name": "Taxes 2026",
    }
    renamed = store.get_session("taxes", deserialize=False)
    assert renamed is not None and renamed["session_data"]["session_name"] == "Taxes 2026"  # type: ignore[index]
    assert cli("sessions", "rename", "taxes", "x", "--user", "bob").exit_code == 1


# --- export few-shot ----------------------------------------------------------------------------


def jsonl(text: str) -> list[dict[str, Any]]:
    """Parse JSONL, checking each line is a JSON object with a non-empty messages list."""
    examples = [json.loads(line) for line in text.splitlines() if line.strip()]
    for example in examples:
        assert set(example) == {"messages"}
        assert isinstance(example["messages"], list) and example["messages"]
        assert {m["role"] for m in example["messages"]} <= {"system", "user", "assistant", "tool"}
        assert example["messages"][-1]["role"] == "assistant" and example["messages"][-1]["content"]
    return examples


def test_export_few_shot_openai_format(store: MongoDb, cli: Any) -> None:
    result = cli("export", "few-shot")
    assert result.exit_code == 0, result.output
    examples = jsonl(result.stdout)
    assert len(examples) == 6  # 7 runs, the errored one has no answer
    assert "6 examples from 7 runs in 5 sessions (skipped: 1 no final answer)" in result.stderr
    weather = examples[0]["messages"]
    assert weather == [
        {"role": "system", "content": "You are travel-agent."},
        {"role": "user", "content": "What's the weather in Lisbon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_trip-lisbon-0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_trip-lisbon-0", "content": "sunny 24C"},
        {"role": "assistant", "content": "Sunny, 24C."},
    ]
    assert isinstance(json.loads(weather[2]["tool_calls"][0]["function"]["arguments"]), dict)


def test_export_no_tools_completed_only_filters_and_out_file(store: MongoDb, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    summary = as_json(cli("export", "few-shot", "--no-tools", "--completed-only", "--out", str(out), "--json"))
    assert summary == {
        "sessions": 5,
        "runs": 7,
        "written": 6,
        "skipped": {"not completed": 1},
        "out": str(out),
    }
    examples = jsonl(out.read_text(encoding="utf-8"))
    assert all(m["role"] != "tool" and "tool_calls" not in m for e in examples for m in e["messages"])
    assert examples[0]["messages"][-2:] == [
        {"role": "user", "content": "What's the weather in Lisbon?"},
        {"role": "assistant", "content": "Sunny, 24C."},
    ]
    alice = jsonl(cli("export", "few-shot", "--user", "alice").stdout)
    assert len(alice) == 3
    travel = jsonl(cli("export", "few-shot", "--agent", "travel-agent", "--name", "birthday").stdout)
    assert [e["messages"][1]["content"] for e in travel] == ["A weekend trip for a birthday?"]
    assert len(jsonl(cli("export", "few-shot", "--max", "2").stdout)) == 2


def test_export_pages_by_keyset_not_skip(store: MongoDb, mongodb_url: str, db_name: str) -> None:
    """Each page is one ``find`` after the last (created_at, _id) read, with no skip; sessions sharing
    one created_at across a page boundary are neither lost nor repeated."""
    for number in range(5):  # five sessions created in the same second as "refund"
        store.upsert_session(AgentSession(session_id=f"same-{number}", agent_id="a", user_id="u", created_at=NOW))
    commands = Commands()
    db = MongoDb(db_client=MongoClient(mongodb_url, event_listeners=[commands]), db_name=db_name)
    try:
        ids = [session["session_id"] for session in iter_sessions(db, Filters(), page_size=2)]
    finally:
        db.db_client.close()
    assert len(ids) == len(set(ids)) == 10
    assert ids[:3] == ["trip-lisbon", "taxes", "birthday"]
    finds = [sent for sent in commands.sent if "find" in sent]
    assert len(finds) == 6 and all("skip" not in sent and sent["limit"] == 2 for sent in finds)  # 5 full, 1 empty
    assert all("$and" in sent["filter"] for sent in finds[1:])  # after the first page: a keyset range


def test_export_includes_runs_moved_to_overflow(mongodb_url: str, db_name: str, cli: Any) -> None:
    """A long session's oldest runs live in overflow documents; the export still has every run."""
    small = MongoDb(db_url=mongodb_url, db_name=db_name, max_runs_bytes=4096)
    small.upsert_session(AgentSession(session_id="long", agent_id="a", user_id="u"))
    for index in range(10):
        run = run_output(f"long-{index}", "a", "u", f"question {index}", "x" * 600, NOW + index)
        small.upsert_run(run, session_id="long", user_id="u")
    small.close()
    examples = jsonl(cli("export", "few-shot").stdout)
    assert [e["messages"][1]["content"] for e in examples] == [f"question {index}" for index in range(10)]


def clone_sessions(mongodb_url: str, db_name: str, count: int) -> None:
    """``count`` copies of one session saved through the API (5 runs of ~3 KB), inserted in bulk."""
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    db.upsert_session(AgentSession(session_id="proto", agent_id="a", user_id="u", created_at=NOW))
    for index in range(5):
        run = run_output(f"proto-{index}", "a", "u", "q" * 1000, "a" * 2000, NOW + index)
        db.upsert_run(run, session_id="proto", user_id="u")
    db.close()
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    collection = client[db_name]["agno_sessions"]
    proto = collection.find_one({"_id": "proto"})
    assert proto is not None
    copies = []
    for number in range(count - 1):
        document = copy.deepcopy(proto)
        document["_id"] = document["session_id"] = f"s{number:06d}"
        document["created_at"] = NOW + number + 1
        for run in document["runs"]:
            run["run_id"] = f"{document['_id']}-{run['run_id']}"
        copies.append(document)
    collection.insert_many(copies)
    client.close()


def export_peak(mongodb_url: str, db_name: str, out: Path) -> int:
    tracemalloc.start()
    try:
        result = CliRunner().invoke(
            app, ["export", "few-shot", "--url", mongodb_url, "--db", db_name, "--out", str(out), "--page-size", "20"]
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    return peak


def test_export_memory_stays_flat(mongodb_url: str, tmp_path: Path) -> None:
    """Six times the runs, about the same peak memory: only one page of sessions is ever held."""
    small, large = "test_cli_mem_small", "test_cli_mem_large"
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    try:
        clone_sessions(mongodb_url, small, 100)  # 500 runs
        clone_sessions(mongodb_url, large, 600)  # 3,000 runs
        export_peak(mongodb_url, small, tmp_path / "warmup.jsonl")  # imports and first-use caches
        small_peak = export_peak(mongodb_url, small, tmp_path / "small.jsonl")
        large_peak = export_peak(mongodb_url, large, tmp_path / "large.jsonl")
    finally:
        client.drop_database(small)
        client.drop_database(large)
        client.close()
    assert sum(1 for _ in (tmp_path / "large.jsonl").open()) == 3000
    large_size = (tmp_path / "large.jsonl").stat().st_size
    assert large_peak < small_peak * 1.3, (small_peak, large_peak)
    assert large_peak < large_size / 2, (large_peak, large_size)


def test_few_shot_example_unpaired_tool_calls_fall_back_to_plain_messages() -> None:
    run = {
        "status": "COMPLETED",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}]},
            {"role": "assistant", "content": "done"},
        ],
    }
    example, reason = few_shot_example(run)
    assert reason is None and example == {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "done"}]
    }
    history = {"messages": [{"role": "user", "content": "old", "from_history": True}, *run["messages"]]}
    assert few_shot_example(history)[0] == example
    assert few_shot_example({"input": {"input_content": "q"}, "content": "a"})[0] == {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    }
    assert few_shot_example({"messages": [{"role": "user", "content": "q"}]}) == (None, "no final answer")


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_per_day_and_per_agent(store: MongoDb, cli: Any) -> None:
    report = as_json(cli("metrics", "--json", "--since", "5d"))
    assert report["source"] == "runs" and report["until"] == TODAY and len(report["days"]) == 6
    by_day = {day["day"]: day for day in report["days"]}
    three_days_ago = time.strftime("%Y-%m-%d", time.gmtime(NOW - 3 * DAY))
    assert by_day[three_days_ago] == {"day": three_days_ago, "runs": 2, "sessions": 1, "users": 1, "tokens": 104}
    assert by_day[TODAY] == {"day": TODAY, "runs": 2, "sessions": 2, "users": 2, "tokens": 52 + 150}
    assert report["totals"] == {"runs": 7, "sessions": 5, "users": 4, "tokens": 6 * 52 + 150}
    agents = {(a["kind"], a["component_id"]): a for a in report["agents"]}
    assert agents[("agent", "travel-agent")] == {
        "kind": "agent",
        "component_id": "travel-agent",
        "runs": 4,
        "sessions": 2,
        "users": 2,
        "tokens": 208,
    }
    assert agents[("team", "research-team")]["tokens"] == 150
    assert report["agents"][0]["component_id"] == "travel-agent"  # most runs first

    only_tax = as_json(cli("metrics", "--json", "--agent", "tax-agent", "--since", "5d"))
    assert only_tax["totals"]["runs"] == 1 and [a["component_id"] for a in only_tax["agents"]] == ["tax-agent"]
    recent = as_json(cli("metrics", "--json", "--since", "1d"))
    assert recent["totals"]["runs"] == 4  # birthday (2), refund, team: runs before the window are not read


def test_metrics_table_and_chart(store: MongoDb, cli: Any) -> None:
    result = cli("metrics", "--since", "3d")
    assert result.exit_code == 0, result.output
    assert "Per day" in result.stdout and "Per agent / team / workflow" in result.stdout
    assert "travel-agent" in result.stdout and "█" in result.stdout
    assert sparkline([0, 1, 2, 4]) == "·▂▄█"


def test_metrics_from_stored_records(store: MongoDb, cli: Any) -> None:
    report = as_json(cli("metrics", "--json", "--from-records", "--refresh", "--since", "5d"))
    assert report["source"] == "records" and report["records"] > 0
    assert report["totals"]["runs"] == 7 and report["totals"]["sessions"] == 5 and report["totals"]["users"] is None
    assert sum(day["users"] for day in report["days"]) == 5  # one owner bucket per session here
    assert cli("metrics", "--from-records", "--agent", "tax-agent").exit_code == 2
    assert cli("metrics", "--refresh").exit_code == 2


# --- tail ---------------------------------------------------------------------------------------


def test_tail_once_prints_latest_runs_oldest_first(store: MongoDb, cli: Any) -> None:
    result = cli("tail", "--once", "-n", "3", "--json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["run_id"] for e in events] == ["birthday-1", "refund-0", "team-1-0"]
    assert events[1] | {"duration": None} == {
        "session_id": "refund",
        "user_id": "carol",
        "run_id": "refund-0",
        "status": "COMPLETED",
        "kind": "agent",
        "component_id": "support-agent",
        "model": "gpt-4o-mini",
        "total_tokens": 52,
        "duration": None,
        "created_at": NOW,
        "input": "Where is my refund?",
        "content": "Issued today.",
    }
    text = cli("tail", "--once", "-n", "1", "--user", "carol")
    assert "COMPLETED" in text.stdout and "support-agent" in text.stdout and "Where is my refund?" in text.stdout


def test_tail_follows_new_runs(store: MongoDb, mongodb_url: str, db_name: str) -> None:
    """Polling on a server without change streams: only runs landing after the start print, then the status change."""
    results: list[Any] = []
    args = ["tail", "--url", mongodb_url, "--db", db_name, "-n", "0", "--json", "--for", "3", "--interval", "0.2"]
    thread = threading.Thread(target=lambda: results.append(CliRunner().invoke(app, args)))
    thread.start()
    time.sleep(1.0)
    live = run_output("live-0", "support-agent", "carol", "Any news?", None, int(time.time()))
    live.status = RunStatus.running
    store.upsert_run(live, session_id="refund", user_id="carol")
    time.sleep(0.6)
    live.status, live.content = RunStatus.completed, "Friday."
    store.upsert_run(live, session_id="refund", user_id="carol")
    thread.join(timeout=20)
    result = results[0]
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(e["run_id"], e["status"]) for e in events] == [("live-0", "RUNNING"), ("live-0", "COMPLETED")]


def test_runs_from_change_events() -> None:
    run = {"run_id": "r2", "user_id": "u", "created_at": 100}
    pushed = {
        "operationType": "update",
        "documentKey": {"_id": "s1"},
        "updateDescription": {"updatedFields": {"runs.2": run, "updated_at": 5, "runs.1.status": "CANCELLED"}},
    }
    assert runs_from_change(pushed) == [("s1", "u", run)]
    inserted = {"operationType": "insert", "documentKey": {"_id": "s2"}, "fullDocument": {"runs": [run]}}
    assert runs_from_change(inserted) == [("s2", "u", run)]
    pulled = {
        "operationType": "update",
        "documentKey": {"_id": "s1"},
        "updateDescription": {"updatedFields": {"runs": [run, {"run_id": "r3", "created_at": 300}]}},
    }
    assert [r["run_id"] for _, _, r in runs_from_change(pulled, since=200)] == ["r3"]
    assert runs_from_change({"operationType": "delete", "documentKey": {"_id": "s1"}}) == []


# --- doctor -------------------------------------------------------------------------------------


def test_doctor_reports_server_indexes_and_sizes(store: MongoDb, cli: Any) -> None:
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["server"]["version"] and report["server"]["topology"]
    assert report["server"]["max_bson_object_size"] == 16 * 1024 * 1024
    by_role = {c["role"]: c for c in report["collections"]}
    assert by_role["sessions"]["collection"] == "agno_sessions" and by_role["sessions"]["documents"] == 5
    assert {i["status"] for i in by_role["sessions"]["indexes"]} == {"ok"}
    assert {i["status"] for i in by_role["memories"]["indexes"]} == {"no collection yet"}
    largest = report["largest_sessions"]
    assert largest[0]["session_id"] == "trip-lisbon" and len(largest) == 5
    assert [s["bytes"] for s in largest] == sorted((s["bytes"] for s in largest), reverse=True)
    assert 0 < largest[0]["percent_of_limit"] < 1 and largest[0]["runs"] == 2
    assert report["problems"] == []
    text = cli("doctor", "--top", "2").stdout
    assert "Largest session documents" in text and "No problems found." in text and "runs_run_id" in text


def test_doctor_flags_a_missing_index(store: MongoDb, cli: Any, mongodb_url: str, db_name: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    client[db_name]["agno_sessions"].drop_index("runs_run_id")
    client.close()
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["problems"] == ["agno_sessions: index runs_run_id missing"]
    assert "runs_run_id" in {model.document["name"] for model in INDEXES["sessions"]}


# --- odds and ends ------------------------------------------------------------------------------


def test_parse_time_forms() -> None:
    assert parse_time("2026-01-02", "--since") == 1767312000
    assert parse_time("2026-01-02", "--until", end=True) == 1767312000 + DAY - 1
    assert parse_time("2026-01-02T03:04:05+00:00", "--since") == 1767312000 + 3 * 3600 + 4 * 60 + 5
    assert parse_time("1767312000", "--since") == 1767312000
    assert parse_time("2d", "--since", now=1_000_000) == 1_000_000 - 2 * DAY
    assert parse_time(None, "--since") is None


def test_dashboard_command_serves_the_dashboard(store: MongoDb, mongodb_url: str, db_name: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "agno_mongo.cli", "dashboard", "--url", mongodb_url, "--db", db_name]
    process = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/sessions", params={"q": "lisbon"}, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "dashboard did not start"
                time.sleep(0.2)
        assert answer.json()["sessions"][0]["session_id"] == "trip-lisbon"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_console_script_module_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agno_mongo.cli", "--help"], capture_output=True, text=True, env={**os.environ}
    )
    assert result.returncode == 0
    for command in ("sessions", "export", "metrics", "tail", "doctor"):
        assert command in result.stdout


# --- where the data is: the examples' embedded server by default, MONGODB_URL / MONGODB_URI ---------

ROOT = Path(__file__).resolve().parent.parent
NO_URL: dict[str, str | None] = {"MONGODB_URL": None, "MONGODB_URI": None, "AGNO_MONGO_DB": None}


@pytest.mark.skipif(local.embedded_problem() is not None, reason=str(local.embedded_problem()))
def test_without_a_url_the_cli_reads_what_the_example_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/storage.py with no MONGODB_URL writes to the embedded server's data file; the CLI with
    no URL opens the same file and database, says so on stderr, and sees the conversation."""
    env = {key: value for key, value in os.environ.items() if key not in NO_URL and key != "AGNO_MONGO_DATA"}
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "storage.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    monkeypatch.chdir(tmp_path)
    shown = CliRunner().invoke(app, ["sessions", "show", "fixed_id_for_demo", "--json"], env={**NO_URL})
    assert shown.exit_code == 0, shown.output
    assert [run["input"] for run in json.loads(shown.stdout)["runs"]] == [
        "What was my last question?",
        "What is the capital of France?",
        "What was my last question?",
    ]
    assert shown.stderr.strip() == (
        "using the embedded server on .agno_mongo/demo.sqlite, database agno_demo; set MONGODB_URL to use yours"
    )
    report = json.loads(CliRunner().invoke(app, ["metrics", "--json"], env={**NO_URL}).stdout)
    assert [(a["component_id"], a["runs"]) for a in report["agents"]] == [("demo-agent", 3)]  # one fixed agent id


def test_without_a_url_and_no_embedded_server_the_advice_names_mongodb_url(monkeypatch: pytest.MonkeyPatch) -> None:
    advice = local.embedded_problem(version=(3, 11), have_mongoeco=False)
    assert advice is not None and "Python 3.13" in advice and "3.11" in advice
    assert "MONGODB_URL" in advice and "MONGODB_URI" not in advice
    assert local.embedded_problem(version=(3, 13), have_mongoeco=True) is None
    monkeypatch.setattr(local, "embedded_problem", lambda: advice)
    result = CliRunner().invoke(app, ["sessions", "list"], env={**NO_URL})
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "Python 3.13" in result.output
    as_json_error = CliRunner().invoke(app, ["sessions", "list", "--json"], env={**NO_URL})
    assert as_json_error.exit_code == 2
    assert json.loads(as_json_error.stdout) == {"error": f"no MongoDB URL given, and {advice}", "kind": "no_server"}


def test_mongodb_uri_is_an_alias_of_mongodb_url(store: MongoDb, mongodb_url: str, db_name: str) -> None:
    assert local.env_url({"MONGODB_URI": " u "}) == "u"
    assert local.env_url({"MONGODB_URL": "a", "MONGODB_URI": "b"}) == "a"
    assert local.env_url({"MONGODB_URL": " "}) is None
    env = {**NO_URL, "MONGODB_URI": mongodb_url}
    result = CliRunner().invoke(app, ["sessions", "list", "--db", db_name, "--json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["total"] == 5 and result.stderr == ""


# --- errors: one line, or JSON with --json ----------------------------------------------------------


@pytest.mark.parametrize("url", ["mongodb://127.0.0.1:99999", "mongodb://127.0.0.1:abc", "not a url"])
def test_a_bad_url_is_one_line_or_json(url: str) -> None:
    result = CliRunner().invoke(app, ["sessions", "list", "--url", url])
    assert result.exit_code == 2
    assert result.output.startswith("error: bad MongoDB URL") and result.output.count("\n") == 1
    assert "Traceback" not in result.output
    as_json_error = CliRunner().invoke(app, ["sessions", "list", "--url", url, "--json"])
    assert as_json_error.exit_code == 2 and as_json_error.stderr == ""
    answer = json.loads(as_json_error.stdout)
    assert answer["kind"] == "bad_url" and answer["error"].startswith("bad MongoDB URL")


def test_timeout_is_what_the_driver_waits() -> None:
    """``--timeout`` reaches PyMongo: the message quotes the wait PyMongo itself reports."""
    result = CliRunner().invoke(app, ["sessions", "list", "--url", "mongodb://127.0.0.1:1", "--timeout", "0.3"])
    assert result.exit_code == 1 and "cannot reach MongoDB at mongodb://127.0.0.1:1 within 0.3 s" in result.output
    as_json_error = CliRunner().invoke(app, ["doctor", "--url", "mongodb://127.0.0.1:1", "--timeout", "0.25", "--json"])
    assert as_json_error.exit_code == 1
    answer = json.loads(as_json_error.stdout)
    assert answer["kind"] == "unreachable" and "within 0.25 s" in answer["error"]


def test_usage_errors_are_json_with_json(store: MongoDb, cli: Any) -> None:
    result = cli("sessions", "list", "--json", "--since", "last tuesday")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["kind"] == "usage"
    missing = cli("sessions", "show", "nope", "--json")
    assert missing.exit_code == 1 and json.loads(missing.stdout) == {"error": "no session 'nope'", "kind": "not_found"}


def test_help_does_not_import_agno_or_pymongo() -> None:
    """``agno-mongo --help`` loads Typer and the CLI's light modules only (no timing asserted)."""
    probe = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from agno_mongo.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0 and 'sessions' in result.stdout\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'agno', 'pymongo', 'agno_mongo'})))\n"
    )
    base = subprocess.run(
        [sys.executable, "-c", "import sys, agno_mongo; print('agno' in sys.modules)"], capture_output=True, text=True
    )
    if base.stdout.strip() == "True":
        pytest.xfail("agno_mongo/__init__.py imports agno_mongo.db (so agno) eagerly; the CLI package itself does not")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["agno_mongo"]


# --- seed, dashboard port ---------------------------------------------------------------------------


def test_seed_writes_the_readme_tour(mongodb_url: str, db_name: str, tmp_path: Path) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "--url", mongodb_url, "--db", db_name], env={"COLUMNS": "200"})

    seeded = run("seed", "--json")
    assert seeded.exit_code == 0, seeded.output
    assert json.loads(seeded.stdout)["runs"] == 6
    assert run("seed").exit_code == 0  # fixed ids: seeding again rewrites the same sessions
    alice = json.loads(run("sessions", "list", "--user", "alice", "--json").stdout)
    assert alice["total"] == 2 and {s["session_id"] for s in alice["sessions"]} == {"trip-lisbon", "taxes-2026"}
    exported = run("export", "few-shot", "--completed-only", "--out", str(tmp_path / "train.jsonl"))
    assert "5 examples from 6 runs in 4 sessions (skipped: 1 not completed)" in exported.stderr


def test_dashboard_says_the_port_is_taken_before_any_url(mongodb_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["dashboard", "--url", mongodb_url, "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.output and "http://" not in result.output


# --- bounded reads: the metrics window, tail's polls --------------------------------------------------


def test_metrics_reads_only_sessions_written_in_the_window(store: MongoDb, mongodb_url: str, db_name: str) -> None:
    """A session last written before the window is not read at all; one written in it brings only
    its runs created in the window."""
    from agno_mongo import drivers
    from agno_mongo.cli.metrics import metrics_from_runs, window, window_plan

    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    client[db_name]["agno_sessions"].update_one({"_id": "trip-lisbon"}, {"$set": {"updated_at": NOW - 3 * DAY + 60}})
    client.close()
    start, end = NOW - DAY - 60, NOW + 60
    documents = drivers.run_sync(store, window_plan(Filters(), start, end))
    runs = {document["_id"]: [run["run_id"] for run in document["runs"]] for document in documents}
    assert "trip-lisbon" not in runs and runs["taxes"] == []  # taxes: written now, its run is 2 days old
    assert runs["birthday"] == ["birthday-0", "birthday-1"] and runs["team-1"] == ["team-1-0"]
    first, last = window(NOW - DAY, None, NOW)
    assert metrics_from_runs(store, Filters(), first, last)["totals"]["runs"] == 4


def test_tail_polls_only_sessions_written_since_the_last_poll() -> None:
    plan = poll_plan(Filters(user="carol"), "refund", 1000, 50)
    command = next(plan)
    assert command.collection == "sessions" and command.op == "aggregate"
    match = {"updated_at": {"$gte": 1000}, "user_id": "carol", "_id": "refund"}
    assert command.kwargs["pipeline"][0] == {"$match": match}
