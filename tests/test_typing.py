"""Structured results are typed: a call made with ``response_format=Person`` gives a `Person`.

`typing.assert_type` does nothing when the test runs but is checked by mypy (``make lint`` covers the
tests), so each line below is both a runtime assertion and a type-checker one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, assert_type

import pytest
from pydantic import BaseModel

from lionflow import ModelCall, Response, Session
from lionflow.operations import Turn, communicate
from lionflow.structured import PartialObjects, stream_partial
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

BILBO = '{"name": "Bilbo Baggins", "age": 111}'


class Person(BaseModel):
    name: str = ""
    age: int | None = None


async def test_an_awaited_call_with_a_response_format_parses_to_that_model() -> None:
    call = ScriptedModel(responses=[BILBO]).invoke("Describe Bilbo", response_format=Person)
    assert_type(call, ModelCall[Person])
    response = await call
    assert_type(response, Response[Person])
    assert_type(response.parsed, Person)
    assert response.parsed == Person(name="Bilbo Baggins", age=111)


async def test_partials_yield_the_model_and_the_response_holds_it() -> None:
    async with ScriptedModel(responses=[BILBO], chunk_size=3).stream("Bilbo", response_format=Person) as call:
        seen: list[Person] = []
        async for person in call.partials():
            assert_type(person, Person)
            seen.append(person.model_copy(deep=True))
    assert seen[-1] == Person(name="Bilbo Baggins", age=111)
    assert len(seen) > 2  # partial objects before the last
    assert call.response is not None
    assert_type(call.response, Response[Person])
    assert call.response.parsed == seen[-1]


async def test_a_call_without_a_response_format_is_a_plain_response() -> None:
    call = ScriptedModel(responses=["hi"]).invoke("hi")
    assert_type(call, ModelCall[Any])
    response = await call
    assert_type(response, Response)  # a plain Response is a Response[Any]
    assert_type(response.parsed, Any)
    assert response.parsed is None
    assert response.text == "hi"


async def test_communicate_with_a_response_format_returns_the_model() -> None:
    session = Session()
    session.services.register(ScriptedModel(responses=[BILBO, "plain"]))
    turn = communicate(session, instruction="Describe Bilbo", response_format=Person)
    assert_type(turn, Turn[Person])
    person = await turn
    assert_type(person, Person)
    assert person == Person(name="Bilbo Baggins", age=111)
    answer = await communicate(session, instruction="And now in words")
    assert_type(answer, Response)
    assert answer.text == "plain"


async def test_stream_partial_yields_the_model() -> None:
    async def pieces() -> AsyncIterator[str]:
        for start in range(0, len(BILBO), 4):
            yield BILBO[start : start + 4]

    people = [person.model_copy() async for person in stream_partial(pieces(), Person)]
    assert_type(people, list[Person])
    assert people[-1] == Person(name="Bilbo Baggins", age=111)


def test_partial_objects_feeds_and_closes_to_the_model() -> None:
    objects = PartialObjects(Person)
    shown = [objects.feed(BILBO[start : start + 4]) for start in range(0, len(BILBO), 4)]
    assert_type(shown, list[Person | None])
    final = objects.close()
    assert_type(final, Person)
    assert final == Person(name="Bilbo Baggins", age=111)
    assert Person(name="Bilbo ") in shown  # a partial object, as the deltas left it
