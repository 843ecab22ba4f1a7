"""What the provider restructure (issue 12) had to keep: checked against the official SDKs on a
loopback server, where the shared suites do not already look.

- A keyword that is a request parameter stays one, even when it resembles an adapter option.
- The Responses adapter reads the body to its end after the terminal event, adds nothing from it,
  and loses nothing when reading it fails.
- An error status whose body is cut off is a lionflow error chained to the SDK's own exception.
- The Anthropic SDK's refusal of a non-streamed call it expects to run too long stays a
  `ConfigurationError` (not a provider error), and nothing is sent.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from lionflow import ConfigurationError, LionflowError, ProviderConnectionError, iModel
from lionflow.errors import MissingDependency
from lionflow.services.providers import provider_class, provider_names
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply, anthropic_sse
from tests.providers import test_openai_responses as responses_api
from tests.providers.helpers import HI, ProviderCase, run
from tests.providers.test_common_behaviour import every_provider

pytestmark = pytest.mark.anyio


# -- options and request parameters ----------------------------------------------------------------


def _request_parameters() -> set[str]:
    """Every request parameter the official SDKs' create methods (and Gemini's config) take."""
    from anthropic.resources.messages import AsyncMessages
    from google.genai import types
    from groq.resources.chat.completions import AsyncCompletions as GroqCompletions
    from openai.resources.chat.completions import AsyncCompletions
    from openai.resources.responses import AsyncResponses

    methods: list[Callable[..., Any]] = [
        AsyncCompletions.create,
        AsyncResponses.create,
        AsyncMessages.create,
        GroqCompletions.create,
    ]
    names = {name for method in methods for name in inspect.signature(method).parameters} - {"self"}
    return names | set(types.GenerateContentConfig.model_fields)


async def test_a_responses_parameter_given_to_a_scripted_model_reaches_its_requests() -> None:
    # A ScriptedModel stands in for a Responses model in a user's tests, with the same keywords;
    # `max_tool_calls` is a Responses API parameter, not a misspelling of the `tool_calls` option.
    model = ScriptedModel(["ok"], max_tool_calls=2)
    assert (await model.invoke(HI)).text == "ok"
    assert model.requests[0].params["max_tool_calls"] == 2


@pytest.mark.parametrize("provider", provider_names())
def test_no_sdk_request_parameter_is_taken_for_a_misspelled_option(provider: str) -> None:
    # Every provider is refused a keyword only when it is no request parameter any of these APIs
    # has (the scripted provider stands in for all of them).
    try:
        adapter = provider_class(provider)
    except MissingDependency:  # transformers without its extra installed
        pytest.skip(f"provider {provider!r} is not installed")
    refused = {
        name: intended
        for name in sorted(_request_parameters() - adapter.option_names)
        if (intended := adapter.close_option(name)) is not None
    }
    assert refused == {}


# -- the Responses API: the body after the terminal event ------------------------------------------


@pytest.fixture
async def responses_model(server: LoopbackServer) -> AsyncIterator[iModel]:
    model = responses_api.CASE.loopback_model(server)
    yield model
    await model.aclose()


def _after_terminal(*events: dict[str, Any]) -> list[bytes]:
    return anthropic_sse([{**event, "sequence_number": 90 + n} for n, event in enumerate(events)])


_LATE_TEXT = responses_api.text_delta("late")
_LATE_FAILURE: dict[str, Any] = {
    "type": "response.failed",
    "response": responses_api.response("failed", error={"code": "server_error", "message": "late"}),
}
_NESTED_ERROR: dict[str, Any] = {
    "type": "error",
    "error": {"type": "server_error", "code": "late", "message": "late"},
}
_TRAILERS = {
    "events_that_would_add_or_fail": _after_terminal(_LATE_TEXT, _LATE_FAILURE),
    "an_error_event_the_sdk_raises_for": _after_terminal(_NESTED_ERROR),
    "an_event_that_is_not_json": [b"event: response.output_text.delta\ndata: {not json\n\n"],
}


@pytest.mark.parametrize("trailer", _TRAILERS.values(), ids=_TRAILERS.keys())
async def test_responses_after_the_terminal_event_the_body_is_read_to_its_end_and_adds_nothing(
    server: LoopbackServer, responses_model: iModel, trailer: list[bytes]
) -> None:
    answer = responses_api.text_body("Hel", "lo")
    # The trailer comes a moment later: an adapter that stopped reading would hang up before it.
    server.add(Reply(pieces=[*answer, *trailer], delay=[0.0] * len(answer) + [0.05] * len(trailer)))
    chunks, response = await run(responses_model)

    assert [chunk.type for chunk in chunks] == ["text", "text", "usage", "finish"]
    assert response.text == "Hello"
    assert response.finish_reason == "stop"
    assert not response.incomplete
    received = server.requests[0]
    assert received.completed.wait(5)  # the connection can go back to the pool
    assert not received.disconnected.is_set()


async def test_responses_a_connection_lost_after_the_terminal_event_loses_nothing(
    server: LoopbackServer, responses_model: iModel
) -> None:
    answer = responses_api.text_body("Hel", "lo")
    server.add(Reply(pieces=[*answer, *_after_terminal(_LATE_TEXT)], abort=True))
    chunks, response = await run(responses_model)

    assert [chunk.type for chunk in chunks] == ["text", "text", "usage", "finish"]
    assert response.text == "Hello"
    assert not response.incomplete


# -- errors while the answer opens -----------------------------------------------------------------


@every_provider
async def test_an_error_status_whose_body_is_cut_off_is_a_lionflow_error(
    case: ProviderCase, server: LoopbackServer
) -> None:
    # The SDKs read an error status's body before raising their status error; a connection lost
    # in that body escapes them as their HTTP client's exception. The adapter contract still holds:
    # a lionflow error, chained to the SDK's (here the HTTP client's) exception.
    cut = Reply(
        pieces=[b'{"error": {"message": "overlo'],
        status=503,
        headers={"content-type": "application/json"},
        abort=True,
    )
    server.add(cut)
    model = case.loopback_model(server)
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await model.invoke(HI)
    finally:
        await model.aclose()
    cause = caught.value.__cause__
    assert cause is not None
    assert not isinstance(cause, LionflowError)


async def test_anthropic_refusing_a_long_non_streamed_call_is_a_configuration_error(
    server: LoopbackServer,
) -> None:
    # The SDK raises ValueError before sending a non-streamed call it expects to exceed 10 minutes.
    model = iModel(
        provider="anthropic",
        model="claude-test",
        api_key="test",
        base_url=server.url,
        stream=False,
        max_tokens=100_000,
        max_retries=0,
    )
    try:
        with pytest.raises(ConfigurationError, match="Streaming is required") as caught:
            await model.invoke(HI)
    finally:
        await model.aclose()
    assert type(caught.value.__cause__) is ValueError
    assert server.requests == []
