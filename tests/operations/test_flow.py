"""Workflows: dependency order, interleaved streaming, failures, early exit and backpressure."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from lionflow import AssistantResponseContent, Chunk, FlowValidationError, Response, Session
from lionflow.operations import Builder, FlowError, FlowEvent, Inputs, flow, flow_stream
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio


def _builder(**models: ScriptedModel) -> Builder:
    session = Session()
    for name, model in models.items():
        session.services.register(model, name=name)
    return Builder(session=session)


def _slow(text: str = "one two three four five six", **kwargs: Any) -> ScriptedModel:
    return ScriptedModel(responses=lambda _: text, chunk_size=3, delay=0.01, **kwargs)


async def _collect(stream: Any) -> list[tuple[str, Chunk | FlowEvent]]:
    return [item async for item in stream]


async def test_parallel_operations_interleave_and_keep_their_own_order() -> None:
    builder = _builder(a=_slow("alpha beta gamma delta"), b=_slow("one two three four"))
    first = builder.communicate("go", imodel="a", branch="left")
    second = builder.communicate("go", imodel="b", branch="right")
    items = await _collect(flow_stream(builder))

    def position(op_id: str, kind: str) -> int:
        return next(
            i
            for i, (o, item) in enumerate(items)
            if o == op_id and isinstance(item, FlowEvent) and item.kind == kind
        )

    def first_chunk(op_id: str) -> int:
        return next(i for i, (o, item) in enumerate(items) if o == op_id and isinstance(item, Chunk))

    # both deliver chunks before either has finished: nothing is held back until the end
    assert first_chunk(first.id) < position(second.id, "completed")
    assert first_chunk(second.id) < position(first.id, "completed")
    for op, text in ((first, "alpha beta gamma delta"), (second, "one two three four")):
        streamed = "".join(
            item.data for o, item in items if o == op.id and isinstance(item, Chunk) and item.type == "text"
        )
        assert streamed == text
        assert position(op.id, "started") < first_chunk(op.id) < position(op.id, "completed")
    completed = [item for _, item in items if isinstance(item, FlowEvent) and item.kind == "completed"]
    assert all(isinstance(event.result, Response) for event in completed)
    assert str(completed[0]) == ""  # events print as nothing


async def test_dependencies_run_in_order_and_context_reaches_the_downstream_request() -> None:
    writer = ScriptedModel(
        responses=lambda messages: "the article" if "Context:" in messages[-1]["content"] else "benefit list"
    )
    builder = _builder(gpt=writer)
    research = builder.communicate("List 3 benefits", imodel="gpt", branch="research")
    article = builder.communicate(
        "Write the article", imodel="gpt", branch="article", context_from=[research]
    )
    items = await _collect(flow_stream(builder.operations))
    order = [(o, item.kind) for o, item in items if isinstance(item, FlowEvent)]
    assert order.index((research.id, "completed")) < order.index((article.id, "started"))
    downstream = writer.requests[1].messages[-1]["content"]
    assert downstream == 'Write the article\n\nContext:\n{\n  "research": "benefit list"\n}'
    session = builder.session
    assert [m.chat_msg["content"] for m in session.get_branch("article").messages][-1] == "the article"
    assert len(session.get_branch("research")) == 2


async def test_flow_returns_results_and_function_steps_receive_their_inputs() -> None:
    builder = _builder(gpt=ScriptedModel(responses=lambda _: "four words right here"))
    text = builder.communicate("say something", imodel="gpt")
    seen: list[Inputs] = []

    async def count_words(inputs: Inputs) -> int:
        seen.append(inputs)
        return len(inputs["communicate-1"].text.split())

    async def constant() -> str:
        return "no inputs needed"

    count = builder.add(count_words, depends_on=[text])
    fixed = builder.add(constant)
    results = await flow(builder)
    assert results[count.id] == 4
    assert results[fixed.id] == "no inputs needed"
    assert isinstance(results[text.id], Response)
    assert seen[0][text] is results[text.id]  # by Operation, name or id
    assert list(seen[0]) == ["communicate-1"]
    # an operation without a branch got its own
    assert builder.session.get_branch("communicate-1").messages[-1].role == "assistant"


async def test_fail_fast_cancels_the_rest_and_skips_dependents() -> None:
    broken = ScriptedModel(responses=lambda _: "abcdefgh", chunk_size=2, fail_after=2, max_retries=0)
    builder = _builder(broken=broken, slow=_slow("x " * 200))
    failing = builder.communicate("go", imodel="broken", branch="a")
    dependent = builder.communicate("then", imodel="slow", branch="b", context_from=[failing])
    independent = builder.communicate("meanwhile", imodel="slow", branch="c")
    events: list[tuple[str, str]] = []
    async with no_task_left():
        with pytest.raises(FlowError) as caught:
            async for op_id, item in flow_stream(builder):
                if isinstance(item, FlowEvent):
                    events.append((op_id, item.kind))
    assert (failing.id, "failed") in events
    assert (dependent.id, "skipped") in events
    assert (independent.id, "cancelled") in events
    assert (dependent.id, "started") not in events
    results = caught.value.results
    assert list(results.failed) == [failing.id]
    assert results.skipped == [dependent.id]
    assert results.cancelled == [independent.id]
    # the cancelled turn is recorded as incomplete, and its provider stream is closed
    answer = builder.session.get_branch("c").messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete
    assert builder.session.services.get("slow").adapter.open_streams == 0  # type: ignore[attr-defined]


async def test_continue_lets_independent_operations_finish() -> None:
    broken = ScriptedModel(responses=lambda _: "abcdefgh", chunk_size=2, fail_after=2, max_retries=0)
    builder = _builder(broken=broken, ok=_slow("fine"))
    failing = builder.communicate("go", imodel="broken")
    dependent = builder.communicate("then", imodel="ok", context_from=[failing])
    independent = builder.communicate("meanwhile", imodel="ok")
    results = await flow(builder, on_error="continue")
    assert set(results) == {independent.id}
    assert results[independent.id].text == "fine"
    assert list(results.failed) == [failing.id]
    assert results.skipped == [dependent.id]
    assert results.cancelled == []


async def test_leaving_the_loop_cancels_everything_and_marks_the_turns() -> None:
    model = _slow("y " * 300)
    builder = _builder(slow=model)
    for name in ("a", "b", "c"):
        builder.communicate("go", imodel="slow", branch=name)
    async with no_task_left():
        async with flow_stream(builder) as stream:
            seen = 0
            async for _op, item in stream:
                seen += isinstance(item, Chunk)
                if seen == 10:
                    break
        assert model.open_streams == 0
    for name in ("a", "b", "c"):
        answer = builder.session.get_branch(name).messages[-1].content
        assert isinstance(answer, AssistantResponseContent)
        assert answer.incomplete


async def test_a_dropped_stream_also_cancels_its_operations() -> None:
    model = _slow("z " * 300)
    builder = _builder(slow=model)
    builder.communicate("go", imodel="slow", branch="a")
    async with no_task_left():
        async for _op, item in flow_stream(builder):  # the seed form, no context manager
            if isinstance(item, Chunk):
                break
        for _ in range(10):
            await anyio.sleep(0.01)
    assert model.open_streams == 0
    assert builder.session.get_branch("a").messages[-1].content.incomplete  # type: ignore[union-attr]


async def test_a_slow_consumer_slows_the_producers_instead_of_buffering() -> None:
    model = ScriptedModel(responses=lambda _: "w" * 2000, chunk_size=1)
    builder = _builder(fast=model)
    for name in ("a", "b", "c", "d"):
        builder.communicate("go", imodel="fast", branch=name)
    buffered = []
    async with flow_stream(builder, buffer=16) as stream:
        consumed = 0
        async for _item in stream:
            consumed += 1
            buffered.append(len(stream._runner.channel))
            await anyio.sleep(0.001)  # a consumer slower than the producers
            if consumed == 200:
                break
        assert model.open_streams == 4  # every producer is still streaming: held back, not done
    assert max(buffered) <= 16


async def test_max_concurrent_bounds_the_running_operations() -> None:
    model = _slow("a b c d")
    builder = _builder(m=model)
    for index in range(6):
        builder.communicate(f"go {index}", imodel="m")
    results = await flow(builder, max_concurrent=2)
    assert len(results) == 6
    assert model.max_open_streams == 2


async def test_invalid_workflows_are_refused_before_anything_runs() -> None:
    model = ScriptedModel()
    builder = _builder(gpt=model)
    first = builder.communicate("a", imodel="gpt", name="first")
    second = builder.communicate("b", imodel="gpt", name="second", depends_on=[first])
    first.depends_on.append(second.id)
    with pytest.raises(FlowValidationError, match="cycle through: first, second"):
        flow_stream(builder)

    builder = _builder(gpt=model)
    builder.communicate("a", imodel="gpt", depends_on=["missing-id"], name="lost")
    with pytest.raises(FlowValidationError, match="'lost' depends on 'missing-id'"):
        await flow(builder)

    builder = _builder(gpt=model)
    builder.communicate("a", imodel="claude", name="wrong-model")
    with pytest.raises(FlowValidationError, match="uses model 'claude', which is not registered"):
        flow_stream(builder)
    with pytest.raises(FlowValidationError, match="already exists"):
        builder.communicate("b", imodel="gpt", name="wrong-model")
    with pytest.raises(FlowValidationError, match="on_error"):
        flow_stream(builder, on_error="ignore")  # type: ignore[arg-type]
    assert model.requests == []  # nothing ran
