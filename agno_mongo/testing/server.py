"""An embedded MongoDB-compatible wire server (mongoeco) for tests and examples, run as a subprocess.

``python -m agno_mongo.testing.server [--host 127.0.0.1] [--port 0] [--path FILE]`` serves until SIGTERM/SIGINT
and prints ``READY <port>`` once it accepts connections. ``EmbeddedServer`` starts and stops that process, so
real drivers (PyMongo, PyMongo async, Motor) talk to it over TCP exactly as they would to ``mongod``.
It runs in its own process so the server's event loop never competes with the code under test.

Cursors are batched as MongoDB batches them (``agno_mongo.testing.batches``): 101 documents in the first batch
of ``find`` / ``aggregate`` unless a ``batchSize`` is given, at most 16 MiB per batch, ``getMore`` for the rest.
mongoeco on its own answers every cursor in one batch; ``--one-batch`` (``EmbeddedServer(mongodb_batches=False)``)
keeps that, to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, Self

READY_PREFIX = "READY "
_LOCALHOST = "127.0.0.1"


def mongoeco_available() -> bool:
    """True if the embedded server can run here (mongoeco installed, which needs Python >= 3.13)."""
    return sys.version_info >= (3, 13) and importlib.util.find_spec("mongoeco") is not None


def server_is_reachable(url: str, timeout_s: float = 2.0) -> bool:
    """True if a MongoDB server at ``url`` answers ``ping`` within ``timeout_s`` seconds."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    timeout_ms = max(1, int(timeout_s * 1000))
    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms
        )
    except PyMongoError:
        return False
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------------------------


async def serve(
    host: str, port: int, path: str | None, *, exit_on_stdin_eof: bool = False, mongodb_batches: bool = True
) -> None:
    """Serve the mongoeco wire proxy until SIGTERM/SIGINT (or stdin EOF when asked), then close it cleanly.

    ``mongodb_batches`` (the default) gives cursors MongoDB's batch sizes (``agno_mongo.testing.batches``).
    """
    from mongoeco.engines.sqlite import SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    from agno_mongo.testing.batches import install_mongodb_batches

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))

    if exit_on_stdin_eof:
        # The parent holds our stdin open; EOF means it went away without stopping us. A daemon thread (not the
        # loop's executor) so a blocked read never delays shutdown, reading the raw fd: a daemon thread blocked in
        # sys.stdin.buffer.read() holds the buffer's lock and makes interpreter shutdown abort (SIGABRT).
        def watch_stdin() -> None:
            with contextlib.suppress(OSError):
                fd = sys.stdin.fileno()
                while os.read(fd, 4096):
                    pass
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    engine = SQLiteEngine(path) if path else None
    with install_mongodb_batches() if mongodb_batches else contextlib.nullcontext():
        proxy = AsyncMongoEcoProxyServer(engine=engine, host=host, port=port)
    async with proxy as server:
        print(f"{READY_PREFIX}{server.address.port}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: parse arguments, serve, exit 0 on a clean shutdown."""
    parser = argparse.ArgumentParser(
        prog="python -m agno_mongo.testing.server",
        description="Embedded MongoDB-compatible server (mongoeco) for tests. Prints 'READY <port>' when serving.",
    )
    parser.add_argument("--host", default=_LOCALHOST, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--path", default=None, help="SQLite file for durable data; in-memory when omitted")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="also stop when stdin closes")
    parser.add_argument(
        "--one-batch",
        action="store_true",
        help="answer every cursor in one batch (mongoeco's own behaviour) instead of MongoDB's 101 / 16 MiB batches",
    )
    args = parser.parse_args(argv)
    if not mongoeco_available():
        parser.exit(2, "mongoeco is not installed (it needs Python >= 3.13): pip install 'agno-mongo[embedded]'\n")
    eof, batches = args.exit_on_stdin_eof, not args.one_batch
    asyncio.run(serve(args.host, args.port, args.path, exit_on_stdin_eof=eof, mongodb_batches=batches))


# --------------------------------------------------------------------------------------------------------------
# The parent side
# --------------------------------------------------------------------------------------------------------------


class EmbeddedServer:
    """Runs ``python -m agno_mongo.testing.server`` as a subprocess and exposes its URL.

    ``start()`` blocks until the server prints ``READY`` (bounded by ``startup_timeout``); ``stop()`` sends SIGTERM
    and kills after ``stop_timeout``. With ``path`` the data lives in a SQLite file, so ``stop()`` then ``start()``
    again keeps it (the port, and so ``url``, changes on restart unless ``port`` was given). Cursors are batched as
    MongoDB does (101 documents first, 16 MiB per batch, ``getMore`` for the rest) unless ``mongodb_batches=False``
    asks for mongoeco's one batch per cursor.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        host: str = _LOCALHOST,
        port: int = 0,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        mongodb_batches: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.mongodb_batches = mongodb_batches
        self.host = host
        self._requested_port = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._port: int | None = None

    # -- properties ------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the running server listens on."""
        if self._port is None:
            raise RuntimeError("EmbeddedServer is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """A MongoDB URL for the running server (direct connection, no replica-set discovery)."""
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the subprocess and wait for its READY line; raise RuntimeError with its stderr if it fails."""
        if self.running:
            return self
        if not mongoeco_available():
            raise RuntimeError(
                "The embedded MongoDB-compatible server needs the 'mongoeco' package, which requires Python >= 3.13 "
                f"(this is Python {sys.version_info.major}.{sys.version_info.minor}). Either set MONGODB_URL or "
                "MONGODB_URI to a running MongoDB, or use Python 3.13 with: pip install 'agno-mongo[embedded]'."
            )
        cmd = [sys.executable, "-m", "agno_mongo.testing.server", "--host", self.host]
        cmd += ["--port", str(self._requested_port), "--exit-on-stdin-eof"]
        if not self.mongodb_batches:
            cmd.append("--one-batch")
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--path", str(self.path)]
        # stderr goes to a file, not a pipe: nobody drains it while the server runs, and a full pipe would stall it.
        self._stderr = tempfile.TemporaryFile(prefix="agno-mongo-embedded-", suffix=".stderr")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(
            target=_pump_lines, args=(self._proc.stdout, lines), name="embedded-mongo-stdout", daemon=True
        )
        self._reader.start()

        deadline = time.monotonic() + self.startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"did not print READY within {self.startup_timeout:.0f} s")
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self._proc.poll() is not None:
                    self._fail(f"exited with code {self._proc.returncode} before READY")
                continue
            if line is None:  # stdout closed: the process is exiting
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=5)
                self._fail(f"exited with code {self._proc.returncode} before READY")
            if line.startswith(READY_PREFIX):
                self._port = int(line[len(READY_PREFIX) :].strip())
                return self

    def stop(self) -> None:
        """Terminate the subprocess (SIGTERM, then SIGKILL after ``stop_timeout``); safe to call twice."""
        proc, self._proc = self._proc, None
        self._port = None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=self.stop_timeout)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def restart(self) -> Self:
        """Stop, then start again on the same ``path`` (data survives when ``path`` is set)."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort so an abandoned instance does not leave a server behind; stop() is the real API.
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"EmbeddedServer({where}, path={str(self.path) if self.path else None!r})"

    # -- helpers ---------------------------------------------------------------------------------------------

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _fail(self, what: str) -> NoReturn:
        stderr = self._stderr_text()
        self.stop()
        detail = f"\n--- server stderr ---\n{stderr}" if stderr else " (no stderr output)"
        raise RuntimeError(f"Embedded MongoDB-compatible server {what}{detail}")


def _pump_lines(stream: IO[bytes] | None, lines: queue.Queue[str | None]) -> None:
    """Forward the child's stdout lines to a queue until EOF (also keeps its stdout pipe drained)."""
    if stream is None:
        lines.put(None)
        return
    with contextlib.suppress(OSError, ValueError):
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    lines.put(None)


if __name__ == "__main__":
    main()
