"""Pipelined flows under stress: event order through a full buffer, every operation's one terminal
event (children included) however the flow stops, and `max_concurrent` slots taken in item order."""

from __future__ import annotations

import gc
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from lionflow import FlowError, Session
from lionflow.operations import Builder, FlowEvent, flow, flow_stream
from lionflow.operations.flow import FlowStream
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio
TERMINAL = {"completed", "failed", "skipped", "cancelled"}


class Idea(BaseModel):
    title: str


def lister(count: int = 4) -> ScriptedModel:
    text = json.dumps({"items": [{"title": f"idea {i} [x]"} for i in range(count)]})
    return ScriptedModel(responses=[text], chunk_size=3, delay=0.001, name="ideas")


def slow_writer() -> ScriptedModel:
    return ScriptedModel(responses=lambda messages: "post " * 50, chunk_size=1, delay=0.01, name="writer")


def posts_flow(*models: ScriptedModel) -> Builder:
    session = Session()
    for model in models:
        session.services.register(model)
    builder = Builder(session=session)
    ideas = builder.communicate(instruction="ideas", imodel="ideas", response_format=list[Idea])
    builder.communicate(instruction="post", imodel="writer", for_each=ideas)
    return builder


def counted(builder: Builder, n: int) -> tuple[Builder, str]:
    """`n` items at once, and a for_each child that finishes after a few scheduler turns, in an order
    unrelated to its index; returns the parent's id."""

    async def numbers() -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def child(i: int) -> int:
        for _ in range((n - i) % 7):
            await anyio.lowlevel.checkpoint()
        return i

    return builder, builder.add(child, for_each=builder.add(numbers)).id


def one_terminal_each(seen: Sequence[tuple[str, str]]) -> Counter[str]:
    """Every operation that started ends exactly once, and none ends twice."""
    terminals: Counter[str] = Counter(op_id for op_id, kind in seen if kind in TERMINAL)
    started = [op_id for op_id, kind in seen if kind == "started"]
    assert len(started) == len(set(started)), seen
    assert all(count == 1 for count in terminals.values()), terminals
    assert set(started) <= set(terminals), set(started) - set(terminals)
    return terminals


def one_outcome_each(stream: FlowStream) -> Counter[str]:
    results = stream.results
    outcomes = Counter([*results, *results.failed, *results.skipped, *results.cancelled])
    assert all(count == 1 for count in outcomes.values()), outcomes
    return outcomes


async def test_a_parents_items_come_in_item_order_through_a_one_item_buffer() -> None:
    # Two children announcing at once both waited for room; the buffer let the later one in first.
    builder, parent = counted(Builder(session=Session()), 30)
    items = []
    async with flow_stream(builder, buffer=1) as stream:
        async for op_id, item in stream:
            if isinstance(item, FlowEvent) and item.kind == "item" and op_id == parent:
                items.append(item.result)
            await anyio.lowlevel.checkpoint()  # a slow consumer: the buffer stays full
    assert items == list(range(30))


async def test_a_parents_item_never_comes_before_its_childs_completed_event() -> None:
    builder, parent = counted(Builder(session=Session()), 30)
    order = []
    async with flow_stream(builder, buffer=1) as stream:
        async for op_id, item in stream:
            if isinstance(item, FlowEvent) and item.kind == "item" and op_id == parent:
                order.append(("item", item.result))
            elif isinstance(item, FlowEvent) and item.kind == "completed" and op_id != parent:
                order.append(("completed", op_id))
            await anyio.lowlevel.checkpoint()
    for i in range(30):
        assert order.index(("completed", f"{parent}[{i}]")) < order.index(("item", i))


async def test_with_fail_fast_a_for_each_whose_source_failed_is_skipped_like_a_dependent() -> None:
    builder = Builder(session=Session())

    async def numbers() -> AsyncIterator[int]:
        await anyio.sleep(0.01)
        if builder:  # (always: the source fails before its first item)
            raise RuntimeError("the source broke")
        yield 1

    async def double(n: int) -> int:
        return 2 * n

    async def after(inputs: Any) -> int:
        return 1

    source = builder.add(numbers)
    each = builder.add(double, for_each=source)
    dependent = builder.add(after, depends_on=[source])
    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await flow(builder)
    results = caught.value.results
    assert dependent.id in results.skipped
    assert each.id in results.skipped  # was: cancelled


async def test_a_stopped_parents_terminal_event_comes_after_its_childrens() -> None:
    builder = Builder(session=Session())

    async def numbers() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def child(n: int) -> int:
        if n == 0:
            await anyio.sleep(0.01)
            raise ValueError("boom")
        await anyio.sleep(5)  # cancelled by the failure
        return n

    builder.add(child, for_each=builder.add(numbers))
    seen = []
    with anyio.fail_after(5), pytest.raises(FlowError):
        async with flow_stream(builder) as stream:
            async for _, item in stream:
                if isinstance(item, FlowEvent) and item.kind in TERMINAL:
                    seen.append((item.operation.name, item.kind))
    assert seen[-1] == ("child", "cancelled")
    assert sorted(seen[-4:-1]) == [
        ("child[0]", "failed"),
        ("child[1]", "cancelled"),
        ("child[2]", "cancelled"),
    ]


@pytest.mark.parametrize("limit", [1, 2])
async def test_children_take_max_concurrent_slots_in_item_order(limit: int) -> None:
    # trio starts tasks in any order: the last item's child ran first and held back every item.
    builder = Builder(session=Session())
    ran: list[int] = []

    async def numbers() -> AsyncIterator[int]:
        for i in range(12):
            yield i

    async def child(n: int) -> int:
        ran.append(n)
        await anyio.sleep(0.001)
        return n

    builder.add(child, for_each=builder.add(numbers))
    with anyio.fail_after(5):
        await flow(builder, max_concurrent=limit)
    assert ran == list(range(12))


@pytest.mark.parametrize("seed", range(16))
async def test_chained_for_each_with_failures_gives_every_operation_one_end(seed: int) -> None:
    rng = random.Random(seed)
    failing = {(stage, rng.randrange(6)) for stage in range(3) if rng.random() < 0.5}
    interrupt = rng.random() < 0.2
    builder = Builder(session=Session())

    async def numbers() -> AsyncIterator[int]:
        for i in range(6):
            if (0, i) in failing:
                raise RuntimeError("the source broke")
            yield i
            await anyio.sleep(rng.random() * 0.002)

    def stage(level: int) -> Any:
        async def step(item: Any) -> Any:
            await anyio.sleep(rng.random() * 0.003)
            index = item if isinstance(item, int) else item[0]
            if (level, index) in failing:
                raise KeyboardInterrupt if interrupt and level == 2 else ValueError(f"stage {level}")
            return (index,)

        step.__name__ = f"stage{level}"
        return step

    first = builder.add(stage(1), for_each=builder.add(numbers))
    builder.add(stage(3), for_each=builder.add(stage(2), for_each=first))
    seen = []
    options: dict[str, Any] = {
        "on_error": rng.choice(["fail_fast", "continue"]),
        "buffer": rng.choice([1, 2, 256]),
        "max_concurrent": rng.choice([None, 1, 2]),
    }
    with anyio.fail_after(10):
        try:
            async with flow_stream(builder, **options) as stream:
                async for op_id, item in stream:
                    if isinstance(item, FlowEvent):
                        seen.append((op_id, item.kind))
                    if rng.random() < 0.3:
                        await anyio.sleep(0.0005)
        except (FlowError, KeyboardInterrupt):
            pass
    assert set(one_terminal_each(seen)) == set(one_outcome_each(stream))


async def test_aclose_from_another_task_mid_fan_out_ends_every_child_once() -> None:
    writer = slow_writer()
    builder = posts_flow(lister(), writer)
    started = set()
    second_child = anyio.Event()
    with anyio.fail_after(5):
        async with (
            no_task_left(),
            anyio.create_task_group() as group,
            flow_stream(builder, buffer=1) as stream,
        ):

            async def stop_soon() -> None:
                await second_child.wait()
                await stream.aclose()

            group.start_soon(stop_soon)
            async for op_id, item in stream:
                if isinstance(item, FlowEvent) and item.kind == "started":
                    started.add(op_id)
                    # (children run side by side: either may report its start first)
                    if sum(op.endswith("]") for op in started) == 2:
                        second_child.set()  # another task closes the flow while this one reads on
                await anyio.sleep(0.001)
    assert writer.open_streams == 0
    assert len(started) >= 4  # the source, the parent and two children
    assert started <= set(one_outcome_each(stream))


async def test_cancelled_from_outside_mid_fan_out_closes_every_childs_stream() -> None:
    writer = slow_writer()
    builder = posts_flow(lister(), writer)
    with anyio.fail_after(5):
        async with no_task_left():
            with anyio.move_on_after(0.1):
                async with flow_stream(builder, buffer=1) as stream:
                    async for _ in stream:
                        pass
    assert writer.open_streams == 0
    assert len(one_outcome_each(stream)) == 2 + 4


async def test_the_seed_form_dropped_mid_fan_out_stops_the_children() -> None:
    writer = slow_writer()
    builder = posts_flow(lister(), writer)
    with anyio.fail_after(5):
        async with no_task_left():
            stream = flow_stream(builder, buffer=1)
            async for _, item in stream:
                if isinstance(item, FlowEvent) and item.kind == "started" and "[1]" in item.operation.name:
                    break
            del stream
            gc.collect()
            for _ in range(50):
                await anyio.sleep(0.001)
    assert writer.open_streams == 0


async def test_a_child_that_closes_the_flow_ends_it_with_one_end_each() -> None:
    builder = Builder(session=Session())
    streams: list[FlowStream] = []

    async def numbers() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    async def child(n: int) -> int:
        if n == 2:
            await streams[0].aclose()
        await anyio.sleep(5)
        return n

    builder.add(child, for_each=builder.add(numbers))
    with anyio.fail_after(5):
        async with flow_stream(builder) as stream:
            streams.append(stream)
            async for _ in stream:
                pass
    assert len(one_outcome_each(stream)) == 2 + 5


async def test_a_for_each_on_a_shared_branch_waits_its_turn_and_forks_see_the_earlier_turns() -> None:
    session = Session()
    numbers = ScriptedModel(responses=[json.dumps({"items": [1, 2, 3]})], chunk_size=2, name="numbers")
    echo = ScriptedModel(responses=lambda messages: f"{len(messages)} messages", name="echo")
    session.services.register(numbers)
    session.services.register(echo)
    builder = Builder(session=session)
    first = builder.communicate(instruction="hello", imodel="echo", branch="main")
    source = builder.communicate(instruction="numbers", imodel="numbers", response_format=list[int])
    posts = builder.communicate(instruction="post", imodel="echo", for_each=source, branch="main")
    last = builder.communicate(instruction="summary", imodel="echo", branch="main")
    seen = []
    async with flow_stream(builder) as stream:
        async for op_id, item in stream:
            if isinstance(item, FlowEvent) and item.kind in ("started", "completed"):
                seen.append((op_id, item.kind))
    results = stream.results
    assert results[source.id].parsed == [1, 2, 3]
    assert [post.text for post in results[posts.id]] == ["3 messages"] * 3  # hello, its answer, the post
    assert results[last.id].text == "3 messages"  # the children's turns are on their own branches
    assert seen.index((first.id, "completed")) < seen.index((posts.id, "started"))
    assert seen.index((posts.id, "completed")) < seen.index((last.id, "started"))
    assert {branch.name for branch in session.branches} >= {"main", "main[0]", "main[1]", "main[2]"}
