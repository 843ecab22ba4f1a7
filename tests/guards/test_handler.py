"""StreamingHandler: the consumer gets the released text in order and always ends; stop strings and a
wrapper are cut however the text is split into pushes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lionflow.errors import StreamConsumed
from lionflow.guards.handler import StreamingHandler, TextWithMetadata

pytestmark = pytest.mark.anyio


async def generate(handler: StreamingHandler[Any], pieces: Sequence[str]) -> None:
    """What a call does with its handler: a push per piece as it arrives, then finish or fail."""
    try:
        for piece in pieces:
            await anyio.lowlevel.checkpoint()  # the consumer may run between pieces, as in a stream
            handler.push(piece)
    except BaseException as error:
        handler.fail(error)
        raise
    handler.finish()


async def run_seed_pattern(handler: StreamingHandler[str], pieces: Sequence[str]) -> tuple[list[str], str]:
    """The seed's pattern: a consumer task, the awaited call, then the full text."""
    seen: list[str] = []

    async def process_tokens() -> None:
        async for chunk in handler:
            seen.append(chunk)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(process_tokens)
            await generate(handler, pieces)
        return seen, await handler.wait()


def splits(text: str, cuts: Sequence[int]) -> list[str]:
    bounds = [0, *sorted(min(cut, len(text)) for cut in cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def every_split(text: str) -> list[list[str]]:
    """The text in one, two and three pushes, cut at every place."""
    n = len(text)
    return [[text]] + [splits(text, [i, j]) for i in range(n + 1) for j in range(i, n + 1)]


async def test_the_consumer_sees_every_chunk_in_order_and_wait_gives_the_full_text() -> None:
    pieces = ["The capital", " of France", " is Paris."]
    seen, full = await run_seed_pattern(StreamingHandler(), pieces)
    assert seen == pieces
    assert full == "The capital of France is Paris."


async def test_the_consumer_gets_each_piece_while_the_call_is_still_running() -> None:
    handler = StreamingHandler()
    send, receive = anyio.create_memory_object_stream[str](math.inf)

    async def consume() -> None:
        async with send:
            async for text in handler:
                await send.send(text)

    with anyio.fail_after(5), receive:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for piece in ["first", "second"]:
                handler.push(piece)
                assert await receive.receive() == piece  # not only once the call has finished
            handler.finish()


async def test_a_failed_call_ends_the_consumer_and_wait_raises_its_error() -> None:
    handler = StreamingHandler()
    seen: list[str] = []

    async def consume() -> None:
        async for text in handler:
            seen.append(text)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            handler.push("partial")
            await anyio.lowlevel.checkpoint()
            handler.fail(ConnectionError("the provider hung up"))
        with pytest.raises(ConnectionError, match="hung up"):
            await handler.wait()
    assert seen == ["partial"]
    assert handler.done


async def test_a_cancelled_call_ends_the_consumer_and_wait_gives_the_text_so_far() -> None:
    handler = StreamingHandler()
    seen: list[str] = []
    pushed = anyio.Event()

    async def consume() -> None:
        async for text in handler:
            seen.append(text)

    async def call() -> None:
        try:
            handler.push("Hello")
            pushed.set()
            await anyio.sleep_forever()
        except BaseException as error:
            handler.fail(error)
            raise

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            async with anyio.create_task_group() as calls:
                calls.start_soon(call)
                await pushed.wait()
                calls.cancel_scope.cancel()
        assert await handler.wait() == "Hello"
    assert seen == ["Hello"]


async def test_a_stop_string_ends_the_consumer_though_the_call_goes_on_pushing() -> None:
    handler = StreamingHandler(stop=["\nUser:"])
    seen, full = await run_seed_pattern(handler, ["Sure, 4.", "\nUs", "er: and 5?", " more"])
    assert "".join(seen) == full == "Sure, 4."
    assert handler.stopped


@pytest.mark.parametrize("stop", ["\nUser:", "\n", "ab"])
async def test_a_stop_string_is_cut_wherever_the_pushes_split_it(stop: str) -> None:
    text = f"xa{stop}after{stop}end"
    for pieces in every_split(text):
        handler = StreamingHandler(stop=[stop])
        for piece in pieces:
            handler.push(piece)
        handler.finish()
        seen = [t async for t in handler]
        assert "".join(seen) == await handler.wait() == "xa", pieces


def first_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the stop string completed first (the longest one, of those ending together)."""
    for end in range(1, len(text) + 1):
        hits = [s for s in stops if text[:end].endswith(s)]
        if hits:
            return text[: end - max(map(len, hits))]
    return text


alphabet = st.sampled_from("abU:\n ")
# Drawn up front, not inside the test: a draw that runs out of data inside the event loop escapes
# as hypothesis' StopTest from the loop's task. Cuts past the text's end cut at its end.
cut_points = st.lists(st.integers(0, 60), max_size=8)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.text(alphabet, max_size=30),
    after=st.text(alphabet, max_size=15),
    stops=st.lists(st.text(alphabet, min_size=1, max_size=6), min_size=1, max_size=3),
    cuts=cut_points,
)
async def test_the_consumer_never_sees_a_stop_string_or_anything_after_it(
    before: str, after: str, stops: list[str], cuts: list[int]
) -> None:
    text = before + stops[0] + after
    pieces = splits(text, cuts)
    seen, full = await run_seed_pattern(StreamingHandler(stop=stops), pieces)
    expected = first_stop(text, stops)
    assert "".join(seen) == full == expected
    assert all(stop not in full for stop in stops)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.text(st.sampled_from('ab"`\n '), max_size=20),
    # a suffix ending in whitespace matches with any trailing whitespace, its own included
    wrapper=st.sampled_from([('"', '"'), ("```json\n", "\n```"), ("```\n", "\n```\n"), ("<<", ">>")]),
    trailing=st.sampled_from(["", "\n", " \n "]),
    cuts=cut_points,
)
async def test_a_wrapper_is_stripped_however_the_pushes_split_it(
    body: str, wrapper: tuple[str, str], trailing: str, cuts: list[int]
) -> None:
    prefix, suffix = wrapper
    text = prefix + body + suffix + trailing
    pieces = splits(text, cuts)
    handler = StreamingHandler()
    handler.set_pattern(prefix, suffix)
    seen, full = await run_seed_pattern(handler, pieces)
    assert "".join(seen) == full == body


async def test_text_without_the_wrapper_is_released_as_it_is() -> None:
    for text in ['he said "hi"', '"', "`", 'ends with a quote"x']:
        for pieces in every_split(text):
            handler = StreamingHandler()
            handler.set_pattern('"""', '"""')
            seen, full = await run_seed_pattern(handler, pieces)
            assert "".join(seen) == full == text, pieces


async def test_stop_strings_and_a_wrapper_together() -> None:
    handler = StreamingHandler(stop=["\nUser:"])
    handler.set_pattern('"', '"')
    seen, full = await run_seed_pattern(handler, ['"Par', 'is"', "\nUser: next"])
    assert "".join(seen) == full == "Paris"


async def test_include_metadata_gives_text_and_the_metadata_of_the_push_that_released_it() -> None:
    handler = StreamingHandler(include_metadata=True, stop=["STOP"])
    handler.push("Hel", {"index": 0})
    handler.push("lo S", {"index": 1})  # "S" held: it may start "STOP"
    handler.push("ure", {"index": 2})
    handler.finish()
    items: list[TextWithMetadata] = [item async for item in handler]
    assert items == [
        {"text": "Hel", "metadata": {"index": 0}},
        {"text": "lo ", "metadata": {"index": 1}},
        {"text": "Sure", "metadata": {"index": 2}},
    ]
    assert await handler.wait() == "Hello Sure"


async def test_a_piped_handler_gets_every_piece_in_order_and_ends_with_it() -> None:
    first = StreamingHandler()
    second = StreamingHandler()
    first.push("a")  # released before the pipe: forwarded when it is set
    first.set_pipe_to(second)
    seen: list[str] = []

    async def consume() -> None:
        async for text in second:
            seen.append(text)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await generate(first, ["b", "c", "d"])
    assert seen == ["a", "b", "c", "d"]
    assert await second.wait() == "abcd"


async def test_a_piped_handler_fails_with_its_source() -> None:
    first, second = StreamingHandler(), StreamingHandler()
    first.set_pipe_to(second)
    first.push("x")
    first.fail(ValueError("bad"))
    assert [t async for t in second] == ["x"]
    with pytest.raises(ValueError, match="bad"):
        await second.wait()


def test_piping_in_a_circle_is_refused() -> None:
    first, second = StreamingHandler(), StreamingHandler()
    first.set_pipe_to(second)
    with pytest.raises(ValueError, match="itself"):
        second.set_pipe_to(first)


async def test_enable_print_prints_each_released_piece_as_it_comes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = StreamingHandler(enable_print=True, stop=["!"])
    handler.push("Hi")
    assert capsys.readouterr().out == "Hi"
    handler.push(" there! and more")
    assert capsys.readouterr().out == " there\n"


async def test_text_pushed_before_any_consumer_is_waiting_for_it() -> None:
    handler = StreamingHandler()
    handler.push("one ")
    handler.push("two")
    handler.finish()
    handler.push("ignored: after the end")
    assert [t async for t in handler] == ["one ", "two"]
    assert await handler.wait() == "one two"


async def test_finish_with_the_full_text_releases_what_was_not_pushed() -> None:
    handler = StreamingHandler()  # a call that did not stream: nothing pushed
    handler.finish("The whole reply")
    assert [t async for t in handler] == ["The whole reply"]

    diverged = StreamingHandler()
    diverged.push("Hello")
    with pytest.raises(ValueError, match="does not start with"):
        diverged.finish("Goodbye")
    assert [t async for t in diverged] == ["Hello"]  # ended all the same


async def test_wait_before_during_and_after_the_call() -> None:
    handler = StreamingHandler()
    results: list[str] = []

    async def waiter() -> None:
        results.append(await handler.wait())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.lowlevel.checkpoint()
            handler.push("a")
            tg.start_soon(waiter)
            await generate(handler, ["b"])
    results.append(await handler.wait())
    assert results == ["ab", "ab", "ab"]


async def test_a_handler_is_iterated_once() -> None:
    handler = StreamingHandler()
    handler.finish()
    assert [t async for t in handler] == []
    with pytest.raises(StreamConsumed, match="iterated once"):
        [t async for t in handler]


def test_stop_strings_and_pattern_are_set_before_the_first_push() -> None:
    with pytest.raises(ValueError, match="empty"):
        StreamingHandler(stop=[""])
    handler = StreamingHandler()
    handler.stop = ["\n\n"]
    handler.push("text")
    with pytest.raises(RuntimeError, match="before the first push"):
        handler.stop = ["x"]
    with pytest.raises(RuntimeError, match="before the first push"):
        handler.set_pattern('"', '"')


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_handler_made_outside_any_event_loop(backend: str) -> None:
    handler = StreamingHandler()  # no loop runs here
    handler.push("made ")

    async def main() -> tuple[list[str], str]:
        return await run_seed_pattern(handler, ["in a ", "loop"])

    seen, full = anyio.run(main, backend=backend)
    assert seen == ["made ", "in a ", "loop"]
    assert full == "made in a loop"
