"""`RayExecutor` under the conditions production brings: what cannot be pickled, a worker that
dies or hangs, cancellation that must reach the worker, keys in errors, many operations, sharing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from lionflow import (
    AssistantResponseContent,
    AuthenticationError,
    Chunk,
    ConfigurationError,
    FlowError,
    Session,
    iModel,
)
from lionflow.guards import OutputGuard, blocklist
from lionflow.operations import Builder, RayExecutor, flow, flow_stream
from lionflow.operations.executors.base import LocalExecutor
from lionflow.testing import ScriptedModel
from tests.loopback import LoopbackServer, Reply, sse

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ray_runtime")]


def _event(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> Any:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
    }
    if usage is not None:
        body["usage"] = usage
    return body


async def _until(condition: Any) -> None:
    """Wait (the caller bounds it) until `condition()` holds: a file a worker wrote, a request the
    server's thread took; nothing here can set an event."""
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def test_leaving_the_loop_before_the_first_chunk_hangs_up_on_a_silent_upstream(
    server: LoopbackServer,
) -> None:
    # The provider took the request and has not answered yet (a long time to first token, or a
    # hung upstream): the task's main thread is waiting for a batch when Ray's cancellation comes.
    server.add(Reply(pieces=sse([_event({"content": "late"})]), head_delay=60))
    session = Session()
    session.services.register(
        iModel(
            provider="openai", model="gpt-4o-mini", api_key="sk-t", base_url=server.url + "/v1", name="gpt"
        )
    )
    builder = Builder(session=session)
    builder.communicate("Think hard", imodel="gpt")
    with anyio.fail_after(60):
        async with flow_stream(builder, executor=RayExecutor()) as stream:
            async for _ in stream:
                await _until(lambda: server.requests)  # the worker's request is at the provider
                break
        assert await anyio.to_thread.run_sync(server.requests[0].disconnected.wait, 20)


async def test_fail_fast_stops_the_steps_still_running_in_workers(tmp_path: Path) -> None:
    started, stopped = tmp_path / "started", tmp_path / "stopped"

    async def waits() -> str:
        started.write_text("yes")
        try:
            await anyio.sleep(60)
        finally:
            stopped.write_text("yes")
        return "done"

    async def fails() -> None:
        await _until(started.exists)  # (the other step is running in its worker)
        raise ValueError("broken")

    builder = Builder(session=Session())
    builder.add(waits, name="waits")
    builder.add(fails, name="fails")
    with anyio.fail_after(60):
        with pytest.raises(FlowError):
            await flow(builder, executor=RayExecutor())
        await _until(stopped.exists)  # the flow is over: so is its task


async def test_a_cancelled_flow_interrupts_a_synchronous_step(tmp_path: Path) -> None:
    started, stopped = tmp_path / "started", tmp_path / "stopped"

    # CPU work in plain Python (why a step goes to Ray). Sync: it runs in the task's main thread,
    # where Ray's interrupt lands.
    def busy() -> None:
        started.write_text("yes")
        try:
            while True:
                sum(range(1000))
        finally:
            stopped.write_text("yes")

    builder = Builder(session=Session())
    builder.add(busy, name="busy")  # type: ignore[arg-type]  # (the runner takes sync steps too)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(partial(flow, builder, executor=RayExecutor()))
            await _until(started.exists)
            group.cancel_scope.cancel()  # the driver gives up (a timeout, a shutdown)
        await _until(stopped.exists)


async def test_a_cancelled_step_that_never_yields_is_killed_after_the_grace(tmp_path: Path) -> None:
    started, beat = tmp_path / "started", tmp_path / "beat"

    async def hogs() -> None:  # async, but never gives its loop a turn: no interrupt reaches it
        started.write_text(str(os.getpid()))
        while True:
            beat.write_text(str(time.monotonic()))
            sum(range(10000))

    builder = Builder(session=Session())
    builder.add(hogs, name="hogs")
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(partial(flow, builder, executor=RayExecutor(cancel_grace=1)))
            await _until(started.exists)
            group.cancel_scope.cancel()
        pid = int(started.read_text())
        await _until(lambda: not _alive(pid))  # its worker was killed: nothing runs it any more


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # (a killed worker may linger as a zombie of the raylet until reaped)
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" not in status.read_text()


async def test_a_model_whose_guard_cannot_be_pickled_fails_saying_so() -> None:
    lock = threading.Lock()

    def check(text: str) -> bool:
        with lock:
            return True

    session = Session()
    session.services.register(ScriptedModel(responses=["hi"], name="m", guards=[OutputGuard(check)]))
    builder = Builder(session=session)
    op = builder.communicate("Go", imodel="m", name="guarded")
    with anyio.fail_after(30):
        results = await flow(builder, executor=RayExecutor(), on_error="continue")
    error = results.failed[op.id]
    assert isinstance(error, ConfigurationError)
    assert "guards" in str(error)
    assert "_thread.lock" in str(error)
    assert "\x1b[" not in str(error)  # not Ray's coloured report, a page long
    assert len(str(error)) < 500


async def test_a_step_capturing_what_cannot_be_pickled_fails_naming_it() -> None:
    lock = threading.Lock()

    async def locked() -> int:
        with lock:
            return 1

    builder = Builder(session=Session())
    builder.add(locked, name="locked_step")
    with anyio.fail_after(30), pytest.raises(FlowError) as caught:
        await flow(builder, executor=RayExecutor())
    assert "locked_step" in str(caught.value)
    cause = caught.value.__cause__
    assert isinstance(cause, ConfigurationError)
    assert "locked" in str(cause)
    assert "_thread.lock" in str(cause)
    assert "\x1b[" not in str(cause)
    assert len(str(cause)) < 500


def test_batch_ms_is_a_number_of_milliseconds() -> None:
    bad: list[Any] = [float("nan"), -1, "10", True]
    for value in bad:
        with pytest.raises(ConfigurationError):
            RayExecutor(batch_ms=value)


async def test_an_unauthorised_key_is_absent_from_the_error(server: LoopbackServer) -> None:
    key = "sk-never-in-errors-987654321"
    server.add(
        Reply.json(
            401,
            {
                "error": {
                    "message": "Incorrect API key provided: sk-nev***4321",
                    "type": "invalid_request_error",
                }
            },
        )
    )
    server.add(
        Reply.json(
            401,
            {
                "error": {
                    "message": "Incorrect API key provided: sk-nev***4321",
                    "type": "invalid_request_error",
                }
            },
        )
    )
    session = Session()
    session.services.register(
        iModel(provider="openai", model="gpt-4o-mini", api_key=key, base_url=server.url + "/v1", name="gpt")
    )
    builder = Builder(session=session)
    op = builder.communicate("Hi", imodel="gpt")
    with anyio.fail_after(30):
        results = await flow(builder, executor=RayExecutor(), on_error="continue")
    error = results.failed[op.id]
    from ray import cloudpickle

    assert isinstance(error, AuthenticationError)
    assert key not in repr(error)
    assert key not in str(error)
    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    assert key.encode() not in dumps(error)  # nor in what came back through Ray


async def test_reasoning_tool_calls_usage_and_a_retry_come_back_as_in_process(server: LoopbackServer) -> None:
    events = [
        _event({"role": "assistant", "content": ""}),
        _event({"reasoning_content": "think"}),
        _event({"content": "Hel"}),
        _event({"content": "lo"}),
        _event(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a"'},
                    }
                ]
            }
        ),
        _event({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        _event({}, "tool_calls"),
        _event({}, usage={"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}),
    ]
    out = []
    for executor in (LocalExecutor(), RayExecutor(batch_ms=0), RayExecutor(batch_ms=1e6)):
        server.add(
            Reply(
                status=500,
                pieces=[b'{"error": {"message": "boom"}}'],
                headers={"content-type": "application/json"},
                chunked=False,
            )
        )
        server.add(Reply(pieces=sse(events)))
        session = Session()
        session.services.register(
            iModel(
                provider="openai",
                model="gpt-4o-mini",
                api_key="sk-x",
                base_url=server.url + "/v1",
                name="gpt",
                retry_initial_delay=0.01,
            )
        )
        builder = Builder(session=session)
        op = builder.communicate(
            "Hi",
            imodel="gpt",
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        )
        seen: list[Any] = []
        with anyio.fail_after(30):
            async with flow_stream(builder, executor=executor) as stream:
                async for _, item in stream:
                    if isinstance(item, Chunk):
                        seen.append(item.model_dump(exclude={"raw_response"}))
                    else:
                        seen.append(item.kind)
        response = stream.results[op.id]
        out.append((seen, response.model_dump(exclude={"duration", "time_to_first_chunk"})))
    assert out[1] == out[0]
    assert out[2] == out[0]


async def test_more_operations_than_cpus_queue_without_deadlock() -> None:
    async def items() -> Any:
        for i in range(80):
            yield i

    builder = Builder(session=Session())
    a = builder.add(items, name="a")
    b = builder.add(items, name="b")
    builder.add(lambda x: x + 1, for_each=a, name="ca")
    builder.add(lambda x: x + 1, for_each=b, name="cb")
    with anyio.fail_after(120):
        results = await flow(builder, executor=RayExecutor(batch_ms=0))
    assert len(results) >= 4


async def test_two_flows_share_one_executor() -> None:
    executor = RayExecutor()

    async def one() -> int:
        await anyio.sleep(0.1)
        return 1

    async def run(out: list[Any]) -> None:
        builder = Builder(session=Session())
        for i in range(3):
            builder.add(one, name=f"s{i}")
        out.append(await flow(builder, executor=executor))

    out: list[Any] = []
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(run, out)
            group.start_soon(run, out)
    assert len(out) == 2


def _python(script: str, **environment: str) -> str:
    """Run `script` in a fresh interpreter (a process without this module's runtime); its output."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | environment
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_shutdown_stops_only_a_runtime_the_executor_started() -> None:
    import ray

    RayExecutor().shutdown()  # this module's runtime was started by another: left running
    assert ray.is_initialized()
    script = """
import ray
from lionflow.operations import RayExecutor

executor = RayExecutor(num_cpus=1, init_options={"object_store_memory": 80 * 1024 * 1024})
executor.start()
executor.shutdown()
print(ray.is_initialized())
"""
    assert _python(script) == "False"


class _Pick(BaseModel):
    title: str


def _guarded_reply(messages: list[dict[str, Any]]) -> str:
    # (a function of the request: a list of replies would start over in every task)
    return '{"title": "kites"}' if "Pick" in str(messages[-1]["content"]) else "fine words then SECRET stuff"


def _guarded_session() -> tuple[Session, Builder]:
    session = Session()
    no_secret = OutputGuard(blocklist(["SECRET"]), name="no-secret", window=8, overlap=6)
    session.services.register(
        ScriptedModel(
            responses=_guarded_reply,
            reasoning="thinking it over",
            tool_calls=[{"name": "lookup", "arguments": {"q": "x"}, "id": "t1"}],
            name="m",
            guards=[no_secret],
            chunk_size=3,
        )
    )
    builder = Builder(session=session)
    builder.communicate("Pick", imodel="m", branch="a", response_format=_Pick)
    builder.communicate("Talk", imodel="m", branch="a")  # stopped by the guard: content_filter
    return session, builder


async def test_guards_reasoning_tools_and_structured_output_match_in_process() -> None:
    runs = []
    for executor in (LocalExecutor(), RayExecutor(batch_ms=3)):
        session, builder = _guarded_session()
        seen: dict[int, list[Any]] = {}
        position = {op.id: i for i, op in enumerate(builder.operations)}
        with anyio.fail_after(60):
            async with flow_stream(builder, executor=executor) as stream:
                async for op_id, item in stream:
                    dumped = (
                        item.model_dump(exclude={"raw_response"}) if isinstance(item, Chunk) else item.kind
                    )
                    seen.setdefault(position[op_id], []).append(dumped)
        answers = [
            (m.content.assistant_response, m.content.incomplete, m.metadata)
            for m in session.get_branch("a").messages
            if isinstance(m.content, AssistantResponseContent)
        ]
        results = [stream.results[op.id] for op in builder.operations]
        runs.append(
            (seen, answers, [r.model_dump(exclude={"duration", "time_to_first_chunk"}) for r in results])
        )
    assert runs[1] == runs[0]
    assert runs[0][2][1]["finish_reason"] == "content_filter"
    assert runs[0][2][0]["text"] == '{"title": "kites"}'
