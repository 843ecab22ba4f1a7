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

from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from time import monotonic
from typing import Any, Generic, Literal, TypeVar

import anyio
from pydantic import BaseModel

from lionflow.errors import PartialJSONError

# re-exported from where they were defined before (lionflow.structured and tests import them here)
from lionflow.structured._builder import PartialBuilder as PartialBuilder
from lionflow.structured._builder import PartialParser as PartialParser
from lionflow.structured.partial_json import PartialJSON

M = TypeVar("M", bound=BaseModel)

# A JSON string of _COALESCE_FROM characters or more, growing fast, is shown again once it has grown
# by 1/2**_COALESCE_SHIFT of its length or once _COALESCE_SECONDS have passed (see `PartialObjects`).
_COALESCE_FROM = 256
_COALESCE_SHIFT = 4
_COALESCE_SECONDS = 1 / 60


class PartialObjects(Generic[M]):
    """Partial `model` instances from JSON (or TOON) text fed delta by delta: the synchronous core of
    `stream_partial`, for a loop of your own::

        objects = PartialObjects(Person)
        for delta in deltas:
            person = objects.feed(delta)    # a new partial Person, or None: nothing new to show
            if person is not None:
                print(person)
        person = objects.close()            # strictly validated from the whole text

    `feed` returns a new object whenever the value changed, with one exception that keeps the cost
    linear: a long string growing fast is shown less often. Each object holds a new copy of the
    string being written, so with an object per delta a string of L characters would cost L per
    delta, quadratic over the reply. Once a string's JSON text has 256 characters or more and the
    one change since the last object is that string growing, the next object waits until the string
    has grown by 1/16 of its length, or until 1/60 s has passed since the last object. Past its
    first 256 characters, the string is then copied about 17 times its length in all. Any other
    change, the string's end and the final object are shown at once; `flush` shows what was held
    back (`stream_partial` calls it when its source ends or fails, or its text turns out not to be
    JSON). ``every_change=True`` returns an object for every change.

    `close` returns the final object, strictly validated from the whole text (a
    `pydantic.ValidationError` if it does not validate). ``format="toon"`` reads a TOON reply
    instead (`lionflow.toon.PartialTOON`, whose objects are never coalesced): each partial object shows
    what the complete lines say, plus a string still being written; a Markdown code fence around the
    reply is dropped; `close` validates ``toon.decode`` of the whole text (a `ToonDecodeError` if it
    is not TOON). Invalid JSON raises `PartialJSONError` from `feed`, or from `flush` for text that
    waited with a long string (a control character inside it is refused when that text is read, at
    most 1/60 s after it came, or when the string's next object is due or the stream ends).
    """

    def __init__(
        self, model: type[M], *, format: Literal["json", "toon"] = "json", every_change: bool = False
    ) -> None:
        if format not in ("json", "toon"):
            raise ValueError(f"format must be 'json' or 'toon', not {format!r}")
        self.model = model
        self._builder: PartialBuilder[M] = PartialBuilder(model)
        self._json: PartialJSON | None = None
        self._fence: Any = None
        self._parser: Any
        if format == "toon":
            from lionflow.toon import PartialTOON  # (only TOON replies need it)
            from lionflow.toon._prompt import Unfence

            self._parser = PartialTOON()
            self._fence = Unfence()
        else:
            self._parser = self._json = PartialJSON()
        self._text: list[str] = []
        self._seen = -1
        # a JSON string growing fast is coalesced (see the class docstring): at the last object,
        # the parser's structure count, and the string length and the clock time to show it again
        self._coalesce = self._json is not None and not every_change
        self._shape = -1
        self._next = 0
        self._due = 0.0
        self._built = -1  # the parser's revision at the last build
        # the deltas that wait, unparsed, with a held-back string (see `_wait`), or None
        self._held: list[str] | None = None
        self._stop: Callable[[], None] = _nothing  # leaves the function waiting no room

    def feed(self, text: str) -> M | None:
        """Read the next delta: the new partial object, or None when there is nothing new to show."""
        if self._held is not None:  # (a `feed` kept from before the wait began: it reads what waited)
            self._release_before(text)
        if self._fence is not None:
            text = self._fence.feed(text)
        if not text:
            return None
        parser = self._parser
        if self._json is not None:
            self._text.append(text)
        parser.feed(text)
        revision = parser.revision
        if revision == self._seen:
            return None
        self._seen = revision
        if self._coalesce:
            length = parser.fed - parser.string_start
            # the same structure as at the last object: the one change is the string growing
            if parser.structure == self._shape:
                if length < self._next and monotonic() < self._due:
                    if parser.plain and type(self).feed is PartialObjects.feed:
                        # the next deltas wait unparsed: `_wait`'s function stands in for this method
                        # (not for a subclass's own `feed`, which sees every delta)
                        self.feed = self._wait(self._next - length)  # type: ignore[method-assign,assignment]
                    return None
            else:
                self._shape = parser.structure
            self._next = length + (length >> _COALESCE_SHIFT) if length >= _COALESCE_FROM else 0
            self._due = monotonic() + _COALESCE_SECONDS
        if parser.done:
            return None  # the final object comes from `close`
        self._built = revision
        return self._builder.build(parser)

    def _wait(self, room: int) -> Callable[[str], M | None]:
        """`feed` while a long string is growing and its next object waits: a delta without a quote
        only waits with it, unparsed, until `room` more characters have come or the clock passes the
        time to show it. That is nearly every delta of such a string, so its cost stays a few
        operations however long the string is (a function of its own, as a method's attribute
        lookups would double them). The parser then reads what waited in one piece: escapes, and a
        control character, which it refuses, as when they came one by one. A quote may end the
        string, which shows at once: what waited is read first, then the delta with the quote.

        The function may be kept (``feed = objects.feed``) and called after its wait has ended (a
        flush, or the method called meanwhile): `_release` then leaves it no room, so its next
        delta goes past the wait to the method, in order after any deltas that wait by then."""
        held: list[str] = []
        hold = held.append
        due = self._due

        def feed(text: str) -> M | None:
            nonlocal room
            if '"' not in text:
                hold(text)
                room -= len(text)
                if room > 0 and monotonic() < due:
                    return None
                if self._held is held:
                    self._unwait()
                    text = "".join(held)
                held.clear()  # (its wait ended before: `text` is the one delta in it)
            elif self._held is held:
                self._release_before(text)  # (first, so that text before an error in `text` is kept)
            return PartialObjects.feed(self, text)

        def stop() -> None:
            nonlocal room
            room = 0

        self._held, self._stop = held, stop
        return feed

    def _unwait(self) -> None:
        """End the wait of `_wait`'s function: the method answers `feed` again."""
        self._stop()
        self._held = None
        del self.feed

    def _release_before(self, text: str) -> None:
        """Parse what waited, before the delta `text`; if it is not JSON, `text` is still kept for
        `close`, which validates all the text fed (as when no delta waits)."""
        try:
            self._release()
        except PartialJSONError:
            self._text.append(text)
            raise

    def _release(self) -> None:
        """Parse the deltas that waited with a held-back string."""
        held = self._held
        if held is not None:
            self._unwait()
            text = "".join(held)
            held.clear()
            self._text.append(text)
            self._parser.feed(text)

    def flush(self) -> M | None:
        """The object for a change `feed` held back (a long string's latest growth), or None when
        there is none: for a stream that ends or fails before the document does. Raises
        `PartialJSONError` if the text that waited is not JSON; call it again for what came before
        the error."""
        self._release()
        parser = self._parser
        if self._json is None or parser.done or parser.revision == self._built:
            return None
        self._built = parser.revision
        self._shape = -1  # (the next change shows at once)
        return self._builder.build(parser)

    def close(self) -> M:
        """The final object, strictly validated from the whole text."""
        with suppress(PartialJSONError):  # (text that waited is not JSON: the whole is refused below)
            self._release()
        if self._json is None:
            if not self._parser.done:  # (closed already: the same object again, as for JSON)
                self._parser.feed(self._fence.finish())
            return self.model.model_validate(self._parser.close())
        # the document as `json_document` finds it, from where the parser saw it begin and end
        parser = self._json
        whole = "".join(self._text)
        if parser.start is not None:
            whole = whole[parser.start : parser.end if parser.done else None]
        return self.model.model_validate_json(whole)


def _nothing() -> None:
    pass


async def stream_partial(
    source: Any,
    model: type[M],
    *,
    format: Literal["json", "toon"] = "json",
    every_change: bool = False,
) -> AsyncIterator[M]:
    """Partial `model` instances from a stream of JSON text: any async iterable of strings or
    Chunks (text, or the arguments of a forced tool call), or a raw OpenAI SDK stream.

    Yields a new object whenever the value changed, then the final object, strictly validated from
    the whole text (a `pydantic.ValidationError` if the text does not validate). A long string
    growing fast is shown less often, which keeps the cost linear; what was held back is shown
    with the next delta, or before the source's end or error. ``every_change=True`` yields an
    object for every change. `PartialObjects` has the rules, and ``format="toon"``.
    """
    objects = PartialObjects(model, format=format, every_change=every_change)
    deltas = aiter(source)
    try:
        async for delta in _Iterating(deltas):
            # (`objects.feed` is looked up each time: it changes while a long string's object waits)
            partial = objects.feed(delta if type(delta) is str else _text_of(delta))
            if partial is not None:
                yield partial
        held = objects.flush()  # a document cut off mid-string: all of it, before close() refuses it
    except Exception:
        # the source failed (a cut stream, a stopped call) or its text is not JSON: first show all
        # that was read before it
        try:
            held = objects.flush()
        except PartialJSONError:
            # text that waited is not JSON: what came before it, then that error (it came first)
            held = objects.flush()
            if held is not None:
                yield held
            raise
        if held is not None:
            yield held
        raise
    finally:
        # Stopped early (bad JSON, the caller left): the source is ours to close, not the garbage
        # collector's, which on trio would close it late and with a ResourceWarning.
        close = getattr(deltas, "aclose", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await close()
    if held is not None:
        yield held
    yield objects.close()


class _Iterating:
    """`iterator` for `async for`, which asks for ``__aiter__`` and takes what it returns: an async
    iterator needs only ``__anext__``, as `aiter` and a plain ``async for`` over its source accept."""

    __slots__ = ("iterator",)

    def __init__(self, iterator: AsyncIterator[Any]) -> None:
        self.iterator = iterator

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.iterator


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
