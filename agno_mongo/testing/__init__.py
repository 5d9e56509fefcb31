"""Test helpers: a MongoDB-compatible server to run against, and offline stand-ins for an LLM.

``mongodb_server()`` picks, in order: ``MONGODB_URL`` (or its alias ``MONGODB_URI``) from the
environment; a testcontainers ``mongo:7`` (or ``AGNO_MONGO_TEST_IMAGE``), started as a single-node
replica set, when a Docker engine answers; else the embedded mongoeco server
(``EmbeddedServer``, Python >= 3.13), which batches cursors as MongoDB does (101 documents first, at most
16 MiB per batch, ``getMore`` for the rest: ``agno_mongo.testing.batches``), so command counts match a real server.
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
ENV_VARS = ("MONGODB_URL", "MONGODB_URI")
"""The server's address: ``MONGODB_URL``, with ``MONGODB_URI`` accepted as an alias (see :mod:`agno_mongo.local`)."""
DOCKER_IMAGE = os.environ.get("AGNO_MONGO_TEST_IMAGE", "").strip() or "mongo:7"
"""Image testcontainers starts; ``AGNO_MONGO_TEST_IMAGE=mongo:8`` picks another."""

_last_choice: ServerKind | None = None


def _env_url() -> str | None:
    from agno_mongo.local import env_url

    return env_url()


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


REPLICA_SET = "rs0"
PRIMARY_TIMEOUT_SECONDS = 60.0


def start_container(image: str = DOCKER_IMAGE) -> Any:
    """Start a testcontainers MongoDB ``image`` as a single-node replica set; the caller stops it.

    A replica set, not a standalone ``mongod``: agno-mongo's multi-document transactions (the
    company domain) need one, as they do in production. No root user is created (a replica set with
    authentication would also need a key file). ``get_connection_url()`` connects directly to the
    node. Raises if it cannot start or does not become primary within a minute.
    """
    try:
        from testcontainers.community.mongodb import MongoDbContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.mongodb import MongoDbContainer

    class ReplicaSetContainer(MongoDbContainer):
        def _configure(self) -> None:
            """No MONGO_INITDB_ROOT_* variables: the node runs without authentication."""

        def get_connection_url(self) -> str:
            host, port = self.get_container_host_ip(), self.get_exposed_port(self.port)
            return f"mongodb://{host}:{port}/?directConnection=true"

    container = ReplicaSetContainer(image).with_command(f"--replSet {REPLICA_SET} --bind_ip_all")
    container.start()
    try:
        _initiate_replica_set(container.get_connection_url())
    except BaseException:
        container.stop()
        raise
    return container


def _initiate_replica_set(url: str) -> None:
    """``replSetInitiate`` with this one node, then wait until it is a writable primary."""
    import time

    from pymongo import MongoClient

    client: MongoClient[Any] = MongoClient(url, serverSelectionTimeoutMS=int(PRIMARY_TIMEOUT_SECONDS * 1000))
    try:
        members = [{"_id": 0, "host": "localhost:27017"}]  # the node's own address, inside the container
        client.admin.command("replSetInitiate", {"_id": REPLICA_SET, "members": members})
        deadline = time.monotonic() + PRIMARY_TIMEOUT_SECONDS
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the replica set {REPLICA_SET} did not elect a primary in {PRIMARY_TIMEOUT_SECONDS} s"
                )
            time.sleep(0.2)
    finally:
        client.close()


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
