"""The judging checks on real calls (ScriptedModel as the guarded model and as the judge):
`json_schema` lets a valid structured reply through whatever the chunking and windows, and stops one
as soon as it can no longer validate; `llm_judge` stops on the judge's FAIL, fails an unreadable
verdict or a failed judge (unless told to pass), and judges beside the stream."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lionflow.errors import ConfigurationError, ProviderConnectionError
from lionflow.guards.judges import json_schema, llm_judge
from lionflow.guards.output import OutputGuard
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

SECRET = "hunter2"


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str
    zip: int | None = None


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)
    tags: list[str] = []
    address: Address | None = None
    scores: dict[str, float] = {}


async def _run(model: ScriptedModel, guard: OutputGuard) -> tuple[str, Any]:
    """What a consumer iterating the call receives (its text), and the call's Response."""
    received = ""
    with anyio.fail_after(10):
        async with model.invoke("hi", guards=[guard]) as call:
            async for chunk in call:
                if chunk.type == "text":
                    received += chunk.data
    return received, call.response


_text = st.text(max_size=20)  # any characters but lone surrogates: quotes, backslashes, controls
_people = st.fixed_dictionaries(
    {"name": _text, "age": st.integers(0, 10**12)},
    optional={
        "tags": st.lists(_text, max_size=5),
        "address": st.none() | st.fixed_dictionaries({"city": _text}, optional={"zip": st.integers()}),
        "scores": st.dictionaries(_text, st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(person=_people, indent=st.sampled_from([None, 2]), chunk_size=st.integers(1, 30), data=st.data())
async def test_json_schema_passes_a_valid_object_whatever_the_chunking_and_windows(
    person: dict[str, Any], indent: int | None, chunk_size: int, data: st.DataObject
) -> None:
    text = json.dumps(person, indent=indent)
    window = data.draw(st.integers(2, 80))
    overlap = data.draw(st.integers(0, window - 1))
    guard = OutputGuard(json_schema(Person), window=window, overlap=overlap)
    received, response = await _run(ScriptedModel(responses=[text], chunk_size=chunk_size), guard)
    assert received == text
    assert response.finish_reason == "stop"


async def test_json_schema_stops_at_a_wrong_type_mid_stream_and_never_echoes_it() -> None:
    text = '{"name": "Ann", "age": "' + SECRET + '", "tags": [' + ", ".join(['"t"'] * 200) + "]}"
    guard = OutputGuard(json_schema(Person), name="person", window=10, overlap=5)
    received, response = await _run(ScriptedModel(responses=[text], chunk_size=3), guard)
    assert response.finish_reason == "content_filter"
    assert text.startswith(received)
    assert len(received) < text.index("tags")  # stopped long before the end
    reason = response.metadata["guard"]["reason"]
    assert response.metadata["guard"]["name"] == "person"
    assert reason.startswith("int_parsing at $.age")
    assert SECRET not in reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"name": "Ann", "age": -1, "tags": []}', "greater_than_equal at $.age"),
        ('{"name": "Ann", "age": 1, "tags": {"a": "' + SECRET + '"}}', "wrong type at $.tags"),
        (
            '{"name": "Ann", "age": 1, "address": {"city": "x", "' + SECRET + '": 1}}',
            "unknown field in $.address",
        ),
        ('{"name": "Ann", "age": 1, "address": {"zip": 1}, "tags": []}', "missing field $.address.city"),
        ('{"name": "Ann", "age": 1, "scores": {"' + SECRET + '": "x"}}', "float_parsing at $.scores[key]"),
        ('{"name": "Ann", "age": ' + SECRET + "}", "not JSON at position 23"),
        ("[1, 2, 3]", "wrong type at $"),
    ],
)
async def test_json_schema_says_where_a_reply_went_wrong_without_its_values(text: str, reason: str) -> None:
    text += " " * 50  # (whatever follows: the check fails before the end)
    guard = OutputGuard(json_schema(Person), window=8, overlap=2)
    received, response = await _run(ScriptedModel(responses=[text], chunk_size=5), guard)
    assert response.finish_reason == "content_filter"
    assert text.startswith(received)
    assert response.metadata["guard"]["reason"].startswith(reason)
    assert SECRET not in response.metadata["guard"]["reason"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"name": "Ann", "age": 3', "the JSON ends early"),
        ("Sorry, I cannot answer in JSON.", "no JSON in the reply"),
    ],
)
async def test_json_schema_fails_a_reply_that_ends_before_the_object_does(text: str, reason: str) -> None:
    guard = OutputGuard(json_schema(Person), window=7, overlap=3)
    received, response = await _run(ScriptedModel(responses=[text], chunk_size=4), guard)
    assert response.finish_reason == "content_filter"
    assert response.metadata["guard"]["reason"] == reason
    assert len(received) < len(text)


async def test_json_schema_fails_a_truncated_object_that_ends_at_a_window_edge() -> None:
    text = '{"name": "Ann", "age": 3'  # 24 characters: three full windows of 8, then the end
    guard = OutputGuard(json_schema(Person), window=8, overlap=2)
    _, response = await _run(ScriptedModel(responses=[text], chunk_size=4), guard)
    assert response.finish_reason == "content_filter"
    assert response.metadata["guard"]["reason"] == "the JSON ends early"


class Span(BaseModel):
    start: int
    end: int

    @model_validator(mode="after")
    def ordered(self) -> Span:
        if self.end < self.start:
            raise ValueError(f"end {self.end} before start")
        return self


async def test_json_schema_checks_what_only_the_whole_reply_can_tell_at_its_end() -> None:
    text = '{"start": 5, "end": 1' + " " * 40 + "}"
    guard = OutputGuard(json_schema(Span), window=9, overlap=3)
    received, response = await _run(ScriptedModel(responses=[text], chunk_size=4), guard)
    assert response.finish_reason == "content_filter"
    assert response.metadata["guard"]["reason"] == "value_error at $"
    assert len(received) >= 40  # (nothing was wrong before the object closed)


async def test_one_json_schema_check_follows_each_new_answer_afresh() -> None:
    guard = OutputGuard(json_schema(Person), window=6, overlap=2)
    valid = '{"name": "Bo", "age": 40}'
    model = ScriptedModel(responses=['{"name": 1', valid, valid], chunk_size=3)
    assert (await model.invoke("one", guards=[guard])).finish_reason == "content_filter"
    for _ in range(2):  # a stopped answer, then a whole one: neither leaves state behind
        response = await model.invoke("again", guards=[guard])
        assert (response.finish_reason, response.text) == ("stop", valid)


async def test_one_json_schema_guard_watches_calls_that_overlap() -> None:
    # Each answer gets its own parse: two calls streaming at once under one guard both pass.
    guard = OutputGuard(json_schema(Person), window=6, overlap=2)
    answers = [
        '{"name": "Bo", "age": 40, "tags": ["a", "b", "c"]}',
        '{"age": 7, "name": "Alexandra", "scores": {"x": 1.5}}',
        '{"tags": [], "name": "Q", "age": 123456, "address": {"city": "Oslo"}}',
    ]
    model = ScriptedModel(responses=lambda messages: messages[-1]["content"], chunk_size=2, delay=0.002)
    results: dict[str, Any] = {}

    async def one(text: str) -> None:
        results[text] = await model.invoke(text, guards=[guard])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for text in answers:
                group.start_soon(one, text)
    assert {text: (r.finish_reason, r.text) for text, r in results.items()} == {
        text: ("stop", text) for text in answers
    }


async def test_json_schema_takes_a_model_class() -> None:
    with pytest.raises(ConfigurationError):
        json_schema({"type": "object"})  # type: ignore[arg-type]


def _fruit_judge(messages: list[dict[str, Any]]) -> str:
    return "FAIL: it mentions a fruit" if "pineapple" in messages[-1]["content"] else "PASS"


async def test_a_judge_saying_fail_stops_the_stream_with_its_reason() -> None:
    text = "a" * 60 + " pineapple " + "b" * 200
    judge = ScriptedModel(responses=_fruit_judge)
    guard = OutputGuard(llm_judge(judge, "Never name a fruit."), name="no-fruit", window=40, overlap=20)
    received, response = await _run(ScriptedModel(responses=[text], chunk_size=7), guard)
    assert response.finish_reason == "content_filter"
    assert response.metadata["guard"] == {"name": "no-fruit", "reason": "it mentions a fruit"}
    assert "pine" not in received
    assert text.startswith(received)
    assert "Never name a fruit." in judge.requests[0].messages[0]["content"]
    assert judge.open_streams == 0


@pytest.mark.parametrize("verdict", ["Looks fine to me.", "pass", "PASS.", "FAILURE", "PASS\nFAIL: both"])
async def test_a_verdict_that_is_not_pass_or_fail_fails(verdict: str) -> None:
    judge = ScriptedModel(responses=lambda messages: verdict)
    guard = OutputGuard(llm_judge(judge, "Be kind."), window=50, overlap=0)
    received, response = await _run(ScriptedModel(responses=["nice words " * 10]), guard)
    assert response.finish_reason == "content_filter"
    assert response.metadata["guard"]["reason"] == "the judge's verdict could not be read"
    assert received == ""


async def test_a_judge_that_fails_fails_the_text_unless_told_to_pass() -> None:
    text = "fine text " * 20

    def failing_judge() -> ScriptedModel:
        errors = [ProviderConnectionError("judge unreachable") for _ in range(20)]
        return ScriptedModel(responses=lambda m: "FAIL: asked", fail_on_open=errors, max_retries=0)

    guard = OutputGuard(llm_judge(failing_judge(), "Be kind."), window=50, overlap=10)
    received, response = await _run(ScriptedModel(responses=[text]), guard)
    assert response.finish_reason == "content_filter"
    assert response.metadata["guard"]["reason"] == "the judge failed (ProviderConnectionError)"
    assert received == ""

    lenient = OutputGuard(llm_judge(failing_judge(), "Be kind.", on_error="pass"), window=50, overlap=10)
    received, response = await _run(ScriptedModel(responses=[text]), lenient)
    assert (received, response.finish_reason) == (text, "stop")


async def test_a_judge_that_takes_too_long_fails_the_text() -> None:
    judge = ScriptedModel(responses=lambda m: "PASS", connect_delay=30)
    guard = OutputGuard(llm_judge(judge, "Be kind.", timeout=0.05), window=50, overlap=0)
    _, response = await _run(ScriptedModel(responses=["x" * 80]), guard)
    assert response.metadata["guard"]["reason"] == "the judge failed (TimeoutError)"
    assert judge.open_streams == 0


async def test_the_judge_is_asked_while_the_guarded_stream_is_read() -> None:
    happened: list[str] = []

    def pace(position: int) -> float:
        happened.append(f"chunk {position}")
        return 0.001

    def judge_pace(position: int) -> float:
        happened.append("verdict")
        return 0.0

    judge = ScriptedModel(responses=lambda m: "PASS", connect_delay=0.2, delay=judge_pace)
    guarded = ScriptedModel(responses=["y" * 400], chunk_size=10, delay=pace, usage=False)
    received, _ = await _run(guarded, OutputGuard(llm_judge(judge, "Be kind."), window=100, overlap=0))
    assert received == "y" * 400
    # The 40 chunks were all read while the first verdict was still on its way.
    assert happened.index("chunk 39") < happened.index("verdict")


def test_llm_judge_refuses_a_bad_configuration() -> None:
    judge = ScriptedModel()
    with pytest.raises(ConfigurationError):
        llm_judge(judge, "")
    with pytest.raises(ConfigurationError):
        llm_judge(judge, "Be kind.", on_error="ignore")  # type: ignore[arg-type]
