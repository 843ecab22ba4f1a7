"""What every provider's two transports must do alike, for every provider `CASE` (see cases.py):
streams whole and split anywhere, streams cut short, error statuses with their bodies and
retry-after headers, bodies that are not JSON, retries, a refused or dropped connection, the SDK's
own per-call timeout, and closing a call early (the provider sees the client go)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from lionflow import ProviderTimeout, iModel
from lionflow.errors import ConfigurationError
from lionflow.services.providers import provider_class
from tests.loopback import LoopbackServer, Reply, split
from tests.providers.cases import provider_cases
from tests.providers.helpers import HI, ProviderCase, closed_port, sdk_timeout
from tests.providers.native import both

pytestmark = pytest.mark.anyio


def _has_native(case: ProviderCase) -> bool:
    try:
        provider_class(case.provider).for_endpoint(case.endpoint).for_transport("native")
    except ConfigurationError:
        return False
    return True


CASES = [pytest.param(case, id=case.id) for case in provider_cases()]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> ProviderCase:
    found: ProviderCase = request.param
    if not _has_native(found):
        pytest.fail(f"provider {found.provider!r} ({found.id}) has no native transport")
    return found


def model_of(case: ProviderCase, server: LoopbackServer, **extra: Any) -> dict[str, Any]:
    return {
        "provider": case.provider,
        "model": case.model,
        "endpoint": case.endpoint,
        "api_key": "test",
        "base_url": server.url + case.path,
        "max_retries": 0,
    } | extra


async def test_a_stream_reads_the_same(server: LoopbackServer, case: ProviderCase) -> None:
    sdk, _ = await both(
        server, lambda: [Reply(pieces=case.text_body("Hel", "lo", " world"))], model=model_of(case, server)
    )
    assert sdk.error is None
    assert sdk.response is not None
    assert sdk.response["text"] == "Hello world"


@pytest.mark.parametrize("size", [1, 5, 33])
async def test_a_stream_split_anywhere_reads_the_same(
    server: LoopbackServer, case: ProviderCase, size: int
) -> None:
    body = split(case.text_body("Grüße, ", "wörld ", "✓"), size)  # UTF-8 split inside a character too
    sdk, _ = await both(server, lambda: [Reply(pieces=body)], model=model_of(case, server))
    assert sdk.response is not None
    assert sdk.response["text"] == "Grüße, wörld ✓"


async def test_a_stream_cut_short_fails_the_same(server: LoopbackServer, case: ProviderCase) -> None:
    sdk, _ = await both(
        server, lambda: [Reply(pieces=case.cut_body("Hel", "lo"))], model=model_of(case, server)
    )
    assert sdk.error is not None


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (400, {}),
        (401, {}),
        (403, {}),
        (404, {}),
        (429, {"retry-after": "7"}),
        (429, {"retry-after-ms": "1500"}),
        (500, {}),
        (503, {}),
        (529, {}),
    ],
)
async def test_an_error_status_maps_the_same(
    server: LoopbackServer, case: ProviderCase, status: int, headers: dict[str, str]
) -> None:
    body = case.error_body(status, "the provider said no")
    sdk, _ = await both(server, lambda: [Reply.json(status, body, headers)], model=model_of(case, server))
    assert sdk.error is not None


@pytest.mark.parametrize(
    ("status", "text"), [(502, b"<html><body>Bad gateway</body></html>"), (500, b""), (400, b"not json")]
)
async def test_an_error_body_that_is_not_json_maps_the_same(
    server: LoopbackServer, case: ProviderCase, status: int, text: bytes
) -> None:
    def reply() -> list[Reply]:
        return [Reply(pieces=[text], status=status, headers={"content-type": "text/html"}, chunked=False)]

    sdk, _ = await both(server, reply, model=model_of(case, server))
    assert sdk.error is not None


async def test_a_retry_after_a_server_error_goes_the_same(server: LoopbackServer, case: ProviderCase) -> None:
    def replies() -> list[Reply]:
        return [Reply.json(500, case.error_body(500, "busy")), Reply(pieces=case.text_body("ok"))]

    model = model_of(case, server, max_retries=1, retry_initial_delay=0.0)
    sdk, native = await both(server, replies, model=model)
    assert sdk.error is None
    assert len(sdk.requests) == len(native.requests) == 2


async def test_a_refused_connection_fails_the_same(server: LoopbackServer, case: ProviderCase) -> None:
    model = model_of(case, server) | {"base_url": f"http://127.0.0.1:{closed_port()}{case.path}"}
    sdk, _ = await both(server, list, model=model, compare_messages=False)
    assert sdk.error is not None


async def test_a_connection_dropped_mid_body_fails_the_same(
    server: LoopbackServer, case: ProviderCase
) -> None:
    def reply() -> list[Reply]:
        return [Reply(pieces=case.text_body("Hel", "lo")[:2], abort=True)]

    sdk, native = await both(server, reply, model=model_of(case, server), compare_messages=False)
    assert sdk.error is not None
    assert native.error is not None


async def test_the_sdks_own_per_call_timeout_fails_the_same(
    server: LoopbackServer, case: ProviderCase
) -> None:
    def reply() -> list[Reply]:
        return [Reply(pieces=case.text_body("late"), head_delay=3.0)]

    sdk, _ = await both(
        server, reply, model=model_of(case, server), params=sdk_timeout(case, 0.3), compare_messages=False
    )
    assert isinstance(sdk.error, ProviderTimeout)


async def test_the_sdks_own_per_call_timeout_mid_stream_fails_the_same(
    server: LoopbackServer, case: ProviderCase
) -> None:
    # The first pieces come at once, the last one too late: a read timeout after the first chunk,
    # with the seconds it was given (the error's fields are compared).
    def reply() -> list[Reply]:
        pieces = case.text_body("one ", "two ")
        return [Reply(pieces=pieces, delay=[0.0] * (len(pieces) - 1) + [3.0])]

    sdk, _ = await both(
        server, reply, model=model_of(case, server), params=sdk_timeout(case, 0.5), compare_messages=False
    )
    assert isinstance(sdk.error, ProviderTimeout)
    assert sdk.error.seconds == 0.5


@pytest.mark.parametrize("transport", ["sdk", "native"])
async def test_closing_a_call_early_closes_the_providers_stream(
    server: LoopbackServer, case: ProviderCase, transport: str
) -> None:
    # The body's last piece waits 30 s: only the client closing the connection ends the request early.
    pieces = case.text_body("one ", "two ", "three")
    server.add(Reply(pieces=pieces, delay=[0.0] * (len(pieces) - 1) + [30.0]))
    model = iModel(**(model_of(case, server) | {"transport": transport}))
    try:
        async with model.stream(HI) as call:
            async for chunk in call:
                if chunk.type == "text":
                    break
    finally:
        await model.aclose()
    # A threading.Event set by the server's thread: waited for in a worker thread.
    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 10)
