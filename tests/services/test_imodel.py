"""Building an iModel, its parameters and messages, and the provider registry."""

from __future__ import annotations

import pytest

from lionflow import (
    ConfigurationError,
    InstructionContent,
    Message,
    MissingDependency,
    UnknownProviderError,
    iModel,
    provider_names,
    register_provider,
)
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


def test_an_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(UnknownProviderError) as caught:
        iModel(provider="opneai", model="gpt-4o-mini")
    message = str(caught.value)
    assert "'opneai'" in message
    assert "scripted" in message
    assert caught.value.known == provider_names()


def test_a_provider_whose_sdk_is_missing_names_the_extra() -> None:
    register_provider(
        "nosuchsdk",
        "lionflow_tests_nowhere.adapter:Adapter",
        requires=["lionflow_tests_nowhere"],
        extra="nosuch",
    )
    with pytest.raises(MissingDependency) as caught:
        iModel(provider="nosuchsdk", model="m")
    assert 'pip install "lionflow[nosuch]"' in str(caught.value)
    assert isinstance(caught.value, ImportError)


def test_registering_a_taken_provider_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_provider("scripted", "lionflow.testing:ScriptedProvider")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"temperature": -1}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_p": 2}, "top_p"),
        ({"timeout": -5}, "timeout"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"max_retries": -1}, "max_retries"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"responses": "one string"}, "list of texts"),
    ],
)
def test_bad_settings_are_clear_errors_before_any_call(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        ScriptedModel(**kwargs)  # type: ignore[arg-type]


async def test_generation_parameters_default_on_the_model_and_override_per_call() -> None:
    model = ScriptedModel(responses=["a", "b"], temperature=0.7, max_tokens=100, tools=[{"name": "t"}])
    await model.invoke(messages="hi")
    await model.invoke(messages="hi", temperature=0.1, seed=7)
    first, second = model.requests
    assert first.params == {"temperature": 0.7, "max_tokens": 100, "tools": [{"name": "t"}]}
    assert second.params == {"temperature": 0.1, "max_tokens": 100, "tools": [{"name": "t"}], "seed": 7}
    with pytest.raises(ConfigurationError, match="temperature"):
        model.invoke(messages="hi", temperature="hot")


async def test_messages_may_be_chat_dicts_messages_or_a_string() -> None:
    model = ScriptedModel(responses=["a", "b", "c"])
    message = Message(content=InstructionContent(instruction="Summarize", context={"n": 1}))
    await model.invoke(messages=[{"role": "system", "content": "Be brief."}, message])
    await model.invoke(messages="just a string")
    assert model.requests[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": 'Summarize\n\nContext:\n{\n  "n": 1\n}'},
    ]
    assert model.requests[1].messages == [{"role": "user", "content": "just a string"}]
    with pytest.raises(ConfigurationError, match=r"messages\[0\] has no 'role'"):
        model.invoke(messages=[{"content": "no role"}])
    with pytest.raises(ConfigurationError, match="empty"):
        model.invoke(messages=[])
    with pytest.raises(ConfigurationError, match=r"messages\[1\] is a int"):
        model.invoke(messages=[{"role": "user", "content": "x"}, 42])  # type: ignore[list-item]


def test_name_defaults_to_the_model_id() -> None:
    assert iModel(provider="scripted", model="gpt-4o-mini").name == "gpt-4o-mini"
    assert iModel(provider="scripted", model="gpt-4o-mini", name="gpt").name == "gpt"
    assert repr(ScriptedModel(name="x")) == "iModel(provider='scripted', model='scripted', name='x')"
