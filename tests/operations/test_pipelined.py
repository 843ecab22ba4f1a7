"""Pipelined flows: item streams between operations, and `for_each` children that start the moment
their item exists (DESIGN: Pipelined flows)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from lionflow import (
    AssistantResponseContent,
    FlowError,
    FlowValidationError,
    LionflowError,
    Response,
    Session,
)
from lionflow.operations import Builder, FlowEvent, flow, flow_stream
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio


class Idea(BaseModel):
    title: str


IDEAS = [Idea(title=f"idea {i}") for i in range(5)]


def ideas_reply(ideas: list[Idea]) -> str:
    return json.dumps({"items": [idea.model_dump() for idea in ideas]})


def slow_ideas(ideas: list[Idea] = IDEAS, gap: float = 0.1, name: str = "ideas") -> ScriptedModel:
    """A model writing `ideas` as a ``list[Idea]`` reply, each element closing `gap` seconds after
    the one before (one chunk per element)."""
    text = ideas_reply(ideas)
    cuts = [text.index("}", text.index(idea.title)) + 1 for idea in ideas]
    pieces = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    replies = iter([pieces])

    def reply(messages: list[dict[str, Any]]) -> str:
        return "".join(next(replies))

    sizes = [len(piece) for piece in pieces]
    # chunk_size=1 with a delay on each element's last character: element i closes at (i + 1) * gap
    ends = {sum(sizes[: i + 1]) - 1 for i in range(len(ideas))}
    return ScriptedModel(responses=reply, chunk_size=1, delay=lambda i: gap if i in ends else 0.0, name=name)


def writer(seconds: float = 0.1, name: str = "writer") -> ScriptedModel:
    """A model that writes a short post about the context it is given, taking about `seconds`."""

    def reply(messages: list[dict[str, Any]]) -> str:
        content: str = messages[-1]["content"]
        return "A post on: " + content.rsplit("idea ", 1)[-1][:1]

    return ScriptedModel(responses=reply, chunk_size=100, delay=seconds, name=name)


def session_with(*models: ScriptedModel) -> Session:
    session = Session()
    for model in models:
        session.services.register(model)
    return session


async def events(builder: Builder, **options: Any) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Every FlowEvent of a run as (operation name, kind), and the results by operation name."""
    seen: list[tuple[str, str]] = []
    names: dict[str, str] = {}
    async with flow_stream(builder, **options) as stream:
        async for op_id, item in stream:
            if isinstance(item, FlowEvent):
                seen.append((item.operation.name, item.kind))
                names[op_id] = item.operation.name
    results = {names.get(op_id, op_id): result for op_id, result in stream.results.items()}
    return seen, results


async def test_children_start_as_items_arrive_not_when_the_upstream_ends() -> None:
    session = session_with(slow_ideas(), writer(0.1))
    builder = Builder(session=session)
    ideas = builder.communicate(
        instruction="List 5 ideas", imodel="ideas", response_format=list[Idea], name="ideas"
    )
    builder.communicate(
        instruction="Write a post about this idea", imodel="writer", for_each=ideas, name="posts"
    )

    seen, results = await events(builder)

    upstream_done = seen.index(("ideas", "completed"))
    assert seen.index(("posts[0]", "completed")) < upstream_done  # a result before the ideas are all out
    for i in range(4):
        assert seen.index((f"posts[{i}]", "started")) < upstream_done
    posts = results["posts"]
    assert [post.text for post in posts] == [f"A post on: {i}" for i in range(5)]
    assert results["ideas"].parsed == IDEAS
    assert [results[f"posts[{i}]"] for i in range(5)] == posts  # each child's own result, by its id


async def test_each_item_is_announced_when_its_element_closes_and_equals_the_final_list() -> None:
    session = session_with(slow_ideas(gap=0.0))
    builder = Builder(session=session)
    builder.communicate(instruction="List ideas", imodel="ideas", response_format=list[Idea], name="ideas")
    text_so_far: list[str] = []
    announced: list[tuple[Idea, str]] = []
    async with flow_stream(builder) as stream:
        async for _, item in stream:
            if isinstance(item, FlowEvent):
                if item.kind == "item":
                    announced.append((item.result, "".join(text_so_far)))
            else:
                text_so_far.append(str(item))

    assert [idea for idea, _ in announced] == IDEAS == stream.results[builder.operations[0].id].parsed
    for idea, text in announced:
        # announced right after the chunk that closed it: the text ends with its closing brace
        assert text.rstrip().endswith("}")
        assert text.count("{") == IDEAS.index(idea) + 2


async def test_an_async_generator_step_is_an_item_stream_and_for_each_gets_each_item() -> None:
    builder = Builder(session=Session())

    async def numbers() -> AsyncIterator[int]:
        for i in range(4):
            yield i

    async def square(n: int) -> int:
        return n * n

    source = builder.add(numbers)
    builder.add(square, for_each=source)
    seen, results = await events(builder)

    assert results["numbers"] == [0, 1, 2, 3]
    assert results["square"] == [0, 1, 4, 9]
    assert [kind for name, kind in seen if name == "numbers"] == [
        "started",
        "item",
        "item",
        "item",
        "item",
        "completed",
    ]
    for i in range(4):
        assert [kind for name, kind in seen if name == f"square[{i}]"] == ["started", "completed"]
    child_ids = [op_id for op_id in results if op_id.startswith("square[")]
    assert len(child_ids) == 4


async def test_child_ids_are_the_parents_id_and_index() -> None:
    builder = Builder(session=Session())

    async def letters() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    async def upper(letter: str) -> str:
        return letter.upper()

    parent = builder.add(upper, for_each=builder.add(letters))
    results = await flow(builder)
    assert results[f"{parent.id}[0]"] == "A"
    assert results[f"{parent.id}[1]"] == "B"
    assert results[parent.id] == ["A", "B"]


async def test_the_parents_items_come_in_item_order_though_children_finish_out_of_order() -> None:
    builder = Builder(session=Session())
    gates = [anyio.Event() for _ in range(3)]
    finished: list[int] = []

    async def numbers() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def slow(n: int) -> int:
        await gates[n].wait()
        finished.append(n)
        if n > 0:
            gates[n - 1].set()  # the last item finishes first, then each one before it
        return n * 10

    async def tens_in_order(n: int) -> int:
        return n

    tens = builder.add(slow, for_each=builder.add(numbers), name="tens")
    echo = builder.add(tens_in_order, for_each=tens, name="echo")
    gates[2].set()
    item_order: list[int] = []
    async with flow_stream(builder) as stream:
        async for _, item in stream:
            if isinstance(item, FlowEvent) and item.kind == "item" and item.operation.name == "tens":
                item_order.append(item.result)

    assert finished == [2, 1, 0]
    assert item_order == [0, 10, 20]
    assert stream.results[tens.id] == [0, 10, 20]
    assert stream.results[echo.id] == [0, 10, 20]


async def test_each_child_turn_has_its_own_branch_forked_from_the_named_one() -> None:
    session = session_with(slow_ideas(IDEAS[:2], gap=0.0), writer(0.0))
    intro = session.create_branch("blog")
    await session.services.get("writer").invoke("warm up")  # (a model call outside the flow)
    builder = Builder(session=session)
    setup = builder.communicate(instruction="Our blog is about gardens", imodel="writer", branch=intro)
    ideas = builder.communicate(instruction="List ideas", imodel="ideas", response_format=list[Idea])
    builder.communicate(
        instruction="Write a post", imodel="writer", for_each=ideas, branch="blog", name="posts"
    )
    _, results = await events(builder)

    assert len(results["posts"]) == 2
    blog = session.get_branch("blog")
    assert len(blog) == 2  # the setup turn only: the children talked on forks of it
    for i in range(2):
        fork = session.get_branch(f"blog[{i}]")
        messages = fork.messages
        assert messages[:2] == blog.messages  # forked after the earlier turn on "blog"
        assert len(messages) == 4
        assert f"idea {i}" in json.dumps(messages[2].content.model_dump(mode="json"))
        answer = messages[3].content
        assert isinstance(answer, AssistantResponseContent)
        assert answer.assistant_response == f"A post on: {i}"
    assert results[setup.name].text


async def test_children_without_a_named_branch_each_get_a_new_one() -> None:
    session = session_with(slow_ideas(IDEAS[:3], gap=0.0), writer(0.0))
    builder = Builder(session=session)
    ideas = builder.communicate(
        instruction="List ideas", imodel="ideas", response_format=list[Idea], name="ideas"
    )
    builder.communicate(instruction="Write a post", imodel="writer", for_each=ideas, name="posts")
    await flow(builder)
    names = sorted(branch.name for branch in session.branches)
    assert names == ["ideas", "posts[0]", "posts[1]", "posts[2]"]  # no empty branch for the parent
    for i in range(3):
        assert len(session.get_branch(f"posts[{i}]")) == 2


async def test_max_concurrent_bounds_the_children() -> None:
    post_writer = writer(0.05)
    session = session_with(slow_ideas(gap=0.0), post_writer)
    builder = Builder(session=session)
    ideas = builder.communicate(instruction="List ideas", imodel="ideas", response_format=list[Idea])
    posts = builder.communicate(instruction="Write a post", imodel="writer", for_each=ideas)
    results = await flow(builder, max_concurrent=2)
    assert len(results[posts.id]) == 5
    assert post_writer.max_open_streams == 2


async def test_with_continue_a_failed_child_fails_the_parent_and_the_others_finish() -> None:
    builder = Builder(session=Session())

    async def numbers() -> AsyncIterator[int]:
        for i in range(4):
            yield i

    async def fragile(n: int) -> int:
        if n == 1:
            raise ValueError("no ones")
        return n

    async def summary(inputs: Any) -> str:
        return "never"

    parent = builder.add(fragile, for_each=builder.add(numbers))
    after = builder.add(summary, depends_on=[parent])
    seen: list[tuple[str, str]] = []
    async with flow_stream(builder, on_error="continue") as stream:
        async for _, item in stream:
            if isinstance(item, FlowEvent):
                seen.append((item.operation.name, item.kind))
    outcome = stream.results
    assert isinstance(outcome.failed[parent.id], LionflowError)
    assert "fragile[1]" in str(outcome.failed[parent.id])
    assert isinstance(outcome.failed[parent.id].__cause__, ValueError)
    assert after.id in outcome.skipped
    assert [outcome[f"{parent.id}[{i}]"] for i in (0, 2, 3)] == [0, 2, 3]
    assert ("fragile", "failed") in seen
    assert ("summary", "skipped") in seen


async def test_with_fail_fast_a_failed_child_stops_the_flow() -> None:
    builder = Builder(session=Session())
    release = anyio.Event()

    async def numbers() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def child(n: int) -> int:
        if n == 0:
            raise ValueError("boom")
        await release.wait()  # never set: cancelled by the failure
        return n

    parent = builder.add(child, for_each=builder.add(numbers))
    with anyio.fail_after(5), pytest.raises(FlowError) as caught:
        await flow(builder)
    results = caught.value.results
    assert isinstance(results.failed[f"{parent.id}[0]"], ValueError)
    assert {f"{parent.id}[1]", f"{parent.id}[2]", parent.id} <= set(results.cancelled)


async def test_a_source_that_fails_midway_skips_the_parent_after_its_children_finish() -> None:
    builder = Builder(session=Session())

    async def numbers() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise RuntimeError("the source broke")

    async def double(n: int) -> int:
        return 2 * n

    source = builder.add(numbers)
    parent = builder.add(double, for_each=source)
    results = await flow(builder, on_error="continue")
    assert isinstance(results.failed[source.id], RuntimeError)
    assert parent.id in results.skipped
    assert results[f"{parent.id}[0]"] == 2
    assert results[f"{parent.id}[1]"] == 4


async def test_no_items_completes_the_parent_with_an_empty_list() -> None:
    builder = Builder(session=Session())

    async def nothing() -> AsyncIterator[int]:
        return
        yield  # an async generator that yields nothing

    async def never(n: int) -> int:
        raise AssertionError("no item, no child")

    parent = builder.add(never, for_each=builder.add(nothing))
    seen, results = await events(builder)
    assert results[parent.name] == []
    assert [kind for name, kind in seen if name == parent.name] == ["started", "completed"]


async def test_a_model_wide_list_response_format_makes_an_item_stream() -> None:
    model = ScriptedModel(responses=[ideas_reply(IDEAS[:2])], name="lister", response_format=list[Idea])
    builder = Builder(session=session_with(model))
    ideas = builder.communicate(instruction="List ideas", imodel="lister")

    async def title(idea: Idea) -> str:
        return idea.title

    titles = builder.add(title, for_each=ideas)
    results = await flow(builder)
    assert results[titles.id] == ["idea 0", "idea 1"]


async def test_leaving_the_loop_cancels_the_children_and_closes_their_streams() -> None:
    post_writer = writer(30.0)
    session = session_with(slow_ideas(gap=0.0), post_writer)
    builder = Builder(session=session)
    ideas = builder.communicate(instruction="List ideas", imodel="ideas", response_format=list[Idea])
    posts = builder.communicate(instruction="Write a post", imodel="writer", for_each=ideas)
    with anyio.fail_after(10):
        async with no_task_left(), flow_stream(builder) as stream:
            async for _, item in stream:
                if (
                    isinstance(item, FlowEvent)
                    and item.operation.name.endswith("[4]")
                    and item.kind == "started"
                ):
                    break
    assert post_writer.open_streams == 0
    assert {f"{posts.id}[{i}]" for i in range(5)} <= set(stream.results.cancelled)
    assert posts.id in stream.results.cancelled


async def test_a_list_reply_that_breaks_midway_fails_the_upstream_after_good_items() -> None:
    text = '{"items": [{"title": "fine"}, {"title": 7}]}'
    session = session_with(ScriptedModel(responses=[text], name="ideas"))
    builder = Builder(session=session)
    ideas = builder.communicate(instruction="List ideas", imodel="ideas", response_format=list[Idea])

    async def title(idea: Idea) -> str:
        return idea.title

    titles = builder.add(title, for_each=ideas)
    results = await flow(builder, on_error="continue")
    assert results[f"{titles.id}[0]"] == "fine"
    assert "1" in str(results.failed[ideas.id])  # the element's index
    assert titles.id in results.skipped


@pytest.mark.parametrize("bad", ["plain_function", "text_reply"])
async def test_for_each_on_an_operation_without_items_is_refused_before_anything_runs(bad: str) -> None:
    model = ScriptedModel(responses=["x"], name="m")
    builder = Builder(session=session_with(model))

    async def one_list() -> list[int]:
        return [1, 2]

    source = (
        builder.add(one_list)
        if bad == "plain_function"
        else builder.communicate(instruction="hi", imodel="m")
    )

    async def step(n: int) -> int:
        return n

    builder.add(step, for_each=source)
    with pytest.raises(FlowValidationError, match="produces no items"):
        await flow(builder)
    assert model.requests == []


async def test_a_for_each_cycle_is_refused() -> None:
    builder = Builder(session=Session())

    async def gen() -> AsyncIterator[int]:
        yield 1

    first = builder.add(gen)
    second = builder.add(gen, for_each=first)
    first.depends_on.append(second.id)
    with pytest.raises(FlowValidationError, match="cycle"):
        await flow(builder)


async def test_a_childs_response_is_the_context_of_the_next_stage() -> None:
    session = session_with(slow_ideas(IDEAS[:2], gap=0.0), writer(0.0))
    builder = Builder(session=session)
    ideas = builder.communicate(instruction="List ideas", imodel="ideas", response_format=list[Idea])
    posts = builder.communicate(instruction="Write a post", imodel="writer", for_each=ideas)

    async def length(post: Response) -> int:
        return len(post.text)

    lengths = builder.add(length, for_each=posts)
    results = await flow(builder)
    assert results[lengths.id] == [len(post.text) for post in results[posts.id]]


async def test_a_child_given_the_whole_source_too_gets_its_item_beside_it() -> None:
    session = session_with(slow_ideas(IDEAS[:2], gap=0.0), writer(0.0))
    builder = Builder(session=session)
    ideas = builder.communicate(
        instruction="List ideas", imodel="ideas", response_format=list[Idea], name="ideas"
    )
    builder.communicate(
        instruction="Write a post", imodel="writer", for_each=ideas, context_from=[ideas], name="posts"
    )
    await flow(builder)
    writer_model = session.services.get("writer")
    assert isinstance(writer_model, ScriptedModel)
    for i, request in enumerate(sorted(writer_model.requests, key=lambda r: r.messages[-1]["content"])):
        prompt = request.messages[-1]["content"]
        assert '"ideas": [' in prompt  # the whole list, as context_from gives it
        assert f'"ideas[{i}]": {{' in prompt  # and this child's own idea, not lost under the same key
        assert f'"title": "idea {i}"' in prompt.split(f'"ideas[{i}]"')[1]
