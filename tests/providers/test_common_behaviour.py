"""What every SDK adapter does alike, checked for each: credentials, endpoints, HTTP errors, lost
connections and closing the stream early. Each provider's wire format comes from its own test
module's ``CASE``; what only one provider does is tested there."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from lionflow import (
    AuthenticationError,
    Chunk,
    ConfigurationError,
    MissingCredentials,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
    StreamInterrupted,
    Timeout,
    iModel,
)
from lionflow.services.providers.base import SdkProvider
from tests.helpers import no_task_left
from tests.loopback import LoopbackServer, Reply, split
from tests.providers.cases import provider_cases
from tests.providers.helpers import HI, ProviderCase, closed_port, run, sdk_timeout, unaccepted_port
from tests.providers.structured import (
    STOPS_JSON,
    TRIP,
    TRIP_JSON,
    Trip,
    assert_growing,
    items_as_they_close,
    pieces,
    streamed_partials,
)

pytestmark = pytest.mark.anyio

CASES: list[ProviderCase] = provider_cases()

every_provider = pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])


def sdk_status(error: BaseException | None) -> object:
    """The HTTP status an SDK exception carries (``status_code``, or google-genai's ``code``)."""
    return getattr(error, "status_code", getattr(error, "code", None))


# -- credentials ------------------------------------------------------------------------------------


@every_provider
def test_a_misspelled_option_is_refused_before_anything_is_sent(
    case: ProviderCase, server: LoopbackServer
) -> None:
    # Sent on, it would reach the provider as an unknown request parameter, or be dropped.
    with pytest.raises(ConfigurationError, match="did you mean 'default_headers'"):
        case.loopback_model(server, default_header={"X-Title": "t"})
    assert server.requests == []


@every_provider
def test_a_missing_key_fails_at_construction_naming_the_variables(
    case: ProviderCase, server: LoopbackServer
) -> None:
    with pytest.raises(MissingCredentials) as caught:
        case.model_for()

    for variable in case.key_variables:
        assert variable in str(caught.value)
    assert server.requests == []


@pytest.mark.parametrize(
    ("case", "variable"),
    [(case, variable) for case in CASES for variable in case.key_variables],
    ids=[f"{case.id}-{variable}" for case in CASES for variable in case.key_variables],
)
async def test_the_key_comes_from_the_environment(
    case: ProviderCase,
    variable: str,
    server: LoopbackServer,
    make: Callable[..., iModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = f"key-from-{variable}"
    monkeypatch.setenv(variable, key)
    server.add(Reply(pieces=case.text_body("ok")))

    without_base_url = case.model_for()  # the key is required here, and found
    adapter = without_base_url.adapter
    assert isinstance(adapter, SdkProvider)
    assert adapter.api_key == key
    await without_base_url.aclose()
    await run(make(api_key=None))

    assert case.sent_key(server.requests[0]) == key


@every_provider
async def test_a_base_url_needs_no_key(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=case.text_body("local")))

    _, response = await run(make(api_key=None))

    assert response.text == "local"
    assert case.sent_key(server.requests[0]) == "no-key"  # the SDKs insist on some key


@every_provider
async def test_a_base_url_from_the_sdks_own_variable_needs_no_key(
    case: ProviderCase, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server named by the variable may need no key: lionflow must not insist on one.
    monkeypatch.setenv(case.base_url_variable, server.url + case.path)
    server.add(Reply(pieces=case.text_body("local")))

    async with case.model_for(max_retries=0) as model:
        _, response = await run(model)

    assert response.text == "local"
    assert len(server.requests) == 1


@every_provider
async def test_the_adapters_endpoint_is_accepted_and_any_other_refused(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=case.text_body("ok")))
    _, response = await run(make(endpoint=case.endpoint_name))
    assert response.text == "ok"

    with pytest.raises(ConfigurationError) as caught:
        make(endpoint="embeddings")
    assert "embeddings" in str(caught.value)
    assert repr(case.endpoint_name) in str(caught.value)  # and names the right one


@every_provider
async def test_parameters_given_as_none_are_not_sent(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # None means "not set" (the provider's default), as for iModel's own arguments.
    server.add(Reply(pieces=case.text_body("ok")))

    await run(make(), temperature=None, top_p=None, top_k=None)

    sent = server.requests[0].body.decode()
    for name in ("temperature", "top_p", "topP", "top_k", "topK"):
        assert name not in sent


# -- HTTP errors -------------------------------------------------------------------------------------


@every_provider
async def test_http_401_is_an_authentication_error(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply.json(401, case.error_body(401, "Incorrect API key provided")))

    with pytest.raises(AuthenticationError, match="Incorrect API key provided") as caught:
        await make().invoke(HI)

    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, case.errors.authentication)
    assert sdk_status(caught.value.__cause__) == 401
    assert caught.value.response is not None
    assert caught.value.response.incomplete
    assert len(server.requests) == 1


@every_provider
async def test_http_429_is_a_rate_limit_error_with_retry_after(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply.json(429, case.error_body(429, "Slow down"), headers={"retry-after": "7"}))

    with pytest.raises(RateLimitError) as caught:
        await make().invoke(HI)

    assert caught.value.retry_after == 7.0
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, case.errors.rate_limit)
    assert sdk_status(caught.value.__cause__) == 429
    assert len(server.requests) == 1  # the SDK did not retry on its own


@every_provider
@pytest.mark.parametrize("retry_after", ["soon", "nan", "inf"])
async def test_a_429_with_a_malformed_retry_after_is_still_a_rate_limit_error(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel], retry_after: str
) -> None:
    server.add(Reply.json(429, case.error_body(429, "Slow down"), headers={"retry-after": retry_after}))

    with pytest.raises(RateLimitError) as caught:
        await make().invoke(HI)

    assert caught.value.retry_after is None  # no advice, rather than a wrong one
    assert caught.value.retryable


@every_provider
@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_are_retryable_http_errors(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel], status: int
) -> None:
    server.add(Reply.json(status, case.error_body(status, "upstream trouble")))

    with pytest.raises(ProviderHTTPError) as caught:
        await make().invoke(HI)

    assert caught.value.status_code == status
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, case.errors.server)
    assert sdk_status(caught.value.__cause__) == status
    assert len(server.requests) == 1


@every_provider
async def test_a_503_is_retried_and_the_second_attempt_streams(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(
        Reply.json(503, case.error_body(503, "overloaded")), Reply(pieces=case.text_body("second time lucky"))
    )

    call = make(max_retries=1, retry_initial_delay=0.001).invoke(HI)
    response = await call

    assert response.text == "second time lucky"
    assert call.attempts == 2
    assert len(server.requests) == 2


@every_provider
async def test_connection_refused_is_a_connection_error(
    case: ProviderCase, make: Callable[..., iModel]
) -> None:
    with pytest.raises(ProviderConnectionError) as caught:
        await make(base_url=f"http://127.0.0.1:{closed_port()}{case.path}").invoke(HI)

    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, case.errors.connection)


# -- the SDKs' own timeouts -------------------------------------------------------------------------
# A user sets one per call (``invoke(..., timeout=0.3)`` reaches the SDK's request; Gemini takes
# ``http_options``), and every SDK has a default one. Whichever runs out, the caller gets the same
# ProviderTimeout, of the phase it ran out in, as from iModel's own timeouts.

STALL = 5.0  # how long the server stalls: far longer than the timeouts below


def stalled(case: ProviderCase, where: str) -> Reply:
    """An answer of "first" then "late" that stalls before its headers, before its first event,
    or before the event carrying "late"."""
    pieces = case.text_body("first", "late")
    if where == "before_headers":
        return Reply(pieces=pieces, head_delay=STALL)
    if where == "before_the_first_event":
        return Reply(pieces=pieces, delay=[STALL] + [0.0] * (len(pieces) - 1))
    return Reply(pieces=pieces, delay=[STALL if b'"late"' in piece else 0.0 for piece in pieces])


@every_provider
@pytest.mark.parametrize(
    ("where", "phase", "text"),
    [
        ("before_headers", "connect", ""),
        ("before_the_first_event", "first_chunk", ""),
        ("mid_stream", "idle", "first"),
    ],
)
async def test_the_sdks_own_timeout_is_a_provider_timeout_of_its_phase(
    case: ProviderCase,
    server: LoopbackServer,
    make: Callable[..., iModel],
    where: str,
    phase: str,
    text: str,
) -> None:
    server.add(stalled(case, where))

    with anyio.fail_after(STALL - 1), pytest.raises(ProviderTimeout) as caught:
        await make().invoke(HI, **sdk_timeout(case, 0.3))

    assert isinstance(caught.value, TimeoutError)
    assert caught.value.phase == phase
    assert caught.value.seconds == 0.3
    assert caught.value.retryable == (phase != "idle")  # as for iModel's own timeouts
    assert caught.value.__cause__ is not None  # the SDK's (or its HTTP client's) timeout
    assert caught.value.response is not None
    assert caught.value.response.text == text
    assert caught.value.response.incomplete
    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 2)


@every_provider
@pytest.mark.parametrize(
    ("limit", "where", "phase"),
    [
        (Timeout(connect=0.3), "before_headers", "connect"),
        (0.3, "before_headers", "connect"),
        (Timeout(first_chunk=0.3), "before_the_first_event", "first_chunk"),
        (0.3, "before_the_first_event", "first_chunk"),
    ],
    ids=["connect-only", "all-phases-head", "first_chunk-only", "all-phases-body"],
)
async def test_imodels_own_timeout_runs_out_in_the_phase_the_server_stalled(
    case: ProviderCase,
    server: LoopbackServer,
    make: Callable[..., iModel],
    limit: float | Timeout,
    where: str,
    phase: str,
) -> None:
    # `connect` lasts until the response headers arrive, for every provider: an adapter's open()
    # sends the request and waits for them (the Gemini SDK alone would send it on the first step).
    server.add(stalled(case, where))

    with anyio.fail_after(STALL - 1), pytest.raises(ProviderTimeout) as caught:
        await make(timeout=limit, max_retries=0).invoke(HI)

    assert caught.value.phase == phase
    assert caught.value.seconds == 0.3
    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 2)


@every_provider
async def test_a_connection_never_accepted_is_a_connect_timeout(
    case: ProviderCase, make: Callable[..., iModel]
) -> None:
    with unaccepted_port() as port, anyio.fail_after(STALL), pytest.raises(ProviderTimeout) as caught:
        await make(base_url=f"http://127.0.0.1:{port}{case.path}").invoke(HI, **sdk_timeout(case, 0.3))

    assert caught.value.phase == "connect"
    assert caught.value.retryable
    assert "connect timeout" in str(caught.value)


@every_provider
async def test_an_sdk_timeout_before_the_answer_is_retried(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(stalled(case, "before_the_first_event"), Reply(pieces=case.text_body("second try")))

    call = make(max_retries=1, retry_initial_delay=0.001).invoke(HI, **sdk_timeout(case, 0.3))
    with anyio.fail_after(STALL - 1):
        response = await call

    assert response.text == "second try"
    assert call.attempts == 2


# -- streams that end badly --------------------------------------------------------------------------


@every_provider
async def test_a_stream_that_ends_before_the_finish_reason_is_interrupted(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=case.cut_body("half an ", "answer")))

    with pytest.raises(StreamInterrupted, match=case.cut_message) as caught:
        await make().invoke(HI)

    assert caught.value.retryable
    assert caught.value.response is not None
    assert caught.value.response.text == "half an answer"
    assert caught.value.response.incomplete
    assert caught.value.response.finish_reason == "error"


@every_provider
async def test_a_connection_dropped_mid_stream_is_a_retryable_interruption(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(Reply(pieces=case.cut_body("Half"), abort=True))

    with pytest.raises(StreamInterrupted) as caught:
        await make().invoke(HI)

    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, case.errors.dropped)
    assert caught.value.response is not None
    assert caught.value.response.text == "Half"
    assert caught.value.response.incomplete


@every_provider
async def test_a_malformed_stream_event_is_an_interruption(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # The second delta's JSON is cut short: its string never ends.
    pieces = [piece.replace(b'"garbled"', b'"garbled') for piece in case.text_body("fine ", "garbled")]
    server.add(Reply(pieces=pieces))

    with pytest.raises(StreamInterrupted) as caught:
        await make().invoke(HI)

    assert caught.value.__cause__ is not None
    assert caught.value.response is not None
    assert caught.value.response.text == "fine "
    assert caught.value.response.incomplete


@every_provider
async def test_a_malformed_body_is_a_provider_error(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    # A proxy's error page, sent with status 200 where the answer was expected.
    headers = {"content-type": "application/json"}
    server.add(Reply(pieces=[b"<html>Bad gateway</html>"], headers=headers, chunked=False))

    with pytest.raises(ProviderError) as caught:
        await make(stream=False).invoke(HI)

    assert caught.value.__cause__ is not None
    assert caught.value.response is not None
    assert caught.value.response.incomplete


@every_provider
async def test_unicode_survives_events_and_utf8_sequences_split_across_reads(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    text = "Grüße aus Köln — 東京も Ελληνικά ñandú 🎉🦁 done"
    deltas = [text[i : i + 3] for i in range(0, len(text), 3)]
    pieces = split(case.text_body(*deltas), 7)
    server.add(Reply(pieces=pieces))

    chunks, response = await run(make())

    assert response.text == text
    assert [c.data for c in chunks if c.type == "text"] == deltas
    assert [c.type for c in chunks][-2:] == ["usage", "finish"]
    assert response.finish_reason == "stop"
    assert server.requests[0].pieces_sent == len(pieces)


# -- leaving early -----------------------------------------------------------------------------------


def slow_reply(case: ProviderCase) -> Reply:
    return Reply(pieces=case.text_body(*[f"word{i} " for i in range(40)]), delay=0.05)


@every_provider
async def test_leaving_the_stream_block_early_closes_the_connection(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(slow_reply(case))
    seen: list[Chunk] = []

    async with no_task_left(), make().stream(HI) as call:
        async for chunk in call:
            seen.append(chunk)
            if len(seen) == 2:
                break

    received = server.requests[-1]
    assert await anyio.to_thread.run_sync(received.disconnected.wait, 2)
    assert not received.completed.is_set()
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.finish_reason == "cancelled"
    assert call.response.text == "word0 word1 "


@every_provider
async def test_breaking_out_of_the_seed_loop_closes_the_connection(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    server.add(slow_reply(case))
    model = make()
    count = 0

    async with no_task_left():
        async for _chunk in model.invoke(HI):
            count += 1
            if count == 2:
                break
        for _ in range(5):
            await anyio.lowlevel.checkpoint()

    received = server.requests[-1]
    assert await anyio.to_thread.run_sync(received.disconnected.wait, 2)
    assert not received.completed.is_set()


@every_provider
async def test_a_timeout_mid_stream_closes_the_connection(
    case: ProviderCase, server: LoopbackServer, make: Callable[..., iModel]
) -> None:
    pieces = case.text_body("first", "late")
    server.add(Reply(pieces=pieces, delay=[1.0 if b'"late"' in piece else 0.0 for piece in pieces]))

    with pytest.raises(ProviderTimeout, match="idle") as caught:
        await make(timeout=0.3).invoke(HI)

    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 2)
    assert caught.value.response is not None
    assert caught.value.response.text == "first"


# -- structured output ---------------------------------------------------------------------------
# Anthropic answers through a forced tool instead; its own module tests that path.

TEXT_ANSWERS = [case for case in CASES if case.provider != "anthropic"]
text_answers = pytest.mark.parametrize("case", TEXT_ANSWERS, ids=[case.id for case in TEXT_ANSWERS])


@text_answers
async def test_a_streamed_json_reply_is_parsed_into_the_model(
    case: ProviderCase, server: LoopbackServer
) -> None:
    server.add(Reply(pieces=split(case.text_body(*pieces(TRIP_JSON)), 7)))
    model = case.loopback_model(server)
    _, response = await run(model, response_format=Trip)
    await model.aclose()

    assert response.text == TRIP_JSON
    assert response.parsed == TRIP
    assert response.finish_reason == "stop"


@text_answers
async def test_list_items_arrive_as_each_element_closes(case: ProviderCase, server: LoopbackServer) -> None:
    # The reply's last piece comes a second after the others: the first element must be out by then.
    body = case.text_body(*pieces(STOPS_JSON))
    server.add(Reply(pieces=body, delay=[0.0] * (len(body) - 1) + [1.0]))
    model = case.loopback_model(server)
    seen = await items_as_they_close(model, server)
    await model.aclose()

    assert [stop for stop, _ in seen] == TRIP.stops
    assert seen[0][1] < len(body)  # the first stop arrived before the reply had been sent whole
    sent = server.requests[-1].body.decode()
    assert "items" in sent
    assert "nights" in sent


@text_answers
async def test_a_toon_reply_gives_growing_partials_and_the_validated_model(
    case: ProviderCase, server: LoopbackServer
) -> None:
    from lionflow import toon

    server.add(Reply(pieces=case.text_body(*pieces(toon.encode(TRIP.model_dump()), 3))))
    model = case.loopback_model(server)
    async with model.stream(HI, response_format=Trip, reply_format="toon") as call:
        partials = [partial.model_copy(deep=True) async for partial in call.partials()]
    await model.aclose()

    assert_growing(partials)
    assert call.response is not None
    assert call.response.parsed == TRIP
    sent = server.requests[-1].body.decode()
    assert "TOON" in sent  # asked for in the prompt, with an example of the shape
    assert "json_schema" not in sent  # and not through the API's JSON mode


@text_answers
async def test_partials_grow_while_the_json_streams(case: ProviderCase, server: LoopbackServer) -> None:
    server.add(Reply(pieces=case.text_body(*pieces(TRIP_JSON))))
    model = case.loopback_model(server)
    assert_growing(await streamed_partials(model))
    await model.aclose()
