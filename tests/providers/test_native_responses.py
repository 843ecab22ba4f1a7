"""The OpenAI Responses API through ``transport="native"``: every shape the SDK adapter's tests
build (their own builders, imported), every error, retries, non-streamed answers, structured output
and cancellation, each run through both transports and compared (tests/providers/native.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from lionflow import Chunk, iModel
from lionflow.errors import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
    StreamInterrupted,
)
from lionflow.services.providers._native_responses import NativeOpenAIResponsesProvider
from tests.loopback import Handler, LoopbackServer, Reply, split
from tests.providers.helpers import closed_port
from tests.providers.native import both
from tests.providers.structured import POINT_SCHEMA, TRIP_JSON, Trip
from tests.providers.test_openai_responses import (
    MODEL,
    USAGE,
    args_delta,
    body,
    call_added,
    call_done,
    call_item,
    completed,
    message_added,
    response,
    text_body,
    text_delta,
)

pytestmark = pytest.mark.anyio


def model(server: LoopbackServer, **kwargs: Any) -> dict[str, Any]:
    """The iModel keywords of a Responses model on `server` (the transport is added by `both`)."""
    return {
        "provider": "openai",
        "endpoint": "responses",
        "model": MODEL,
        "api_key": "test",
        "base_url": server.url + "/v1",
        "max_retries": 0,
    } | kwargs


async def same(
    server: LoopbackServer,
    replies: Sequence[Handler] | Reply,
    *,
    compare_messages: bool = True,
    messages: list[dict[str, Any]] | str | None = None,
    params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """`replies` (built afresh per transport) through both transports, compared."""
    script = [replies] if isinstance(replies, Reply) else list(replies)
    extra = {} if messages is None else {"messages": messages}
    return await both(
        server,
        lambda: list(script),
        model=model(server, **kwargs),
        params=params,
        compare_messages=compare_messages,
        **extra,
    )


def summary(delta: str, part: int, index: int = 0) -> dict[str, Any]:
    return {
        "type": "response.reasoning_summary_text.delta",
        "item_id": "rs_1",
        "output_index": index,
        "summary_index": part,
        "delta": delta,
    }


def refusal(delta: str) -> dict[str, Any]:
    return {
        "type": "response.refusal.delta",
        "item_id": "msg_0",
        "output_index": 0,
        "content_index": 0,
        "delta": delta,
    }


def unnamed(pieces: list[bytes]) -> list[bytes]:
    """The same events without their ``event:`` lines (the SDK reads the type from the data)."""
    return [b"\n".join(line for line in p.split(b"\n") if not line.startswith(b"event:")) for p in pieces]


def test_the_native_twin_is_chosen() -> None:
    lion = iModel(provider="openai", endpoint="responses", model=MODEL, api_key="k", transport="native")
    assert type(lion.adapter) is NativeOpenAIResponsesProvider


# -- streamed shapes ---------------------------------------------------------------------------------


async def test_text_deltas_usage_and_finish(server: LoopbackServer) -> None:
    sdk, native = await same(server, Reply(pieces=text_body("Hello", "", ", world", "!")))
    assert [c["type"] for c in sdk.chunks] == ["text", "text", "text", "usage", "finish"]
    assert native.raw[0]["type"] == "response.output_text.delta"


async def test_text_at_a_later_output_index(server: LoopbackServer) -> None:
    await same(server, Reply(pieces=body(message_added(2), text_delta("late item", 2), terminal=completed())))


async def test_events_without_event_names(server: LoopbackServer) -> None:
    sdk, _ = await same(server, Reply(pieces=unnamed(text_body("no ", "names"))))
    assert sdk.response is not None
    assert sdk.response["text"] == "no names"


async def test_reasoning_summary_parts_and_reasoning_text(server: LoopbackServer) -> None:
    reasoning_text = {
        "type": "response.reasoning_text.delta",
        "item_id": "rs_2",
        "output_index": 1,
        "content_index": 0,
        "delta": " Raw thought.",
    }
    events = [summary("First ", 0), summary("idea.", 0), summary("Second ", 1), summary("idea.", 1)]
    pieces = body(*events, reasoning_text, message_added(2), text_delta("42", 2), terminal=completed())
    sdk, _ = await same(server, Reply(pieces=pieces), reasoning={"effort": "low", "summary": "auto"})
    assert sdk.response is not None
    assert sdk.response["reasoning"] == "First idea.\n\nSecond idea. Raw thought."


async def test_parallel_tool_calls_carry_id_and_name_on_every_fragment(server: LoopbackServer) -> None:
    events = [
        call_added(0, "call_weather", "get_weather"),
        call_added(1, "call_time", "get_time"),
        args_delta(0, '{"city": '),
        args_delta(1, '{"zone": "U'),
        args_delta(0, '"Paris"}'),
        args_delta(1, 'TC"}'),
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc_item_0",
            "output_index": 0,
            "arguments": '{"city": "Paris"}',
        },
        call_done(0, "call_weather", "get_weather", '{"city": "Paris"}'),
        call_done(1, "call_time", "get_time", '{"zone": "UTC"}'),
    ]
    sdk, _ = await same(server, Reply(pieces=body(*events, terminal=completed())))
    fragments = [c for c in sdk.chunks if c["type"] == "tool_call"]
    assert len(fragments) == 4
    assert all(c["tool_call_id"] and c["tool_name"] for c in fragments)


async def test_arguments_sent_only_whole(server: LoopbackServer) -> None:
    events = [
        call_added(0, "call_a", "lookup"),
        call_done(0, "call_a", "lookup", '{"q": "x"}'),
        call_done(1, "call_b", "fetch", '{"id": 7}'),  # not even an output_item.added
        args_delta(2, '{"lost": '),  # a delta of a call never announced: only its whole arguments count
    ]
    await same(server, Reply(pieces=body(*events, terminal=completed())))


async def test_refusal_deltas(server: LoopbackServer) -> None:
    pieces = body(message_added(), refusal("I can't "), refusal("help with that."), terminal=completed())
    await same(server, Reply(pieces=pieces))


@pytest.mark.parametrize("reason", ["max_output_tokens", "content_filter", "max_messages"])
async def test_incomplete_responses(server: LoopbackServer, reason: str) -> None:
    terminal = completed("incomplete", incomplete_details={"reason": reason})
    await same(server, Reply(pieces=text_body("Once upon a", terminal=terminal)), params={"max_tokens": 3})


@pytest.mark.parametrize(
    "usage", [None, {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}], ids=["none", "no-details"]
)
async def test_usage_reported_partly_or_not_at_all(server: LoopbackServer, usage: Any) -> None:
    await same(server, Reply(pieces=text_body("ok", terminal=completed(usage=usage))))


async def test_a_function_call_in_the_final_output_alone_makes_tool_calls(server: LoopbackServer) -> None:
    output = [call_item(0, "call_z", "zap", "{}", "completed")]
    await same(server, Reply(pieces=body(terminal=completed(output=output))))


async def test_what_follows_the_terminal_event_counts_for_nothing(server: LoopbackServer) -> None:
    after = [
        b'event: error\ndata: {"type": "error", "error": {"message": "late"}}\n\n',
        b"data: {not json\n\n",
        b"data: [DONE]\n\n",
    ]
    sdk, native = await same(server, Reply(pieces=text_body("done") + after))
    assert sdk.error is None
    # the rest of the body was read (the connection could be reused), not cut. (The server's thread
    # marks a reply complete just after its last write, which the client may have read first.)
    for request in native.requests:
        assert await anyio.to_thread.run_sync(request.completed.wait, 5)
        assert not request.disconnected.is_set()


async def test_events_named_thread_are_passed_over(server: LoopbackServer) -> None:
    odd = b'event: thread.message\ndata: {"error": {"message": "not for responses"}}\n\n'
    pieces = text_body("a", "b")
    await same(server, Reply(pieces=[*pieces[:2], odd, *pieces[2:]]))


@pytest.mark.parametrize("size", [1, 5, 64])
async def test_split_anywhere(server: LoopbackServer, size: int) -> None:
    text = "Grüße — 東京 🎉🦁 done"
    await same(server, Reply(pieces=split(text_body(*text), size)))


async def test_crlf_line_ends(server: LoopbackServer) -> None:
    pieces = [p.replace(b"\n", b"\r\n") for p in text_body("carriage ", "returns")]
    await same(server, Reply(pieces=pieces))


async def test_a_recorded_logprobs_stream_split_in_one_byte_pieces(server: LoopbackServer) -> None:
    from tests.providers.conformance import FIXTURES, body_pieces

    if not FIXTURES.is_dir():
        pytest.skip("recorded provider streams not found")
    pieces = split(body_pieces("openai_responses_text_logprobs"), 1)
    await same(server, Reply(pieces=pieces), model="gpt-4o-mini")


# -- streams that end badly --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        {"type": "error", "code": "server_error", "message": "The server had an error", "param": None},
        {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None},
        {"type": "error", "code": None, "message": "no code"},
        {"type": "error", "error": {"type": "invalid_request_error", "code": "bad_input", "message": "nope"}},
        {"type": "error", "error": {"code": "overloaded"}},
        {"type": "error", "error": {"code": 503, "message": "a number"}},
        {"type": "error", "error": "a bare string"},
        {"error": {"code": "server_error", "message": "no type at all"}},
    ],
    ids=["flat", "rate-limit", "no-code", "nested", "nested-no-message", "int-code", "string", "untyped"],
)
async def test_error_events_mid_stream(server: LoopbackServer, error: dict[str, Any]) -> None:
    events = [message_added(), text_delta("Partial "), text_delta("answer")]
    if "type" in error:
        pieces = body(*events, error)
    else:  # an event that names no type, on a line of its own
        pieces = [*body(*events), f"event: error\ndata: {json.dumps(error)}\n\n".encode()]
    sdk, _ = await same(server, Reply(pieces=pieces))
    assert isinstance(sdk.error, StreamInterrupted)


async def test_an_unnamed_error_event(server: LoopbackServer) -> None:
    error = {"type": "error", "error": {"code": "server_error", "message": "unnamed"}}
    sdk, _ = await same(server, Reply(pieces=unnamed(body(message_added(), text_delta("x"), error))))
    assert isinstance(sdk.error, StreamInterrupted)


@pytest.mark.parametrize(
    "error", [{"code": "invalid_prompt", "message": "prompt flagged"}, {"code": "server_error"}, None]
)
async def test_a_failed_response_mid_stream(server: LoopbackServer, error: Any) -> None:
    failed = {"type": "response.failed", "response": response("failed", error=error)}
    sdk, _ = await same(server, Reply(pieces=body(message_added(), text_delta("Begin"), failed)))
    assert isinstance(sdk.error, StreamInterrupted)


@pytest.mark.parametrize("done", [False, True], ids=["eof", "done-marker"])
async def test_a_stream_cut_before_its_terminal_event(server: LoopbackServer, done: bool) -> None:
    pieces = body(message_added(), text_delta("half an "), text_delta("answer"))
    if done:
        pieces += [b"data: [DONE]\n\n", *text_body("ignored")]
    sdk, _ = await same(server, Reply(pieces=pieces))
    assert isinstance(sdk.error, StreamInterrupted)
    assert sdk.error.retryable


async def test_a_terminal_event_never_ended_by_a_blank_line_is_dropped(server: LoopbackServer) -> None:
    pieces = text_body("almost")
    pieces[-1] = pieces[-1].rstrip(b"\n")
    sdk, _ = await same(server, Reply(pieces=pieces))
    assert isinstance(sdk.error, StreamInterrupted)


async def test_a_malformed_event(server: LoopbackServer) -> None:
    pieces = [p.replace(b'"garbled"', b'"garbled') for p in text_body("fine ", "garbled")]
    # The decoders word their complaints differently: the error's class and fields are compared.
    sdk, _ = await same(server, Reply(pieces=pieces), compare_messages=False)
    assert isinstance(sdk.error, StreamInterrupted)


async def test_an_event_with_empty_data_is_malformed(server: LoopbackServer) -> None:
    pieces = text_body("a", "b")
    sdk, _ = await same(
        server, Reply(pieces=[*pieces[:2], b"data:\n\n", *pieces[2:]]), compare_messages=False
    )
    assert isinstance(sdk.error, StreamInterrupted)


async def test_an_event_that_is_not_utf8_is_malformed(server: LoopbackServer) -> None:
    # The SDK decodes lines as strict UTF-8, outside its error wrapping: its UnicodeDecodeError
    # escaped lionflow's mapping before the SDK adapter counted it as malformed.
    bad = b'data: {"type": "response.output_text.delta", "output_index": 0, "delta": "\xff\xfe"}\n\n'
    pieces = text_body("a", "b")
    sdk, _ = await same(server, Reply(pieces=[*pieces[:3], bad, *pieces[3:]]), compare_messages=False)
    assert isinstance(sdk.error, StreamInterrupted)
    assert "malformed" in sdk.error.message


async def test_a_json_answer_to_a_streamed_request(server: LoopbackServer) -> None:
    # No SSE events at all: the stream ended before the response completed.
    sdk, _ = await same(server, Reply.json(200, {"error": {"message": "not a stream"}}))
    assert isinstance(sdk.error, StreamInterrupted)


async def test_a_connection_dropped_mid_stream(server: LoopbackServer) -> None:
    pieces = body(message_added(), text_delta("Half"))
    sdk, _ = await same(server, Reply(pieces=pieces, abort=True))
    assert isinstance(sdk.error, StreamInterrupted)
    assert sdk.error.retryable


async def test_connection_refused(server: LoopbackServer) -> None:
    port = closed_port()
    sdk, _ = await same(server, [], base_url=f"http://127.0.0.1:{port}/v1")
    assert isinstance(sdk.error, ProviderConnectionError)


STALL = 5.0


@pytest.mark.parametrize("where", ["before_headers", "before_the_first_event", "mid_stream"])
async def test_the_sdks_own_timeout_per_call(server: LoopbackServer, where: str) -> None:
    pieces = text_body("first", "late")
    if where == "before_headers":
        reply = Reply(pieces=pieces, head_delay=STALL)
    elif where == "before_the_first_event":
        reply = Reply(pieces=pieces, delay=[STALL] + [0.0] * (len(pieces) - 1))
    else:
        reply = Reply(pieces=pieces, delay=[STALL if b'"late"' in p else 0.0 for p in pieces])
    with anyio.fail_after(2 * STALL - 1):
        sdk, native = await same(server, reply, params={"timeout": 0.3})
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
        (401, {"error": {"message": "bad key", "type": "invalid_request_error"}}, None, AuthenticationError),
        (403, {"error": {"message": "forbidden"}}, None, AuthenticationError),
        (429, {"error": {"message": "slow"}}, {"retry-after": "7"}, RateLimitError),
        (429, {"error": {"message": "slow"}}, {"retry-after-ms": "250", "retry-after": "9"}, RateLimitError),
        (429, {"error": {"message": "slow"}}, {"retry-after": "soon"}, RateLimitError),
        (
            400,
            {"error": {"message": "bad", "code": "invalid_value", "param": "input"}},
            None,
            ProviderHTTPError,
        ),
        (404, {"message": "top-level message"}, None, ProviderHTTPError),
        (500, {"error": {"message": "boom", "type": "server_error"}}, None, ProviderHTTPError),
        (500, {"error": {"type": "server_error"}}, None, ProviderHTTPError),
        (500, {"error": {"message": ""}}, None, ProviderHTTPError),
        (500, {"error": {"message": 5}}, None, ProviderHTTPError),
        (500, {"error": "a string"}, None, ProviderHTTPError),
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


async def test_an_error_body_cut_short(server: LoopbackServer) -> None:
    reply = Reply(
        pieces=[b'{"error": {"mess'], status=500, headers={"content-type": "application/json"}, abort=True
    )
    sdk, _ = await same(server, reply)
    assert isinstance(sdk.error, ProviderConnectionError)


async def test_a_500_then_a_200_is_retried_both_ways(server: LoopbackServer) -> None:
    replies = [error_reply(500, {"error": {"message": "try again"}}), Reply(pieces=text_body("second try"))]
    sdk, native = await same(server, replies, max_retries=1, retry_initial_delay=0.001)
    assert sdk.error is None
    assert len(sdk.requests) == len(native.requests) == 2


async def test_a_retryable_error_event_before_any_chunk_is_retried(server: LoopbackServer) -> None:
    error = {"type": "error", "code": "server_error", "message": "transient", "param": None}
    replies = [Reply(pieces=body(error)), Reply(pieces=text_body("second try"))]
    sdk, native = await same(server, replies, max_retries=1, retry_initial_delay=0.001)
    assert len(sdk.requests) == len(native.requests)


# -- non-streamed ------------------------------------------------------------------------------------


async def test_a_whole_response(server: LoopbackServer) -> None:
    output = [
        {
            "id": "rs_1",
            "type": "reasoning",
            "summary": [
                {"type": "summary_text", "text": "Think."},
                {"type": "summary_text", "text": "More."},
            ],
            "content": [{"type": "reasoning_text", "text": "Raw."}],
        },
        {"id": "rs_2", "type": "reasoning", "summary": []},  # encrypted: nothing to show
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Hello there.", "annotations": []},
                {"type": "output_text", "text": "", "annotations": []},
            ],
        },
        call_item(3, "call_x", "lookup", '{"q": "lionflow"}', "completed"),
        call_item(4, "call_y", "bare", "", "completed"),
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ]
    sdk, native = await same(
        server, Reply.json(200, response("completed", output=output, usage=USAGE)), stream=False
    )
    assert [c["type"] for c in sdk.chunks] == [
        "reasoning",
        "text",
        "tool_call",
        "tool_call",
        "usage",
        "finish",
    ]
    assert isinstance(native.raw[0], dict)


async def test_a_whole_refusal_cut_by_the_content_filter(server: LoopbackServer) -> None:
    output = [
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "incomplete",
            "content": [{"type": "refusal", "refusal": "No."}],
        }
    ]
    payload = response("incomplete", output=output, incomplete_details={"reason": "content_filter"})
    await same(server, Reply.json(200, payload), stream=False)


@pytest.mark.parametrize(
    "error", [{"code": "server_error", "message": "try again"}, {"code": "invalid_prompt"}]
)
async def test_a_whole_failed_response(server: LoopbackServer, error: dict[str, Any]) -> None:
    sdk, _ = await same(server, Reply.json(200, response("failed", error=error)), stream=False)
    assert sdk.error is not None


@pytest.mark.parametrize("content_type", ["application/json", "text/html"])
async def test_a_whole_body_that_is_not_json(server: LoopbackServer, content_type: str) -> None:
    # A proxy's error page sent with status 200 (the SDK hands back the text of one not labelled JSON).
    reply = Reply(pieces=[b"<html>Bad gateway</html>"], headers={"content-type": content_type}, chunked=False)
    sdk, _ = await same(server, reply, stream=False, compare_messages=False)
    assert type(sdk.error) is ProviderError


async def test_a_whole_json_body_labelled_as_text(server: LoopbackServer) -> None:
    payload = json.dumps(response("completed", output=[], usage=USAGE)).encode()
    reply = Reply(pieces=[payload], headers={"content-type": "text/plain"}, chunked=False)
    sdk, _ = await same(server, reply, stream=False)
    assert sdk.error is None


# -- requests ----------------------------------------------------------------------------------------


async def test_messages_become_instructions_and_input_items(server: LoopbackServer) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"c": "P"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": {"t": 18}},
    ]
    await same(server, Reply(pieces=text_body("done")), messages=messages)


async def test_parameters_tools_and_pass_through(server: LoopbackServer) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        {"type": "web_search"},
    ]
    params = {
        "tools": tools,
        "tool_choice": "get_weather",
        "truncation": "auto",
        "custom_flag": {"a": 1},  # unknown to the SDK: extra_body
        "previous_response_id": "resp_prev",
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "metadata": {"k": "v"},
        "extra_body": {"service_tier": "flex"},
        "extra_headers": {"x-trace": "t1"},
        "extra_query": {"api-version": "2025-01"},
    }
    sdk, native = await same(
        server, Reply(pieces=text_body("ok")), params=params, temperature=0.3, max_tokens=50
    )
    assert sdk.requests[0].json["previous_response_id"] == "resp_prev"
    assert sdk.requests[0].json["store"] is False
    for request in (sdk.requests[0], native.requests[0]):
        assert request.headers["x-trace"] == "t1"


@pytest.mark.parametrize(("choice", "_wire"), [("auto", "auto"), ("any", "required"), ("none", "none")])
async def test_tool_choice_modes(server: LoopbackServer, choice: str, _wire: str) -> None:
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {}}, "strict": True}]
    await same(server, Reply(pieces=text_body("ok")), params={"tools": tools, "tool_choice": choice})


async def test_organization_project_and_default_headers(server: LoopbackServer) -> None:
    sdk, native = await same(
        server,
        Reply(pieces=text_body("ok")),
        organization="org-1",
        project="proj-1",
        default_headers={"x-team": "lions"},
    )
    for request in (sdk.requests[0], native.requests[0]):
        assert request.headers["openai-organization"] == "org-1"
        assert request.headers["x-team"] == "lions"


async def test_organization_and_project_from_the_sdks_variables(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-env")
    sdk, _ = await same(server, Reply(pieces=text_body("ok")))
    assert sdk.requests[0].headers["openai-project"] == "proj-env"


# -- structured output -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_structured_output_with_a_model_class(server: LoopbackServer, stream: bool) -> None:
    if stream:
        reply = Reply(pieces=text_body(*[TRIP_JSON[i : i + 4] for i in range(0, len(TRIP_JSON), 4)]))
    else:
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": TRIP_JSON, "annotations": []}],
        }
        reply = Reply.json(200, response("completed", output=[message], usage=USAGE))
    params = {"response_format": Trip, "text": {"verbosity": "low"}}
    sdk, _ = await same(server, reply, params=params, stream=stream)
    assert sdk.requests[0].json["text"]["format"]["name"] == "Trip"


async def test_structured_output_with_a_json_schema(server: LoopbackServer) -> None:
    await same(
        server, Reply(pieces=text_body('{"x": 1, ', '"y": 2}')), params={"response_format": POINT_SCHEMA}
    )


# -- cancellation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sdk", "native"])
async def test_closing_the_call_mid_stream_closes_the_connection(
    server: LoopbackServer, transport: str
) -> None:
    release = threading.Event()  # never set: the body stops after the first delta until the client leaves
    pieces = text_body("first ", "second ", "third")
    server.add(Reply(pieces=pieces, holds=[(3, release)]))
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
