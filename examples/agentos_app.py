"""Agents served over HTTP by agno's AgentOS (FastAPI), stored in MongoDB with ``AsyncMongoDb``.

    .venv/bin/python examples/agentos_app.py          # serves on http://127.0.0.1:7777

Sessions, runs, memories and metrics are then available at AgentOS's endpoints (``/sessions``,
``/sessions/{id}/runs``, ``/memories``, ``/metrics``...), read from and written to MongoDB.
Server and model are chosen as in ``storage.py``: ``MONGODB_URL`` or the embedded server,
``OPENAI_API_KEY`` or the offline stand-in model.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

from agno.agent import Agent
from agno.os import AgentOS
from fastapi import FastAPI

from agno_mongo import AsyncMongoDb

sys.path.insert(0, str(Path(__file__).parent))
from storage import mongodb_url, pick_model  # noqa: E402


def build_app(url: str, db_name: str = "agno_os") -> FastAPI:
    """The AgentOS app on the MongoDB at ``url``: an assistant that remembers its conversations."""
    db = AsyncMongoDb(db_url=url, db_name=db_name)
    assistant = Agent(
        id="assistant",
        name="Assistant",
        model=pick_model(),
        db=db,
        add_history_to_context=True,
        num_history_runs=3,
    )
    return AgentOS(id="agno-mongo-demo", agents=[assistant], db=db, telemetry=False).get_app()


def main() -> None:
    import uvicorn

    with ExitStack() as stack:
        app = build_app(mongodb_url(stack))
        uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "7777")))


if __name__ == "__main__":
    main()
