"""`PartialObjects`, and how often a long string growing fast is shown (`stream_partial`, `partials()`).

Each partial object holds a new copy of the string being written, so one per delta makes a string of
L characters cost about L**2 / (2 * delta size) characters copied. Past 256 characters, a string
growing fast is shown again once it has grown by 1/16 (or after 1/60 s): copying stays linear.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import AsyncIterator

import anyio
import pytest
from pydantic import BaseModel, ValidationError

from lionflow.structured import PartialJSONError, PartialObjects, partial_model, stream_partial
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

WORDS = ["lion", "flow", "stream", "delta", "partial", "object", "é", "日本", "🦁"]


class Essay(BaseModel):
    title: str = ""
    text: str = ""
    words: int | None = None
    tags: list[str] = []


def _essay(length: int, seed: int = 1) -> tuple[str, str, list[str]]:
    """A long essay's text, its JSON document, and the document in deltas of 1 to 4 characters."""
    rng = random.Random(seed)
    words: list[str] = []
    size = 0
    while size < length:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    text = " ".join(words)
    document = json.dumps(
        {"title": "on lions", "text": text, "words": len(words), "tags": ["a"]}, ensure_ascii=False
    )
    pieces, i = [], 0
    while i < len(document):
        step = rng.randint(1, 4)
        pieces.append(document[i : i + step])
        i += step
    return text, document, pieces


async def _fast(pieces: list[str]) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


async def test_a_long_string_streamed_fast_is_copied_a_linear_number_of_characters() -> None:
    text, _document, pieces = _essay(300_000)
    lengths: list[int] = []
    started = time.monotonic()
    async for essay in stream_partial(_fast(pieces), Essay):
        assert text.startswith(essay.text)
        lengths.append(len(essay.text))
    elapsed = time.monotonic() - started
    assert lengths[-1] == len(text)
    assert lengths == sorted(lengths)
    # Up to 256 characters every change shows (at most a character's worth each delta); past it,
    # an object per 1/16 of growth; and the clock's objects, one per 1/60 s at most.
    clock = math.ceil(elapsed * 60) + 1
    bound = 256 * 256 + 18 * len(text) + (clock + 2) * len(text)
    assert sum(lengths) <= bound
    # one per delta would have copied some 10**10 characters
    assert sum(lengths) < sum(len(text[: i * 2]) for i in range(len(pieces) // 2)) / 20


async def test_past_256_characters_a_string_grows_by_at_most_a_16th_between_objects() -> None:
    text, _, pieces = _essay(200_000, seed=2)
    last = 0
    seen = 0
    async for essay in stream_partial(_fast(pieces), Essay):
        length = len(essay.text)
        # what the last object showed, and at most one delta (4 characters) beyond the 16th
        assert length - last <= max(last // 16, 4) + 4, (last, length)
        last = length
        seen += 1
    assert last == len(text)
    assert seen < len(pieces) // 5  # coalesced: far fewer objects than deltas


async def test_every_change_shows_the_string_at_every_delta() -> None:
    text, document, pieces = _essay(20_000, seed=3)
    lengths = [len(e.text) async for e in stream_partial(_fast(pieces), Essay, every_change=True)]
    coalesced = [len(e.text) async for e in stream_partial(_fast(pieces), Essay)]
    # the text's length after each delta that ends inside it (its words need no escapes)
    start = document.index(text)
    offsets = [sum(map(len, pieces[: i + 1])) for i in range(len(pieces))]
    inside = {offset - start for offset in offsets if start < offset <= start + len(text)}
    assert inside <= set(lengths)
    assert not inside <= set(coalesced)
    assert lengths[-1] == coalesced[-1] == len(text)


def test_the_end_of_a_long_string_and_what_follows_show_at_once() -> None:
    text, document, _ = _essay(50_000, seed=4)
    closing = document.index('", "words"')
    objects = PartialObjects(Essay)
    # the string fed fast in small deltas, then its closing quote alone, then the rest
    shown = None
    for i in range(0, closing, 3):
        shown = objects.feed(document[i : min(i + 3, closing)]) or shown
    assert shown is not None
    assert len(shown.text) < len(text)
    ended = objects.feed('"')
    assert ended is not None
    assert ended.text == text
    assert ended.words is None
    assert objects.feed(', "words": 7') is None  # a number may still grow
    counted = objects.feed(", ")
    assert counted is not None
    assert counted.words == 7
    assert counted.text == text
    tagged = objects.feed('"tags": ["a')
    assert tagged is not None
    assert tagged.tags == ["a"]
    assert objects.feed('"]}') is None  # the document is complete: the last object is close()'s
    assert objects.close() == Essay(title="on lions", text=text, words=7, tags=["a"])


async def test_a_reply_at_a_models_pace_is_shown_delta_by_delta() -> None:
    prefix = '{"title": "t", "text": "' + "x" * 6000

    async def paced() -> AsyncIterator[str]:
        yield prefix
        for _ in range(5):
            await anyio.sleep(0.03)  # slower than 60 deltas a second
            yield "ab"
        yield '"}'

    lengths = [len(e.text) async for e in stream_partial(paced(), Essay)]
    # (the closing quote changes nothing shown; the last is the validated object)
    assert lengths == [6000, 6002, 6004, 6006, 6008, 6010, 6010]


async def test_a_long_reply_through_partials_is_coalesced_unless_every_change() -> None:
    text, document, _ = _essay(30_000, seed=6)
    model = ScriptedModel(responses=[document, document], chunk_size=3)
    async with model.stream("write", response_format=Essay) as call:
        coalesced = [len(e.text) async for e in call.partials()]
    async with model.stream("write", response_format=Essay) as call:
        every = [len(e.text) async for e in call.partials(every_change=True)]
    assert coalesced[-1] == every[-1] == len(text)
    assert call.response is not None
    assert call.response.parsed == Essay.model_validate_json(document)
    assert len(coalesced) < len(every) // 2
    assert len(every) >= len(text) // 3


def test_partial_objects_feed_and_close_give_what_stream_partial_gives() -> None:
    pieces = ['{"na', 'me": "bil', "bo", ' baggins", "a', 'ge": 11', "1}"]

    class Person(BaseModel):
        name: str = ""
        age: int | None = None

    objects = PartialObjects(Person)
    seen = [shown.model_copy() for piece in pieces if (shown := objects.feed(piece)) is not None]
    assert seen == [Person(), Person(name="bil"), Person(name="bilbo"), Person(name="bilbo baggins")]
    assert objects.close() == Person(name="bilbo baggins", age=111)


def test_partial_objects_errors() -> None:
    with pytest.raises(ValueError, match="format must be 'json' or 'toon'"):
        PartialObjects(Essay, format="yaml")  # type: ignore[arg-type]
    objects = PartialObjects(Essay)
    objects.feed('{"text": "a')
    with pytest.raises(PartialJSONError):
        objects.feed('" "b')
    unfinished = PartialObjects(Essay)
    unfinished.feed('{"words": "many"}')
    with pytest.raises(ValidationError):
        unfinished.close()


def test_a_toon_reply_is_shown_at_every_change() -> None:
    lines = "title: t\ntext: " + "y" * 6000
    objects = PartialObjects(Essay, format="toon")
    objects.feed(lines)
    grown = [objects.feed("z") for _ in range(20)]
    assert all(shown is not None for shown in grown)
    assert objects.close() == Essay(title="t", text="y" * 6000 + "z" * 20)


# -- deltas that wait with a held-back string, unparsed until it is shown again -------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """`PartialObjects`' clock, set by the test: ``clock[0]`` is the time it reads."""
    now = [0.0]
    monkeypatch.setattr(partial_model, "monotonic", lambda: now[0])
    return now


def _holding(objects: PartialObjects[Essay]) -> str:
    """Feed the start of an essay and 3,000 characters of its text fast (so that its next object
    waits); the text so far."""
    objects.feed('{"title": "t", "text": "')
    for _ in range(1500):
        objects.feed("ab")
    return "ab" * 1500


def test_what_waited_shows_once_the_clock_passes_a_60th_of_a_second(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    text = _holding(objects)
    assert objects.feed("cd") is None  # waiting: grown by less than 1/16 within the 60th
    clock[0] += 1 / 60
    shown = objects.feed("ef")
    assert shown is not None
    assert shown.text == text + "cdef"


def test_escapes_and_the_end_of_a_string_after_waiting_deltas_read_as_written(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    text = _holding(objects)
    for delta in ["x", "\\n", "y", "\\u00e9", "z", "\\ud83e", "\\udd81"]:
        objects.feed(delta)
    ended = objects.feed('", "words": 2')
    assert ended is not None  # at once: the string has ended
    assert ended.text == text + "x\ny\u00e9z\U0001f981"
    assert objects.feed(', "tags": ["a"]}') is None  # the document is complete: `close` has it
    assert objects.close() == Essay(title="t", text=ended.text, words=2, tags=["a"])


def test_an_empty_delta_while_waiting_changes_nothing(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    text = _holding(objects)
    assert objects.feed("") is None
    flushed = objects.flush()
    assert flushed is not None
    assert flushed.text == text
    assert objects.flush() is None


async def test_bad_text_after_waiting_deltas_is_refused_at_its_position_after_what_came_before(
    clock: list[float],
) -> None:
    document = '{"text": "' + "ab" * 3000 + "x"
    pieces = [document[:10]] + ["ab"] * 3000 + ["x\x01y"]
    shown: list[Essay] = []
    with pytest.raises(PartialJSONError) as refused:
        async for essay in stream_partial(_fast(pieces), Essay):
            shown.append(essay)
    assert refused.value.position == len(document)  # the control character
    # the growth that waited, and the "x" before the bad character, is shown before the error
    assert shown[-1].text == "ab" * 3000 + "x"


async def test_bad_text_waiting_when_the_source_fails_is_the_error_after_what_came_before(
    clock: list[float],
) -> None:
    async def failing() -> AsyncIterator[str]:
        yield '{"text": "' + "ab" * 3000
        yield "x"
        yield "y\x01z"  # waits with the rest: a control character, refused once it is read
        raise RuntimeError("connection reset")

    shown: list[Essay] = []
    with pytest.raises(PartialJSONError) as refused:
        async for essay in stream_partial(failing(), Essay):
            shown.append(essay)
    # the bad character came first, so it is the error; the source's error is its context
    assert isinstance(refused.value.__context__, RuntimeError)
    assert refused.value.position == len('{"text": "') + 6000 + 2
    assert shown[-1].text == "ab" * 3000 + "xy"


def test_feed_kept_in_a_variable_reads_every_delta_in_order(clock: list[float]) -> None:
    # `feed` taken once, before any delta (a loop's usual shortcut), while deltas wait
    objects = PartialObjects(Essay)
    feed = objects.feed
    feed('{"title": "t", "text": "')
    for _ in range(1500):
        feed("ab")
    assert feed("cd") is None  # waits
    shown = feed("ef")
    assert shown is None or shown.text == "ab" * 1500 + "cdef"
    feed('"}')
    assert objects.close() == Essay(title="t", text="ab" * 1500 + "cdef")


def test_feed_kept_while_deltas_wait_still_reads_every_delta_after_a_flush(clock: list[float]) -> None:
    objects = PartialObjects(Essay)
    text = _holding(objects)
    feed = objects.feed  # taken while deltas wait
    assert feed("cd") is None
    flushed = objects.flush()  # the wait ends
    assert flushed is not None
    assert flushed.text == text + "cd"
    assert feed("ef") is not None  # the kept `feed` still reads (the change after a flush shows)
    assert objects.feed("gh") is None  # waits again
    assert feed("ij") is None  # the old one, while a new wait holds "gh": after it
    feed('"}')
    assert objects.close() == Essay(title="t", text=text + "cdefghij")


def test_close_twice_gives_the_final_object_again_for_json_and_toon() -> None:
    for format, text in [("json", '{"title": "t", "text": "abc"}'), ("toon", "title: t\ntext: abc")]:
        objects = PartialObjects(Essay, format=format)  # type: ignore[arg-type]
        objects.feed(text)
        first = objects.close()
        assert objects.close() == first == Essay(title="t", text="abc"), format
