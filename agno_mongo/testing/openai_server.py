"""A tiny OpenAI-compatible HTTP server on 127.0.0.1, so ``OpenAIChat`` runs end to end with no network.

It implements ``POST /v1/chat/completions`` (plain and ``stream: true`` server-sent events, with the usage chunk
when ``stream_options.include_usage`` is set) and ``GET /v1/models``. Answers come from ``answer_from_messages``,
the same rule as ``OfflineStandInModel``. Every request body is recorded in ``requests`` for assertions, so a
test can check exactly which history the agent sent to the model.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

from agno_mongo.testing.models import answer_from_messages, count_words, message_text, split_for_streaming

AnswerFn = Callable[[Sequence[Mapping[str, Any]]], str]


class LocalOpenAIServer:
    """OpenAI-compatible chat completions on ``127.0.0.1`` in a background thread.

    ``base_url`` (``http://127.0.0.1:PORT/v1``) goes to ``OpenAIChat(base_url=..., api_key="test")``.
    ``answer`` replaces the default answer rule if a test needs a different reply.
    """

    def __init__(self, *, port: int = 0, answer: AnswerFn | None = None) -> None:
        self._requested_port = port
        self.answer: AnswerFn = answer or answer_from_messages
        self._requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._httpd is None:
            raise RuntimeError("LocalOpenAIServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` for this server, ending in ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the JSON bodies received on ``/v1/chat/completions``, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def start(self) -> Self:
        """Bind 127.0.0.1 and serve in a daemon thread; returns at once, ready for requests."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer(("127.0.0.1", self._requested_port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-openai-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    """Routes requests; keep-alive for JSON replies, connection closed after a stream."""

    protocol_version = "HTTP/1.1"

    @property
    def owner(self) -> LocalOpenAIServer:
        return cast(_HTTPServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging on stderr."""

    def do_GET(self) -> None:
        if self._route() == "/models":
            self._send_json(200, {"object": "list", "data": [{"id": "local", "object": "model", "owned_by": "local"}]})
        else:
            self._send_error(404, f"Unknown path {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self._route() != "/chat/completions":
            self._send_error(404, f"Unknown path {self.path}")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            self._send_error(400, f"Request body is not JSON: {e}")
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send_error(400, "Request body must be an object with a 'messages' list")
            return
        self.owner._record(body)
        messages: list[Mapping[str, Any]] = [m for m in body["messages"] if isinstance(m, Mapping)]
        answer = self.owner.answer(messages)
        prompt_tokens = sum(count_words(message_text(m)) for m in messages)
        completion_tokens = count_words(answer)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        model = str(body.get("model") or "local")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
            self._send_stream(completion_id, model, answer, usage if include_usage else None)
        else:
            self._send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": None,
                },
            )

    # -- helpers ---------------------------------------------------------------------------------------------

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path.removeprefix("/v1")

    def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": "invalid_request_error", "code": None}})

    def _send_stream(self, completion_id: str, model: str, answer: str, usage: Mapping[str, int] | None) -> None:
        """Server-sent events: role chunk, content chunks, finish chunk, optional usage chunk, ``[DONE]``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        created = int(time.time())

        def chunk(delta: Mapping[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            event: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if usage is not None:
                event["usage"] = None  # as OpenAI does: null on every chunk but the last
            return event

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in split_for_streaming(answer)]
        events.append(chunk({}, finish_reason="stop"))
        if usage is not None:
            final = chunk({})
            final["choices"] = []
            final["usage"] = dict(usage)
            events.append(final)
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
