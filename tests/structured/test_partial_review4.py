"""A hostile review of a long string's deltas waiting in a function of their own (commit ce531b9).

While a long string's next object waits, ``PartialObjects.feed`` is a closure in the instance that
only appends deltas without a quote; what waited is parsed in one piece later. It found (both fixed
since, the first two tests): a subclass that overrides ``feed`` is passed by while a string waits
(the instance's closure shadows it), and a delta with a quote that releases waiting text which is
not JSON is dropped from the text `close` validates. The other tests pin behaviour checked and found
right: over random documents (strings from the new 256-character threshold up, raw control
characters and bad escapes, cut-offs) fed through ``objects.feed`` and ``feed`` functions kept at
random moments, every object is the state of the text fed so far, errors carry the position of the
first bad character and a flush after one shows the text before it, and `close` is strict
validation; stream_partial over Chunks and OpenAI SDK chunks, and with a source that fails while a
bad character waits.

The clock `PartialObjects` reads (``monotonic``) is set by the tests, so that whether a delta waits
never depends on the machine's speed.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import lionflow.structured.partial_model as partial_model
from lionflow.services.chunk import Chunk
from lionflow.structured import PartialBuilder, PartialJSON, PartialJSONError, PartialObjects, stream_partial

pytestmark = pytest.mark.anyio

PREFIX = '{"title": "t", "text": "'


class Essay(BaseModel):
    title: str = ""
    text: str = ""


class Item(BaseModel):
    name: str = ""
    body: str | None = None


class Doc(BaseModel):
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


def _long_text(length: int = 3000) -> list[str]:
    """An essay's start, then `length` characters of its text two at a time (they wait)."""
    return [PREFIX] + ["ab"] * (length // 2)


# -- defects -------------------------------------------------------------------------------------


class _Counting(PartialObjects[Essay]):
    """A subclass that counts the deltas it is fed (a user's logging or metering)."""

    def __init__(self) -> None:
        super().__init__(Essay)
        self.deltas = 0

    def feed(self, text: str) -> Essay | None:
        self.deltas += 1
        return super().feed(text)


def test_a_subclass_feed_sees_every_delta_while_a_long_string_waits(clock: list[float]) -> None:
    objects = _Counting()
    deltas = [*_long_text(), '"}']
    for delta in deltas:
        objects.feed(delta)
    assert objects.close().text == "ab" * 1500
    assert objects.deltas == len(deltas)  # (it saw 210 of 1,502: the others went to the closure)


def test_close_after_an_error_from_waiting_text_validates_all_the_text_fed(clock: list[float]) -> None:
    deltas = [*_long_text(), "e\x01f", 'g"}']
    objects = PartialObjects(Essay)
    with pytest.raises(PartialJSONError) as refused:
        for delta in deltas:
            objects.feed(delta)  # "e\x01f" waits; 'g"}' releases it, and its error is raised
    assert refused.value.position == len(PREFIX) + 3001
    with pytest.raises(ValidationError) as closed:
        objects.close()
    with pytest.raises(ValidationError) as whole:
        Essay.model_validate_json("".join(deltas))
    # (as with every_change=True: the input is the whole text; it lacked 'g"}')
    assert closed.value.errors() == whole.value.errors()


# -- checked and found right: random documents, splits, clocks, flushes and kept feeds ------------

_ODD = ["é", "日", "🦁", "\n", '"', "\\", "/", "\t", "\u2028", "\x7f", "\xa0"]
_BAD = ["\x01", "\n", "\x1f", "\\x", "\\uZZ12", "\\ud83e\\u00"]


def _string(rng: random.Random) -> str:
    size = rng.randint(250, 700) if rng.random() < 0.4 else rng.randint(0, 6)
    return "".join(rng.choice(_ODD) if rng.random() < 0.1 else rng.choice("abcd ") for _ in range(size))


def _document(rng: random.Random) -> str:
    fields: dict[str, Callable[[], Any]] = {
        "title": lambda: _string(rng),
        "text": lambda: _string(rng),
        "unknown": lambda: _string(rng),
        "tags": lambda: [_string(rng) for _ in range(rng.randint(0, 3))],
        "meta": lambda: {_string(rng)[:20]: _string(rng) for _ in range(rng.randint(0, 2))},
        "extra": lambda: {"x": [_string(rng), 1.5, None, {"y": _string(rng)}]},
        "either": lambda: rng.choice([3, _string(rng), None]),
        "items": lambda: [
            {"name": _string(rng), "body": rng.choice([None, _string(rng)])} for _ in range(rng.randint(0, 3))
        ],
        "n": lambda: rng.randint(-5, 10**6),
    }
    names = rng.sample(sorted(fields), rng.randint(1, len(fields)))
    value = {name: fields[name]() for name in names}
    return json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))


def _split(rng: random.Random, text: str) -> Iterator[str]:
    sizes = rng.choice([[1, 2, 3], [1, 1, 2, 5, 17, 60], [40, 90, 200]])
    i = 0
    while i < len(text):
        step = rng.choice(sizes)
        yield text[i : i + step]
        i += step


def _state(prefix: str) -> dict[str, Any] | None:
    """What a fresh parser and builder show for `prefix` read in one piece (up to any error)."""
    parser = PartialJSON()
    with suppress(PartialJSONError):
        parser.feed(prefix)
    built = PartialBuilder(Doc).build(parser)
    return None if built is None else built.model_dump()


def _first_error(text: str) -> int | None:
    try:
        PartialJSON().feed(text)
    except PartialJSONError as error:
        return error.position
    return None


def _check(seed: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Feed one random document, maybe with a bad character in a string or cut off, through
    ``objects.feed`` and feeds kept at random moments; return how many deltas came while one waited."""
    rng = random.Random(seed)
    now = [0.0]

    def monotonic() -> float:
        now[0] += rng.choice([0.0] * 8 + [0.001, 0.02])
        return now[0]

    monkeypatch.setattr(partial_model, "monotonic", monotonic)
    body = _document(rng)
    if rng.random() < 0.3:  # a character a JSON string may not hold, just inside one
        at = rng.choice([i for i, char in enumerate(body) if char == '"']) + 1
        body = body[:at] + rng.choice(_BAD) + body[at:]
    cut = rng.random() < 0.25
    if cut:
        body = body[: rng.randint(1, len(body))]
    preamble = rng.choice(["", "", "Here:\n```json\n", "sure "])
    text = preamble + body + ("" if cut else rng.choice(["", "\n```\n", " bye {"]))
    error = _first_error(text)
    objects: PartialObjects[Doc] = PartialObjects(Doc)
    kept: list[Callable[[str], Doc | None]] = []
    fed = waited = 0
    last: dict[str, Any] | None = None
    refused: PartialJSONError | None = None
    try:
        for delta in _split(rng, text):
            if rng.random() < 0.1:
                kept.append(objects.feed)  # the method, or the function of a wait (kept past its end)
            waited += objects._held is not None  # (white box: that the new path is taken)
            feed = rng.choice(kept) if kept and rng.random() < 0.4 else objects.feed
            fed += len(delta)
            shown = feed(delta)
            if shown is not None:  # all the text so far, in order
                last = shown.model_dump()
                assert last == _state(text[:fed]), (seed, fed)
            if rng.random() < 0.05:
                flushed = objects.flush()
                last = last if flushed is None else flushed.model_dump()
                assert _state(text[:fed]) in (None, last) or objects._parser.done, (seed, fed)
        flushed = objects.flush()
    except PartialJSONError as caught:
        refused = caught
    if refused is not None:
        assert refused.position == error, seed  # the first bad character, whenever it was read
        flushed = objects.flush()  # then the text before it
        last = last if flushed is None else flushed.model_dump()
        assert _state(text[: refused.position]) in (None, last), seed
        with pytest.raises(ValidationError):
            objects.close()
        return waited
    last = last if flushed is None else flushed.model_dump()
    assert error is None or error >= len(text) or objects._parser.done, seed  # nothing bad unread
    assert _state(text) in (None, last) or objects._parser.done, seed  # nothing held back is lost
    expected: Doc | ValidationError
    try:
        expected = Doc.model_validate_json(body)
    except ValidationError as strict:
        expected = strict
    if isinstance(expected, ValidationError):
        with pytest.raises(ValidationError) as closed:
            objects.close()
        assert closed.value.errors() == expected.errors(), seed
    else:
        assert objects.close() == expected, seed
    return waited


def test_random_documents_through_kept_feeds_show_the_text_so_far_and_its_first_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited = sum(_check(seed, monkeypatch) for seed in range(60))
    assert waited > 1000  # deltas did wait in the closure


# -- checked and found right: kept feeds, close and flush -----------------------------------------


def test_feeds_kept_across_waits_keep_the_deltas_in_order(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    for delta in _long_text():
        objects.feed(delta)
    first = objects.feed  # the function of this wait
    assert first("c1") is None
    assert objects.flush() is not None  # ends the wait; the next growth shows at once
    assert objects.feed("d") is not None
    assert objects.feed("e") is None  # a second wait, its own function
    second = objects.feed
    assert second is not first
    assert first("f") is None  # the ended function hands its delta on, after "e"
    assert second("g") is None
    assert objects.feed("h") is None
    clock[0] += 1
    shown = first("i")  # due: "e" ... "i" are read in the order they came
    assert shown is not None
    assert shown.text.endswith("c1defghi")
    assert second('"}') is None
    assert objects.close().text == "ab" * 1500 + "c1defghi"


def test_close_twice_and_flush_and_feed_after_close(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    for delta in _long_text():
        objects.feed(delta)
    assert objects.feed("xy") is None
    assert objects.feed('"}') is None
    assert objects.close() == objects.close() == Essay(title="t", text="ab" * 1500 + "xy")
    assert objects.flush() is None
    assert objects.feed(' {"title": "no"}') is None  # after the document: not part of it
    assert objects.close().title == "t"


def test_toon_replies_and_every_change_never_wait_even_through_a_kept_feed(clock: list[float]) -> None:
    toon = PartialObjects(Essay, format="toon")
    feed = toon.feed
    shown = [feed(delta) for delta in ["title: t\ntext: ", *["ab"] * 1000]]
    assert toon.feed is feed or "feed" not in vars(toon)
    assert all(essay is not None for essay in shown[1:])
    feed("\n")
    assert toon.close() == toon.close() == Essay(title="t", text="ab" * 1000)
    every = PartialObjects(Essay, every_change=True)
    every.feed(PREFIX)
    for _ in range(1500):
        assert every.feed("ab") is not None
        assert "feed" not in vars(every)


# -- checked and found right: stream_partial while deltas wait ------------------------------------


async def _chunks(deltas: list[Any], error: Exception | None = None) -> AsyncIterator[Any]:
    for delta in deltas:
        yield delta
    if error is not None:
        raise error


async def test_chunks_and_openai_sdk_chunks_while_a_long_string_waits(clock: list[float]) -> None:
    from openai.types.chat import ChatCompletionChunk

    def sdk(text: str) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
        )

    deltas = [*_long_text(), '"}']
    for wrap in (lambda text: Chunk(type="text", data=text), sdk):
        mixed = [wrap(delta) for delta in deltas]
        mixed[5:5] = [Chunk(type="usage", data=""), Chunk(type="reasoning", data='"}')]
        shown = [essay async for essay in stream_partial(_chunks(mixed), Essay)]
        assert shown[-1] == Essay(title="t", text="ab" * 1500)
        assert [len(essay.text) for essay in shown] == sorted(len(essay.text) for essay in shown)


async def test_a_source_failing_while_a_bad_character_waits_shows_the_text_before_it(
    clock: list[float],
) -> None:
    deltas = [*_long_text(), "cd", "e\x01f", "gh"]
    shown: list[Essay] = []
    with pytest.raises(PartialJSONError) as refused:
        async for essay in stream_partial(_chunks(deltas, ConnectionError("cut")), Essay):
            shown.append(essay)
    assert refused.value.position == len(PREFIX) + 3003
    assert isinstance(refused.value.__context__, ConnectionError)  # (the source's error, kept)
    assert shown[-1].text == "ab" * 1500 + "cde"
    # the source ends instead: the same, from the final flush
    shown.clear()
    with pytest.raises(PartialJSONError):
        async for essay in stream_partial(_chunks(deltas), Essay):
            shown.append(essay)
    assert shown[-1].text == "ab" * 1500 + "cde"
