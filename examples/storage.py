"""An agent whose conversation survives a restart: run this file twice.

The first run cannot answer "What was my last question?"; the second run can, because the session
(history and state) lives in MongoDB, not in the process.

- MongoDB: ``MONGODB_URL`` if set, else the embedded server (mongoeco) on a local data file in
  ``.agno_mongo/``, so a second process finds what the first one stored.
- Model: OpenAI (``gpt-4o-mini``) if ``OPENAI_API_KEY`` is set, else ``OfflineStandInModel``, an
  offline agno ``Model`` that answers from the messages it receives (no network, no key).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from agno.agent import Agent
from agno.models.base import Model

from agno_mongo import MongoDb

SESSION_ID = "fixed_id_for_demo"
QUESTIONS = ["What was my last question?", "What is the capital of France?", "What was my last question?"]
DB_NAME = os.environ.get("AGNO_MONGO_DB", "agno_demo")
DATA_FILE = Path(os.environ.get("AGNO_MONGO_DATA", ".agno_mongo/demo.sqlite"))


def pick_model() -> Model:
    """OpenAI when a key is set, otherwise the offline stand-in."""
    if os.environ.get("OPENAI_API_KEY"):
        from agno.models.openai import OpenAIChat

        return OpenAIChat(id="gpt-4o-mini")
    from agno_mongo.testing import OfflineStandInModel

    return OfflineStandInModel()


def mongodb_url(stack: ExitStack) -> str:
    """``MONGODB_URL``, or an embedded server on the demo's data file that ``stack`` stops."""
    url = os.environ.get("MONGODB_URL")
    if url is not None:
        print("[storage] MongoDB at MONGODB_URL")
        return url
    from agno_mongo.testing import EmbeddedServer

    DATA_FILE.parent.mkdir(parents=True, exist_ok=True)
    print(f"[storage] embedded MongoDB-compatible server, data in {DATA_FILE}")
    return stack.enter_context(EmbeddedServer(path=str(DATA_FILE))).url


def main() -> None:
    with ExitStack() as stack:
        url = mongodb_url(stack)
        db = MongoDb(db_url=url, db_name=DB_NAME)
        stack.callback(db.close)

        agent = Agent(
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
