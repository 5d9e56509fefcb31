"""The whole integration suite on real MongoDB 7 and 8, in testcontainers, where a Docker engine answers.

Each image gets a fresh container and a child ``pytest`` run of every other test file with
``MONGODB_URI`` pointing at it, so every test that runs on the embedded server here runs on the real
server there. Without Docker these skip, saying so; the rest of the suite still runs on the embedded
server (or on ``MONGODB_URI``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agno_mongo.testing import docker_available, start_container

IMAGES = ["mongo:7", "mongo:8"]
NESTED = "AGNO_MONGO_REAL_SERVER_RUN"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="already inside a real-server run")
@pytest.mark.parametrize("image", IMAGES)
def test_whole_suite_on_real_mongodb(image: str) -> None:
    if not docker_available():
        pytest.skip(f"no Docker engine answers here, so the suite does not run on {image}")
    container = start_container(image)
    try:
        env = {**os.environ, "MONGODB_URI": str(container.get_connection_url()), NESTED: "1"}
        env.pop("MONGODB_URL", None)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
    finally:
        container.stop()
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, f"suite on {image} failed:\n{tail}"
