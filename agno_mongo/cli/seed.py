"""``seed``: the README tour's sessions, written through the public API so the tour runs on your data.

Four agent sessions over four days (alice's trip to Lisbon and tax questions, bob's birthday with
one errored run, carol's refund), with system prompts, tool calls and token metrics, saved with
``upsert_session``/``upsert_run`` as an agent saves them. Fixed ids: seeding again rewrites them.
"""

from __future__ import annotations

import time
from typing import Any

from agno.metrics import RunMetrics
from agno.models.message import Message
from agno.run.agent import RunInput, RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

from agno_mongo.db import MongoDb

DAY = 86_400
Turn = tuple[str, str | None, tuple[str, str, str] | None]
"""(question, answer or None for a run that errored, (tool, arguments, result) or None)."""

TOUR: list[tuple[str, str, str, str, int, list[Turn]]] = [
    # session id, agent, user, name, days ago, turns
    (
        "trip-lisbon",
        "travel-agent",
        "alice",
        "Trip to Lisbon",
        3,
        [
            ("What's the weather in Lisbon?", "Sunny, 24°C.", ("get_weather", '{"city": "Lisbon"}', "sunny 24C")),
            ("Best pastel de nata?", "Try Manteigaria.", None),
        ],
    ),
    (
        "taxes-2026",
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


def tour_run(session_id: str, index: int, agent_id: str, user_id: str, turn: Turn, created_at: int) -> RunOutput:
    """One run as agno records it: system prompt, question, optional tool round trip, answer, metrics."""
    question, answer, tool = turn
    run_id = f"{session_id}-{index}"
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
        session_id=session_id,
        input=RunInput(input_content=question),
        content=answer,
        messages=messages,
        model="gpt-4o-mini",
        model_provider="OpenAI",
        status=RunStatus.completed if answer is not None else RunStatus.error,
        created_at=created_at,
        metrics=RunMetrics(input_tokens=40, output_tokens=12, total_tokens=52, duration=0.8),
    )


def seed_tour(db: MongoDb, now: int | None = None) -> dict[str, Any]:
    """Write the tour's sessions and runs; what was written."""
    now = int(time.time()) if now is None else now
    runs = 0
    for session_id, agent_id, user_id, name, days_ago, turns in TOUR:
        created = now - days_ago * DAY
        db.upsert_session(
            AgentSession(
                session_id=session_id,
                agent_id=agent_id,
                user_id=user_id,
                session_data={"session_name": name},
                created_at=created,
            )
        )
        for index, turn in enumerate(turns):
            run = tour_run(session_id, index, agent_id, user_id, turn, created + 60 * index)
            db.upsert_run(run, session_id=session_id, user_id=user_id)
            runs += 1
    return {"database": db.db_name, "sessions": [entry[0] for entry in TOUR], "runs": runs}
