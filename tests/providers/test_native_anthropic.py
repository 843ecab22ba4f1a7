"""The Anthropic Messages API through ``transport="native"``: every shape the SDK adapter's tests
build (their own builders, imported), every error, retries, non-streamed answers, structured output
and cancellation, each run through both transports and compared (tests/providers/native.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from lionflow import Chunk, ConfigurationError, iModel
from lionflow.errors import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
    StreamInterrupted,
)
from lionflow.services.providers._native_anthropic import NativeAnthropicProvider
from tests.loopback import Handler, LoopbackServer, Reply, anthropic_sse, split
from tests.providers.helpers import HI, closed_port
from tests.providers.native import both
from tests.providers.structured import POINT_SCHEMA, TRIP, TRIP_JSON, Trip, pieces
from tests.providers.test_anthropic_messages import (
    MODEL,
    block_start,
    block_stop,
    body,
    cut_body,
    delta,
    ending,
    error_body,
    message_start,
    text_block,
    tool_block,
)

pytestmark = pytest.mark.anyio


def model(server: LoopbackServer, **kwargs: Any) -> dict[str, Any]:
    """The iModel keywords of an Anthropic model on `server` (the transport is added by `both`)."""
    return {
        "provider": "anthropic",
        "model": MODEL,
        "api_key": "test",
        "base_url": server.url,
        "max_retries": 0,
    } | kwargs


async def same(
    server: LoopbackServer,
    replies: Sequence[Handler] | Reply,
    *,
    compare_messages: bool = True,
    messages: list[dict[str, Any]] | str = HI,
    params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """`replies` (built afresh per transport) through both transports, compared."""
    script = [replies] if isinstance(replies, Reply) else list(replies)
    return await both(
        server,
        lambda: list(script),
        model=model(server, **kwargs),
        messages=messages,
        params=params,
        compare_messages=compare_messages,
    )


def named(name: str, payload: Any) -> bytes:
    """One event under `name`, whatever its data says (the SDK reads what it is from the data)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"event: {name}\ndata: {data}\n\n".encode()


def text_events(*texts: str) -> list[dict[str, Any]]:
    return [message_start(), *text_block(0, *texts)]


def test_the_native_twin_is_chosen() -> None:
    lion = iModel(provider="anthropic", model=MODEL, api_key="k", transport="native")
    assert type(lion.adapter) is NativeAnthropicProvider


# -- streamed shapes ---------------------------------------------------------------------------------


async def test_text_with_pings_and_empty_deltas(server: LoopbackServer) -> None:
    events = [*text_events("Hel", "", "lo"), {"type": "ping"}, *ending(output_tokens=3)]
    sdk, native = await same(server, Reply(pieces=anthropic_sse(events)))
    assert sdk.response["text"] == "Hello"
    assert native.raw[0] == delta(0, type="text_delta", text="Hel")


async def test_thinking_signatures_and_redacted_thinking(server: LoopbackServer) -> None:
    thinking = [
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, type="thinking_delta", thinking="Let me "),
        delta(0, type="thinking_delta", thinking=""),
        delta(0, type="thinking_delta", thinking="think."),
        delta(0, type="signature_delta", signature="EqQBCkYIBxgCKkA="),
        block_stop(0),
    ]
    redacted = [block_start(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}), block_stop(1)]
    reply = Reply(pieces=body(thinking, redacted, text_block(2, "Answer.")))
    sdk, _ = await same(server, reply, thinking={"type": "enabled", "budget_tokens": 1024})
    assert sdk.response["reasoning"] == "Let me think."


async def test_blocks_that_start_with_their_text(server: LoopbackServer) -> None:
    started = [
        block_start(0, {"type": "thinking", "thinking": "Already ", "signature": ""}),
        delta(0, type="thinking_delta", thinking="thinking."),
        block_stop(0),
        block_start(1, {"type": "text", "text": "Already "}),
        delta(1, type="text_delta", text="text."),
        block_stop(1),
    ]
    sdk, _ = await same(server, Reply(pieces=body(started)))
    assert sdk.response["text"] == "Already text."


async def test_parallel_tool_calls_carry_id_and_name_on_every_fragment(server: LoopbackServer) -> None:
    reply = Reply(
        pieces=body(
            text_block(0, "Checking both."),
            tool_block(1, "toolu_A", "get_weather", "", '{"city": ', '"Paris"}'),
            tool_block(2, "toolu_B", "get_time", '{"tz": "Europe', '/Berlin"}'),
            stop_reason="tool_use",
        )
    )
    sdk, _ = await same(server, reply)
    assert len(sdk.response["tool_calls"]) == 2


async def test_tool_calls_without_arguments_or_with_their_input_at_the_start(server: LoopbackServer) -> None:
    whole = [
        block_start(1, {"type": "tool_use", "id": "toolu_W", "name": "whole", "input": {"a": [1, 2.5]}}),
        block_stop(1),
    ]
    reply = Reply(pieces=body(tool_block(0, "toolu_N", "list_files"), whole, stop_reason="tool_use"))
    sdk, _ = await same(server, reply)
    assert [call["arguments"] for call in sdk.response["tool_calls"]] == [{}, {"a": [1, 2.5]}]


async def test_server_tool_blocks_make_no_chunks(server: LoopbackServer) -> None:
    search = [
        block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        delta(0, type="input_json_delta", partial_json='{"query": "lionflow"}'),
        block_stop(0),
        block_start(1, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
        block_stop(1),
    ]
    citation = {"type": "web_search_result_location", "url": "https://x.test", "cited_text": "x"}
    cited = [
        block_start(2, {"type": "text", "text": ""}),
        delta(2, type="citations_delta", citation=citation),
        delta(2, type="text_delta", text="Found it."),
        block_stop(2),
    ]
    sdk, _ = await same(server, Reply(pieces=body(search, cited)))
    assert sdk.response["text"] == "Found it."
    assert sdk.response["tool_calls"] == []


@pytest.mark.parametrize(
    ("start_usage", "delta_usage"),
    [
        ({"cache_read_input_tokens": 200, "cache_creation_input_tokens": 50}, {}),
        (
            {"cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
            {
                "input_tokens": 12,
                "cache_read_input_tokens": 30,
                "output_tokens_details": {"thinking_tokens": 4},
            },
        ),
        ({"cache_read_input_tokens": None, "service_tier": "standard"}, {"cache_creation_input_tokens": 9}),
    ],
    ids=["prompt-cache", "cumulative-message-delta", "nulls-and-extras"],
)
async def test_usage_with_cache_fields(
    server: LoopbackServer, start_usage: dict[str, Any], delta_usage: dict[str, Any]
) -> None:
    start = message_start(10, **start_usage)
    reply = Reply(pieces=body(text_block(0, "ok"), start=start, output_tokens=7, **delta_usage))
    sdk, _ = await same(server, reply)
    assert sdk.response["usage"]["output_tokens"] == 7


@pytest.mark.parametrize(
    "details",
    [
        {"type": "refusal", "category": "cyber", "explanation": "Refused due to policy."},
        {"type": "refusal", "category": None, "explanation": "No category.", "new_field": {"a": None}},
    ],
)
async def test_a_refusal_keeps_its_stop_details(server: LoopbackServer, details: dict[str, Any]) -> None:
    reply = Reply(pieces=body(text_block(0, "I can"), stop_reason="refusal", stop_details=details))
    sdk, _ = await same(server, reply)
    assert sdk.response["finish_reason"] == "refusal"


@pytest.mark.parametrize(
    "stop_reason",
    [
        "end_turn",
        "stop_sequence",
        "pause_turn",
        "max_tokens",
        "model_context_window_exceeded",
        "tool_use",
        "refusal",
        "a_future_reason",
    ],
)
async def test_stop_reasons(server: LoopbackServer, stop_reason: str) -> None:
    extra: dict[str, Any] = {"stop_sequence": "###"} if stop_reason == "stop_sequence" else {}
    await same(server, Reply(pieces=body(text_block(0, "x"), stop_reason=stop_reason, **extra)))


@pytest.mark.parametrize("size", [1, 7, 64])
async def test_split_anywhere(server: LoopbackServer, size: int) -> None:
    reply_body = body(text_block(0, "Grüße, ", "wörld ✓"), tool_block(1, "toolu_A", "f", '{"a": ', "1}"))
    sdk, _ = await same(server, Reply(pieces=split(reply_body, size)))
    assert sdk.response["text"] == "Grüße, wörld ✓"


async def test_crlf_line_ends(server: LoopbackServer) -> None:
    reply_body = [piece.replace(b"\n", b"\r\n") for piece in body(text_block(0, "a", "b"))]
    sdk, _ = await same(server, Reply(pieces=reply_body))
    assert sdk.response["text"] == "ab"


async def test_events_without_a_name_are_dropped(server: LoopbackServer) -> None:
    # The SDK reads only named events; a nameless one (or one named "") counts for nothing.
    unnamed = f"data: {json.dumps(delta(0, type='text_delta', text='unnamed'))}\n\n".encode()
    empty_name = named("", delta(0, type="text_delta", text="empty name"))
    events = anthropic_sse(text_events("kept"))
    sdk, _ = await same(server, Reply(pieces=[*events, unnamed, empty_name, *anthropic_sse(ending())]))
    assert sdk.response["text"] == "kept"


async def test_what_an_event_is_comes_from_its_data_not_its_name(server: LoopbackServer) -> None:
    renamed = named("something_else", delta(0, type="text_delta", text=" too"))
    events = anthropic_sse(text_events("named"))
    sdk, _ = await same(server, Reply(pieces=[*events, renamed, *anthropic_sse(ending())]))
    assert sdk.response["text"] == "named too"


async def test_events_with_empty_data_or_data_that_is_no_object_are_passed_over(
    server: LoopbackServer,
) -> None:
    odd = [
        b"event: content_block_delta\ndata:\n\n",
        named("content_block_delta", "null"),
        named("content_block_delta", "5"),
        named("content_block_delta", '"text"'),
    ]
    events = anthropic_sse(text_events("ok"))
    await same(server, Reply(pieces=[*events, *odd, *anthropic_sse(ending())]))


async def test_events_and_parts_of_unknown_types_are_passed_over(server: LoopbackServer) -> None:
    # Regression: the SDK reads an event of a type it does not know as a message_start without a
    # message (the first of its union), and the SDK adapter failed on it with an AttributeError.
    unknown = [
        {"type": "a_future_event", "index": 0, "detail": {"text": "not text"}},
        delta(0, type="a_future_delta", text="not text either"),
        block_start(1, {"type": "a_future_block", "text": "nor this"}),
        block_stop(1),
    ]
    events = [*text_events("known"), *unknown, *ending()]
    sdk, _ = await same(server, Reply(pieces=anthropic_sse(events)))
    assert sdk.error is None
    assert sdk.response["text"] == "known"


async def test_data_json_accepts_and_msgspec_refuses(server: LoopbackServer) -> None:
    # NaN is JSON to Python's decoder (the SDK's) only: the native transport falls back to it.
    odd = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, ' + (
        b'"delta": {"type": "text_delta", "text": " NaN"}, "score": NaN}\n\n'
    )
    events = anthropic_sse(text_events("a"))
    sdk, _ = await same(server, Reply(pieces=[*events, odd, *anthropic_sse(ending())]))
    assert sdk.response["text"] == "a NaN"


# -- streams that fail -------------------------------------------------------------------------------


async def test_a_stream_cut_before_its_stop_reason(server: LoopbackServer) -> None:
    sdk, _ = await same(server, Reply(pieces=cut_body("half an ", "answer")))
    assert isinstance(sdk.error, StreamInterrupted)
    assert sdk.error.retryable


async def test_a_message_delta_without_a_stop_reason(server: LoopbackServer) -> None:
    reply = Reply(pieces=anthropic_sse([*text_events("x"), *ending(stop_reason=None)]))  # type: ignore[arg-type]
    sdk, _ = await same(server, reply)
    assert isinstance(sdk.error, StreamInterrupted)


async def test_a_last_event_never_ended_by_a_blank_line_is_dropped(server: LoopbackServer) -> None:
    pieces_ = anthropic_sse([*text_events("almost"), *ending()[:1]])
    pieces_[-1] = pieces_[-1].rstrip(b"\n")
    sdk, _ = await same(server, Reply(pieces=pieces_))
    assert isinstance(sdk.error, StreamInterrupted)


@pytest.mark.parametrize(
    "error",
    [
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"type": "error", "error": {"type": "api_error", "message": "boom"}},
        {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        {"type": "error", "error": {"type": "a_future_error", "message": "new"}},
        {"type": "error", "error": {"type": "api_error", "message": ""}},
        {"type": "error", "error": {"message": "no type"}},
        {"type": "error", "error": "a bare string"},
        "not JSON at all",
        "",
    ],
    ids=[
        "overloaded",
        "api",
        "invalid-request",
        "rate-limit",
        "unknown-type",
        "empty-message",
        "no-type",
        "string",
        "not-json",
        "empty",
    ],
)
async def test_error_events_mid_stream(server: LoopbackServer, error: Any) -> None:
    pieces_ = [*anthropic_sse(text_events("Partial ", "answer")), named("error", error)]
    # A rate limit's retry-after comes from the headers of the (200) response the event came in.
    reply = Reply(pieces=pieces_, headers={"content-type": "text/event-stream", "retry-after": "3"})
    sdk, _ = await same(server, reply)
    assert isinstance(sdk.error, StreamInterrupted)
    assert sdk.error.response is not None


async def test_a_retryable_error_event_before_any_chunk_is_retried(server: LoopbackServer) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    replies = [
        Reply(pieces=[*anthropic_sse([message_start()]), named("error", error)]),
        Reply(pieces=body(text_block(0, "second try"))),
    ]
    sdk, native = await same(server, replies, max_retries=1, retry_initial_delay=0.001)
    assert sdk.error is None
    assert len(sdk.requests) == len(native.requests) == 2


@pytest.mark.parametrize("where", ["first", "later"])
async def test_a_malformed_event(server: LoopbackServer, where: str) -> None:
    # The native transport words it as the SDK does: it decodes a refused event with json again.
    events = anthropic_sse(text_events("fine ", "garbled"))
    index = 1 if where == "first" else -1
    events[index] = events[index].replace(b'"type"', b'"type', 1)
    sdk, _ = await same(server, Reply(pieces=events))
    assert isinstance(sdk.error, StreamInterrupted)


async def test_a_connection_dropped_mid_stream(server: LoopbackServer) -> None:
    sdk, _ = await same(server, Reply(pieces=anthropic_sse(text_events("Half")), abort=True))
    assert isinstance(sdk.error, StreamInterrupted)
    assert sdk.error.retryable


@pytest.mark.parametrize("stream", [True, False])
async def test_connection_refused(server: LoopbackServer, stream: bool) -> None:
    sdk, _ = await same(server, [], base_url=f"http://127.0.0.1:{closed_port()}", stream=stream)
    assert isinstance(sdk.error, ProviderConnectionError)


STALL = 5.0


@pytest.mark.parametrize("where", ["before_headers", "before_the_first_event", "mid_stream", "whole"])
async def test_the_sdks_own_timeout_per_call(server: LoopbackServer, where: str) -> None:
    reply_body = body(text_block(0, "first", "late"))
    if where in ("before_headers", "whole"):
        reply = Reply(pieces=reply_body, head_delay=STALL)
    elif where == "before_the_first_event":
        reply = Reply(pieces=reply_body, delay=[STALL] + [0.0] * (len(reply_body) - 1))
    else:
        reply = Reply(pieces=reply_body, delay=[STALL if b'"late"' in p else 0.0 for p in reply_body])
    with anyio.fail_after(2 * STALL - 1):
        sdk, native = await same(server, reply, params={"timeout": 0.3}, stream=where != "whole")
    assert isinstance(sdk.error, ProviderTimeout)
    assert sdk.error.seconds == 0.3
    for request in sdk.requests + native.requests:
        assert await anyio.to_thread.run_sync(request.disconnected.wait, 2)


# -- error statuses ----------------------------------------------------------------------------------


def error_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    if isinstance(payload, bytes):
        return Reply(pieces=[payload], status=status, headers=headers or {}, chunked=False)
    return Reply.json(status, payload, headers)


@pytest.mark.parametrize(
    ("status", "payload", "headers", "expected"),
    [
        (401, error_body(401, "invalid x-api-key"), None, AuthenticationError),
        (
            403,
            {"type": "error", "error": {"type": "permission_error", "message": "no"}},
            None,
            AuthenticationError,
        ),
        (429, error_body(429, "slow"), {"retry-after": "7"}, RateLimitError),
        (429, error_body(429, "slow"), {"retry-after-ms": "250", "retry-after": "9"}, RateLimitError),
        (429, error_body(429, "slow"), {"retry-after": "soon"}, RateLimitError),
        (400, error_body(400, "max_tokens: too large"), None, ProviderHTTPError),
        (404, {"message": "top-level message"}, None, ProviderHTTPError),
        (413, {"type": "error", "error": {"type": "request_too_large"}}, None, ProviderHTTPError),
        (500, error_body(500, "boom"), None, ProviderHTTPError),
        (500, {"type": "error", "error": {"type": "api_error", "message": ""}}, None, ProviderHTTPError),
        (500, {"error": "a string"}, None, ProviderHTTPError),
        (529, error_body(529, "Overloaded"), None, ProviderHTTPError),
        (302, {"type": "error", "error": {"type": "api_error", "message": "moved"}}, None, ProviderHTTPError),
        (502, b"<html>Bad gateway</html>", {"content-type": "text/html"}, ProviderHTTPError),
        (503, b"", None, ProviderHTTPError),
        (503, b"  upstream overloaded  ", {"content-type": "text/plain"}, ProviderHTTPError),
    ],
)
async def test_error_statuses(
    server: LoopbackServer, status: int, payload: Any, headers: dict[str, str] | None, expected: type
) -> None:
    for stream in (True, False):
        sdk, _ = await same(server, error_reply(status, payload, headers), stream=stream)
        assert type(sdk.error) is expected


@pytest.mark.parametrize("stream", [True, False])
async def test_an_error_body_cut_short(server: LoopbackServer, stream: bool) -> None:
    reply = Reply(
        pieces=[b'{"error": {"mess'], status=500, headers={"content-type": "application/json"}, abort=True
    )
    sdk, _ = await same(server, reply, stream=stream)
    assert isinstance(sdk.error, ProviderConnectionError)


async def test_a_whole_answer_cut_short(server: LoopbackServer) -> None:
    reply = Reply(pieces=[b'{"id": "msg_1", "con'], headers={"content-type": "application/json"}, abort=True)
    sdk, _ = await same(server, reply, stream=False)
    assert isinstance(sdk.error, ProviderConnectionError)


async def test_a_500_then_a_200_is_retried_both_ways(server: LoopbackServer) -> None:
    replies = [error_reply(500, error_body(500, "try again")), Reply(pieces=body(text_block(0, "again")))]
    sdk, native = await same(server, replies, max_retries=1, retry_initial_delay=0.001)
    assert sdk.error is None
    assert len(sdk.requests) == len(native.requests) == 2


# -- non-streamed ------------------------------------------------------------------------------------


def whole_message(content: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6-20260101",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 9, "cache_read_input_tokens": 3},
    } | fields


async def test_a_whole_message(server: LoopbackServer) -> None:
    content: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": "Weather first.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "text", "text": "Checking."},
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_B", "name": "bare", "input": {}},
    ]
    payload = whole_message(
        content,
        stop_reason="tool_use",
        usage={
            "input_tokens": 10,
            "output_tokens": 9,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 4,
            "output_tokens_details": {"thinking_tokens": 2},
        },
    )
    sdk, native = await same(server, Reply.json(200, payload), stream=False)
    assert [c["type"] for c in sdk.chunks] == [
        "reasoning",
        "text",
        "tool_call",
        "tool_call",
        "usage",
        "finish",
    ]
    assert native.raw[0] == payload
    assert "stream" not in native.requests[0].json


async def test_a_whole_refusal_with_stop_details(server: LoopbackServer) -> None:
    details = {"type": "refusal", "category": None, "explanation": "No."}
    payload = whole_message([], stop_reason="refusal", stop_details=details, stop_sequence="x")
    await same(server, Reply.json(200, payload), stream=False)


async def test_a_whole_body_that_is_not_json(server: LoopbackServer) -> None:
    reply = Reply(
        pieces=[b"<html>Bad gateway</html>"], headers={"content-type": "application/json"}, chunked=False
    )
    sdk, _ = await same(server, reply, stream=False)
    assert type(sdk.error) is ProviderError


@pytest.mark.parametrize(
    ("model_name", "max_tokens"), [(MODEL, 21_334), ("claude-opus-4-0", 8_193)], ids=["estimate", "table"]
)
async def test_a_non_streamed_call_the_sdk_expects_to_run_too_long_is_refused(
    server: LoopbackServer, model_name: str, max_tokens: int
) -> None:
    messages: list[str] = []
    for transport in ("sdk", "native"):
        lion = iModel(**model(server, model=model_name, stream=False, transport=transport))
        with pytest.raises(ConfigurationError) as caught:
            await lion.invoke(HI, max_tokens=max_tokens)
        await lion.aclose()
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "Streaming is required" in messages[0]
    assert server.requests == []


async def test_a_non_streamed_call_just_short_of_too_long_or_with_a_timeout_is_sent(
    server: LoopbackServer,
) -> None:
    reply = Reply.json(200, whole_message([{"type": "text", "text": "ok"}]))
    await same(server, reply, stream=False, params={"max_tokens": 21_333})
    await same(server, reply, stream=False, params={"max_tokens": 64_000, "timeout": 30})


# -- structured output -------------------------------------------------------------------------------


async def test_structured_output_through_a_forced_tool(server: LoopbackServer) -> None:
    reply = Reply(
        pieces=split(
            body(tool_block(0, "toolu_answer", "Trip", *pieces(TRIP_JSON)), stop_reason="tool_use"), 9
        )
    )
    sdk, _ = await same(server, reply, params={"response_format": Trip})
    assert sdk.response["finish_reason"] == "stop"
    assert sdk.response["parsed"] == TRIP.model_dump()


async def test_structured_output_from_a_json_schema(server: LoopbackServer) -> None:
    reply = Reply(
        pieces=body(tool_block(0, "toolu_p", "Point", '{"x": 1,', ' "y": 2}'), stop_reason="tool_use")
    )
    await same(server, reply, params={"response_format": POINT_SCHEMA})


class Lookup(BaseModel):
    """Look a word up in the dictionary."""

    word: str


async def test_structured_output_through_output_config(server: LoopbackServer) -> None:
    reply = Reply(pieces=body(text_block(0, *pieces(TRIP_JSON))))
    params = {"response_format": Trip, "tools": [Lookup], "output_config": {"effort": "low"}}
    sdk, _ = await same(server, reply, params=params)
    assert sdk.response["parsed"] == TRIP.model_dump()


async def test_non_streamed_structured_output(server: LoopbackServer) -> None:
    content = [{"type": "tool_use", "id": "toolu_A", "name": "Trip", "input": TRIP.model_dump()}]
    reply = Reply.json(200, whole_message(content, stop_reason="tool_use"))
    sdk, _ = await same(server, reply, stream=False, params={"response_format": Trip})
    assert sdk.response["finish_reason"] == "stop"


# -- requests ----------------------------------------------------------------------------------------


async def test_messages_parameters_and_tools_are_sent_the_same(server: LoopbackServer) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"},
        {"role": "assistant", "content": "It is  "},
    ]
    weather = {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}
    params = {
        "temperature": 0.3,
        "top_k": 5,
        "max_tokens": 321,
        "stop": ["###"],
        "tools": [weather, Lookup, {"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": "required",
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "disabled"},
        "extra_body": {"a_new_parameter": [1, None]},
    }
    _, native = await same(server, Reply(pieces=body(text_block(0, "ok"))), messages=messages, params=params)
    assert native.requests[0].json["top_k"] == 5


async def test_headers_the_sdk_sends(server: LoopbackServer) -> None:
    headers = {"anthropic-beta": "fancy-2026", "X-Custom": "1", "Anthropic-Version": "2023-06-01"}
    params = {
        "extra_headers": {"x-call": "2"},
        "extra_query": {"beta": "true"},
        "user_profile_id": "profile-1",
        "workspace_id": "wrk-1",
    }
    sdk, native = await same(
        server, Reply(pieces=body(text_block(0, "ok"))), default_headers=headers, params=params
    )
    for name in (
        "x-custom",
        "x-call",
        "anthropic-user-profile-id",
        "anthropic-workspace-id",
        "anthropic-version",
    ):
        assert native.requests[0].headers.get(name) == sdk.requests[0].headers.get(name), name
    assert native.requests[0].headers["anthropic-version"] == "2023-06-01"
    assert native.requests[0].target == "/v1/messages?beta=true"
    assert "workspace_id" not in native.requests[0].json


async def test_the_key_and_version_as_the_sdk_sends_them(server: LoopbackServer) -> None:
    sdk, native = await same(server, Reply(pieces=body(text_block(0, "ok"))), base_url=server.url + "/proxy/")
    assert native.requests[0].path == sdk.requests[0].path == "/proxy/v1/messages"
    assert native.requests[0].headers["authorization"] == "Bearer test"
    assert native.requests[0].headers["anthropic-version"] == sdk.requests[0].headers["anthropic-version"]


# -- cancellation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sdk", "native"])
async def test_closing_the_call_mid_stream_closes_the_connection(
    server: LoopbackServer, transport: str
) -> None:
    release = threading.Event()  # never set: the body stops after the first delta until the client leaves
    reply_body = anthropic_sse([*text_events("first ", "second "), *ending()])
    server.add(Reply(pieces=reply_body, holds=[(3, release)]))
    lion = iModel(**model(server, transport=transport))
    seen: list[Chunk] = []
    try:
        async with lion.stream("hi") as call:
            async for chunk in call:
                seen.append(chunk)
                break
    finally:
        await lion.aclose()
    assert [c.data for c in seen] == ["first "]
    received = server.requests[-1]
    assert await anyio.to_thread.run_sync(received.disconnected.wait, 5)
    assert not received.completed.is_set()
    assert call.response is not None
    assert call.response.finish_reason == "cancelled"
