"""Where agno-mongo's tools find MongoDB: one default shared by the examples, the CLI and the dashboard.

- The server's address is ``MONGODB_URL`` (``MONGODB_URI`` is accepted as an alias): :func:`env_url`.
- Without one, the examples, ``agno-mongo`` and its dashboard all open the same embedded server
  (mongoeco, Python 3.13+) on the same data file, ``.agno_mongo/demo.sqlite`` (``AGNO_MONGO_DATA``),
  and use the same database, ``agno_demo`` (``AGNO_MONGO_DB``): what the demo wrote, the CLI sees.

Nothing here imports agno or pymongo, so the CLI can use it before deciding what else it needs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

URL_VAR = "MONGODB_URL"
"""The environment variable naming the MongoDB server."""
URL_ALIASES = ("MONGODB_URI",)
"""Also read, after ``MONGODB_URL``."""
DB_VAR = "AGNO_MONGO_DB"
DATA_VAR = "AGNO_MONGO_DATA"
DEFAULT_DB_NAME = "agno_demo"
DEFAULT_DATA_FILE = ".agno_mongo/demo.sqlite"


def env_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``MONGODB_URL``, else ``MONGODB_URI``; ``None`` when neither is set to something non-blank."""
    env = os.environ if environ is None else environ
    for name in (URL_VAR, *URL_ALIASES):
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def default_db_name(environ: Mapping[str, str] | None = None) -> str:
    """The database the demo writes and the tools read: ``AGNO_MONGO_DB``, else ``agno_demo``."""
    env = os.environ if environ is None else environ
    return env.get(DB_VAR, "").strip() or DEFAULT_DB_NAME


def data_file(environ: Mapping[str, str] | None = None) -> Path:
    """The embedded server's SQLite file: ``AGNO_MONGO_DATA``, else ``.agno_mongo/demo.sqlite``."""
    env = os.environ if environ is None else environ
    return Path(env.get(DATA_VAR, "").strip() or DEFAULT_DATA_FILE)


def embedded_problem(version: tuple[int, ...] | None = None, have_mongoeco: bool | None = None) -> str | None:
    """Why the embedded server cannot run here (``None`` if it can), as advice a user can act on."""
    version = tuple(sys.version_info[:2]) if version is None else tuple(version[:2])
    if have_mongoeco is None:
        have_mongoeco = version >= (3, 13) and importlib.util.find_spec("mongoeco") is not None
    if version < (3, 13):
        return (
            f"the embedded server needs Python 3.13+ (this is Python {version[0]}.{version[1]}): "
            f"set {URL_VAR}=mongodb://HOST:PORT to use your MongoDB, or use Python 3.13 "
            "with pip install 'agno-mongo[embedded]'"
        )
    if not have_mongoeco:
        return (
            "the embedded server needs the mongoeco package: pip install 'agno-mongo[embedded]', "
            f"or set {URL_VAR}=mongodb://HOST:PORT to use your MongoDB"
        )
    return None


class EmbeddedUnavailableError(RuntimeError):
    """No URL was given and the embedded server cannot run here; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """The server a tool uses: its URL, and the data file when it is the embedded server."""

    url: str
    embedded_file: Path | None = None

    def describe(self, db_name: str) -> str:
        """The one line the tools print on stderr when they fall back to the embedded server."""
        return f"using the embedded server on {self.embedded_file}, database {db_name}; set {URL_VAR} to use yours"


@contextmanager
def embedded(path: Path | None = None) -> Iterator[Target]:
    """The embedded server on ``path`` (default :func:`data_file`), stopped on exit."""
    problem = embedded_problem()
    if problem is not None:
        raise EmbeddedUnavailableError(problem)
    from agno_mongo.testing.server import EmbeddedServer

    file = data_file() if path is None else path
    file.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedServer(path=str(file)) as server:
        yield Target(server.url, file)


@contextmanager
def mongodb(url: str | None = None) -> Iterator[Target]:
    """``url``, else :func:`env_url`, else the embedded server on the shared data file."""
    chosen = url or env_url()
    if chosen:
        yield Target(chosen)
        return
    with embedded() as target:
        yield target
