"""Time per delta: lionflow's iModel streaming vs. the raw official SDK, on the same loopback stream.

    .venv/bin/python benchmarks/provider_overhead.py [--deltas 20000] [--rounds 5]

For each provider API it generates one body of N text deltas in that provider's wire format, serves
it from a loopback server in its own process (tests/loopback.py), and streams it alternately through
the raw SDK (reading each event's text, the least a caller does) and through `iModel.invoke()`. Both
sides are measured in the same run; the table shows the best round of each. Target: lionflow adds
at most 10% over the raw SDK.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from lionflow import iModel

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok "
MESSAGES = [{"role": "user", "content": "go"}]


# -- bodies ----------------------------------------------------------------------------------------


def _data(payload: Any, separator: str = "\n\n") -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}{separator}"


def _event(payload: dict[str, Any]) -> str:
    return f"event: {payload['type']}\n{_data(payload)}"


def openai_chat_body(n: int, *, groq: bool = False) -> str:
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
    def chunk(finish: str | None, output: int) -> str:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": TOKEN}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        usage = {"promptTokenCount": 3, "candidatesTokenCount": output, "totalTokenCount": output + 3}
        return _data({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "m"}, "\r\n\r\n")

    return "".join(chunk(None, i + 1) for i in range(n - 1)) + chunk("STOP", n)


# -- the raw SDK side: read each event's text, nothing more ------------------------------------------


async def raw_openai_chat(url: str) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True
    )
    count = 0
    async for event in stream:
        if event.choices and event.choices[0].delta.content:
            count += 1
    await client.close()
    return count


async def raw_openai_responses(url: str) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="test", max_retries=0)
    stream = await client.responses.create(model="m", input="go", stream=True)
    count = 0
    async for event in stream:
        if event.type == "response.output_text.delta" and event.delta:
            count += 1
    await client.close()
    return count


async def raw_anthropic(url: str) -> int:
    from anthropic import AsyncAnthropic

    client = AsyncAnthropic(base_url=url, api_key="test", max_retries=0)
    stream = await client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "go"}], stream=True
    )
    count = 0
    async for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta" and event.delta.text:
            count += 1
    await client.close()
    return count


async def raw_groq(url: str) -> int:
    from groq import AsyncGroq

    client = AsyncGroq(base_url=url, api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True
    )
    count = 0
    async for event in stream:
        if event.choices and event.choices[0].delta.content:
            count += 1
    await client.close()
    return count


async def raw_gemini(url: str) -> int:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=url, api_version="v1beta"))
    count = 0
    async for event in await client.aio.models.generate_content_stream(model="m", contents="go"):
        if event.text:
            count += 1
    return count


# provider label -> (body builder, raw SDK reader, iModel keyword arguments, base_url suffix)
PROVIDERS: dict[str, tuple[Callable[[int], str], Callable[[str], Awaitable[int]], dict[str, Any], str]] = {
    "openai chat": (openai_chat_body, raw_openai_chat, {"provider": "openai"}, "/v1"),
    "openai responses": (
        responses_body,
        raw_openai_responses,
        {"provider": "openai", "endpoint": "responses"},
        "/v1",
    ),
    "anthropic": (anthropic_body, raw_anthropic, {"provider": "anthropic"}, ""),
    "groq": (lambda n: openai_chat_body(n, groq=True), raw_groq, {"provider": "groq"}, ""),
    "gemini": (gemini_body, raw_gemini, {"provider": "gemini"}, ""),
}


async def lionflow_stream(url: str, kwargs: dict[str, Any]) -> int:
    model = iModel(model="m", api_key="test", base_url=url, max_retries=0, **kwargs)
    count = 0
    async for chunk in model.invoke(messages=MESSAGES):
        if chunk.type == "text":
            count += 1
    await model.aclose()
    return count


async def _timed(run: Callable[[], Awaitable[int]], expected: int) -> float:
    started = time.perf_counter()
    count = await run()
    elapsed = time.perf_counter() - started
    if count != expected:
        raise RuntimeError(f"expected {expected} deltas, got {count}")
    return elapsed


async def bench(deltas: int, rounds: int, only: list[str]) -> None:
    print(f"{deltas:,} text deltas per stream, best of {rounds} rounds, loopback server in its own process\n")
    print(f"{'provider':<18}{'raw SDK us/delta':>18}{'lionflow us/delta':>19}{'overhead':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for label, (build, raw, kwargs, suffix) in PROVIDERS.items():
            if only and label not in only:
                continue
            body = Path(folder) / f"{label.replace(' ', '_')}.sse"
            body.write_text(build(deltas))
            server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
                [sys.executable, "-m", "tests.loopback", str(body)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                url = server.stdout.readline().strip()
                raw_times: list[float] = []
                lion_times: list[float] = []
                for _ in range(rounds):
                    raw_times.append(await _timed(lambda: raw(url), deltas))  # noqa: B023
                    lion_times.append(await _timed(lambda: lionflow_stream(url + suffix, kwargs), deltas))  # noqa: B023
            finally:
                server.terminate()
                server.wait()
            best_raw, best_lion = min(raw_times), min(lion_times)
            overhead = (best_lion - best_raw) / best_raw * 100
            raw_us, lion_us = best_raw / deltas * 1e6, best_lion / deltas * 1e6
            print(f"{label:<18}{raw_us:>18.2f}{lion_us:>19.2f}{overhead:>9.1f}%", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=[], help="provider labels to run, e.g. 'openai chat'")
    args = parser.parse_args()
    anyio.run(bench, args.deltas, args.rounds, args.only)
