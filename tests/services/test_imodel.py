"""Building an iModel, its parameters and messages, and the provider registry."""

from __future__ import annotations

import math
import re

import pytest

from lionflow import (
    ConfigurationError,
    InstructionContent,
    Message,
    MissingDependency,
    Timeout,
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


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        (None, "messages is None; expected a list of chat dicts"),
        (123, "messages is a int; expected a list of chat dicts"),
        (b"hi", "messages is a bytes; expected a list of chat dicts"),
        ({"role": "user", "content": "hi"}, "a single message; wrap it in a list"),
        (Message(content=InstructionContent(instruction="hi")), "a single message; wrap it in a list"),
    ],
    ids=["None", "int", "bytes", "one-dict", "one-Message"],
)
def test_messages_of_the_wrong_type_are_refused_before_any_request(messages: object, fragment: str) -> None:
    model = ScriptedModel(responses=["a"])

    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        model.invoke(messages)  # type: ignore[call-overload]  # the wrong kind, on purpose

    assert model.requests == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_retries": "2"}, "max_retries must be an integer >= 0, not '2'"),
        ({"max_retries": 1.5}, "max_retries must be an integer >= 0"),
        ({"max_retries": True}, "max_retries must be an integer >= 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0, not -1"),
        ({"retry_initial_delay": "fast"}, "retry_initial_delay must be a number of seconds >= 0"),
        ({"retry_max_delay": -1}, "retry_max_delay must be a number of seconds >= 0"),
        ({"timeout": "30"}, "timeout must be a positive number of seconds or a Timeout"),
        ({"max_concurrent": "2"}, "max_concurrent must be an integer >= 1, not '2'"),
        ({"max_concurrent": 1.5}, "max_concurrent must be an integer >= 1"),
        ({"requests_per_minute": "60"}, "requests_per_minute must be an integer >= 1, not '60'"),
        ({"name": 5}, "name must be a string"),
        ({"model": 5}, "model must be a string"),
        ({"stream": "no"}, "stream must be True or False"),
        ({"seed": "lucky"}, "seed must be an integer"),
        ({"temperature": True}, "temperature must be a number"),
        ({"api_key": 123}, "api_key must be a string"),
        ({"base_url": 8080}, "base_url must be a string"),
        ({"endpoint": 1}, "endpoint must be a string"),
        # seconds a float cannot hold, or that never end: refused here, not at the first retry
        ({"retry_initial_delay": 10**400}, "retry_initial_delay must be a finite number of seconds"),
        ({"retry_initial_delay": math.inf}, "retry_initial_delay must be a finite number of seconds"),
        ({"retry_max_delay": math.inf}, "retry_max_delay must be a finite number of seconds"),
        ({"timeout": 10**400}, "timeout must be a finite number of seconds"),
        ({"timeout": math.nan}, "timeout must be a positive number of seconds or a Timeout"),
        ({"timeout": math.inf}, "timeout must be a finite number of seconds"),
    ],
)
def test_settings_of_the_wrong_type_say_what_was_expected(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        iModel(**({"provider": "scripted"} | kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", [None, 5])
def test_a_provider_that_is_not_a_name_is_refused(provider: object) -> None:
    with pytest.raises(ConfigurationError, match="provider must be a provider name"):
        iModel(provider=provider, model="m")  # type: ignore[arg-type]


async def test_a_wrong_type_in_a_calls_parameters_is_refused_before_the_request() -> None:
    model = ScriptedModel(responses=["a"])

    with pytest.raises(ConfigurationError, match="seed must be an integer"):
        model.invoke("hi", seed="lucky")
    with pytest.raises(ConfigurationError, match="max_tokens must be a positive integer"):
        model.invoke("hi", max_tokens="100")

    assert model.requests == []


def test_a_timeout_object_is_checked_too() -> None:
    with pytest.raises(ConfigurationError, match=r"Timeout\.connect must be a positive number of seconds"):
        iModel(provider="scripted", timeout=Timeout(connect="5"))  # type: ignore[arg-type]


def test_name_defaults_to_the_model_id() -> None:
    assert iModel(provider="scripted", model="gpt-4o-mini").name == "gpt-4o-mini"
    assert iModel(provider="scripted", model="gpt-4o-mini", name="gpt").name == "gpt"
    assert repr(ScriptedModel(name="x")) == "iModel(provider='scripted', model='scripted', name='x')"
