"""`ItemParser` and `stream_items`: a streamed JSON list's elements, each the moment it closes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from lionflow.structured.items import ItemParser, list_item_type, stream_items

pytestmark = pytest.mark.anyio


class Point(BaseModel):
    x: int
    label: str
    tags: list[str] = []


points = st.builds(
    Point,
    x=st.integers(-(10**6), 10**6),
    label=st.text(max_size=12),  # any text: quotes, brackets, escapes, astral characters
    tags=st.lists(st.text(alphabet="[]{},:\"\\ab'", max_size=4), max_size=3),
)


def document(elements: list[Point], *, wrapped: bool) -> tuple[str, list[int]]:
    """The JSON text of `elements` and, per element, the offset just past its closing brace."""
    text = '{"items": [' if wrapped else "["
    ends = []
    for i, element in enumerate(elements):
        text += (", " if i else "") + json.dumps(element.model_dump(), ensure_ascii=i % 2 == 0)
        ends.append(len(text))
    return text + ("]}" if wrapped else "]"), ends


@settings(max_examples=80, deadline=None)
@given(st.lists(points, max_size=6), st.booleans(), st.data())
def test_each_element_comes_once_exactly_when_it_closes(
    elements: list[Point], wrapped: bool, data: st.DataObject
) -> None:
    text, ends = document(elements, wrapped=wrapped)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(len(text) - 1, 1)), max_size=30))))
    parser = ItemParser(Point)
    emitted: list[tuple[Point, int]] = []
    start = 0
    for end in [*cuts, len(text)]:
        for element in parser.feed(text[start:end]):
            emitted.append((element, end))
        start = end
    assert [element for element, _ in emitted] == elements
    for (_, seen_at), closed_at in zip(emitted, ends, strict=True):
        # out with the first piece that holds its closing brace: not before, not later
        first_cut_after = min(cut for cut in [*cuts, len(text)] if cut >= closed_at)
        assert seen_at == first_cut_after
    assert parser.done
    assert parser.count == len(elements)


def test_scalars_come_once_their_delimiter_arrives() -> None:
    parser = ItemParser(int)
    assert [parser.feed(c) for c in "[12, 3]"] == [[], [], [], [12], [], [], [3]]


def test_strings_come_when_their_closing_quote_arrives() -> None:
    parser = ItemParser(str)
    got = [parser.feed(piece) for piece in ['["a', 'b"', ', "c\\', '"d"', "]"]]
    assert got == [[], ["ab"], [], ['c"d'], []]


def test_an_element_that_does_not_validate_names_its_index() -> None:
    parser = ItemParser(Point)
    assert parser.feed('[{"x": 1, "label": "ok"}, ') == [Point(x=1, label="ok")]
    with pytest.raises(ValidationError) as caught:
        parser.feed('{"x": "one", "label": "bad"}]')
    assert caught.value.errors()[0]["loc"] == (1, "x")


def test_text_before_the_list_is_ignored_and_other_objects_give_nothing() -> None:
    parser = ItemParser(int)
    assert parser.feed("Sure! ```json\n[1,") == [1]
    other = ItemParser(int)
    assert other.feed('{"numbers": [1, 2]}') == []


def test_list_item_type() -> None:
    assert list_item_type(list[Point]) is Point
    assert list_item_type(Point) is None
    assert list_item_type(list) is None
    assert list_item_type({"type": "array"}) is None


async def test_stream_items_closes_its_source_when_the_loop_ends_early() -> None:
    closed = False

    async def source() -> AsyncIterator[str]:
        nonlocal closed
        try:
            for piece in ["[1, ", "2, ", "3]"]:
                yield piece
        finally:
            closed = True

    async with aclosing(stream_items(source(), int)) as numbers:
        async for number in numbers:
            assert number == 1
            break
    assert closed
