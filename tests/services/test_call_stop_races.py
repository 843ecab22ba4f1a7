"""The stop button at awkward moments: as the next chunk arrives, together with a cancellation of the
iterating task, and under `partials()`. Each must end the loop promptly, close the provider stream
and free the slot, with or without timeouts.

`GatedProvider` lets each chunk through only when the test opens its gate, so "the chunk arrives
just as stop is pressed" happens in the same event-loop turn on purpose. Its read waits inside a
cancel scope of its own, as an HTTP client's read does (a socket timeout).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import anyio
import pytest
from pydantic import BaseModel

from lionflow import Chunk, Timeout, iModel, register_provider
from lionflow.services.call import ModelCall
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider, ProviderSettings
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left
from tests.loopback import LoopbackServer, Reply
from tests.providers.helpers import HI, ProviderCase
from tests.providers.test_common_behaviour import CASES

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "tell me a story"}]
WORDS = ["one ", "two ", "three ", "four "]
TIMEOUTS = {"no timeout": None, "idle": Timeout(idle=30), "total": Timeout(total=60)}


class GatedProvider(Provider):
    """Streams `words`, each one once the test sets its gate (`gates`, one per chunk asked for)."""

    name: ClassVar[str] = "gated-test"
    option_names: ClassVar[frozenset[str]] = frozenset({"words"})

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.words: list[str] = list(settings.options["words"])
        self.gates: list[anyio.Event] = []
        self.open_streams = 0

    async def _chunks(self) -> AsyncIterator[Chunk]:
        for word in self.words:
            gate = anyio.Event()
            self.gates.append(gate)
            with anyio.move_on_after(3600):  # the read's own scope, under the driver's
                await gate.wait()
            yield Chunk(type="text", data=word)
        yield Chunk(type="finish", finish_reason="stop")

    async def open(self, request: ModelRequest) -> ChunkStream:
        self.open_streams += 1

        def release() -> None:
            self.open_streams -= 1

        return ChunkStream(self._chunks(), close=release)


register_provider(GatedProvider.name, GatedProvider, replace=True)


def _gated(timeout: Timeout | None = None) -> tuple[iModel, GatedProvider]:
    model = iModel(GatedProvider.name, "gated", words=WORDS, max_concurrent=1, timeout=timeout)
    assert isinstance(model.adapter, GatedProvider)
    return model, model.adapter


async def _gate(provider: GatedProvider, index: int) -> anyio.Event:
    """The gate of chunk `index` once the consumer waits behind it."""
    while len(provider.gates) <= index:  # noqa: ASYNC110 - the consumer is about to ask for it
        await anyio.sleep(0.01)
    return provider.gates[index]


async def _slot_is_free(model: iModel, provider: GatedProvider) -> bool:
    """Whether a new call gets the model's only slot (its stream opens) within a bounded wait."""
    opened = len(provider.gates)
    with anyio.move_on_after(2):
        async with model.invoke(MESSAGES) as call, anyio.create_task_group() as group:
            group.start_soon(_drain, call)
            await _gate(provider, opened)
            group.cancel_scope.cancel()
        return True
    return False


async def _drain(call: ModelCall) -> None:
    async for _chunk in call:
        pass


@pytest.mark.parametrize("limits", TIMEOUTS.values(), ids=TIMEOUTS.keys())
async def test_a_stop_as_the_next_chunk_arrives_ends_the_loop_at_once(limits: Timeout | None) -> None:
    model, provider = _gated(limits)
    call = model.invoke(MESSAGES)
    seen: list[str] = []

    async def consume() -> None:
        async for chunk in call:
            seen.append(chunk.data)

    with anyio.fail_after(5):  # the regression waited 10 s, then left the stream and slot taken
        async with no_task_left(), anyio.create_task_group() as group:
            group.start_soon(consume)
            (await _gate(provider, 0)).set()
            second = await _gate(provider, 1)
            second.set()  # the second chunk arrives...
            await call.aclose()  # ...just as the stop button is pressed
    assert seen == ["one "]
    assert provider.open_streams == 0
    response = call.response
    assert response is not None
    assert response.incomplete
    assert response.finish_reason == "cancelled"
    assert response.text == "one "
    assert await _slot_is_free(model, provider)


@pytest.mark.parametrize("limits", TIMEOUTS.values(), ids=TIMEOUTS.keys())
async def test_a_stop_and_a_cancellation_of_the_consumer_at_the_same_moment(limits: Timeout | None) -> None:
    model, provider = _gated(limits)
    call = model.invoke(MESSAGES)
    consumer = anyio.CancelScope()
    ended = anyio.Event()

    async def consume() -> None:
        with consumer:
            async for _chunk in call:
                pass
        ended.set()  # the cancellation was the consumer scope's to take, and nothing else was raised

    with anyio.fail_after(5):
        async with no_task_left(), anyio.create_task_group() as group:
            group.start_soon(consume)
            (await _gate(provider, 0)).set()
            await _gate(provider, 1)  # the consumer waits inside the read's own scope
            consumer.cancel()
            await call.aclose()
    assert ended.is_set()
    assert provider.open_streams == 0
    assert call.response is not None
    assert call.response.incomplete
    assert call.response.finish_reason == "cancelled"
    assert await _slot_is_free(model, provider)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_stop_and_a_cancellation_at_the_same_moment_on_the_real_sdks(
    case: ProviderCase, server: LoopbackServer
) -> None:
    server.add(Reply(pieces=case.text_body(*[f"word{i} " for i in range(40)]), delay=0.05))
    model = case.loopback_model(server)
    consumer = anyio.CancelScope()
    got_one, ended = anyio.Event(), anyio.Event()
    try:
        async with model.stream(HI) as call:

            async def consume() -> None:
                with consumer:
                    async for _chunk in call:
                        got_one.set()
                ended.set()

            with anyio.fail_after(5):
                async with anyio.create_task_group() as group:
                    group.start_soon(consume)
                    await got_one.wait()
                    await anyio.sleep(0.02)  # the consumer now waits in the SDK's read for the next piece
                    consumer.cancel()
                    await call.aclose()
    finally:
        await model.aclose()
    assert ended.is_set()
    assert await anyio.to_thread.run_sync(server.requests[-1].disconnected.wait, 2)
    assert call.response is not None
    assert call.response.finish_reason == "cancelled"


class Person(BaseModel):
    name: str = ""
    age: int = 0


async def test_partials_of_a_stopped_call_end_quietly() -> None:
    model = ScriptedModel(responses=['{"name": "Ada Lovelace of the long name", "age": 36}'], delay=0.02)
    call = model.invoke(MESSAGES, response_format=Person)
    people: list[Person] = []
    some = anyio.Event()

    async def consume() -> None:
        async for person in call.partials():  # the truncated JSON is not validated
            people.append(person)
            if len(people) == 2:
                some.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await some.wait()
            await call.aclose()
    assert people
    assert people[-1].age == 0  # stopped before the age arrived
    assert call.response is not None
    assert call.response.incomplete
    # typed Person (the call's response_format); a partial response has none
    parsed: Person | None = call.response.parsed
    assert parsed is None
    assert model.open_streams == 0


async def test_partials_of_a_call_that_completes_end_with_the_validated_object() -> None:
    model = ScriptedModel(responses=['{"name": "Ada", "age": 36}'])
    async with model.invoke(MESSAGES, response_format=Person) as call:
        people = [person async for person in call.partials()]
    assert people[-1] == Person(name="Ada", age=36)
    assert call.response is not None
    assert call.response.parsed == Person(name="Ada", age=36)
