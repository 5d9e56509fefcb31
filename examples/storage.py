"""An agent whose conversation survives a restart: run this file twice.

The first run cannot answer "What was my last question?"; the second run can, because the session
(history and state) lives in MongoDB, not in the process.

- MongoDB: ``MONGODB_URL`` (or ``MONGODB_URI``) if set, else the embedded server (mongoeco) on
  ``.agno_mongo/demo.sqlite``, database ``agno_demo``: the defaults of :mod:`agno_mongo.local`, which
  ``agno-mongo`` and its dashboard share, so ``agno-mongo sessions show fixed_id_for_demo`` shows
  this conversation.
- Model: OpenAI (``gpt-4o-mini``) if ``OPENAI_API_KEY`` is set, else ``OfflineStandInModel``, an
  offline agno ``Model`` that answers from the messages it receives (no network, no key).
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from agno.agent import Agent
from agno.models.base import Model

from agno_mongo import MongoDb, local

SESSION_ID = "fixed_id_for_demo"
AGENT_ID = "demo-agent"
"""A fixed agent id: every run of the demo is the same agent (``agno-mongo metrics`` shows one)."""
QUESTIONS = ["What was my last question?", "What is the capital of France?", "What was my last question?"]
DB_NAME = local.default_db_name()


def pick_model() -> Model:
    """OpenAI when a key is set, otherwise the offline stand-in."""
    if os.environ.get("OPENAI_API_KEY"):
        from agno.models.openai import OpenAIChat

        return OpenAIChat(id="gpt-4o-mini")
    from agno_mongo.testing import OfflineStandInModel

    return OfflineStandInModel()


def mongodb_url(stack: ExitStack) -> str:
    """``MONGODB_URL``, or the embedded server on the shared data file, which ``stack`` stops."""
    target = stack.enter_context(local.mongodb())
    if target.embedded_file is None:
        print("[storage] MongoDB at MONGODB_URL")
    else:
        print(f"[storage] embedded MongoDB-compatible server, data in {target.embedded_file}, database {DB_NAME}")
    return target.url


def main() -> None:
    with ExitStack() as stack:
        url = mongodb_url(stack)
        db = MongoDb(db_url=url, db_name=DB_NAME)
        stack.callback(db.close)

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
            print(f"agent> {agent.run(question).content}")

        print("\n--- messages stored in this session (from MongoDB) ---")
        for message in agent.get_session_messages(session_id=SESSION_ID):
            print(f"{message.role:>9}: {message.content}")


if __name__ == "__main__":
    main()
