"""Differential testing of the two transports: one call through ``transport="sdk"`` and through
``transport="native"`` against the same loopback replies, and what must be equal.

`both()` runs the call twice (the replies are built afresh for each) and returns both `Outcome`s;
`assert_same()` checks that the chunks (all but ``raw_response``), the Response (all but its
timings), the error (class and fields: message aside where the wording is the SDK's own) and the
request sent (its JSON body, the key and the headers the provider reads) are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lionflow import Chunk, ProviderError, Response, iModel
from tests.loopback import Handler, LoopbackServer, Received

HI = [{"role": "user", "content": "hi"}]

# Headers a provider reads from a request (the key, API versions, organization); the SDKs' own
# telemetry (x-stainless-*, user-agent) is theirs alone.
COMPARED_HEADERS = (
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "content-type",
)

_TIMINGS = {"duration", "time_to_first_chunk"}


@dataclass
class Outcome:
    chunks: list[dict[str, Any]]
    response: dict[str, Any] | None
    error: ProviderError | None
    requests: list[Received]
    raw: list[Any]  # each chunk's raw_response


def error_fields(error: BaseException | None) -> dict[str, Any] | None:
    """An error's class and fields, its partial Response aside (compared on its own)."""
    if error is None:
        return None
    fields = {key: value for key, value in vars(error).items() if key not in ("response", "message")}
    return {"class": type(error), **fields}


def _response(response: Response[Any] | None) -> dict[str, Any] | None:
    if response is None:
        return None
    return {key: value for key, value in response.model_dump().items() if key not in _TIMINGS}


async def outcome(
    server: LoopbackServer,
    replies: Iterable[Handler],
    *,
    transport: str,
    model: dict[str, Any],
    messages: list[dict[str, Any]] | str = HI,
    params: dict[str, Any] | None = None,
) -> Outcome:
    """One call of an iModel built from `model` (plus `transport`) on `server`, which first gets
    `replies`; everything the comparison needs."""
    seen = len(server.requests)
    server.add(*replies)
    lion = iModel(**(model | {"transport": transport}))
    chunks: list[Chunk] = []
    error: ProviderError | None = None
    call = lion.invoke(messages=messages, **(params or {}))
    try:
        async for chunk in call:
            chunks.append(chunk)
    except ProviderError as caught:
        error = caught
    finally:
        await lion.aclose()
    return Outcome(
        chunks=[chunk.model_dump() for chunk in chunks],
        response=_response(call.response),
        error=error,
        requests=list(server.requests[seen:]),
        raw=[chunk.raw_response for chunk in chunks],
    )


def _worded(response: dict[str, Any] | None, messages: bool) -> dict[str, Any] | None:
    """A Response's fields, its ``error`` (the error's message) left out unless `messages`."""
    if response is None or messages:
        return response
    return {key: value for key, value in response.items() if key != "error"}


def request_view(received: Received) -> dict[str, Any]:
    """What a provider reads from a request: method, path, query, JSON body and its headers."""
    try:
        body: Any = received.json
    except ValueError:
        body = received.body
    headers = {name: received.headers.get(name) for name in COMPARED_HEADERS}
    return {"method": received.method, "target": received.target, "body": body, "headers": headers}


def assert_same(sdk: Outcome, native: Outcome, *, messages: bool = True) -> None:
    """Everything a caller sees is the same through both transports; `messages` False leaves the
    error's wording out (where it quotes the SDK's own exception)."""
    assert native.chunks == sdk.chunks
    assert _worded(native.response, messages) == _worded(sdk.response, messages)
    assert error_fields(native.error) == error_fields(sdk.error)
    if messages and sdk.error is not None:
        assert native.error is not None
        assert native.error.message == sdk.error.message
    if sdk.error is not None and sdk.error.response is not None:
        assert native.error is not None
        assert _worded(_response(native.error.response), messages) == _worded(
            _response(sdk.error.response), messages
        )
    assert [request_view(r) for r in native.requests] == [request_view(r) for r in sdk.requests]
    assert all(raw is None or isinstance(raw, dict) for raw in native.raw)


async def both(
    server: LoopbackServer,
    replies: Callable[[], Sequence[Handler]],
    *,
    model: dict[str, Any],
    messages: list[dict[str, Any]] | str = HI,
    params: dict[str, Any] | None = None,
    compare_messages: bool = True,
) -> tuple[Outcome, Outcome]:
    """The call through both transports, checked with `assert_same`; both outcomes returned."""
    sdk = await outcome(server, replies(), transport="sdk", model=model, messages=messages, params=params)
    native = await outcome(
        server, replies(), transport="native", model=model, messages=messages, params=params
    )
    assert_same(sdk, native, messages=compare_messages)
    return sdk, native
