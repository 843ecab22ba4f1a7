"""The elements of a streamed JSON list, each the moment it closes.

A reply asked for with ``response_format=list[Idea]`` is a JSON list: sent bare (``[{...}, {...}]``)
or, where an API wants an object at the top (every structured-output API does), as the one list
under ``"items"`` (``{"items": [{...}, {...}]}``), the form lionflow asks for. `ItemParser` reads
either incrementally: `feed` returns the elements that have closed since the last call, each
validated as the element type, so a consumer can act on the first element while the model still
writes the second. Each character is parsed once (`PartialJSON`), and each element validated once.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncGenerator
from typing import Any, Generic, TypeVar

import anyio
from pydantic import TypeAdapter, ValidationError

from lionflow.structured.partial_json import PartialJSON
from lionflow.structured.partial_model import _text_of

T = TypeVar("T")

ITEMS_KEY = "items"
"""Where a list reply sits when the API wants an object at the top: ``{"items": [...]}``."""


def list_item_type(structure: Any) -> Any | None:
    """The element type of a ``list[X]`` response format (``X``), or None for anything else."""
    if typing.get_origin(structure) is list:
        arguments = typing.get_args(structure)
        return arguments[0] if arguments else Any
    return None


class ItemParser(Generic[T]):
    """Feed the text of a JSON list as it streams; get each element once it is complete.

    ::

        parser = ItemParser(Idea)
        for delta in deltas:
            for idea in parser.feed(delta):   # the Ideas that closed in this delta, validated
                ...
        parser.count                          # how many have been returned

    An element that does not validate raises pydantic's `ValidationError`, its locations starting
    with the element's index (as validating the whole list would); text that is not JSON raises
    `PartialJSONError`. Elements already returned are never returned again.
    """

    def __init__(self, item_type: type[T]) -> None:
        self._parser = PartialJSON()
        self._adapter: TypeAdapter[T] = TypeAdapter(item_type)
        self.count = 0

    @property
    def done(self) -> bool:
        """Whether the whole JSON document has been read."""
        return self._parser.done

    def feed(self, text: str) -> list[T]:
        """Parse `text`, the next piece, and return the elements that closed in it."""
        parser = self._parser
        parser.feed(text)
        array = self._array(parser.root)
        if array is None:
            return []
        complete = parser.complete_count(array)
        start, self.count = self.count, max(self.count, complete)
        return [self._validate(array[index], index) for index in range(start, self.count)]

    def feed_delta(self, delta: object) -> list[T]:
        """`feed` for a stream's delta: a string, or a Chunk (text, or a forced tool call's
        arguments; other chunks carry none of the JSON)."""
        piece = _text_of(delta)
        return self.feed(piece) if piece else []

    @staticmethod
    def _array(root: Any) -> list[Any] | None:
        if isinstance(root, list):
            return root
        if isinstance(root, dict):
            found = root.get(ITEMS_KEY)
            return found if isinstance(found, list) else None
        return None

    def _validate(self, value: Any, index: int) -> T:
        try:
            return self._adapter.validate_python(value)
        except ValidationError as error:
            raise ValidationError.from_exception_data(
                f"list[{error.title}]",
                [
                    {"type": e["type"], "loc": (index, *e["loc"]), "input": e["input"], **_ctx(e)}  # type: ignore[typeddict-item]
                    for e in error.errors()
                ],
            ) from None


def _ctx(line: Any) -> dict[str, Any]:
    return {"ctx": line["ctx"]} if "ctx" in line else {}


async def stream_items(source: Any, item_type: type[T]) -> AsyncGenerator[T, None]:
    """The elements of a streamed JSON list, each validated as `item_type` the moment it closes:
    `source` is any async iterable of strings or Chunks (text, or a forced tool call's arguments).

    ::

        async for idea in stream_items(call, Idea):   # call = model.invoke(..., response_format=list[Idea])
            print(idea.title)

    The source is closed when this generator is (``contextlib.aclosing`` closes it at once when
    a loop breaks early), and when the list is read to its end.
    """
    parser: ItemParser[T] = ItemParser(item_type)
    deltas = aiter(source)
    try:
        async for delta in deltas:
            for item in parser.feed_delta(delta):
                yield item
    finally:
        close = getattr(deltas, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()
