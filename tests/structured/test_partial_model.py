"""Partial pydantic objects while the JSON arrives: stream_partial, call.partials(), communicate."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Literal, TypeVar

import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel, ValidationError

from lionflow import AssistantResponseContent, Session
from lionflow.operations import communicate
from lionflow.structured import PartialJSONError, stream_partial
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply, sse

pytestmark = pytest.mark.anyio


class Person(BaseModel):
    name: str = ""
    age: int | None = None


async def _deltas(*pieces: str) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


M = TypeVar("M", bound=BaseModel)


async def _all(source: AsyncIterator[str], model: type[M]) -> list[M]:
    return [partial.model_copy(deep=True) async for partial in stream_partial(source, model)]


async def test_the_seed_sequence() -> None:
    seen = await _all(_deltas('{"na', 'me": "bil', "bo", ' baggins", "a', 'ge": 11', "1}"), Person)
    assert seen == [
        Person(name="", age=None),
        Person(name="bil"),
        Person(name="bilbo"),
        Person(name="bilbo baggins"),
        Person(name="bilbo baggins", age=111),
    ]


class Color(StrEnum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    city: str
    name: str = ""  # the same key name as its parent's


class Account(BaseModel):
    name: str
    address: Address | None = None
    tags: list[str] = []
    friends: list[Person] = []
    color: Color | None = None
    kind: Literal["basic", "premium"] | None = None
    joined: datetime | None = None
    scores: dict[str, int] = {}


DOCUMENT = {
    "name": "ada",
    "address": {"city": "london", "name": "home"},
    "tags": ["math", "engines"],
    "friends": [{"name": "charles", "age": 45}, {"age": 30, "name": "mary"}, {"name": "lord b"}],
    "color": "green",
    "kind": "premium",
    "joined": "1833-06-05T00:00:00",
    "scores": {"logic": 10, "poetry": 7},
}


async def test_nested_models_lists_and_typed_leaves_fill_in_as_they_complete() -> None:
    text = json.dumps(DOCUMENT)
    seen = await _all(_deltas(*(text[i : i + 3] for i in range(0, len(text), 3))), Account)
    final = seen[-1]
    assert final == Account.model_validate(DOCUMENT)
    partials = seen[:-1]
    # a Literal, an enum and a datetime appear only once complete, never half-written
    assert {p.kind for p in partials} <= {None, "premium"}
    assert {p.color for p in partials} <= {None, Color.GREEN}
    assert {p.joined for p in partials} <= {None, datetime(1833, 6, 5)}
    # strings grow; an emitted value only ever grows
    names = [p.name or "" for p in partials]  # a required field is None until it starts
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(names))
    # list items with reordered or missing keys still become models, defaults filled in
    friends = [p.friends for p in partials if len(p.friends) == 3][-1]
    assert friends[1] == Person(name="mary", age=30)
    assert friends[2].age is None
    # the child's "name" never leaks into the parent's
    assert all(p.name in (None, "", "a", "ad", "ada") for p in partials)
    cities = {p.address.city for p in partials if p.address is not None}
    assert any(city and city != "london" and "london".startswith(city) for city in cities)  # grew in place


async def test_an_object_is_emitted_only_when_it_changed() -> None:
    class Only(BaseModel):
        kept: str = ""

    text = '{"ignored": "' + "x" * 50 + '", "kept": "yes"}'
    seen = await _all(_deltas(*text), Only)
    # the unknown key's 50 characters produce no new objects
    assert [p.kept for p in seen] == ["", "y", "ye", "yes", "yes"]


async def test_unions_pick_the_model_that_fits() -> None:
    class Cat(BaseModel):
        meows: int

    class Dog(BaseModel):
        barks: int

    class Pet(BaseModel):
        animal: Cat | Dog

    seen = await _all(_deltas('{"animal": {"barks": 3', "}}"), Pet)
    assert seen[-1] == Pet(animal=Dog(barks=3))


async def test_invalid_json_raises_with_the_position() -> None:
    with pytest.raises(PartialJSONError, match="position 9"):
        await _all(_deltas('{"name": ', "nope}"), Person)


async def test_valid_json_of_the_wrong_shape_fails_strict_validation_at_the_end() -> None:
    with pytest.raises(ValidationError):
        await _all(_deltas('{"name": "x", "age": "old"}'), Person)


async def test_model_stream_partials_and_the_parsed_response() -> None:
    model = ScriptedModel(
        responses=["```json\n" + json.dumps({"name": "bilbo baggins", "age": 111}) + "\n```"]
    )
    async with model.stream("who?", response_format=Person) as call:
        seen = [p.model_copy() async for p in call.partials()]
    assert seen[0] == Person()
    assert seen[-1] == Person(name="bilbo baggins", age=111)
    assert len(seen) > 3
    assert call.response is not None
    assert call.response.parsed == Person(name="bilbo baggins", age=111)
    awaited = await ScriptedModel(responses=['{"name": "frodo"}']).invoke("who?", response_format=Person)
    assert awaited.parsed == Person(name="frodo")


async def test_a_reply_that_does_not_validate_fails_the_call() -> None:
    model = ScriptedModel(responses=['{"age": "very old"}'], max_retries=0)
    call = model.invoke("who?", response_format=Person)
    with pytest.raises(ValidationError):
        await call
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.text == '{"age": "very old"}'


async def test_communicate_returns_and_persists_the_model() -> None:
    session = Session()
    session.services.register(ScriptedModel(responses=['{"name": "sam", "age": 38}']))
    person = await communicate(session, "chat", instruction="who?", response_format=Person)
    assert person == Person(name="sam", age=38)
    answer = session.get_branch("chat").messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.structured == {"name": "sam", "age": 38}


async def test_a_raw_openai_sdk_stream_as_in_the_seed(server: LoopbackServer) -> None:
    text = json.dumps({"name": "bilbo baggins", "age": 111})
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    events = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        for piece in pieces
    ]
    server.add(Reply(pieces=sse(events)))
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    seen = [p.model_copy() async for p in stream_partial(stream, Person)]
    await client.close()
    assert seen[-1] == Person(name="bilbo baggins", age=111)
    names = [p.name for p in seen]
    assert len(set(names)) > 3  # partial objects arrived while the stream was still going
    assert all("bilbo baggins".startswith(name) for name in names)


async def test_a_schema_dict_gives_the_parsed_value_and_a_tool_call_turn_parses_nothing() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    response = await ScriptedModel(responses=['{"n": 3}']).invoke("count", response_format=schema)
    assert response.parsed == {"n": 3}
    # the model chose to call one of the caller's tools: there is no structured answer to validate
    calling = ScriptedModel(responses=[""], tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}])
    response = await calling.invoke("count", response_format=Person)
    assert response.finish_reason == "tool_calls"
    assert response.parsed is None
