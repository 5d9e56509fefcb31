"""Pytest fixtures for a real MongoDB-compatible server; nothing is registered globally.

Use them from a conftest with ``from agno_mongo.testing.pytest_plugin import db_name, mongodb_url``, or list the
module in ``pytest_plugins = ["agno_mongo.testing.pytest_plugin"]``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agno_mongo.testing import mongodb_server

__all__ = ["db_name", "mongodb_url"]


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """One server per test session (env URL, Docker mongo:7 or the embedded server); yields its URL."""
    with mongodb_server() as url:
        yield url


@pytest.fixture
def db_name(mongodb_url: str) -> Iterator[str]:
    """A fresh database name per test, dropped afterwards so tests never see each other's data."""
    from pymongo import MongoClient

    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(name)
    finally:
        client.close()
