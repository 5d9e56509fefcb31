"""MongoDB's cursor batching for the embedded server (mongoeco), so command counts there match a real server.

mongoeco answers a ``find`` or ``aggregate`` in one batch unless the client asks for a ``batchSize``, and a
``getMore`` without one returns everything left. A real ``mongod`` (6.0 / 7.0 / 8.0) does not:

* the first batch of ``find`` and ``aggregate`` holds at most 101 documents when no ``batchSize`` is given
  (``find``'s top-level ``batchSize``, ``aggregate``'s ``cursor.batchSize``); other cursor commands
  (``listCollections``, ``listIndexes``) have no default count;
* every batch, first or ``getMore``, holds at most 16 MiB of documents (sum of their BSON sizes); the first
  document of a batch always goes, however large, so a cursor always makes progress;
* a ``getMore`` without ``batchSize`` returns as many documents as fit in those 16 MiB;
* ``batchSize: 0`` opens the cursor and returns no documents yet;
* ``find`` with ``singleBatch: true`` (PyMongo's ``find_one``, a negative ``limit``) closes the cursor after the
  first batch; a ``limit`` needs nothing here because mongoeco has already applied it (``limit: 50`` answers 50
  documents, one batch, cursor closed).

So a driver reading 250 documents sends ``find`` then ``getMore``, as it would against MongoDB, and a plan that
reads more than 16 MiB through one cursor pays the round trips it pays in production.

One simplification: the cursor is closed as soon as no documents remain. A real server sometimes keeps it
open when a batch ends exactly on the last document (it has not yet looked past it), and the driver then
sends one more ``getMore`` that returns nothing; counts here can be one ``getMore`` lower in that case.

``install_mongodb_batches`` builds the mongoeco proxy with this cursor store in place of its own. It subclasses
mongoeco's ``WireCursorStore`` (mongoeco 4.11) and uses its cursor registry; ``_check_mongoeco_internals``
fails loudly at start-up if a mongoeco upgrade moves what it relies on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import bson
import bson.errors
from mongoeco.errors import OperationFailure
from mongoeco.wire import cursors as _mongoeco_cursors
from mongoeco.wire import proxy as _mongoeco_proxy
from mongoeco.wire._session_identity import wire_session_key
from mongoeco.wire.bson_bridge import encode_wire_value
from mongoeco.wire.cursors import WireCursorState, WireCursorStore

if TYPE_CHECKING:
    from mongoeco.wire.connections import WireConnectionContext

DEFAULT_FIRST_BATCH = 101
"""Documents in the first batch of ``find`` / ``aggregate`` when the command gives no ``batchSize``."""

MAX_BATCH_BYTES = 16 * 1024 * 1024
"""Most BSON bytes of documents in one batch (MongoDB's ``BSONObjMaxUserSize``), except a lone larger one."""

_DEFAULT_COUNT_COMMANDS = frozenset({"find", "aggregate"})


def bson_size(document: Any) -> int:
    """Size in bytes of ``document`` as it goes on the wire.

    PyMongo's C encoder takes a plain document directly; one holding mongoeco's own types (its ObjectId,
    Int64, Decimal128, ...) is refused and goes through mongoeco's wire conversion first, as its reply does.
    """
    try:
        return len(bson.encode(document))
    except (bson.errors.InvalidDocument, TypeError):
        return len(bson.encode(encode_wire_value(document)))


def fitting_count(documents: Sequence[Any], most: int | None) -> int:
    """How many leading ``documents`` one batch carries: at most ``most`` (None: no count limit) and at most
    ``MAX_BATCH_BYTES`` in total, but always the first one (if ``most`` allows any)."""
    limit = len(documents) if most is None else min(most, len(documents))
    used = 0
    for count in range(limit):
        size = bson_size(documents[count])
        if count and used + size > MAX_BATCH_BYTES:
            return count
        used += size
    return limit


class MongoDbCursorStore(WireCursorStore):
    """mongoeco's cursor store with MongoDB's batch sizes (see the module docstring)."""

    def materialize_command_result(
        self,
        command_document: dict[str, Any],
        result: dict[str, Any],
        *,
        lsid: object | None = None,
        connection: WireConnectionContext | None = None,
    ) -> dict[str, Any]:
        """Cut a command's cursor answer to its first batch and keep the rest for ``getMore``."""
        cursor = result.get("cursor")
        if not isinstance(cursor, dict) or not isinstance(cursor.get("firstBatch"), list):
            return result  # not a cursor answer (or an explain): unchanged
        documents: list[Any] = cursor["firstBatch"]
        command_name = next(iter(command_document), "")
        most = self._resolve_batch_size(command_document)  # validates; None when absent
        if most is None and command_name in _DEFAULT_COUNT_COMMANDS:
            most = DEFAULT_FIRST_BATCH
        count = fitting_count(documents, most)
        single_batch = command_name == "find" and command_document.get("singleBatch") is True
        cursor["firstBatch"] = documents[:count]
        remaining = documents[count:]
        if single_batch or not remaining:
            cursor["id"] = 0
        else:
            cursor["id"] = self._open(cursor.get("ns"), remaining, lsid=lsid, connection=connection)
        return result

    def get_more(
        self,
        command_document: dict[str, Any],
        *,
        db_name: str,
        lsid: object | None = None,
        connection: WireConnectionContext | None = None,
    ) -> dict[str, Any]:
        """mongoeco's ``getMore`` (its checks, its answer), asked for only as many documents as fit in 16 MiB."""
        cursor_id = command_document.get("getMore")
        most = command_document.get("batchSize")
        state = self._state.get(cursor_id) if isinstance(cursor_id, int) else None
        valid_size = most is None or (isinstance(most, int) and not isinstance(most, bool) and most >= 0)
        if state is not None and valid_size:
            count = fitting_count(state.remaining_batch, most or None)  # 0 / absent: as many as fit
            command_document = {**command_document, "batchSize": count}
        return super().get_more(command_document, db_name=db_name, lsid=lsid, connection=connection)

    def _open(
        self, namespace: object, remaining: list[Any], *, lsid: object | None, connection: WireConnectionContext | None
    ) -> int:
        """Register a cursor holding ``remaining`` as mongoeco's own store does, and return its id."""
        if not isinstance(namespace, str) or not namespace:
            raise OperationFailure("wire cursor namespace must be a non-empty string")
        cursor_id = self._next_cursor_id
        self._next_cursor_id += 1
        self._state[cursor_id] = WireCursorState(
            namespace=namespace,
            remaining_batch=remaining,
            session_key=wire_session_key(lsid) if lsid is not None else None,
            principal_key=_mongoeco_cursors._principal_key(connection),
        )
        return cursor_id


def _check_mongoeco_internals() -> None:
    """Fail at start-up, not with wrong batches later, if mongoeco no longer has what this module uses."""
    store = WireCursorStore()
    missing = [name for name in ("_state", "_next_cursor_id") if not hasattr(store, name)]
    missing += [name for name in ("_principal_key",) if not hasattr(_mongoeco_cursors, name)]
    if not hasattr(_mongoeco_proxy, "WireCursorStore"):
        missing.append("mongoeco.wire.proxy.WireCursorStore")
    if missing:
        raise RuntimeError(f"agno_mongo.testing.batches does not fit this mongoeco version: missing {missing}")


@contextmanager
def install_mongodb_batches() -> Iterator[None]:
    """While active, a new ``AsyncMongoEcoProxyServer`` gets ``MongoDbCursorStore`` (it builds its cursor store
    and hands it to its executor in ``__init__``, so construct the server inside this block)."""
    _check_mongoeco_internals()
    original = _mongoeco_proxy.WireCursorStore  # type: ignore[attr-defined]
    _mongoeco_proxy.WireCursorStore = MongoDbCursorStore  # type: ignore[attr-defined]
    try:
        yield
    finally:
        _mongoeco_proxy.WireCursorStore = original  # type: ignore[attr-defined]
