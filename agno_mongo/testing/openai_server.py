"""A tiny OpenAI-compatible HTTP server on 127.0.0.1, so ``OpenAIChat`` runs end to end with no network.

It implements ``POST /v1/chat/completions`` (plain and ``stream: true`` server-sent events, with the usage chunk
when ``stream_options.include_usage`` is set) and ``GET /v1/models``. Answers come from ``answer_from_messages``,
the same rule as ``OfflineStandInModel``. Every request body is recorded in ``requests`` for assertions, so a
test can check exactly which history the agent sent to the model.

A ``responder`` (optional) scripts whole assistant messages instead, including ``tool_calls``: agno's memory
manager and learning stores only write when the model calls their tools (``add_memory``, ``update_profile``).
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
Responder = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""Takes the request body, returns the assistant message: ``{"content": ..., "tool_calls": [...]}``."""


def tool_call(name: str, arguments: Mapping[str, Any] | None = None, *, call_id: str | None = None) -> dict[str, Any]:
    """One OpenAI ``tool_calls`` entry, for a ``responder`` to return."""
    return {
        "id": call_id or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(dict(arguments or {}))},
    }


def _normalise_tool_calls(tool_calls: object) -> list[dict[str, Any]]:
    """Fill in ids and types, and encode dict arguments as the JSON string OpenAI sends."""
    if not tool_calls:
        return []
    if not isinstance(tool_calls, Sequence):
        raise TypeError("tool_calls must be a list of tool call dicts")
    out = []
    for call in tool_calls:
        function = dict(call["function"])
        if not isinstance(function.get("arguments"), str):
            function["arguments"] = json.dumps(function.get("arguments") or {})
        out.append({"id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": function})
    return out


class LocalOpenAIServer:
    """OpenAI-compatible chat completions on ``127.0.0.1`` in a background thread.

    ``base_url`` (``http://127.0.0.1:PORT/v1``) goes to ``OpenAIChat(base_url=..., api_key="test")``.
    ``answer`` replaces the default answer rule if a test needs a different reply. ``responder``, when given,
    takes the whole request body and returns the assistant message (``content`` and/or ``tool_calls``, see
    :func:`tool_call`); it overrides ``answer``.
    """

    def __init__(self, *, port: int = 0, answer: AnswerFn | None = None, responder: Responder | None = None) -> None:
        self._requested_port = port
        self.answer: AnswerFn = answer or answer_from_messages
        self.responder: Responder | None = responder
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
        tool_calls: list[dict[str, Any]] = []
        if self.owner.responder is not None:
            try:
                reply = self.owner.responder(body)
                tool_calls = _normalise_tool_calls(reply.get("tool_calls"))
            except Exception as e:  # a broken responder is a test bug: say so to the client
                self._send_error(500, f"responder failed: {e!r}")
                return
            answer = str(reply.get("content") or "")
        else:
            answer = self.owner.answer(messages)
        finish_reason = "tool_calls" if tool_calls else "stop"
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
            self._send_stream(completion_id, model, answer, usage if include_usage else None, tool_calls, finish_reason)
        else:
            message: dict[str, Any] = {"role": "assistant", "content": answer or None, "refusal": None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            else:
                message["content"] = answer
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
                            "message": message,
                            "logprobs": None,
                            "finish_reason": finish_reason,
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

    def _send_stream(
        self,
        completion_id: str,
        model: str,
        answer: str,
        usage: Mapping[str, int] | None,
        tool_calls: Sequence[Mapping[str, Any]] = (),
        finish_reason: str = "stop",
    ) -> None:
        """Server-sent events: role chunk, content chunks, tool call chunk, finish chunk, usage chunk, ``[DONE]``."""
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
        if tool_calls:
            events.append(chunk({"tool_calls": [{"index": i, **call} for i, call in enumerate(tool_calls)]}))
        events.append(chunk({}, finish_reason=finish_reason))
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
