"""What the provider benchmarks share: each provider API's stream body of N text deltas in its own
wire format, the `iModel` arguments that reach it on a loopback server, and the event payloads of a
body (for timing JSON decoders on exactly what a stream carries).
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lionflow import iModel
from lionflow.errors import ConfigurationError

TOKEN = "tok "
MESSAGES = [{"role": "user", "content": "go"}]


def _data(payload: Any, separator: str = "\n\n") -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}{separator}"


def _event(payload: dict[str, Any]) -> str:
    return f"event: {payload['type']}\n{_data(payload)}"


def openai_chat_body(n: int, *, groq: bool = False) -> str:
    """Chat Completions: a role chunk, `n` content chunks, the finish, usage (groq: in ``x_groq``)."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        base = {"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        return _data(base | {"choices": [choice]} | extra)

    usage = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}
    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": TOKEN})] * n
    if groq:
        parts.append(chunk({}, "stop", x_groq={"id": "req_b", "usage": usage}))
    else:
        parts.append(chunk({}, "stop"))
        base = {"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        parts.append(_data(base | {"choices": [], "usage": usage}))
    return "".join(parts) + "data: [DONE]\n\n"


def responses_body(n: int) -> str:
    """The Responses API: created, an output item, `n` text deltas, completed with usage."""
    response = {
        "id": "resp_b",
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "model": "m",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    item = {"id": "msg_b", "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
    seq = iter(range(n + 10))
    parts = [
        _event({"type": "response.created", "response": response, "sequence_number": next(seq)}),
        _event(
            {
                "type": "response.output_item.added",
                "item": item,
                "output_index": 0,
                "sequence_number": next(seq),
            }
        ),
    ]
    delta = {"type": "response.output_text.delta", "item_id": "msg_b", "output_index": 0, "content_index": 0}
    parts += [
        _event(delta | {"delta": TOKEN, "logprobs": [], "sequence_number": next(seq)}) for _ in range(n)
    ]
    usage = {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": n,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": n + 3,
    }
    done = response | {"status": "completed", "usage": usage}
    parts.append(_event({"type": "response.completed", "response": done, "sequence_number": next(seq)}))
    return "".join(parts)


def anthropic_body(n: int) -> str:
    """Anthropic Messages: message_start, one text block of `n` deltas, message_delta, message_stop."""
    message: dict[str, Any] = {
        "id": "msg_b",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    parts = [
        _event({"type": "message_start", "message": message}),
        _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    delta = _event(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TOKEN}}
    )
    parts += [delta] * n
    parts += [
        _event({"type": "content_block_stop", "index": 0}),
        _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            }
        ),
        _event({"type": "message_stop"}),
    ]
    return "".join(parts)


def gemini_body(n: int) -> str:
    """Gemini's streamGenerateContent (alt=sse, CRLF-separated): `n` chunks, the last with STOP."""

    def chunk(finish: str | None, output: int) -> str:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": TOKEN}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        usage = {"promptTokenCount": 3, "candidatesTokenCount": output, "totalTokenCount": output + 3}
        return _data({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "m"}, "\r\n\r\n")

    return "".join(chunk(None, i + 1) for i in range(n - 1)) + chunk("STOP", n)


@dataclass(frozen=True)
class Wire:
    """One provider API: its body builder, the iModel keywords that select it, and what to add to a
    loopback server's URL to make the iModel's ``base_url``."""

    build: Callable[[int], str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    suffix: str = ""


WIRES: dict[str, Wire] = {
    "openai chat": Wire(openai_chat_body, {"provider": "openai"}, "/v1"),
    "openai responses": Wire(responses_body, {"provider": "openai", "endpoint": "responses"}, "/v1"),
    "anthropic": Wire(anthropic_body, {"provider": "anthropic"}),
    "groq": Wire(lambda n: openai_chat_body(n, groq=True), {"provider": "groq"}),
    "gemini": Wire(gemini_body, {"provider": "gemini"}),
}


def loopback_model(label: str, url: str, transport: str, **options: Any) -> iModel:
    """The iModel of provider API `label` on the loopback server at `url`, over `transport`, without
    retries. Raises `ConfigurationError` where that provider has no such transport (yet)."""
    wire = WIRES[label]
    return iModel(
        model="m",
        api_key="test",
        base_url=url + wire.suffix,
        max_retries=0,
        transport=transport,
        **wire.kwargs,
        **options,
    )


async def has_native(label: str, url: str) -> bool:
    """Whether provider API `label` has its native transport yet (the iModel refuses it if not)."""
    try:
        model = loopback_model(label, url, "native")
    except ConfigurationError:
        return False
    except ModuleNotFoundError as error:
        # The provider names its native twin's module before the module landed (work in progress).
        if not (error.name or "").startswith("lionflow."):
            raise
        return False
    await model.aclose()
    return True


def event_payloads(body: str) -> list[bytes]:
    """The data of every event in `body` (what a JSON decoder sees per event), ``[DONE]`` left out."""
    separator = "\r\n\r\n" if "\r\n\r\n" in body else "\n\n"
    payloads = []
    for event in body.split(separator):
        data = [line[6:] for line in event.splitlines() if line.startswith("data: ")]
        if data and data != ["[DONE]"]:
            payloads.append("\n".join(data).encode())
    return payloads


def raise_open_files(needed: int) -> int:
    """Raise this process's open-file limit to at least `needed` (up to the hard limit), so that
    thousands of sockets fit; children started afterwards inherit it. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
