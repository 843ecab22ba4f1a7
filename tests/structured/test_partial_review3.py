"""A hostile review of deltas that wait unparsed with a held-back long string (commit 970edc3).

While a long string's next object waits, `PartialObjects.feed` keeps plain deltas in a list and
parses them in one piece later; `stream_partial` iterates with ``async for`` and shows what was held
before re-raising any error. It found: a source whose ``__aiter__`` returns an iterator without
``__aiter__`` of its own (which ``async for`` over the source accepts) is refused. The other tests
pin behaviour checked and found right: over random documents, splits, clocks and flushes every
object is the state of the text fed so far, nothing is lost, `close` is strict validation of the
whole text, ``every_change=True`` is a parser and builder per delta, and errors and cancellation
while a string waits are handled as documented.

The clock `PartialObjects` reads (``monotonic``) is set by the tests, so that whether a delta waits
never depends on the machine's speed.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel, ValidationError

import lionflow.structured.partial_model as partial_model
from lionflow.structured import PartialBuilder, PartialJSON, PartialJSONError, PartialObjects, stream_partial

pytestmark = pytest.mark.anyio

PREFIX = '{"title": "t", "text": "'


class Essay(BaseModel):
    title: str = ""
    text: str = ""


class Item(BaseModel):
    name: str = ""
    body: str = ""


class Doc(BaseModel):
    """Long strings may be written anywhere: a field, a list, a dict's keys and values, Any, a union."""

    title: str = ""
    text: str = ""
    tags: list[str] = []
    meta: dict[str, str] = {}
    extra: Any = None
    either: int | str | None = None
    items: list[Item] = []
    n: int = 0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """`PartialObjects`' clock, set by the test: ``clock[0]`` is the time it reads."""
    now = [0.0]
    monkeypatch.setattr(partial_model, "monotonic", lambda: now[0])
    return now


def _waiting(objects: PartialObjects[Essay], length: int = 3000) -> str:
    """Feed an essay's start and `length` characters of its text two at a time with the clock
    standing still (its next object then waits); the text so far."""
    objects.feed(PREFIX)
    for _ in range(length // 2):
        objects.feed("ab")
    return "ab" * (length // 2)


# -- defects -------------------------------------------------------------------------------------


class _Deltas:
    """An async iterator with ``__anext__`` only: ``aiter()`` accepts it as the iterator of
    `_Source`, and so does ``async for delta in _Source()``."""

    def __init__(self, deltas: list[str]) -> None:
        self._deltas = iter(deltas)

    async def __anext__(self) -> str:
        try:
            return next(self._deltas)
        except StopIteration:
            raise StopAsyncIteration from None


class _Source:
    def __init__(self, deltas: list[str]) -> None:
        self._deltas = deltas

    def __aiter__(self) -> _Deltas:
        return _Deltas(self._deltas)


async def test_an_async_iterable_whose_iterator_has_only_anext_is_read() -> None:
    deltas = ['{"title": "t", ', '"text": "ab', 'c"}']
    async for direct in _Source(deltas):  # Python's own `async for` takes it
        assert direct
    shown = [essay async for essay in stream_partial(_Source(deltas), Essay)]
    assert shown[-1] == Essay(title="t", text="abc")


# -- checked and found right: random documents, splits, clocks and flushes -----------------------

_ODD = ["é", "日", "🦁", "\n", '"', "\\", "/", "\t", "\u2028", "\x7f", "\xa0", "\x01"]


def _string(rng: random.Random) -> str:
    size = rng.randint(1030, 1400) if rng.random() < 0.35 else rng.randint(0, 6)
    return "".join(rng.choice(_ODD) if rng.random() < 0.15 else rng.choice("abcd ") for _ in range(size))


def _document(rng: random.Random) -> str:
    """A `Doc` in JSON (some keys unknown to it), its strings long or short, escaped or not."""
    fields: dict[str, Callable[[], Any]] = {
        "title": lambda: _string(rng),
        "text": lambda: _string(rng),
        "unknown": lambda: _string(rng),
        "tags": lambda: [_string(rng) for _ in range(rng.randint(0, 2))],
        "meta": lambda: {_string(rng): _string(rng) for _ in range(rng.randint(0, 2))},
        "extra": lambda: {"x": [_string(rng), 1.5, None, {"y": _string(rng)}]},
        "either": lambda: rng.choice([3, _string(rng), None]),
        "items": lambda: [{"name": _string(rng), "body": _string(rng)} for _ in range(rng.randint(0, 2))],
        "n": lambda: rng.randint(-5, 10**6),
    }
    names = rng.sample(sorted(fields), rng.randint(1, len(fields)))
    value = {name: fields[name]() for name in names}
    return json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, None, 1]))


def _split(rng: random.Random, text: str) -> Iterator[str]:
    sizes = [1, 2, 3] if rng.random() < 0.6 else [1, 1, 2, 5, 17, 60]
    i = 0
    while i < len(text):
        step = rng.choice(sizes)
        yield text[i : i + step]
        i += step


def _state(prefix: str) -> dict[str, Any] | None:
    """What a fresh parser and builder show for `prefix` read in one piece."""
    parser = PartialJSON()
    parser.feed(prefix)
    built = PartialBuilder(Doc).build(parser)
    return None if built is None else built.model_dump()


def _check(seed: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Feed one random document (maybe cut off, with a preamble or trailing text) in random deltas,
    with a clock that stands still or jumps and `flush` called at random; return how many deltas
    waited unparsed."""
    rng = random.Random(seed)
    now = [0.0]

    def monotonic() -> float:
        now[0] += rng.choice([0, 0, 0, 0, 0.001, 0.02])
        return now[0]

    monkeypatch.setattr(partial_model, "monotonic", monotonic)
    body = _document(rng)
    cut = rng.random() < 0.3
    if cut:
        body = body[: rng.randint(1, len(body))]
    text = rng.choice(["", "", "Here:\n```json\n", "sure "]) + body
    if not cut:
        text += rng.choice(["", "", "\n```\n", " bye {"])
    objects: PartialObjects[Doc] = PartialObjects(Doc)
    every = PartialObjects(Doc, every_change=True)
    parser, builder = PartialJSON(), PartialBuilder(Doc)
    last: dict[str, Any] | None = None
    fed = waited = 0
    held = False
    for delta in _split(rng, text):
        fed += len(delta)
        holding = objects._held is not None  # (white box: to check these closely, and that there are some)
        waited += holding
        held = held or holding  # deltas waited since the last object
        structure, revision = parser.structure, parser.revision
        parser.feed(delta)
        shown = objects.feed(delta)
        if shown is not None:  # all the text so far, in order (checked where deltas waited)
            last = shown.model_dump()
            assert not held or last == _state(text[:fed]), (seed, fed)
            held = False
        elif held and parser.structure != structure and not parser.done:
            # not only a string growing: nothing may wait, so all that shows is already shown
            state = _state(text[:fed])
            assert state is None or state == last, (seed, fed)
        # every_change: the same as a parser and builder fed the same deltas
        changed = every.feed(delta)
        expected = builder.build(parser) if parser.revision != revision and not parser.done else None
        assert (None if changed is None else changed.model_dump()) == (
            None if expected is None else expected.model_dump()
        ), (seed, fed)
        if rng.random() < 0.03:
            flushed = objects.flush()
            if flushed is not None:
                last = flushed.model_dump()
            if held:
                state = _state(text[:fed])
                assert parser.done or state is None or state == last, (seed, fed)
            held = False
    flushed = objects.flush()
    if flushed is not None:
        last = flushed.model_dump()
    state = _state(text)
    assert parser.done or state is None or state == last, seed  # nothing held back is lost
    if cut:
        with pytest.raises(ValidationError) as refused:
            objects.close()
        with pytest.raises(ValidationError) as whole:
            Doc.model_validate_json(body)
        assert refused.value.errors() == whole.value.errors(), seed
    else:
        assert objects.close() == every.close() == Doc.model_validate_json(body), seed
    return waited


def test_random_documents_show_the_state_of_the_text_so_far_and_validate_as_a_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited = sum(_check(seed, monkeypatch) for seed in range(30))
    assert waited > 500  # deltas did wait unparsed: the loop checks the new path


# -- checked and found right: waiting deltas, flush and close -------------------------------------


def test_close_while_deltas_wait_validates_each_of_them_once(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    text = _waiting(objects) + "cd"
    assert objects.feed("cd") is None  # waits
    with pytest.raises(ValidationError) as refused:
        objects.close()  # cut off: the error of the whole text received, waiting deltas included
    with pytest.raises(ValidationError) as whole:
        Essay.model_validate_json(PREFIX + text)
    assert refused.value.errors() == whole.value.errors()


def test_a_preamble_fence_and_trailing_text_around_waiting_deltas(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    assert objects.feed("Sure:\n```json\n") is None
    text = _waiting(objects) + "cd"
    assert objects.feed("cd") is None
    ended = objects.feed('"}\n```\nanything {"title": "no"}')
    assert ended is None  # the document is complete: the last object is close()'s
    assert objects.close() == Essay(title="t", text=text)


def test_flush_shows_what_waited_once_and_the_next_growth_shows_at_once(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    text = _waiting(objects) + "cd"
    assert objects.feed("cd") is None
    flushed = objects.flush()
    assert flushed is not None
    assert flushed.text == text
    assert objects.flush() is None
    grown = objects.feed("ef")  # after a flush the next change shows at once (as before it)
    assert grown is not None
    assert grown.text == text + "ef"
    assert objects.feed("gh") is None  # then it waits again
    again = objects.flush()
    assert again is not None
    assert again.text == text + "efgh"
    assert objects.feed('"}') is None
    assert objects.close() == Essay(title="t", text=text + "efgh")


def test_escapes_surrogates_and_unprintable_characters_split_among_waiting_deltas(
    clock: list[float],
) -> None:
    objects = PartialObjects(Essay)
    text = _waiting(objects)
    deltas = ["x", "\\ud8", "3e\\udd", "81", "y", "\u2028", "\xa0", "\\", "n", "z", "\x7f", "\\u00", "e9"]
    assert all(objects.feed(delta) is None for delta in deltas)  # all wait: none ends the string
    flushed = objects.flush()
    assert flushed is not None
    assert flushed.text == text + "x\U0001f981y\u2028\xa0\nz\x7f\u00e9"


def test_a_control_character_in_waiting_deltas_is_refused_at_its_position_once_they_are_read(
    clock: list[float],
) -> None:
    # read by a flush (a stream's end or failure)
    objects = PartialObjects(Essay)
    text = _waiting(objects) + "cd"
    assert objects.feed("cd") is None
    assert objects.feed("e\nf") is None  # it waits with the rest, unread
    with pytest.raises(PartialJSONError) as refused:
        objects.flush()
    assert refused.value.position == len(PREFIX + text) + 1
    flushed = objects.flush()  # what waited before it is kept, and the "e" of its own delta
    assert flushed is not None
    assert flushed.text == text + "e"
    # read when the next object is due (1/60 s later): refused by that delta's feed
    objects = PartialObjects(Essay)
    text = _waiting(objects)
    assert objects.feed("e\x01f") is None
    clock[0] += 1 / 50
    with pytest.raises(PartialJSONError) as refused:
        objects.feed("g")
    assert refused.value.position == len(PREFIX + text) + 1
    # read before a quote, which may end the string: refused before the quote is read
    objects = PartialObjects(Essay)
    text = _waiting(objects)
    assert objects.feed("e\x1ff") is None
    with pytest.raises(PartialJSONError) as refused:
        objects.feed('g"}')
    assert refused.value.position == len(PREFIX + text) + 1
    with pytest.raises(ValidationError):
        objects.close()  # the whole text, refused as JSON


# -- checked and found right: stream_partial while deltas wait ------------------------------------


async def test_bad_json_while_deltas_wait_shows_them_then_raises_and_closes_the_source(
    clock: list[float],
) -> None:
    closed = anyio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield PREFIX + "x" * 3000
            for _ in range(10):
                yield "ab"  # waits: the clock stands still
            yield 'cd", 1}'  # a value where a key belongs
        finally:
            closed.set()

    shown: list[Essay] = []
    with pytest.raises(PartialJSONError):
        async for essay in stream_partial(source(), Essay):
            shown.append(essay)
    assert [len(essay.text) for essay in shown] == [3000, 3022]  # all before the error, ended
    assert closed.is_set()


async def test_leaving_after_the_object_shown_before_an_error_raises_nothing_and_yields_no_more(
    clock: list[float],
) -> None:
    closed = anyio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield PREFIX + "x" * 3000
            yield "ab"
            raise ConnectionError("cut")
        finally:
            closed.set()

    objects = cast("AsyncGenerator[Essay, None]", stream_partial(source(), Essay))  # (it is one)
    first = await anext(objects)
    held = await anext(objects)  # the growth that waited, shown before the error
    assert (len(first.text), len(held.text)) == (3000, 3002)
    await objects.aclose()  # (the caller leaves: the error is not raised, nothing else comes)
    assert closed.is_set()
    with pytest.raises(StopAsyncIteration):
        await anext(objects)


async def test_cancelled_while_deltas_wait_closes_the_source_and_shows_nothing_more(
    clock: list[float],
) -> None:
    waiting = anyio.Event()
    closed = anyio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield PREFIX + "x" * 3000
            for _ in range(10):
                yield "ab"
            waiting.set()
            await anyio.sleep_forever()
            yield "never"
        finally:
            closed.set()

    shown: list[Essay] = []

    async def read() -> None:
        async for essay in stream_partial(source(), Essay):
            shown.append(essay)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(read)
            await waiting.wait()
            group.cancel_scope.cancel()
    assert closed.is_set()
    assert [len(essay.text) for essay in shown] == [3000]  # the caller left: nothing is flushed to it
