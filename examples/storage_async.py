"""The async twin of ``storage.py``: ``AsyncMongoDb`` and ``Agent.arun``. Run it twice.

Same server, database and model choice as ``storage.py`` (``MONGODB_URL`` or the embedded server;
``OPENAI_API_KEY`` or the offline stand-in model), with a session of its own: run after ``storage.py``,
its first run still cannot answer "What was my last question?".
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import ExitStack
from pathlib import Path

from agno.agent import Agent

from agno_mongo import AsyncMongoDb

sys.path.insert(0, str(Path(__file__).parent))
from storage import AGENT_ID, DB_NAME, QUESTIONS, mongodb_url, pick_model  # noqa: E402

SESSION_ID = "fixed_id_for_async_demo"


async def converse(url: str) -> None:
    db = AsyncMongoDb(db_url=url, db_name=DB_NAME)
    agent = Agent(
        id=AGENT_ID,
        model=pick_model(),
        db=db,
        session_id=SESSION_ID,
        add_history_to_context=True,
        num_history_runs=3,
    )
    for question in QUESTIONS:
        print(f"\nuser > {question}")
        print(f"agent> {(await agent.arun(question)).content}")
    print("\n--- messages stored in this session (from MongoDB) ---")
    for message in await agent.aget_session_messages(session_id=SESSION_ID):
        print(f"{message.role:>9}: {message.content}")
    await db.close()


def main() -> None:
    with ExitStack() as stack:
        asyncio.run(converse(mongodb_url(stack)))


if __name__ == "__main__":
    main()
