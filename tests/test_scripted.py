"""ScriptedModel: the options users configure their tests with."""

from __future__ import annotations

import dataclasses

import pytest

from lionflow import Chunk, ConfigurationError, iModel
from lionflow.services.providers.base import ProviderSettings
from lionflow.testing import ScriptedModel, ScriptedModelExhausted, ScriptedProvider, ScriptedReply

pytestmark = pytest.mark.anyio


async def test_responses_are_used_in_turn_and_running_out_is_clear() -> None:
    model = ScriptedModel(responses=["first", "second"])
    assert (await model.invoke("a")).text == "first"
    assert (await model.invoke("b")).text == "second"
    with pytest.raises(ScriptedModelExhausted, match="2 responses and was called 3 times"):
        await model.invoke("c")


async def test_responses_may_be_a_function_of_the_messages() -> None:
    model = ScriptedModel(responses=lambda messages: messages[-1]["content"].upper())
    assert (await model.invoke("shout this")).text == "SHOUT THIS"


async def test_the_default_reply_quotes_the_prompt() -> None:
    text = (await ScriptedModel().invoke("Write a haiku")).text
    assert '"Write a haiku"' in text


def _weather_model() -> ScriptedModel:
    return ScriptedModel(
        responses=lambda _: "Let me check.",
        reasoning="The user wants weather.",
        tool_calls=[
            {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}},
            {"name": "get_time", "arguments": {"tz": "Europe/Paris"}},
        ],
        chunk_size=5,
    )


async def test_reasoning_tool_calls_and_usage_chunks() -> None:
    model = _weather_model()
    chunks: list[Chunk] = [c async for c in model.invoke("weather?")]
    kinds = [c.type for c in chunks]
    assert kinds.index("reasoning") < kinds.index("text") < kinds.index("tool_call") < kinds.index("usage")
    assert kinds[-1] == "finish"
    assert kinds.count("finish") == 1
    assert kinds.count("usage") == 1
    tool_chunks = [c for c in chunks if c.type == "tool_call"]
    assert len(tool_chunks) > 2  # arguments arrive in fragments
    assert all(c.tool_call_id and c.tool_name for c in tool_chunks)  # every fragment carries both
    response = await model.invoke("weather?")
    assert response.reasoning == "The user wants weather."
    assert response.finish_reason == "tool_calls"
    weather = response.tool_calls[0]
    assert (weather.id, weather.name, weather.arguments) == (
        "call_1",
        "get_weather",
        {"city": "Paris", "unit": "C"},
    )
    assert response.tool_calls[1].name == "get_time"
    assert response.tool_calls[1].arguments == {"tz": "Europe/Paris"}
    assert response.usage is not None
    assert response.usage.reasoning_tokens == 4


async def test_a_scripted_reply_sets_per_turn_tool_calls_and_finish_reason() -> None:
    model = ScriptedModel(
        responses=[
            ScriptedReply(tool_calls=[{"name": "search", "arguments": {"q": "lions"}}]),
            ScriptedReply(text="Lions sleep a lot.", finish_reason="length"),
        ]
    )
    first = await model.invoke("find lions")
    second = await model.invoke("and?")
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls[0].arguments == {"q": "lions"}
    assert second.finish_reason == "length"
    assert second.tool_calls == []


async def test_usage_can_be_left_out() -> None:
    chunks = [c async for c in ScriptedModel(responses=["x"], usage=False).invoke("hi")]
    assert [c.type for c in chunks] == ["text", "finish"]


MALFORMED = {
    "no content": [{"role": "user"}],
    "content None": [{"role": "user", "content": None}],
    "content a number": [{"role": "user", "content": 5}],
    "unknown role": [{"role": "bogus", "content": "x"}],
    "no role": [{"content": "x"}],
}


@pytest.mark.parametrize("messages", MALFORMED.values(), ids=MALFORMED.keys())
async def test_messages_every_real_adapter_refuses_are_refused(messages: list[dict[str, object]]) -> None:
    model = ScriptedModel(responses=["never sent"])
    with pytest.raises(ConfigurationError, match=r"messages\[0\]"):
        await model.invoke(messages)
    assert model.requests == []  # refused before it counts as sent


async def test_a_message_that_carries_nothing_is_left_out_as_real_adapters_do() -> None:
    model = ScriptedModel(responses=["again"])
    history = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": ""},  # the answer of a turn stopped before its first chunk
        {"role": "user", "content": "q2"},
    ]
    assert (await model.invoke(history)).text == "again"
    assert model.requests[0].messages == [history[0], history[2]]


def test_a_misspelled_option_is_refused_naming_the_one_meant() -> None:
    # Not a request parameter sent to the provider: the user meant an option, and hears which.
    with pytest.raises(ConfigurationError, match="did you mean 'chunk_size'"):
        ScriptedModel(chunk_sise=2)
    with pytest.raises(ConfigurationError, match="did you mean 'responses'"):
        iModel(provider="scripted", respones=["hi"])


def test_an_adapter_refuses_an_option_it_does_not_have() -> None:
    settings = ProviderSettings(model="scripted", options={"chunk_size": 2, "colour": "blue"})
    with pytest.raises(ConfigurationError, match=r"no option 'colour'.*chunk_size"):
        ScriptedProvider(settings)


def test_provider_settings_cannot_change_under_an_adapter() -> None:
    options = {"chunk_size": 2}
    settings = ProviderSettings(model="scripted", options=options)
    options["chunk_size"] = 99  # the caller's dict, changed afterwards
    assert ScriptedProvider(settings).chunk_size == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.model = "other"  # type: ignore[misc]  # deliberately writing a frozen field
    with pytest.raises(TypeError):
        settings.options["chunk_size"] = 3  # type: ignore[index]  # deliberately: a read-only mapping
