"""An offline stand-in for a chat model, so agents can run (and be stored) with no network and no API key.

It is not a language model: ``answer_from_messages`` applies three fixed rules to the messages it is given.
The point is that its answer depends on the conversation it *receives*, so a test or example can show that a
session's history came back from storage (ask "what was my last question?" in a later run).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from agno.metrics import MessageMetrics
from agno.models.base import Model
from agno.models.message import Message
from agno.models.response import ModelResponse

FIRST_QUESTION_ANSWER = "I can't tell: this is the first question I can see in this conversation."


def message_text(message: Message | Mapping[str, Any]) -> str:
    """The text of an agno ``Message`` or an OpenAI-style message dict (string or list of content parts)."""
    content = message.content if isinstance(message, Message) else message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return str(content)


def _role(message: Message | Mapping[str, Any]) -> str:
    role = message.role if isinstance(message, Message) else message.get("role")
    return str(role or "")


def answer_from_messages(messages: Sequence[Message | Mapping[str, Any]]) -> str:
    """The stand-in's answer to the latest user message, using only ``messages``.

    * "last question" -> "Your last question was: <the user message before it>" (or says it can't tell);
    * "capital of France" -> "The capital of France is Paris.";
    * anything else -> "(offline stand-in) You said: <message>".
    """
    user_texts = [message_text(m) for m in messages if _role(m) == "user"]
    if not user_texts:
        return "(offline stand-in) You said nothing."
    latest = user_texts[-1].strip()
    lowered = latest.lower()
    if "last question" in lowered:
        if len(user_texts) >= 2:
            return f"Your last question was: {user_texts[-2].strip()}"
        return FIRST_QUESTION_ANSWER
    if "capital of france" in lowered:
        return "The capital of France is Paris."
    return f"(offline stand-in) You said: {latest}"


def count_words(text: str) -> int:
    """Word count, used as the stand-in's token count so stored runs carry non-zero token metrics."""
    return len(text.split())


def split_for_streaming(text: str) -> list[str]:
    """Split ``text`` into word-sized chunks that concatenate back to ``text`` exactly."""
    return re.findall(r"\s*\S+\s*", text) or [text]


@dataclass
class OfflineStandInModel(Model):
    """A real agno ``Model`` that answers locally with ``answer_from_messages`` (no network, no key).

    Use it where an example or test needs an agent run but not a real LLM. Token counts are word counts.
    """

    id: str = "offline-stand-in"
    name: str | None = "OfflineStandInModel"
    provider: str | None = "Offline stand-in"

    # -- what a provider SDK would return ------------------------------------------------------------------

    def _reply(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The "provider response": an OpenAI-shaped dict with the answer and word-count usage."""
        answer = answer_from_messages(messages)
        prompt_tokens = sum(count_words(message_text(m)) for m in messages)
        completion_tokens = count_words(answer)
        return {
            "role": "assistant",
            "content": answer,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _deltas(self, messages: Sequence[Message]) -> Iterator[dict[str, Any]]:
        """The "provider stream": content chunks, then a usage-only chunk (like OpenAI's include_usage)."""
        reply = self._reply(messages)
        for i, chunk in enumerate(split_for_streaming(reply["content"])):
            yield {"role": "assistant", "content": chunk} if i == 0 else {"content": chunk}
        yield {"usage": reply["usage"]}

    # -- agno's Model interface ------------------------------------------------------------------------------

    def invoke(self, messages: list[Message], assistant_message: Message | None = None, **kwargs: Any) -> ModelResponse:
        """Answer synchronously."""
        _start_timer(assistant_message)
        reply = self._reply(messages)
        _stop_timer(assistant_message)
        return self._parse_provider_response(reply)

    async def ainvoke(
        self, messages: list[Message], assistant_message: Message | None = None, **kwargs: Any
    ) -> ModelResponse:
        """Answer asynchronously (same answer; nothing to await)."""
        return self.invoke(messages, assistant_message, **kwargs)

    def invoke_stream(
        self, messages: list[Message], assistant_message: Message | None = None, **kwargs: Any
    ) -> Iterator[ModelResponse]:
        """Stream the answer word by word, then the usage."""
        _start_timer(assistant_message)
        for delta in self._deltas(messages):
            yield self._parse_provider_response_delta(delta)
        _stop_timer(assistant_message)

    async def ainvoke_stream(
        self, messages: list[Message], assistant_message: Message | None = None, **kwargs: Any
    ) -> AsyncIterator[ModelResponse]:
        """Async version of ``invoke_stream``."""
        for response in self.invoke_stream(messages, assistant_message, **kwargs):
            yield response

    def _parse_provider_response(self, response: Any, **kwargs: Any) -> ModelResponse:
        """Turn a reply dict from ``_reply`` into a ``ModelResponse``."""
        return ModelResponse(
            role=response.get("role", "assistant"),
            content=response.get("content"),
            response_usage=_metrics(response.get("usage")),
        )

    def _parse_provider_response_delta(self, response: Any) -> ModelResponse:
        """Turn a chunk dict from ``_deltas`` into a ``ModelResponse`` delta."""
        return ModelResponse(
            role=response.get("role"),
            content=response.get("content"),
            response_usage=_metrics(response.get("usage")),
        )


def _metrics(usage: Mapping[str, int] | None) -> MessageMetrics | None:
    if not usage:
        return None
    return MessageMetrics(
        input_tokens=usage["prompt_tokens"],
        output_tokens=usage["completion_tokens"],
        total_tokens=usage["total_tokens"],
    )


def _start_timer(message: Message | None) -> None:
    if message is not None and message.metrics is not None:
        cast(Any, message.metrics).start_timer()  # untyped in agno


def _stop_timer(message: Message | None) -> None:
    if message is not None and message.metrics is not None:
        message.metrics.stop_timer()
