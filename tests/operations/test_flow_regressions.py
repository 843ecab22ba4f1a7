"""Workflow regressions from issue 11; each test failed before its fix (and all failed on trio).

- shared branches: two independent operations on one branch interleaved their turns;
- the stop button: `aclose()` from another task left the consumer's loop waiting forever;
- terminal events: under fail_fast with a slow consumer, an operation could show `started` and
  nothing after it;
- a step that raised a cancellation by itself silently cancelled the whole flow.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Literal

import anyio
import pytest

from lionflow import AssistantResponseContent, Chunk, Session
from lionflow.operations import Builder, FlowError, FlowEvent, FlowStream, flow, flow_stream
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio

TERMINAL = ("completed", "failed", "skipped", "cancelled")


def _builder(**models: ScriptedModel) -> Builder:
    session = Session()
    for name, model in models.items():
        session.services.register(model, name=name)
    return Builder(session=session)


def _answer(messages: list[dict[str, Any]]) -> str:
    return "A" + str(messages[-1]["content"])[1:]  # Q1 -> A1


async def test_operations_sharing_a_branch_take_turns_in_the_order_they_were_added() -> None:
    model = ScriptedModel(responses=_answer, chunk_size=1, delay=0.01)
    builder = _builder(m=model)
    first = builder.communicate("Q1", imodel="m", branch="x")
    second = builder.communicate("Q2", imodel="m", branch="x")  # independent of the first
    with anyio.fail_after(10):
        results = await flow(builder)
    assert results[first.id].text == "A1"
    assert results[second.id].text == "A2"
    # the second turn's request carries the first exchange, whole
    assert model.requests[1].messages == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    branch = builder.session.get_branch("x")
    assert [m.chat_msg["content"] for m in branch.messages] == ["Q1", "A1", "Q2", "A2"]


async def test_a_failed_turn_on_a_shared_branch_does_not_stop_the_next_under_continue() -> None:
    broken = ScriptedModel(responses=lambda _: "abcdefgh", chunk_size=2, fail_after=2, max_retries=0)
    builder = _builder(broken=broken, ok=ScriptedModel(responses=lambda _: "fine"))
    first = builder.communicate("Q1", imodel="broken", branch="x")
    second = builder.communicate("Q2", imodel="ok", branch="x")
    events: list[tuple[str, str]] = []
    with anyio.fail_after(10):
        async for op_id, item in flow_stream(builder, on_error="continue"):
            if isinstance(item, FlowEvent):
                events.append((op_id, item.kind))
    # an order, not a dependency: the second runs after the first has ended, whatever its outcome
    assert events.index((first.id, "failed")) < events.index((second.id, "started"))
    assert (second.id, "completed") in events


async def test_shared_branch_order_gives_way_to_an_explicit_dependency() -> None:
    model = ScriptedModel(responses=_answer)
    builder = _builder(m=model)
    first = builder.communicate("Q1", imodel="m", branch="x")
    second = builder.communicate("Q2", imodel="m", branch="x")
    first.depends_on.append(second.id)  # the first added now needs the second: no deadlock
    with anyio.fail_after(10):
        await flow(builder)
    assert [m.chat_msg["content"] for m in builder.session.get_branch("x").messages] == [
        "Q2",
        "A2",
        "Q1",
        "A1",
    ]


@pytest.mark.parametrize("form", ["async for", "async with"])
async def test_aclose_from_another_task_stops_the_flow_and_ends_the_loop(
    form: Literal["async for", "async with"],
) -> None:
    model = ScriptedModel(responses=lambda _: "y " * 500, chunk_size=2, delay=0.01)
    builder = _builder(slow=model)
    for name in ("a", "b"):
        builder.communicate("go", imodel="slow", branch=name)
    stream = flow_stream(builder)
    chunks = 0
    first_chunk = anyio.Event()
    loop_ended = anyio.Event()

    async def loop(stream: FlowStream) -> None:
        nonlocal chunks
        async for _op, item in stream:
            if isinstance(item, Chunk):
                chunks += 1
                first_chunk.set()
        loop_ended.set()

    async def consume() -> None:  # task A: the loop a user wrote, in either form
        if form == "async with":
            async with stream:
                await loop(stream)
        else:
            await loop(stream)

    async with no_task_left():
        with anyio.fail_after(5):  # it used to wait forever
            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                await first_chunk.wait()
                await stream.aclose()  # task B: the stop button
                await loop_ended.wait()
    assert 0 < chunks < 500  # stopped mid-way
    assert model.open_streams == 0
    assert sorted(stream.results.cancelled) == sorted(op.id for op in builder.operations)
    for name in ("a", "b"):
        answer = builder.session.get_branch(name).messages[-1].content
        assert isinstance(answer, AssistantResponseContent)
        assert answer.incomplete


async def test_every_operation_gets_one_terminal_event_under_fail_fast_with_a_slow_consumer() -> None:
    model = ScriptedModel(responses=lambda _: "z " * 20, chunk_size=2)
    builder = _builder(m=model)

    async def quick() -> str:
        return "done"

    async def broken() -> None:
        await anyio.sleep(0.02)
        raise RuntimeError("boom")

    for index in range(4):
        builder.add(quick, name=f"quick-{index}")
        builder.communicate("go", imodel="m", branch=f"talk-{index}")
    # Failures at once while the buffer is full: the first to get through used to cancel the
    # others' blocked `failed` events (and any `completed` still waiting), losing them.
    failing = [builder.add(broken, name=f"broken-{index}") for index in range(3)]
    builder.add(quick, name="after-broken", depends_on=failing)
    terminal: Counter[str] = Counter()
    started: set[str] = set()
    with anyio.fail_after(20), pytest.raises(FlowError) as caught:
        async for op_id, item in flow_stream(builder, buffer=1):
            await anyio.sleep(0.005)  # slower than the producers
            if isinstance(item, FlowEvent):
                if item.kind == "started":
                    started.add(op_id)
                else:
                    terminal[op_id] += 1
    assert set(terminal) == {op.id for op in builder.operations}  # every operation, started or not
    assert set(terminal.values()) == {1}  # exactly once
    assert started <= set(terminal)
    results = caught.value.results
    assert results.failed
    assert set(results.failed) <= {op.id for op in failing}
    reported = len(results) + len(results.failed) + len(results.skipped) + len(results.cancelled)
    assert reported == len(builder.operations)


async def _stray_cancellation() -> None:
    """Raise a cancellation exception that no scope around this task sent (a stale one, re-raised)."""
    caught: BaseException | None = None
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            caught = exc
    assert caught is not None
    raise caught


# A step can raise asyncio.CancelledError() itself only on asyncio (trio's Cancelled has no public
# constructor); a stale cancellation re-raised out of its own scope is the form both backends share.
@pytest.mark.parametrize(
    ("how", "anyio_backend"), [("stale", "asyncio"), ("stale", "trio"), ("raised", "asyncio")]
)
async def test_a_step_raising_a_cancellation_by_itself_is_a_failure_of_that_step(
    how: str, anyio_backend: str
) -> None:
    async def step() -> None:
        if how == "raised":
            raise asyncio.CancelledError()
        await _stray_cancellation()

    builder = _builder(m=ScriptedModel(responses=lambda _: "fine"))
    cancelling = builder.add(step)
    dependent = builder.add(step, depends_on=[cancelling], name="dependent")
    independent = builder.communicate("go", imodel="m", branch="x")
    with anyio.fail_after(10):
        results = await flow(builder, on_error="continue")
    assert results[independent.id].text == "fine"
    assert list(results.failed) == [cancelling.id]
    assert results.skipped == [dependent.id]
    assert results.cancelled == []

    builder = _builder()
    builder.add(step)
    with anyio.fail_after(10), pytest.raises(FlowError, match="step"):
        await flow(builder)


async def test_a_real_cancellation_of_the_flow_still_propagates() -> None:
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    builder = Builder()
    builder.add(forever)
    with anyio.fail_after(5):
        with anyio.move_on_after(10) as scope:
            async with anyio.create_task_group() as group:

                async def stop_soon() -> None:
                    await started.wait()
                    scope.cancel()

                group.start_soon(stop_soon)
                await flow(builder, on_error="continue")
    assert scope.cancelled_caught


async def test_an_error_in_the_async_with_block_propagates_as_it_is_and_stops_the_flow() -> None:
    model = ScriptedModel(responses=lambda _: "w " * 300, chunk_size=2, delay=0.005)
    builder = _builder(slow=model)
    builder.communicate("go", imodel="slow", branch="a")
    async with no_task_left():
        with anyio.fail_after(5), pytest.raises(KeyError, match="mine"):  # not an ExceptionGroup
            async with flow_stream(builder) as stream:
                async for _op, item in stream:
                    if isinstance(item, Chunk):
                        raise KeyError("mine")
    assert model.open_streams == 0
    assert stream.results.cancelled == [builder.operations[0].id]
