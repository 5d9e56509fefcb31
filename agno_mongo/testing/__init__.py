"""Test helpers: a MongoDB-compatible server to run against, and offline stand-ins for an LLM.

``mongodb_server()`` picks, in order: ``MONGODB_URI`` / ``MONGODB_URL`` from the environment; a testcontainers
``mongo:7`` (or ``AGNO_MONGO_TEST_IMAGE``) when a Docker engine answers; else the embedded mongoeco server
(``EmbeddedServer``, Python >= 3.13).
Imports of submodules, docker, testcontainers and agno models happen on first use, so importing this package is cheap.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from agno_mongo.testing.models import OfflineStandInModel, answer_from_messages
    from agno_mongo.testing.openai_server import LocalOpenAIServer
    from agno_mongo.testing.server import EmbeddedServer, mongoeco_available, server_is_reachable

__all__ = [
    "EmbeddedServer",
    "LocalOpenAIServer",
    "OfflineStandInModel",
    "ServerKind",
    "answer_from_messages",
    "describe_server_choice",
    "docker_available",
    "mongodb_server",
    "mongoeco_available",
    "server_is_reachable",
    "start_container",
]

ServerKind = Literal["env", "docker", "embedded"]
ENV_VARS = ("MONGODB_URI", "MONGODB_URL")
DOCKER_IMAGE = os.environ.get("AGNO_MONGO_TEST_IMAGE", "").strip() or "mongo:7"
"""Image testcontainers starts; ``AGNO_MONGO_TEST_IMAGE=mongo:8`` picks another."""

_last_choice: ServerKind | None = None


def _env_url() -> str | None:
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def docker_available(timeout_s: float = 3.0) -> bool:
    """True if a Docker engine answers ``ping`` within ``timeout_s`` seconds (False if the SDK is missing)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            # import_module, not `import docker`: mypy would resolve the repo's docker/ (compose files) folder.
            docker = importlib.import_module("docker")
            client = docker.from_env(timeout=max(1, int(timeout_s)))
            try:
                result.append(bool(client.ping()))
            finally:
                client.close()
        except Exception:
            result.append(False)

    # A thread bounds the whole probe, including steps the SDK's socket timeout does not cover (e.g. DNS).
    thread = threading.Thread(target=probe, name="docker-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def describe_server_choice() -> ServerKind:
    """Which kind of server ``mongodb_server()`` chose last: "env", "docker" or "embedded".

    Before any ``mongodb_server()`` call, says which it would choose now (probing Docker if needed).
    """
    if _last_choice is not None:
        return _last_choice
    if _env_url():
        return "env"
    return "docker" if docker_available() else "embedded"


@contextmanager
def mongodb_server(*, path: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Yield a MongoDB URL for tests: env var, else Docker ``mongo:7``, else the embedded server.

    ``path`` is only used by the embedded server (a SQLite file, for data that outlives a restart). If Docker
    answers but the container cannot start (e.g. the image cannot be pulled offline), this warns and falls back
    to the embedded server.
    """
    global _last_choice
    url = _env_url()
    if url is not None:
        _last_choice = "env"
        yield url
        return
    if docker_available():
        container = _start_container()
        if container is not None:
            _last_choice = "docker"
            try:
                yield str(container.get_connection_url())
            finally:
                container.stop()
            return
    from agno_mongo.testing.server import EmbeddedServer

    _last_choice = "embedded"
    with EmbeddedServer(path=Path(path) if path is not None else None) as server:
        yield server.url


def start_container(image: str = DOCKER_IMAGE) -> Any:
    """Start a testcontainers MongoDB ``image``; the caller stops it. Raises if it cannot start."""
    try:
        from testcontainers.community.mongodb import MongoDbContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.mongodb import MongoDbContainer
    container = MongoDbContainer(image)
    container.start()
    return container


def _start_container() -> Any:
    """Start a testcontainers MongoDB, or warn and return None if that fails."""
    try:
        return start_container(DOCKER_IMAGE)
    except Exception as e:  # any failure means "use the next option"
        warnings.warn(
            f"Docker answered but {DOCKER_IMAGE} did not start ({e!r}); using the embedded server", stacklevel=3
        )
        return None


def __getattr__(name: str) -> Any:
    """Import the agno-dependent helpers on first use, keeping ``import agno_mongo.testing`` light."""
    if name in {"OfflineStandInModel", "answer_from_messages"}:
        from agno_mongo.testing import models

        return getattr(models, name)
    if name in {"EmbeddedServer", "mongoeco_available", "server_is_reachable"}:
        # Lazy too: `python -m agno_mongo.testing.server` must not find the module already imported (runpy warns).
        from agno_mongo.testing import server

        return getattr(server, name)
    if name == "LocalOpenAIServer":
        from agno_mongo.testing.openai_server import LocalOpenAIServer

        return LocalOpenAIServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
