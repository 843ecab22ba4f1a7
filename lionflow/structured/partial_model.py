"""Partial pydantic objects from a `PartialJSON` value, built incrementally.

Missing fields take their defaults (or None). Strings appear as they grow; numbers, booleans,
datetimes, Literals and enums appear once complete and valid. Work per update stays proportional
to the path being written, not to the whole value: earlier items of a list and earlier fields of
an object are final once the next one starts, so they are built once and kept, and lists and dicts
still growing are shared between successive partial objects (as a growing container, the only way
an emitted value changes). Take ``obj.model_copy(deep=True)`` to keep a snapshot.

What each annotation does with a value is compiled once per model class (`lionflow.structured._plan`),
so an update costs a few dictionary lookups per container on the path, not a walk through `typing`;
while only a string grows, only the open path down to it is rebuilt (`lionflow.structured._builder`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar

import anyio
from pydantic import BaseModel

# re-exported from where they were defined before (lionflow.structured and tests import them here)
from lionflow.structured._builder import PartialBuilder as PartialBuilder
from lionflow.structured._builder import PartialParser as PartialParser
from lionflow.structured.partial_json import PartialJSON

M = TypeVar("M", bound=BaseModel)


async def stream_partial(
    source: Any, model: type[M], *, format: Literal["json", "toon"] = "json"
) -> AsyncIterator[M]:
    """Partial `model` instances from a stream of JSON text: any async iterable of strings or
    Chunks (text, or the arguments of a forced tool call), or a raw OpenAI SDK stream.

    Yields a new object whenever the value changed, then the final object, strictly validated from
    the whole text (a `pydantic.ValidationError` if the text does not validate).

    ``format="toon"`` reads a TOON reply instead (`lionflow.toon.PartialTOON`): each partial object
    shows what the complete lines say, plus a string still being written; a Markdown code fence
    around the reply is dropped; the final object is validated from ``toon.decode`` of the whole
    text (a `ToonDecodeError` if it is not TOON).
    """
    if format == "toon":
        async for shown in _stream_partial_toon(source, model):
            yield shown
        return
    if format != "json":
        raise ValueError(f"format must be 'json' or 'toon', not {format!r}")
    parser = PartialJSON()
    builder = PartialBuilder(model)
    text: list[str] = []
    seen = -1
    deltas = aiter(source)
    try:
        while True:
            try:
                delta = await anext(deltas)
            except StopAsyncIteration:
                break
            piece = _text_of(delta)
            if not piece:
                continue
            text.append(piece)
            parser.feed(piece)
            if parser.revision != seen and not parser.done:
                seen = parser.revision
                partial = builder.build(parser)
                if partial is not None:
                    yield partial
    finally:
        # Stopped early (bad JSON, the caller left): the source is ours to close, not the garbage
        # collector's, which on trio would close it late and with a ResourceWarning.
        close = getattr(deltas, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()
    # the document as `json_document` finds it, from where this parser saw it begin and end
    whole = "".join(text)
    if parser.start is not None:
        whole = whole[parser.start : parser.end if parser.done else None]
    yield model.model_validate_json(whole)


async def _stream_partial_toon(source: Any, model: type[M]) -> AsyncIterator[M]:
    from lionflow.toon import PartialTOON  # (only TOON replies need it)
    from lionflow.toon._prompt import Unfence

    parser = PartialTOON()
    builder = PartialBuilder(model)
    fence = Unfence()
    seen = -1
    deltas = aiter(source)
    try:
        async for delta in deltas:
            piece = fence.feed(_text_of(delta))
            if not piece:
                continue
            parser.feed(piece)
            if parser.revision != seen:
                seen = parser.revision
                partial = builder.build(parser)
                if partial is not None:
                    yield partial
    finally:
        close = getattr(deltas, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()
    parser.feed(fence.finish())
    yield model.model_validate(parser.close())


def _text_of(delta: Any) -> str:
    if isinstance(delta, str):
        return delta
    data = getattr(delta, "data", None)
    kind = getattr(delta, "type", None)
    if isinstance(data, str) and kind in ("text", "tool_call"):
        return data
    choices = getattr(delta, "choices", None)  # an OpenAI SDK chunk
    if choices:
        content = getattr(getattr(choices[0], "delta", None), "content", None)
        return content if isinstance(content, str) else ""
    return ""


def json_document(text: str) -> str:
    """The JSON document inside `text`: from the first ``{`` or ``[`` to its end (no fences)."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return text
    parser = PartialJSON()
    start = min(starts)
    parser.feed(text[start:])
    if parser.done and parser.end is not None:
        return text[start : start + parser.end]  # whatever follows the document is not part of it
    return text[start:]
