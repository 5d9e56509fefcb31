"""Network faults for tests: a loopback TCP proxy that cuts connections after a random number of bytes.

Put :class:`CuttingProxy` between a client and a MongoDB server and every connection through it dies
at an unpredictable point: inside a request (the server never sees the command), or inside a reply
(the server applied the command and the client never hears so). That second case is the one a
retrying client must survive without duplicating a write.

    with CuttingProxy("127.0.0.1", 27017, cut_after_bytes=(2_000, 20_000), seed=1) as proxy:
        client = MongoClient(proxy.url())
        ...
    proxy.cuts  # connections it cut

Loopback only: it listens on 127.0.0.1, in background threads (two per connection).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from types import TracebackType
from typing import Literal, Self

Counted = Literal["both", "to_server", "to_client"]
_CHUNK = 65536


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
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()  # the target is down: the client sees its connection closed
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
