"""Workflow regressions from the review of flow_stream on anyio; each test failed before its fix.

- `aclose()` called from inside one of the flow's own steps waited (shielded) for that very step;
- a step raising a BaseException that is not the flow's cancellation escaped the runner (trio died
  with TrioInternalError, asyncio lost the terminal events), and SystemExit came out of `flow()`
  wrapped in two exception groups;
- a bare ``async for`` whose task was cancelled left the operations running (until gc, if ever);
- two tasks reading one stream: one of them waited forever;
- generated operation names collided ('<lambda>' twice, or with an explicit name);
- operations sharing a branch took turns in dependency order, not in the order they were added.

Hangs are bounded: every wait is under `anyio.fail_after`, and the one that used to wait shielded
(where no deadline reaches) is let go by a watchdog, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest

from lionflow import AssistantResponseContent, Chunk, Session
from lionflow.errors import FlowValidationError, LionflowError, StreamConsumed
from lionflow.operations import Builder, FlowEvent, FlowStream, flow, flow_stream
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio

TERMINAL = ("completed", "failed", "skipped", "cancelled")
Form = Literal["async for", "async with"]
FORMS = ["async for", "async with"]


def _builder(**models: ScriptedModel) -> Builder:
    session = Session()
    for name, model in models.items():
        session.services.register(model, name=name)
    return Builder(session=session)


def _slow() -> ScriptedModel:
    return ScriptedModel(responses=lambda _: "y " * 500, chunk_size=2, delay=0.01)


async def _consume(stream: FlowStream, form: Form, seen: list[tuple[str, Any]]) -> None:
    if form == "async with":
        async with stream:
            async for pair in stream:
                seen.append(pair)
    else:
        async for pair in stream:
            seen.append(pair)


def _terminal_counts(seen: list[tuple[str, Any]]) -> Counter[str]:
    return Counter(op_id for op_id, item in seen if isinstance(item, FlowEvent) and item.kind in TERMINAL)


def _assert_stopped_mid_turn(builder: Builder, model: ScriptedModel, branches: tuple[str, ...]) -> None:
    assert model.open_streams == 0
    for name in branches:
        answer = builder.session.get_branch(name).messages[-1].content
        assert isinstance(answer, AssistantResponseContent)
        assert answer.incomplete


@asynccontextmanager
async def _let_go_if_deadlocked(stream: FlowStream, seconds: float = 5) -> AsyncIterator[None]:
    """An aclose() that waits for itself waits shielded, where no deadline reaches. After `seconds`
    this lets it go (the one reach into the stream's insides, only so the suite goes on) and fails."""
    deadlocked = False

    async def watchdog() -> None:
        nonlocal deadlocked
        await anyio.sleep(seconds)
        deadlocked = True
        runner = stream._runner
        runner.stop()
        if runner.finished is not None:
            runner.finished.set()

    async with anyio.create_task_group() as group:
        group.start_soon(watchdog)
        yield
        group.cancel_scope.cancel()
    assert not deadlocked, "aclose() from inside a step waited for that step"


@pytest.mark.parametrize("form", FORMS)
async def test_aclose_from_inside_a_step_stops_the_flow_without_waiting_for_itself(form: Form) -> None:
    model = _slow()
    builder = _builder(slow=model)
    for name in ("a", "b"):
        builder.communicate("go", imodel="slow", branch=name)
    streams: list[FlowStream] = []
    first_chunk = anyio.Event()
    after_aclose: list[str] = []

    async def stop_button() -> str:  # a step of the flow that stops the flow
        await first_chunk.wait()
        await streams[0].aclose()
        after_aclose.append("ran on")  # it is cancelled with the others: never reached
        return "stopped"

    builder.add(stop_button, name="stop")
    stream = flow_stream(builder)
    streams.append(stream)

    async def consume() -> None:
        async def loop() -> None:
            async for _, item in stream:
                if isinstance(item, Chunk):
                    first_chunk.set()

        if form == "async with":
            async with stream:
                await loop()
        else:
            await loop()

    async with no_task_left(), _let_go_if_deadlocked(stream):
        with anyio.fail_after(10):
            await consume()
    assert after_aclose == []
    # the results say what happened: all three were cancelled, none completed
    assert sorted(stream.results.cancelled) == sorted(op.id for op in builder.operations)
    assert dict(stream.results) == {}
    _assert_stopped_mid_turn(builder, model, ("a", "b"))


class _OwnBase(BaseException):
    pass


RAISERS: dict[str, Callable[[], BaseException]] = {
    "own BaseException": lambda: _OwnBase("boom"),
    "GeneratorExit": GeneratorExit,
    "asyncio.CancelledError": asyncio.CancelledError,  # on trio, not even a cancellation
}


@pytest.mark.parametrize("kind", list(RAISERS))
@pytest.mark.parametrize("form", [*FORMS, "flow()"])
async def test_a_step_raising_another_base_exception_is_that_steps_failure(kind: str, form: str) -> None:
    builder = _builder(m=ScriptedModel(responses=lambda _: "fine", chunk_size=1, delay=0.001))
    for name in ("a", "b"):
        builder.communicate("go", imodel="m", branch=name)

    async def bad() -> None:
        await anyio.lowlevel.checkpoint()
        raise RAISERS[kind]()

    failing = builder.add(bad, name="bad")
    seen: list[tuple[str, Any]] = []
    async with no_task_left():
        with anyio.fail_after(5):
            if form == "flow()":
                results = await flow(builder, on_error="continue")
            else:
                stream = flow_stream(builder, on_error="continue")
                await _consume(stream, form, seen)  # type: ignore[arg-type]
                results = stream.results
    if form != "flow()":
        assert _terminal_counts(seen) == dict.fromkeys((op.id for op in builder.operations), 1)
    error = results.failed[failing.id]
    assert isinstance(error, LionflowError)
    assert type(error.__cause__).__name__ == type(RAISERS[kind]()).__name__
    assert len(results) == 2  # the others completed


@pytest.mark.parametrize("form", [*FORMS, "flow()"])
async def test_a_step_raising_system_exit_stops_the_flow_and_reaches_the_consumer_as_it_is(form: str) -> None:
    both_asked = anyio.Event()
    asked: list[object] = []

    def respond(messages: list[dict[str, Any]]) -> str:
        asked.append(messages)
        if len(asked) == 2:
            both_asked.set()
        return "y " * 500

    model = ScriptedModel(responses=respond, chunk_size=2, delay=0.01)
    builder = _builder(slow=model)
    for name in ("a", "b"):
        builder.communicate("go", imodel="slow", branch=name)

    async def quit_now() -> None:
        await both_asked.wait()  # both turns are under way
        raise SystemExit(3)

    builder.add(quit_now, name="quit")

    async def run() -> None:
        if form == "flow()":
            await flow(builder, on_error="continue")
        else:
            await _consume(flow_stream(builder, on_error="continue"), form, [])  # type: ignore[arg-type]

    async with no_task_left():
        with anyio.fail_after(5), pytest.raises(SystemExit) as raised:  # not in an exception group
            await run()
    assert raised.value.code == 3
    _assert_stopped_mid_turn(builder, model, ("a", "b"))  # even under "continue": it is for the program


async def test_a_cancelled_consumer_of_the_bare_form_stops_the_flow_before_going_on() -> None:
    model = _slow()
    builder = _builder(slow=model)
    for name in ("a", "b"):
        builder.communicate("go", imodel="slow", branch=name)
    first = anyio.Event()

    async def consume() -> None:
        async for _ in flow_stream(builder):
            first.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await first.wait()
            group.cancel_scope.cancel()
    # at once, without gc: both turns were stopped and recorded as incomplete
    _assert_stopped_mid_turn(builder, model, ("a", "b"))


async def test_a_second_task_reading_the_same_stream_is_refused_instead_of_waiting_forever() -> None:
    builder = _builder(slow=_slow())
    builder.communicate("go", imodel="slow", branch="a")
    stream = flow_stream(builder)

    async def read() -> None:
        async for _ in stream:
            pass

    with anyio.fail_after(5), pytest.RaisesGroup(pytest.RaisesExc(StreamConsumed, match="one reader")):
        async with stream, anyio.create_task_group() as group:
            group.start_soon(read)
            group.start_soon(read)


def test_generated_operation_names_never_collide() -> None:
    builder = _builder(m=ScriptedModel())

    async def fetch() -> int:
        return 1

    lambdas = [builder.add(lambda: anyio.sleep(1)), builder.add(lambda: anyio.sleep(2))]
    assert [op.name for op in lambdas] == ["<lambda>", "<lambda>-2"]
    assert [builder.add(fetch).name, builder.add(fetch).name] == ["fetch", "fetch-2"]
    named = builder.communicate("a", imodel="m", name="communicate-6")
    unnamed = builder.communicate("b", imodel="m")  # its generated name would be communicate-6
    assert (named.name, unnamed.name) == ("communicate-6", "communicate-6-2")
    # an explicit name an earlier operation only had as a generated one goes to the explicit one
    on_chat = builder.communicate("c", imodel="m", branch="chat")
    explicit = builder.add(fetch, name="chat")
    assert (explicit.name, on_chat.name) == ("chat", "chat-2")
    names = [op.name for op in builder.operations]
    assert len(set(names)) == len(names)
    with pytest.raises(FlowValidationError, match="'chat' already exists"):
        builder.add(fetch, name="chat")  # two explicit names: that is the caller's error


async def test_a_shared_branch_takes_turns_in_the_order_operations_were_added() -> None:
    model = ScriptedModel(responses=lambda m: "A" + str(m[-1]["content"])[1:], chunk_size=1, delay=0.001)
    builder = _builder(m=model)
    ready = anyio.Event()

    async def prepare() -> str:
        await ready.wait()
        return "prep"

    prep = builder.add(prepare, name="prep")
    first = builder.communicate("Q1", imodel="m", branch="chat", depends_on=[prep])
    second = builder.communicate("Q2", imodel="m", branch="chat")  # ready long before the first
    seen: list[tuple[str, Any]] = []
    with anyio.fail_after(5):
        async with flow_stream([first, second, prep]) as stream:
            async for pair in stream:
                seen.append(pair)
                if pair[0] == prep.id and isinstance(pair[1], FlowEvent):
                    ready.set()
    messages = [m.chat_msg["content"] for m in builder.session.get_branch("chat").messages]
    assert messages == ["Q1", "A1", "Q2", "A2"]


async def test_an_explicit_dependency_against_the_order_of_addition_wins_and_the_rest_keeps_it() -> None:
    model = ScriptedModel(responses=lambda m: "A" + str(m[-1]["content"])[1:], chunk_size=1)
    builder = _builder(m=model)
    first = builder.communicate("Q1", imodel="m", branch="chat")
    builder.communicate("Q2", imodel="m", branch="chat")
    third = builder.communicate("Q3", imodel="m", branch="chat")
    first.depends_on.append(third.id)  # the first added needs the last: no deadlock
    with anyio.fail_after(5):
        await flow(builder)
    messages = [m.chat_msg["content"] for m in builder.session.get_branch("chat").messages]
    # the branch's next turn goes to the earliest-added operation that can run
    assert messages == ["Q2", "A2", "Q3", "A3", "Q1", "A1"]
