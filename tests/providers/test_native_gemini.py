"""Gemini through ``transport="native"`` against ``transport="sdk"`` (google-genai): the same chunks,
Response, errors and requests for every shape test_gemini_genai.py builds, and for the ways a
stream, a status or a connection goes wrong (tests/providers/native.py compares them)."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import pytest
from google.genai import types

from lionflow import ConfigurationError, Timeout, iModel
from lionflow.services.providers._native_gemini import GeminiLines, NativeGeminiProvider
from tests.loopback import Handler, LoopbackServer, Reply, split
from tests.providers.helpers import HI, closed_port, sdk_timeout, unaccepted_port
from tests.providers.native import both, outcome
from tests.providers.structured import POINT_SCHEMA, TRIP_JSON, Trip
from tests.providers.test_gemini_genai import (
    CASE,
    CONVERSATION,
    MODEL,
    USAGE,
    Lookup,
    body,
    call,
    error_body,
    event,
    json_body,
    text,
    thought,
)

pytestmark = [
    pytest.mark.anyio,
    # google-genai warns of an enum value it does not know (a finish reason), both ways alike
    pytest.mark.filterwarnings("ignore:.* is not a valid :UserWarning"),
]

SIGNATURE = base64.b64encode(b"opaque-signature").decode()


def model_of(server: LoopbackServer, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "gemini",
        "model": MODEL,
        "api_key": "test",
        "base_url": server.url,
        "max_retries": 0,
    } | extra


async def same(
    server: LoopbackServer,
    pieces: Sequence[bytes] | Callable[[], Sequence[Handler]],
    *,
    compare_messages: bool = True,
    messages: list[dict[str, Any]] | str = HI,
    params: dict[str, Any] | None = None,
    **model: Any,
) -> tuple[Any, Any]:
    """`both()` for one streamed body (or replies), on a Gemini model of `model`'s options."""
    replies = pieces if callable(pieces) else (lambda: [Reply(pieces=list(pieces))])
    return await both(
        server,
        replies,
        model=model_of(server, **model),
        messages=messages,
        params=params,
        compare_messages=compare_messages,
    )


def headers(outcome_: Any, *names: str) -> list[dict[str, str | None]]:
    """Headers the harness leaves out (it compares the key and the content type), per request."""
    return [{name: received.headers.get(name) for name in names} for received in outcome_.requests]


def raw(*lines: str) -> list[bytes]:
    return ["".join(lines).encode()]


# -- what streams --------------------------------------------------------------------------------------

SHAPES: dict[str, list[bytes]] = {
    "text": body(event(text("Hel")), event(text("lo!")), event(finish="STOP", usage=USAGE)),
    "thoughts": body(
        event(thought("Let me think. ")),
        event(thought("Done."), text("The answer")),
        event(text(" is 4."), finish="STOP"),
    ),
    "parallel calls": body(
        event(
            call("get_weather", {"city": "Paris"}, thoughtSignature=SIGNATURE),
            call("get_weather", {"city": "Oslo"}, call_id="fc-native-7"),
        ),
        event(call("get_time", {"zone": "CET"}), finish="STOP", usage=USAGE),
    ),
    "call arguments": body(
        event(call("forecast", {"city": "Zürich", "days": 3, "detail": {"h": True}}), call("noop", {})),
        event(finish="STOP"),
    ),
    "signatures of either alphabet": body(
        event(call("a", {}, thoughtSignature="ab-_"), call("b", {}, thoughtSignature="abc")),
        event(call("c", {}, thoughtSignature=""), {"functionCall": {}}, finish="STOP"),
    ),
    "running usage": body(
        event(text("a"), usage={"promptTokenCount": 15, "totalTokenCount": 15}),
        event(text("b"), usage={"promptTokenCount": 15, "thoughtsTokenCount": 30, "totalTokenCount": 45}),
        event(
            text("c"),
            finish="STOP",
            usage={
                "promptTokenCount": 12,
                "candidatesTokenCount": 3,
                "thoughtsTokenCount": 30,
                "cachedContentTokenCount": 8,
                "totalTokenCount": 45,
            },
        ),
    ),
    "empty usage": body(event(text("x"), finish="STOP", usage={})),
    "blocked prompt": body(
        {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "resp-blocked",
        }
    ),
    "unknown block reason": body({"promptFeedback": {"blockReason": "newReason"}}),
    "no metadata": body(
        {"candidates": [{"content": {"parts": [text("hi")]}}]},
        {"candidates": [{"finishReason": "STOP"}], "modelVersion": ""},
    ),
    "odd events": body(
        {},
        {"candidates": []},
        {"candidates": None},
        {"candidates": [{"content": None}]},
        {"candidates": [{"content": {"parts": None}}]},
        {"candidates": [{"content": {"parts": [{}, text("")]}}]},
        event(text("x"), finish="STOP"),
    ),
    "events that are not objects": [
        b"data: []\r\n\r\n",
        b'data: "x"\r\n\r\n',
        b"data: null\r\n\r\n",
        *body(event(text("x"), finish="STOP")),
    ],
    "two candidates": body(
        {"candidates": [{"content": {"parts": [text("one")]}}, {"content": {"parts": [text("two")]}}]},
        event(finish="STOP"),
    ),
    "unicode": body(event(text("Grüße, 世界 🦁")), event(text("\u2028 line"), finish="STOP")),
}


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_streams_the_same(server: LoopbackServer, shape: str) -> None:
    _, native = await same(server, SHAPES[shape])
    assert native.chunks
    assert all(isinstance(r, dict) for r in native.raw)


@pytest.mark.parametrize(
    "native",
    ["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "SPII", "IMAGE_SAFETY", "OTHER", "stop", "WEIRD", "odd"],
)
async def test_finish_reasons_are_the_same(server: LoopbackServer, native: str) -> None:
    await same(server, body(event(text("partial")), event(finish=native, usage=USAGE)))


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, 64])
async def test_a_body_split_anywhere_reads_the_same(server: LoopbackServer, cut: int) -> None:
    await same(server, split(SHAPES["parallel calls"] + [], cut))


# google-genai reads lines its own way: these framings are what its reader makes of them.
FRAMINGS: dict[str, list[bytes]] = {
    "LF separators": raw(*(f"data: {json.dumps(e)}\n\n" for e in [event(text("a")), event(finish="STOP")])),
    "CR separators": raw(*(f"data: {json.dumps(e)}\r\r" for e in [event(text("a")), event(finish="STOP")])),
    "data over several lines": raw(
        'data: {"candidates": [{"content":\ndata: {"parts": [{"text": "a"}]},\n',
        'data: "finishReason": "STOP"}]}\n\n',
    ),
    "no blank line at the end": raw(f"data: {json.dumps(event(text('a'), finish='STOP'))}"),
    "a CR at the very end": raw(f"data: {json.dumps(event(text('a'), finish='STOP'))}\r"),
    "a raw JSON error body": raw(
        f"data: {json.dumps(event(text('a')))}\r\n\r\n",
        '{\n  "error": {\n    "code": 503,\n    "message": "over {loaded}",\n',
        '    "status": "UNAVAILABLE"\n  }\n}\n',
    ),
    "raw JSON at the end": raw(
        f"data: {json.dumps(event(text('a')))}\n\n", '{"candidates": [{"finishReason": "STOP"}'
    ),
    "a comment line": raw(": keep-alive\n\n", f"data: {json.dumps(event(text('a'), finish='STOP'))}\n\n"),
    "an event name": raw("event: message\n", f"data: {json.dumps(event(text('a'), finish='STOP'))}\n\n"),
    "an empty data line": raw("data: \n\n", f"data: {json.dumps(event(text('a'), finish='STOP'))}\n\n"),
    "a [DONE] marker": raw(f"data: {json.dumps(event(text('a'), finish='STOP'))}\n\n", "data: [DONE]\n\n"),
    "a JSON array, not SSE": raw(
        "[", json.dumps(event(text("a")), indent=1), "\n,\n", json.dumps(event(finish="STOP")), "]\n"
    ),
    "data without the space": raw(f"data:{json.dumps(event(text('a'), finish='STOP'))}\n\n"),
    "an unended string in raw lines": raw(
        '{"a": "{\\"}\n', '"}\n', f"data: {json.dumps(event(finish='STOP'))}\n\n"
    ),
}


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_framings_read_as_google_genai_reads_them(server: LoopbackServer, framing: str) -> None:
    for cut in (1, 4, 1000):
        await same(server, split(FRAMINGS[framing], cut))


def test_the_line_reader_holds_a_trailing_cr_until_the_next_read() -> None:
    lines = GeminiLines()
    assert lines.feed(b"data: 1\r") == []  # an LF may follow: the line is not known to have ended
    assert lines.feed(b"\n\r") == []  # the line ended; the blank one after it is still held
    assert lines.feed(b"\ndata: 2\n") == [b"1"]
    assert lines.end() == [b"2"]


# -- requests ------------------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

REQUESTS: dict[str, dict[str, Any]] = {
    "conversation": {"messages": CONVERSATION},
    "generation config": {
        "params": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 77, "stop": "END", "seed": 11}
    },
    "tools": {"params": {"tools": [WEATHER, Lookup], "tool_choice": "get_weather"}},
    "tool choice none": {"params": {"tools": [Lookup], "tool_choice": "none", "stop": ["a", "b"]}},
    "native tools": {"params": {"tools": [Lookup, types.Tool(google_search=types.GoogleSearch())]}},
    "thinking": {
        "params": {"thinking_config": {"include_thoughts": True, "thinking_budget": 256}, "top_k": 5}
    },
    "model class": {"params": {"response_format": Trip, "temperature": 0}},
    "json schema": {"params": {"response_format": POINT_SCHEMA}},
    "json object": {"params": {"response_format": {"type": "json_object"}}},
    "http options": {
        "params": {
            "http_options": types.HttpOptions(
                headers={"x-goog-api-key": "per-call", "x-extra": "1"},
                api_version="v1alpha",
                extra_body={"generationConfig": {"candidateCount": 1}, "labels": {"a": "b"}},
            )
        }
    },
}


@pytest.mark.parametrize("request_", REQUESTS)
async def test_requests_are_sent_the_same(server: LoopbackServer, request_: str) -> None:
    # (the harness compares the method, the path and query, the JSON body and the key)
    answer = json_body(TRIP_JSON if request_ == "model class" else '{"x": 1, "y": 2}')
    structured = "response_format" in REQUESTS[request_].get("params", {})
    sdk, native = await same(
        server, answer if structured else body(event(text("ok"), finish="STOP")), **REQUESTS[request_]
    )
    assert headers(native, "x-extra") == headers(sdk, "x-extra")


async def test_options_shape_the_request_the_same(server: LoopbackServer) -> None:
    sdk, native = await same(
        server,
        body(event(text("ok"), finish="STOP")),
        api_version="v1alpha",
        default_headers={"x-team": "lions", "x-goog-api-key": "from-headers"},
    )
    assert headers(native, "x-team") == headers(sdk, "x-team") == [{"x-team": "lions"}]
    await same(server, body(event(text("ok"), finish="STOP")), base_url=server.url + "/proxy/")
    per_call = types.HttpOptions(base_url=server.url + "/per-call", timeout=2500)
    sdk, native = await same(
        server, body(event(text("ok"), finish="STOP")), params={"http_options": per_call}
    )
    assert (
        headers(native, "x-server-timeout") == headers(sdk, "x-server-timeout") == [{"x-server-timeout": "3"}]
    )


@pytest.mark.parametrize("variable", [None, "beta", "v1alpha"])
async def test_without_an_api_version_the_sdks_default_is_the_same(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, variable: str | None
) -> None:
    # api_version=None leaves it to google-genai: GOOGLE_GENAI_API_VERSION ("beta" for v1beta), else v1.
    if variable is None:
        monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)
    else:
        monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", variable)
    await same(server, body(event(text("ok"), finish="STOP")), api_version=None)


async def test_the_server_and_key_from_the_environment_are_the_same(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url + "/from-env")
    monkeypatch.setenv("GEMINI_API_KEY", " spaced-key ")
    await same(server, body(event(text("ok"), finish="STOP")), base_url=None, api_key=None)


async def test_a_gzipped_stream_reads_the_same(server: LoopbackServer) -> None:
    squeezed = gzip.compress(b"".join(SHAPES["parallel calls"]))
    headers_ = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    await same(server, lambda: [Reply(pieces=split([squeezed], 50), headers=headers_)])


async def test_structured_output_parses_the_same(server: LoopbackServer) -> None:
    sdk, native = await same(
        server,
        json_body(*[TRIP_JSON[i : i + 9] for i in range(0, len(TRIP_JSON), 9)]),
        params={"response_format": Trip},
    )
    assert native.response["parsed"] == sdk.response["parsed"] is not None


# -- errors --------------------------------------------------------------------------------------------


def status(code: int, payload: Any, headers: dict[str, str] | None = None) -> Callable[[], list[Handler]]:
    if isinstance(payload, bytes):
        return lambda: [
            Reply(status=code, pieces=[payload], headers={"content-type": "text/html", **(headers or {})})
        ]
    return lambda: [Reply.json(code, payload, headers)]


STATUSES: dict[str, Callable[[], list[Handler]]] = {
    "400": status(400, error_body(400, "INVALID_ARGUMENT", "bad part")),
    "401": status(401, error_body(401, "UNAUTHENTICATED", "no key")),
    "403": status(403, error_body(403, "PERMISSION_DENIED", "no access")),
    "404": status(404, error_body(404, "NOT_FOUND", "no model")),
    "429 retry-after": status(429, error_body(429, "RESOURCE_EXHAUSTED", "slow"), {"retry-after": "7"}),
    "429 retry-after-ms": status(
        429, error_body(429, "RESOURCE_EXHAUSTED", "slow"), {"retry-after-ms": "1500"}
    ),
    "500": status(500, error_body(500, "INTERNAL", "oops")),
    "503": status(503, error_body(503, "UNAVAILABLE", "overloaded")),
    "not JSON": status(502, b"<html>Bad gateway</html>"),
    "empty": status(500, b""),
    "a list": status(500, [error_body(500, "INTERNAL", "in a list")]),
    "top-level message": status(400, {"message": "flat", "status": "FAILED_PRECONDITION"}),
    "no status": status(400, {"error": {"code": 400, "message": "just a message"}}),
    "a string": status(500, "plain"),
    "201": status(201, event(text("x"), finish="STOP")),
}


@pytest.mark.parametrize("kind", STATUSES)
@pytest.mark.parametrize("stream", [True, False])
async def test_error_statuses_map_the_same(server: LoopbackServer, kind: str, stream: bool) -> None:
    sdk, _ = await same(server, STATUSES[kind], stream=stream)
    assert sdk.error is not None


MID_STREAM: dict[str, list[bytes]] = {
    "503": body(event(text("Once upon")), error_body(503, "UNAVAILABLE", "The model is overloaded.")),
    "400": body(event(text("x")), error_body(400, "INVALID_ARGUMENT", "bad part")),
    "429": body(event(text("x")), error_body(429, "RESOURCE_EXHAUSTED", "slow down")),
    "first": body(error_body(500, "INTERNAL", "at once"), event(text("never"))),
    "after an empty event": body({}, error_body(500, "INTERNAL", "soon")),
    "a code below 400": body(event(text("x")), {"error": {"code": 200, "message": "odd"}}),
    "error not first": body(
        event(text("x")), {"candidates": [], "error": {"code": 500}}, event(finish="STOP")
    ),
    "malformed": [piece.replace(b'"garbled"', b'"garbled') for piece in CASE.text_body("fine ", "garbled")],
    "malformed first": [b"data: {nope\r\n\r\n"],
    "NaN": [
        *body(event(text("x"))),
        b'data: {"candidates": [], "avg": NaN}\r\n\r\n',
        *body(event(finish="STOP")),
    ],
    "not UTF-8": [
        b'data: {"candidates": [{"content": {"parts": [{"text": "\xff"}]}, "finishReason": "STOP"}]}\r\n\r\n'
    ],
    "cut before the finish": CASE.cut_body("half an ", "answer"),
    "nothing at all": [],
}


@pytest.mark.parametrize("kind", MID_STREAM)
async def test_streams_that_go_wrong_end_the_same(server: LoopbackServer, kind: str) -> None:
    await same(server, MID_STREAM[kind])


@pytest.mark.parametrize(
    ("payload", "failure"),
    [
        ({"error": {"message": "no code"}}, TypeError),
        ({"error": {"code": "500", "message": "a string code"}}, TypeError),
        ({"error": "only words"}, AttributeError),
        (5, TypeError),
    ],
    ids=["no code", "a string code", "a string error", "a number"],
)
async def test_error_payloads_google_genai_cannot_read_fail_the_same(
    server: LoopbackServer, payload: Any, failure: type[Exception]
) -> None:
    # google-genai compares the payload's code with 400 (or reads a code from a string, or a response
    # from a number) and fails with Python's own error, which lionflow does not map: the native
    # path fails alike.
    pieces = body(event(text("x")), payload)
    failures = []
    for transport in ("sdk", "native"):
        with pytest.raises(failure) as caught:
            await outcome(server, [Reply(pieces=pieces)], transport=transport, model=model_of(server))
        failures.append(str(caught.value))
    assert failures[0] == failures[1]


async def test_a_dropped_connection_and_a_refused_one_are_the_same(server: LoopbackServer) -> None:
    await same(server, lambda: [Reply(pieces=CASE.cut_body("Half"), abort=True)])
    await same(server, lambda: [], base_url=f"http://127.0.0.1:{closed_port()}")


async def test_a_connection_never_accepted_is_the_same_connect_timeout() -> None:
    with LoopbackServer() as server, unaccepted_port() as port, anyio.fail_after(8):
        base_url = f"http://127.0.0.1:{port}"
        _, native = await same(server, lambda: [], base_url=base_url, params=sdk_timeout(CASE, 0.3))
    assert native.error is not None


@pytest.mark.parametrize(
    ("limit", "where"),
    [(Timeout(connect=0.3), "before_headers"), (0.3, "before_the_first_event"), (0.3, "mid_stream")],
    ids=["connect", "first_chunk", "idle"],
)
async def test_imodels_own_timeouts_are_the_same(server: LoopbackServer, limit: Any, where: str) -> None:
    pieces = CASE.text_body("first", "late")

    def replies() -> list[Handler]:
        if where == "before_headers":
            return [Reply(pieces=pieces, head_delay=3.0)]
        stall = [3.0 if (where == "mid_stream") == (b'"late"' in piece) else 0.0 for piece in pieces]
        return [Reply(pieces=pieces, delay=stall)]

    with anyio.fail_after(6):
        sdk, native = await same(server, replies, timeout=limit)
    assert native.error is not None
    for outcome_ in (sdk, native):
        assert await anyio.to_thread.run_sync(outcome_.requests[-1].disconnected.wait, 2)


@pytest.mark.parametrize(
    ("where", "stream"),
    [
        ("before_headers", True),
        ("before_headers", False),
        ("before_the_first_event", True),
        ("mid_stream", True),
        ("before_the_body", False),
    ],
)
async def test_the_sdks_own_timeout_is_the_same(server: LoopbackServer, where: str, stream: bool) -> None:
    pieces = CASE.text_body("first", "late")
    delays: dict[str, float | list[float]] = {
        "before_the_first_event": [4.0] + [0.0] * (len(pieces) - 1),
        "mid_stream": [4.0 if b'"late"' in piece else 0.0 for piece in pieces],
        "before_the_body": 4.0,
    }

    def replies() -> list[Handler]:
        if where == "before_headers":
            return [Reply(pieces=pieces, head_delay=4.0)]
        return [Reply(pieces=pieces, delay=delays[where])]

    with anyio.fail_after(6):
        sdk, native = await same(server, replies, stream=stream, params=sdk_timeout(CASE, 0.3))
    assert native.error is not None
    assert (
        headers(native, "x-server-timeout") == headers(sdk, "x-server-timeout") == [{"x-server-timeout": "1"}]
    )
    for outcome_ in (sdk, native):
        assert await anyio.to_thread.run_sync(outcome_.requests[-1].disconnected.wait, 2)


async def test_retries_send_the_same_requests(server: LoopbackServer) -> None:
    def replies() -> list[Handler]:
        return [Reply.json(500, error_body(500, "INTERNAL", "oops")), Reply(pieces=CASE.text_body("second"))]

    _, native = await same(server, replies, max_retries=1, retry_initial_delay=0.001)
    assert len(native.requests) == 2


# -- not streamed --------------------------------------------------------------------------------------


WHOLE = {
    "candidates": [
        {
            "content": {
                "parts": [thought("Plan first."), text("Here you go."), call("lookup", {"word": "lion"})],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 5,
        "candidatesTokenCount": 6,
        "thoughtsTokenCount": 2,
        "totalTokenCount": 13,
    },
    "modelVersion": "gemini-2.5-flash-001",
    "responseId": "resp-whole",
}


STRUCTURED = {"candidates": [{"content": {"parts": [text(TRIP_JSON)]}, "finishReason": "STOP"}]}


@pytest.mark.parametrize(
    "payload",
    [
        WHOLE,
        STRUCTURED,
        {},
        [],
        b"",
        b"<html>not json</html>",
        b'{"candidates": [], "x": NaN}',
        {"candidates": [{"index": 0}]},
    ],
    ids=["whole", "structured", "empty object", "a list", "empty body", "not JSON", "NaN", "no finish"],
)
async def test_a_whole_answer_is_the_same(server: LoopbackServer, payload: Any) -> None:
    if isinstance(payload, bytes):
        replies = lambda: [Reply(pieces=[payload], headers={"content-type": "application/json"})]  # noqa: E731
    else:
        replies = lambda: [Reply.json(200, payload)]  # noqa: E731
    await same(
        server, replies, stream=False, params={"response_format": Trip} if TRIP_JSON in str(payload) else None
    )


# -- closing -------------------------------------------------------------------------------------------


async def test_closing_mid_stream_closes_the_connection(server: LoopbackServer) -> None:
    pieces = body(event(text("first")), event(text("late"), finish="STOP"))
    server.add(Reply(pieces=pieces, delay=[0, 5]))
    model = iModel(**model_of(server, transport="native"))
    with anyio.fail_after(4):
        async with model.stream(HI) as call_:
            async for chunk in call_:
                assert chunk.data == "first"
                assert isinstance(chunk.raw_response, dict)
                break
    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 2)
    server.add(Reply(pieces=CASE.text_body("whole")))
    assert (await model.invoke(HI)).text == "whole"  # the pooled client still serves
    await model.aclose()


async def test_what_runs_inside_google_genai_is_refused_before_sending(server: LoopbackServer) -> None:
    model = iModel(**model_of(server, transport="native"))
    with pytest.raises(ConfigurationError, match="transport='sdk'"):
        await model.invoke(HI, automatic_continuation=True)
    await model.aclose()
    assert server.requests == []


def test_the_sdk_adapter_names_its_native_twin() -> None:
    from lionflow.services.providers.gemini_genai import GeminiProvider

    assert GeminiProvider.for_transport("native") is NativeGeminiProvider
