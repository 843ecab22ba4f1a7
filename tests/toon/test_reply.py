"""TOON replies and TOON context: `reply_format="toon"`, `stream_partial(..., format="toon")` and
``context_format="toon"`` (the SDK path is in tests/providers/test_common_behaviour.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel, ValidationError

from lionflow import ConfigurationError, Session, StructuredOutputError, ToonDecodeError, toon
from lionflow.operations import Builder, communicate, flow
from lionflow.structured import stream_partial
from lionflow.testing import ScriptedModel
from lionflow.toon._prompt import Unfence, example_of, reply_instruction, unfenced

pytestmark = pytest.mark.anyio


class Stop(BaseModel):
    city: str
    nights: int


class Trip(BaseModel):
    title: str = ""
    stops: list[Stop] = []


TRIP = Trip(title="Fjords, by ferry", stops=[Stop(city="Bergen", nights=2), Stop(city="Tromsø", nights=3)])
TRIP_TOON = toon.encode(TRIP)


async def pieces(text: str, size: int) -> AsyncIterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


async def test_a_toon_turn_returns_the_model_and_records_it() -> None:
    session = Session()
    model = ScriptedModel(responses=[TRIP_TOON], chunk_size=3)
    session.services.register(model, name="m")
    trip = await communicate(
        session, "main", instruction="Plan", imodel="m", response_format=Trip, reply_format="toon"
    )
    assert trip == TRIP
    answer = session.get_branch("main").messages[-1].content
    assert answer.model_dump(mode="json")["structured"] == TRIP.model_dump(mode="json")
    system = model.requests[0].messages[0]
    assert system["role"] == "system"
    assert "stops[2]{city,nights}:" in system["content"]  # the example's shape, a table


async def test_a_fenced_toon_reply_streams_partials_without_the_fence() -> None:
    text = f"```toon\n{TRIP_TOON}\n```\n"
    seen = [trip.model_copy(deep=True) async for trip in stream_partial(pieces(text, 2), Trip, format="toon")]
    assert seen[-1] == TRIP
    assert len(seen) > 3
    assert any(trip.title and trip.title != TRIP.title for trip in seen)  # the title grew
    assert [len(trip.stops) for trip in seen] == sorted(len(trip.stops) for trip in seen)


async def test_a_reply_that_is_not_toon_fails_the_call_naming_the_line() -> None:
    model = ScriptedModel(responses=['title: "unterminated\nstops[2]{city,nights}:\n  Bergen,2'])
    with pytest.raises(StructuredOutputError, match="not TOON") as caught:
        await model.invoke("Plan", response_format=Trip, reply_format="toon")
    assert isinstance(caught.value.__cause__, ToonDecodeError)
    assert caught.value.__cause__.line == 1


async def test_a_toon_reply_that_does_not_validate_raises_pydantics_error() -> None:
    model = ScriptedModel(responses=["title: x\nstops[1]{city,nights}:\n  Bergen,two"])
    with pytest.raises(ValidationError):
        await model.invoke("Plan", response_format=Trip, reply_format="toon")


async def test_reply_format_is_checked_before_anything_is_sent() -> None:
    model = ScriptedModel(responses=["x"])
    with pytest.raises(ConfigurationError, match="reply_format"):
        await model.invoke("hi", response_format=Trip, reply_format="yaml")
    with pytest.raises(ConfigurationError, match="reply_format='toon' needs response_format"):
        await model.invoke("hi", reply_format="toon")
    assert model.requests == []


async def test_context_format_toon_puts_the_upstream_table_into_the_prompt() -> None:
    session = Session()
    lister = ScriptedModel(
        responses=['{"items": [{"city": "Bergen", "nights": 2}, {"city": "Oslo", "nights": 1}]}']
    )
    writer = ScriptedModel(responses=["done"])
    session.services.register(lister, name="lister")
    session.services.register(writer, name="writer")
    builder = Builder(session=session)
    stops = builder.communicate("List stops", imodel="lister", response_format=list[Stop], name="stops")
    builder.communicate("Plan", imodel="writer", context_from=[stops], context_format="toon")
    await flow(builder)
    prompt = writer.requests[0].messages[-1]["content"]
    assert "stops[2]{city,nights}:\n  Bergen,2\n  Oslo,1" in prompt
    assert "{" not in prompt.split("Context:", 1)[1].replace("{city,nights}", "")  # no JSON left


def test_a_bad_context_format_is_refused_when_the_operation_is_built() -> None:
    from lionflow import FlowValidationError

    with pytest.raises(FlowValidationError, match="context_format"):
        Builder(session=Session()).communicate("x", imodel="m", context_format="xml")


def test_the_example_has_every_field_and_two_rows_per_list() -> None:
    example = example_of(Trip.model_json_schema())
    assert set(example) == {"title", "stops"}
    assert len(example["stops"]) == 2
    assert set(example["stops"][0]) == {"city", "nights"}
    assert Trip.model_validate(example)  # the example itself is a valid Trip
    assert "TOON" in reply_instruction(list[Stop])


@pytest.mark.parametrize(
    "text",
    ["a: 1", "```toon\na: 1\n```", "```\na: 1\n```\nafter", "  ```toon\na: 1", "```toon\n```", "a: ```"],
)
def test_unfence_in_pieces_matches_unfenced_on_the_whole(text: str) -> None:
    for size in range(1, 5):
        fence = Unfence()
        out = "".join(fence.feed(text[i : i + size]) for i in range(0, len(text), size)) + fence.finish()
        assert out == unfenced(text)
