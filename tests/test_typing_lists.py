"""A ``response_format=list[Model]`` call is typed by its element: `items()` yields `Model`s and
`parsed` is a ``list[Model]``. `typing.assert_type` is checked by mypy (``make lint``) and the values
at run time."""

from __future__ import annotations

import json
from typing import assert_type

import pytest
from pydantic import BaseModel

from lionflow import ModelCall, Response, Session
from lionflow.operations import Turn, communicate
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


class Idea(BaseModel):
    title: str


IDEAS = [Idea(title="one"), Idea(title="two")]
REPLY = json.dumps({"items": [idea.model_dump() for idea in IDEAS]})


async def test_a_list_call_yields_its_elements_and_parses_to_the_list() -> None:
    async with ScriptedModel(responses=[REPLY], chunk_size=3).stream(
        "ideas", response_format=list[Idea]
    ) as call:
        assert_type(call, ModelCall[list[Idea]])
        seen: list[Idea] = []
        async for idea in call.items():
            assert_type(idea, Idea)
            seen.append(idea)
    assert seen == IDEAS
    assert call.response is not None
    assert_type(call.response, Response[list[Idea]])
    assert call.response.parsed == IDEAS


async def test_an_awaited_list_turn_is_the_list_and_is_stored_as_json() -> None:
    session = Session()
    session.services.register(ScriptedModel(responses=[REPLY]), name="m")
    turn = communicate(session, "main", instruction="ideas", imodel="m", response_format=list[Idea])
    assert_type(turn, Turn[list[Idea]])
    ideas = await turn
    assert_type(ideas, list[Idea])
    assert ideas == IDEAS
    answer = session.get_branch("main").messages[-1].content
    assert answer.model_dump(mode="json")["structured"] == [idea.model_dump() for idea in IDEAS]


async def test_items_on_a_call_without_a_list_format_says_what_it_needs() -> None:
    call = ScriptedModel(responses=["{}"]).invoke("hi")
    with pytest.raises(ValueError, match=r"response_format=list\["):
        async for _ in call.items():
            pass
    await call.aclose()
