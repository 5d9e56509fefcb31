"""Open the store a command reads: ``--url``/``MONGODB_URL``, else the embedded server the examples use.

Every failure to get there is one line (or one JSON object with ``--json``), never a traceback: a
malformed URL (``kind: bad_url``, exit 2), no server and no embedded one (``no_server``, exit 2), a
server that does not answer within ``--timeout`` (``unreachable``, exit 1), a server error (``server``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import typer
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError, ServerSelectionTimeoutError

from agno_mongo.cli.common import Connection, fail
from agno_mongo.db import DRIVER_INFO, MongoDb
from agno_mongo.errors import AgnoMongoError, InvalidInputError
from agno_mongo.local import EmbeddedUnavailableError, default_db_name, embedded, env_url

_SCHEME = re.compile(r"^mongodb(\+srv)?://", re.IGNORECASE)
_REPORTED_TIMEOUT = re.compile(r"Timeout: ([0-9.]+)s")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def first_reason(error: Exception) -> str:
    """A server selection error without PyMongo's timeout and topology details."""
    return re.split(r" \(configured timeouts|, Timeout: ", str(error))[0]


def waited(error: Exception, asked: float) -> str:
    """How long the driver waited, as it reports it (``Timeout: 5.0s``), else what was asked."""
    reported = _REPORTED_TIMEOUT.search(str(error))
    seconds = float(reported.group(1)) if reported else asked
    return f"{seconds:g} s"


def client_for(url: str, timeout: float) -> MongoClient[dict[str, Any]]:
    """A client on ``url`` that gives up finding the server after ``timeout`` seconds (unless the URL
    sets its own ``serverSelectionTimeoutMS``); a malformed URL is a clean error."""
    if not _SCHEME.match(url):
        fail(f"bad MongoDB URL {redact(url)!r}: it must start with mongodb:// or mongodb+srv://", 2, "bad_url")
    options: dict[str, Any] = {"driver": DRIVER_INFO, "appname": "agno-mongo-cli"}
    millis = max(1, int(timeout * 1000))
    if "serverselectiontimeoutms" not in url.lower():
        options["serverSelectionTimeoutMS"] = millis
    if "connecttimeoutms" not in url.lower():
        options["connectTimeoutMS"] = millis
    try:
        return MongoClient(url, **options)
    except (PyMongoError, ValueError, TypeError) as error:  # InvalidURI, ConfigurationError, a bad port
        fail(f"bad MongoDB URL {redact(url)}: {error}", 2, "bad_url")


@contextmanager
def open_store(connection: Connection, *, create_indexes: bool = False) -> Iterator[MongoDb]:
    """A ``MongoDb`` on its own client, closed afterwards.

    Without a URL this starts the embedded server on the examples' data file and says so on stderr.
    Read-only commands never create indexes (``create_indexes_on_first_use=False``): looking must
    not write; ``seed`` passes ``create_indexes=True``.
    """
    db_name = connection.db or default_db_name()
    with ExitStack() as stack:
        url = connection.url or env_url()
        if not url:
            try:
                target = stack.enter_context(embedded())
            except EmbeddedUnavailableError as error:
                fail(f"no MongoDB URL given, and {error}", 2, "no_server")
            except (RuntimeError, OSError) as error:
                fail(f"the embedded server did not start: {error}", 1, "no_server")
            typer.echo(target.describe(db_name), err=True)
            url = target.url
        client = client_for(url, connection.timeout)
        stack.callback(client.close)
        try:
            # One ping first: the storage methods retry an unreachable server several times over.
            client.admin.command("ping")
            yield MongoDb(db_client=client, db_name=db_name, create_indexes_on_first_use=create_indexes)
        except ServerSelectionTimeoutError as error:
            reason = first_reason(error)
            fail(
                f"cannot reach MongoDB at {redact(url)} within {waited(error, connection.timeout)}: {reason}",
                1,
                "unreachable",
            )
        except InvalidInputError as error:
            fail(str(error), 2, "bad_input")
        except OperationFailure as error:
            kind = "auth" if error.code in {13, 18} else "server"
            fail(f"MongoDB refused: {error.details.get('errmsg') if error.details else error}", 1, kind)
        except PyMongoError as error:
            fail(f"MongoDB error: {first_reason(error)}", 1, "server")
        except AgnoMongoError as error:
            fail(str(error), 1, "data")
