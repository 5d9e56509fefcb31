"""Network faults for tests: a loopback TCP proxy that cuts connections after a random number of bytes.

Put :class:`CuttingProxy` between a client and a MongoDB server and every connection through it dies
at an unpredictable point: inside a request (the server never sees the command), or inside a reply
(the server applied the command and the client never hears so). That second case is the one a
retrying client must survive without duplicating a write.

    with CuttingProxy("127.0.0.1", 27017, cut_after_bytes=(2_000, 20_000), seed=1) as proxy:
        client = MongoClient(proxy.url())
        ...
    proxy.cuts  # connections it cut

:class:`ReplyDroppingProxy` is the targeted version of that second case: it parses the MongoDB wire
protocol, lets the commands you pick reach the server, and drops their replies.

    with ReplyDroppingProxy("127.0.0.1", 27017) as proxy:
        client = MongoClient(proxy.url(), retryWrites=False)
        proxy.drop_next("update")  # or a predicate over (command_name, command)
        ...  # the next update is applied, and its caller gets AutoReconnect
    proxy.dropped  # [("update", {...})]

Loopback only: both listen on 127.0.0.1, in background threads (two per connection).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self

import bson
import bson.errors

Counted = Literal["both", "to_server", "to_client"]
_CHUNK = 65536


def _dial(target: tuple[str, int], client: socket.socket) -> socket.socket | None:
    """Connect to the target for a newly accepted client; None (client closed) if the target is down."""
    try:
        server = socket.create_connection(target, timeout=10)
        server.settimeout(None)
    except OSError:
        client.close()  # the client sees its connection closed
        return None
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server


class CuttingProxy:
    """Forwards TCP bytes to ``target_host:target_port`` and closes both sides of a connection once it
    has carried a random number of bytes, drawn per connection from ``cut_after_bytes`` (inclusive).

    ``counted`` says which bytes count towards the cut: ``"both"`` directions (default),
    ``"to_server"`` (cuts land inside requests) or ``"to_client"`` (cuts land inside replies, after
    the server has acted). ``cut_after_bytes=None`` forwards without cutting. ``cutting`` can be
    switched off and on while running (it applies to new connections); ``cut_all()`` drops every
    open connection at once. Counters: ``connections``, ``cuts``, ``bytes_to_server``, ``bytes_to_client``.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        cut_after_bytes: tuple[int, int] | None = (1_000, 100_000),
        *,
        seed: int | None = None,
        counted: Counted = "both",
        port: int = 0,
    ) -> None:
        if cut_after_bytes is not None:
            lo, hi = cut_after_bytes
            if not 1 <= lo <= hi:
                raise ValueError(f"cut_after_bytes must be (lo, hi) with 1 <= lo <= hi, got {cut_after_bytes!r}")
        if counted not in ("both", "to_server", "to_client"):
            raise ValueError(f"counted must be 'both', 'to_server' or 'to_client', got {counted!r}")
        self.target = (target_host, target_port)
        self.cut_after_bytes = cut_after_bytes
        self.counted: Counted = counted
        self.cutting = cut_after_bytes is not None
        self._random = random.Random(seed)
        self._requested_port = port
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._links: set[_Link] = set()
        self.connections = 0
        self.cuts = 0
        self.bytes_to_server = 0
        self.bytes_to_client = 0

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (only while running)."""
        if self._listener is None:
            raise RuntimeError("CuttingProxy is not running; call start() first")
        return int(self._listener.getsockname()[1])

    def url(self, **options: str | int) -> str:
        """A MongoDB URL through the proxy: a direct connection, plus any URI ``options``."""
        query = "&".join(f"{key}={value}" for key, value in {"directConnection": "true", **options}.items())
        return f"mongodb://127.0.0.1:{self.port}/?{query}"

    def start(self) -> Self:
        """Listen on 127.0.0.1 and accept connections in a daemon thread."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(128)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), name="cutting-proxy", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection; new connections are refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        self.cut_all(count=False)

    def cut_all(self, *, count: bool = True) -> int:
        """Close every open connection now; returns how many (counted as cuts unless ``count=False``)."""
        with self._lock:
            links = list(self._links)
        return sum(link.close(cut=count) for link in links)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self.port}" if self._listener is not None else "stopped"
        return f"CuttingProxy({where} -> {self.target[0]}:{self.target[1]}, cuts={self.cuts})"

    # -- internals -------------------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            server = _dial(self.target, client)
            if server is None:
                continue
            with self._lock:
                self.connections += 1
                budget = self._random.randint(*self.cut_after_bytes) if self.cutting and self.cut_after_bytes else None
                link = _Link(self, client, server, budget)
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link, *, cut: bool) -> None:
        with self._lock:
            self._links.discard(link)
            if cut:
                self.cuts += 1


class _Link:
    """One proxied connection: two pump threads sharing a byte budget."""

    def __init__(self, proxy: CuttingProxy, client: socket.socket, server: socket.socket, budget: int | None) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.remaining = budget
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        for source, target, direction in (
            (self.client, self.server, "to_server"),
            (self.server, self.client, "to_client"),
        ):
            threading.Thread(
                target=self._pump, args=(source, target, direction), name=f"cutting-proxy-{direction}", daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket, direction: str) -> None:
        counts = self.proxy.counted in ("both", direction)
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                break
            if not data:
                break
            cut = False
            with self._lock:
                if self._closed:
                    return
                if counts and self.remaining is not None:
                    if len(data) >= self.remaining:
                        data, cut = data[: self.remaining], True
                    self.remaining -= len(data)
            try:
                target.sendall(data)
            except OSError:
                break
            with self.proxy._lock:
                if direction == "to_server":
                    self.proxy.bytes_to_server += len(data)
                else:
                    self.proxy.bytes_to_client += len(data)
            if cut:
                self.close(cut=True)
                return
        self.close(cut=False)

    def close(self, *, cut: bool) -> bool:
        """Close both sockets (a ``cut`` is counted); True if this call closed them, False if already closed."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.proxy._forget(self, cut=cut)
        return True


# -- ReplyDroppingProxy: the command reaches the server, its reply never reaches the client ---------------------

CommandMatch = Callable[[str, dict[str, Any]], bool]
"""A predicate over ``(command_name, command_document)``; document sequences are merged into the document."""

OP_MSG = 2013
_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
_MAX_MESSAGE = 64 * 1024 * 1024  # generous: MongoDB's limit is 48 MB
_MORE_TO_COME = 1 << 1
_HANDSHAKES = frozenset({"hello", "ismaster"})


def parse_op_msg(body: bytes) -> tuple[int, dict[str, Any]]:
    """Decode an OP_MSG body (the bytes after the 16-byte header): ``(flagBits, command)``.

    The command is the kind-0 document with each kind-1 document sequence merged in under its
    identifier (``documents`` for ``insert``, ``updates`` for ``update``, ``deletes`` for ``delete``).
    Raises ``ValueError`` on a malformed message.
    """
    if len(body) < 5:
        raise ValueError("OP_MSG too short")
    (flags,) = struct.unpack_from("<I", body, 0)
    end = len(body) - 4 if flags & 1 else len(body)  # checksumPresent: a CRC-32C trails the sections
    position = 4
    command: dict[str, Any] | None = None
    sequences: dict[str, list[Any]] = {}
    while position < end:
        kind = body[position]
        position += 1
        if kind == 0:
            (size,) = struct.unpack_from("<i", body, position)
            if size < 5 or position + size > end:
                raise ValueError("OP_MSG kind-0 section overruns the message")
            command = bson.decode(body[position : position + size])
            position += size
        elif kind == 1:
            (size,) = struct.unpack_from("<i", body, position)
            section_end = position + size
            if size < 5 or section_end > end:
                raise ValueError("OP_MSG kind-1 section overruns the message")
            name_end = body.index(b"\x00", position + 4, section_end)
            identifier = body[position + 4 : name_end].decode("utf-8")
            sequences.setdefault(identifier, []).extend(bson.decode_all(body[name_end + 1 : section_end]))
            position = section_end
        else:
            raise ValueError(f"OP_MSG section kind {kind} is unknown")
    if command is None:
        raise ValueError("OP_MSG has no kind-0 section")
    for identifier, documents in sequences.items():
        command[identifier] = documents
    return flags, command


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    """``count`` bytes from ``sock``, or None if it closed (or failed) first."""
    chunks: list[bytes] = []
    while count:
        try:
            chunk = sock.recv(min(count, _CHUNK))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _recv_message(sock: socket.socket) -> tuple[bytes, int, int, int] | None:
    """One whole wire message: ``(raw_bytes, requestID, responseTo, opCode)``, or None at EOF / bad framing."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    length, request_id, response_to, op_code = _HEADER.unpack(header)
    if not _HEADER.size <= length <= _MAX_MESSAGE:
        return None  # not MongoDB framing: give up on the connection
    body = _recv_exactly(sock, length - _HEADER.size)
    if body is None:
        return None
    return header + body, request_id, response_to, op_code


_STANDALONE = "Transaction numbers are only allowed on a replica set member or mongos"


def _starts_transaction(body: bytes) -> bool:
    """Whether an OP_MSG request is the first command of a transaction."""
    try:
        _, command = parse_op_msg(body)
    except (ValueError, struct.error, bson.errors.BSONError):
        return False
    return bool(command.get("startTransaction"))


def _error_reply(response_to: int, code: int, code_name: str, message: str) -> bytes:
    """An OP_MSG reply ``{ok: 0, code, codeName, errmsg}`` to request ``response_to``."""
    document = bson.encode({"ok": 0.0, "errmsg": message, "code": code, "codeName": code_name})
    body = struct.pack("<I", 0) + b"\x00" + document
    return _HEADER.pack(_HEADER.size + len(body), 0, response_to, OP_MSG) + body


class _Rule:
    def __init__(self, match: CommandMatch | str, times: int) -> None:
        self.match = match
        self.remaining = times

    def matches(self, name: str, command: dict[str, Any]) -> bool:
        if isinstance(self.match, str):
            return name.lower() == self.match.lower()
        return bool(self.match(name, command))


class ReplyDroppingProxy:
    """Forwards MongoDB wire traffic between clients and ``target_host:target_port``; for the next
    ``times`` commands matching ``match`` (see :meth:`drop_next`), forwards the request, waits for the
    server's reply, discards it and closes the client's connection and its server-side socket: the
    server has applied the command, the client sees a network error.

        with ReplyDroppingProxy("127.0.0.1", 27017) as proxy:
            client = MongoClient(proxy.url(), retryWrites=False)
            proxy.drop_next("update")
            client.db.c.update_one({"_id": 1}, {"$inc": {"n": 1}})  # raises AutoReconnect; n was incremented
        proxy.dropped  # [("update", {...})]

    It listens on 127.0.0.1 from construction (``port``, ``url()``) until :meth:`close`; each client
    connection gets its own server connection and two daemon threads. Only OP_MSG requests (PyMongo
    4.x) are parsed and can match; other opcodes (the legacy OP_QUERY handshake, OP_COMPRESSED when
    compression is negotiated) are forwarded untouched. ``hello`` / ``isMaster`` never match, nor do
    requests sent with ``moreToCome`` (unacknowledged writes have no reply to drop).

    ``dropped`` lists ``(command_name, command)`` for each reply dropped, in order; ``predicate_errors``
    the exceptions a predicate raised (such a command is treated as not matching); ``connections``
    counts accepted client connections.
    """

    dropped: list[tuple[str, dict[str, Any]]]

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._requested_port = port
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._links: set[_DroppingLink] = set()
        self.dropped = []
        self.predicate_errors: list[BaseException] = []
        self.connections = 0
        self.refusing_transactions = False
        self.start()

    # -- arming ----------------------------------------------------------------------------------------------

    def drop_next(self, match: CommandMatch | str, times: int = 1) -> None:
        """Arm: drop the replies to the next ``times`` commands matching ``match``, a command name
        (``"update"``, ``"findAndModify"``, ``"delete"``, ``"insert"``, ...; compared case-insensitively)
        or a predicate over ``(command_name, command_document)``. Several armings queue up; a command
        consumes the first one it matches.
        """
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times!r}")
        if not isinstance(match, str) and not callable(match):
            raise TypeError(f"match must be a command name or a predicate, got {match!r}")
        with self._lock:
            self._rules.append(_Rule(match, times))

    def refuse_transactions(self, refuse: bool = True) -> None:
        """Answer every command that starts a transaction as a standalone ``mongod`` does
        (IllegalOperation, code 20), without forwarding it: a replica set that looks standalone."""
        self.refusing_transactions = refuse

    @property
    def armed(self) -> int:
        """How many more replies the current armings will drop."""
        with self._lock:
            return sum(rule.remaining for rule in self._rules)

    def disarm(self) -> None:
        """Forget every arming; requests already forwarded for dropping still lose their replies."""
        with self._lock:
            self._rules.clear()

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (only while running)."""
        if self._listener is None:
            raise RuntimeError("ReplyDroppingProxy is closed")
        return int(self._listener.getsockname()[1])

    def url(self, **options: str | int) -> str:
        """A MongoDB URL through the proxy: a direct connection, plus any URI ``options``."""
        query = "&".join(f"{key}={value}" for key, value in {"directConnection": "true", **options}.items())
        return f"mongodb://127.0.0.1:{self.port}/?{query}"

    def start(self) -> Self:
        """Listen on 127.0.0.1 (the constructor already did; this restarts a closed proxy)."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(128)
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="reply-dropping-proxy", daemon=True
        )
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop listening, close every connection (both sides) and wait for the threads to end."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for link in links:
            link.join(timeout=5)

    stop = close  # CuttingProxy's name

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self.port}" if self._listener is not None else "closed"
        return f"ReplyDroppingProxy({where} -> {self.target[0]}:{self.target[1]}, dropped={len(self.dropped)})"

    # -- internals -------------------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by close()
                return
            server = _dial(self.target, client)
            if server is None:
                continue
            link = _DroppingLink(self, client, server)
            with self._lock:
                if self._listener is not listener:  # close() ran meanwhile
                    link.close()
                    return
                self.connections += 1
                self._links.add(link)
            link.start()

    def _claim(self, body: bytes) -> tuple[str, dict[str, Any]] | None:
        """If an arming matches this OP_MSG request, consume it and return ``(name, command)``."""
        with self._lock:
            if not self._rules:
                return None  # unarmed: no decoding at all
            rules = list(self._rules)
        try:
            flags, command = parse_op_msg(body)
        except (ValueError, struct.error, bson.errors.BSONError):
            return None
        if flags & _MORE_TO_COME or not command:
            return None
        name = next(iter(command))
        if name.lower() in _HANDSHAKES:
            return None
        for rule in rules:
            try:
                hit = rule.matches(name, command)
            except Exception as error:  # a broken predicate must not kill the pump
                with self._lock:
                    self.predicate_errors.append(error)
                continue
            if not hit:
                continue
            with self._lock:
                if rule.remaining <= 0:  # another connection took the last one meanwhile
                    continue
                rule.remaining -= 1
                if rule.remaining == 0 and rule in self._rules:
                    self._rules.remove(rule)
            return name, command
        return None

    def _record_drop(self, name: str, command: dict[str, Any]) -> None:
        with self._lock:
            self.dropped.append((name, command))

    def _forget(self, link: _DroppingLink) -> None:
        with self._lock:
            self._links.discard(link)


class _DroppingLink:
    """One proxied connection, pumped message by message: requests one way, replies the other."""

    def __init__(self, proxy: ReplyDroppingProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self._lock = threading.Lock()
        self._closed = False
        self._doomed: dict[int, tuple[str, dict[str, Any]]] = {}  # requestID -> command whose reply is dropped
        self._client_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for pump, direction in ((self._requests, "to_server"), (self._replies, "to_client")):
            thread = threading.Thread(target=pump, name=f"reply-dropping-proxy-{direction}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _requests(self) -> None:
        while True:
            message = _recv_message(self.client)
            if message is None:
                break
            data, request_id, _, op_code = message
            if op_code == OP_MSG and self.proxy.refusing_transactions and _starts_transaction(data[_HEADER.size :]):
                if not self._send_to_client(_error_reply(request_id, 20, "IllegalOperation", _STANDALONE)):
                    break
                continue
            claimed = self.proxy._claim(data[_HEADER.size :]) if op_code == OP_MSG else None
            if claimed is not None:
                with self._lock:  # before sending: the reply may come back at once
                    self._doomed[request_id] = claimed
            try:
                self.server.sendall(data)
            except OSError:
                break
            if claimed is not None:
                return  # nothing more goes to the server; the reply pump drops the reply and closes both sides
        self.close()

    def _replies(self) -> None:
        while True:
            message = _recv_message(self.server)
            if message is None:
                break
            data, _, response_to, _ = message
            with self._lock:
                doomed = self._doomed.pop(response_to, None)
            if doomed is not None:
                self.proxy._record_drop(*doomed)
                break  # the reply goes nowhere
            if not self._send_to_client(data):
                break
        self.close()

    def _send_to_client(self, data: bytes) -> bool:
        """Write one whole message to the client (both pumps may), False if it is gone."""
        with self._client_lock:
            try:
                self.client.sendall(data)
            except OSError:
                return False
        return True

    def close(self) -> None:
        """Close both sockets (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.proxy._forget(self)
