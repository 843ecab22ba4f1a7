"""`RayExecutor`: a flow's model calls and steps as Ray tasks, on a local cluster the module starts.

The driver keeps the session and the events: the same flow gives the same results, turns and
per-operation order of chunks and events as in-process; leaving the loop cancels the tasks (the
upstream sees the hang-up); a worker that dies fails its operation only; API keys never travel in
a task's arguments.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from lionflow import (
    AssistantResponseContent,
    Chunk,
    LionflowError,
    ProviderTimeout,
    Session,
    StreamInterrupted,
    iModel,
)
from lionflow.operations import Builder, FlowEvent, RayExecutor, communicate, flow, flow_stream
from lionflow.operations.executors.base import LocalExecutor
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply, sse

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ray_runtime")]


class Idea(BaseModel):
    title: str


def _reply(messages: list[dict[str, Any]]) -> str:
    """The scripted model's answer, a function of the request: the same wherever it runs."""
    last = str(messages[-1]["content"])
    if "ideas" in last:
        return json.dumps([{"title": "kites"}, {"title": "tides"}, {"title": "moss"}])
    return f"Reply {len(messages)} to: {last[:24]}"


async def _numbers() -> Any:
    for number in (3, 4):
        yield number


async def _total(inputs: Any) -> int:
    return sum(inputs["numbers"])


def _workflow() -> Builder:
    session = Session()
    session.services.register(ScriptedModel(responses=_reply, name="m", chunk_size=5))
    builder = Builder(session=session)
    first = builder.communicate("Say hi", imodel="m", branch="chat")
    builder.communicate("And again", imodel="m", branch="chat")  # after `first`: same branch
    builder.communicate("Summarise", imodel="m", branch="summary", context_from=[first])
    ideas = builder.communicate("List ideas", imodel="m", branch="ideas", response_format=list[Idea])
    builder.communicate("Write about it", imodel="m", for_each=ideas, name="posts")
    numbers = builder.add(_numbers, name="numbers")
    builder.add(_total, depends_on=[numbers], name="total")
    builder.add(lambda number: number * 10, for_each=numbers, name="tens")
    return builder


def _seen(item: Chunk | FlowEvent) -> Any:
    if isinstance(item, Chunk):
        return (item.type, item.data)
    return (item.kind, _plain(item.result))


def _plain(result: Any) -> Any:
    if isinstance(result, list):
        return [_plain(r) for r in result]
    if isinstance(result, BaseModel) and hasattr(result, "text"):
        return ("response", getattr(result, "text", None), getattr(result, "incomplete", None))
    if isinstance(result, BaseModel):
        return result.model_dump()
    return result


async def _run(builder: Builder, executor: Any) -> tuple[dict[str, list[Any]], dict[str, Any], Session]:
    per_operation: dict[str, list[Any]] = {}
    # By name: the ids are new in each workflow. A for_each child's id is "{parent id}[{index}]".
    names = {op.id: op.name for op in builder.operations}
    async with flow_stream(builder, executor=executor) as stream:
        async for operation_id, item in stream:
            parent, bracket, index = operation_id.partition("[")
            name = names[parent] + bracket + index
            per_operation.setdefault(name, []).append(_seen(item))
    results = {key: _plain(value) for key, value in stream.results.items()}
    return per_operation, results, builder.session


def _last_answer(session: Session, branch: str) -> AssistantResponseContent:
    content = session.get_branch(branch).messages[-1].content
    assert isinstance(content, AssistantResponseContent)
    return content


def _transcripts(session: Session) -> dict[str, list[tuple[str, str]]]:
    return {
        branch.name: [(m["role"], str(m["content"])) for m in branch.chat_messages()]
        for branch in session.branches
    }


async def test_the_same_flow_gives_the_same_results_and_order_on_both_executors() -> None:
    with anyio.fail_after(60):
        local = await _run(_workflow(), LocalExecutor())
        remote = await _run(_workflow(), RayExecutor(batch_ms=5))
    local_events, local_results, local_session = local
    remote_events, remote_results, remote_session = remote
    assert remote_events == local_events  # per operation: started, chunks, items, end, in order
    assert sorted(map(str, remote_results.values())) == sorted(map(str, local_results.values()))
    assert _transcripts(remote_session) == _transcripts(local_session)  # the driver recorded the turns
    assert ("text", "Reply") in remote_events["chat"]
    assert remote_events["posts"][-1][0] == "completed"
    assert len(remote_events["posts"][-1][1]) == 3  # for_each: one remote turn per idea


async def test_each_chunk_its_own_return_gives_the_same_stream() -> None:
    with anyio.fail_after(60):
        local, _, _ = await _run(_workflow(), LocalExecutor())
        remote, _, _ = await _run(_workflow(), RayExecutor(batch_ms=0))
    assert remote == local


async def test_steps_and_model_calls_run_in_ray_workers() -> None:
    driver = os.getpid()

    def where(messages: list[dict[str, Any]]) -> str:
        return f"pid {os.getpid()}"

    async def pid() -> int:
        return os.getpid()

    async def pids() -> Any:
        for _ in range(2):
            yield os.getpid()

    session = Session()
    session.services.register(ScriptedModel(responses=where, name="m"))
    builder = Builder(session=session)
    turn = builder.communicate("Where?", imodel="m")
    step = builder.add(pid)
    items = builder.add(pids)

    async def child_pid(_: int) -> int:
        return os.getpid()

    children = builder.add(child_pid, for_each=items)
    with anyio.fail_after(60):
        results = await flow(builder, executor=RayExecutor())
    remote_pids = {int(results[turn.id].text.split()[1]), results[step.id], *results[items.id]}
    remote_pids |= set(results[children.id])
    assert driver not in remote_pids


def _stream_body(count: int) -> list[bytes]:
    def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": f"w{i} "}) for i in range(count)]
    return sse([*events, event({}, "stop")])


async def test_leaving_the_loop_cancels_the_task_and_the_upstream_sees_the_hang_up(
    server: LoopbackServer,
) -> None:
    key = "sk-ray-test-0123456789"
    server.add(Reply(pieces=_stream_body(400), delay=0.05))
    session = Session()
    session.services.register(
        iModel(provider="openai", model="gpt-4o-mini", api_key=key, base_url=server.url + "/v1", name="gpt")
    )
    builder = Builder(session=session)
    builder.communicate("Tell me a long story", imodel="gpt", branch="story")
    texts: list[str] = []
    with anyio.fail_after(60):
        async with flow_stream(builder, executor=RayExecutor(batch_ms=0)) as stream:
            async for _, item in stream:
                if isinstance(item, Chunk) and item.data:
                    texts.append(item.data)
                    if len(texts) == 3:
                        break
        assert await anyio.to_thread.run_sync(server.requests[0].disconnected.wait, 20)
    received = server.requests[0]
    assert received.headers["authorization"] == f"Bearer {key}"  # the key reached the worker's client
    assert received.pieces_sent < 400
    # The turn was recorded by the driver, partial: what had arrived, marked incomplete.
    answer = _last_answer(session, "story")
    assert answer.incomplete
    assert answer.assistant_response.startswith("".join(texts))
    assert stream.results.cancelled == [builder.operations[0].id]


async def test_a_turn_stopped_from_another_task_cancels_its_task(server: LoopbackServer) -> None:
    server.add(Reply(pieces=_stream_body(400), delay=0.05))
    session = Session()
    model = iModel(provider="openai", model="gpt-4o-mini", api_key="sk-t", base_url=server.url + "/v1")
    turn = communicate(session, "chat", instruction="Go on", imodel=model, executor=RayExecutor(batch_ms=0))
    seen: list[str] = []
    enough = anyio.Event()

    async def consume() -> None:
        async for chunk in turn:
            seen.append(chunk.data)
            if len("".join(seen)) > 6:
                enough.set()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await enough.wait()
            await turn.aclose()  # the stop button, while the other task waits for a batch
        assert await anyio.to_thread.run_sync(server.requests[0].disconnected.wait, 20)
    answer = _last_answer(session, "chat")
    assert answer.incomplete
    assert answer.assistant_response == "".join(seen)


async def test_a_killed_worker_fails_its_operation_and_continue_lets_the_rest_complete(
    tmp_path: Path,
) -> None:
    driver = os.getpid()
    ran = tmp_path / "ran"

    async def doomed() -> str:
        with ran.open("a") as file:
            file.write("x")
        if os.getpid() != driver:  # (never the test process itself)
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"

    async def fine() -> str:
        return "fine"

    session = Session()
    session.services.register(ScriptedModel(responses=_reply, name="m"))
    builder = Builder(session=session)
    dead = builder.add(doomed)
    ok = builder.add(fine)
    after = builder.add(fine, depends_on=[dead], name="after")
    talk = builder.communicate("Say hi", imodel="m")
    with anyio.fail_after(60):
        results = await flow(builder, executor=RayExecutor(), on_error="continue")
    assert isinstance(results.failed[dead.id], LionflowError)
    assert "Ray task failed" in str(results.failed[dead.id])
    assert results[ok.id] == "fine"
    assert results[talk.id].text.startswith("Reply")
    assert results.skipped == [after.id]
    assert ran.read_text() == "x"  # Ray did not retry the step: it ran once


async def test_errors_in_tasks_reach_the_driver_as_themselves() -> None:
    async def broken() -> None:
        raise KeyError("no such thing")

    async def slow() -> None:
        raise ProviderTimeout("idle", 5, provider="scripted")  # (its constructor is not its args)

    session = Session()
    session.services.register(
        ScriptedModel(responses=["abcdefghijkl"], fail_after=2, max_retries=0, name="m")
    )
    builder = Builder(session=session)
    key_error, timeout = builder.add(broken), builder.add(slow)
    cut = builder.communicate("Go", imodel="m", branch="cut")
    with anyio.fail_after(60):
        results = await flow(builder, executor=RayExecutor(), on_error="continue")
    assert isinstance(results.failed[key_error.id], KeyError)
    error = results.failed[timeout.id]
    assert isinstance(error, ProviderTimeout)
    assert (error.phase, error.seconds) == ("idle", 5)
    interrupted = results.failed[cut.id]
    assert isinstance(interrupted, StreamInterrupted)
    # The driver recorded the partial turn: the two chunks that arrived, marked incomplete.
    answer = _last_answer(session, "cut")
    assert (answer.assistant_response, answer.incomplete) == ("abcdefgh", True)


async def test_a_key_travels_by_reference_never_in_the_task_arguments(server: LoopbackServer) -> None:
    key = "sk-secret-never-in-arguments"
    model = iModel(provider="openai", model="gpt-4o-mini", api_key=key, base_url=server.url + "/v1")
    assert key not in repr(model.settings())
    executor = RayExecutor()
    arguments = executor.task_arguments(model, [{"role": "user", "content": "hi"}], {})
    from ray import cloudpickle  # (what Ray serializes task arguments with)

    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    assert key.encode() not in dumps(arguments)
    assert key not in repr(arguments)
    assert key.encode() not in pickle.dumps(model.settings())


def test_the_local_runtime_listens_on_loopback_only() -> None:
    import ray

    (node,) = ray.nodes()  # type: ignore[no-untyped-call]
    assert node["NodeManagerAddress"] == "127.0.0.1"
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_without_ray_installed_the_executor_names_the_extra() -> None:
    script = """
import sys

class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoRay())
import lionflow
from lionflow.operations import RayExecutor
assert "ray" not in sys.modules
try:
    RayExecutor()
except lionflow.MissingDependency as error:
    assert 'pip install "lionflow[ray]"' in str(error), error
    print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
