"""The ``agno-mongo`` command line against a real wire server, on sessions seeded through the public API.

Runs are real ``RunOutput`` objects with agno ``Message`` lists (system, user, assistant tool calls,
tool replies, answers), saved with ``upsert_session``/``upsert_run`` as an agent would save them.
"""

from __future__ import annotations

import copy
import json
import os
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

from agno_mongo import MongoDb
from agno_mongo.cli import app, few_shot_example, parse_time, runs_from_change, sparkline
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


def test_url_is_required_with_a_clear_message() -> None:
    result = CliRunner().invoke(app, ["sessions", "list"], env={"MONGODB_URL": None})
    assert result.exit_code == 2
    assert "no MongoDB URL" in result.output and "MONGODB_URL" in result.output


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


def test_export_pages_through_get_sessions(store: MongoDb, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read is one bounded ``get_sessions`` page, in order, until a short page."""
    calls: list[dict[str, Any]] = []
    original = MongoDb.get_sessions

    def spy(self: MongoDb, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MongoDb, "get_sessions", spy)
    assert len(jsonl(cli("export", "few-shot", "--page-size", "2").stdout)) == 6
    assert [(c["limit"], c["page"]) for c in calls] == [(2, 1), (2, 2), (2, 3)]
    assert all(c["include_runs"] and c["sort_by"] == "created_at" and c["sort_order"] == "asc" for c in calls)


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
    args = ["tail", "--url", mongodb_url, "--db", db_name, "-n", "0", "--json", "--timeout", "3", "--interval", "0.2"]
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
    client[db_name]["agno_sessions"].drop_index("user_created")
    client.close()
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["problems"] == ["agno_sessions: index user_created missing"]


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
