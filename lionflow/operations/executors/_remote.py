"""The worker side of `RayExecutor`: what one operation's Ray task runs.

The task is a synchronous streaming generator (what a Ray task can be); the operation itself is
async, so it runs on an event loop of its own in a thread of the worker (an anyio blocking portal),
feeding a memory stream. The generator takes from it what is ready within `batch_seconds` and yields
that as one batch: a list of ``(kind, value)`` entries, kinds ``"chunk"`` (a model call's chunk),
``"item"`` (an item of an async-generator step), then one final ``"result"`` (the `Response`, or
the step's value) or ``"error"`` (the exception and the partial `Response`, if any).

When the driver cancels the task (`ray.cancel`), Ray raises `KeyboardInterrupt` in the task's main
thread, but only while Python code runs there (it sets a flag; it sends no signal): so the main thread
never blocks for long (it waits for the next batch in slices of `_SLICE` seconds), and a synchronous
step runs in it, not on the portal's loop. Leaving the portal then cancels the operation, which closes
its provider stream: the upstream sees the client hang up.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from lionflow.errors import LionflowError
from lionflow.services.chunk import Chunk
from lionflow.services.imodel import iModel

Entry = tuple[str, Any]
_FINAL = frozenset({"result", "error"})

# Seconds the task's main thread waits at a time: Ray's cancellation reaches it between two waits.
_SLICE = 0.05
_UNCALLED: Any = object()


class Secret:
    """An API key on its way to a worker: it never shows in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class ModelJob:
    """A communicate operation's model call: the model as its settings (no key), the request."""

    settings: dict[str, Any]
    messages: list[dict[str, Any]]
    params: dict[str, Any]


@dataclass(frozen=True)
class StepJob:
    """A user step: the function, its arguments, and whether the driver reads it as items."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    items: bool


@dataclass(frozen=True)
class Carried:
    """An exception whose class cannot be pickled whole (its constructor takes other arguments
    than its `args`, like `ProviderTimeout`): its class, args and attributes, to rebuild it."""

    cls: type[BaseException]
    args: tuple[Any, ...]
    state: dict[str, Any]

    def revive(self) -> BaseException:
        error = self.cls.__new__(self.cls)
        error.args = self.args
        error.__dict__.update(self.state)
        return error


def portable(error: BaseException) -> BaseException | Carried:
    """What carries `error` to the driver as itself (`revive` there), else a `LionflowError`
    that names it."""
    for carrier in (error, Carried(type(error), error.args, dict(vars(error)))):
        try:
            restored = pickle.loads(pickle.dumps(carrier))
        except Exception:
            continue
        if isinstance(restored, BaseException | Carried):
            return carrier
    return LionflowError(f"{type(error).__name__}: {error}")


def revive(carried: BaseException | Carried) -> BaseException:
    """On the driver: the exception `portable` sent."""
    return carried.revive() if isinstance(carried, Carried) else carried


def _bare(chunk: Chunk) -> Chunk:
    # The SDK event behind a chunk stays here: it may hold a client, and nobody reads it remotely.
    return chunk if chunk.raw_response is None else chunk.model_copy(update={"raw_response": None})


async def _model(job: ModelJob, api_key: str | None, send: MemoryObjectSendStream[Entry]) -> None:
    model = iModel(**job.settings, api_key=api_key) if api_key else iModel(**job.settings)
    call = model.invoke(job.messages, **job.params)
    try:
        async for chunk in call:
            await send.send(("chunk", _bare(chunk)))
    except Exception as exc:
        await call.aclose()
        await send.send(("error", (portable(exc), call.response)))
    else:
        await send.send(("result", call.response))
    finally:
        with anyio.CancelScope(shield=True):
            await call.aclose()
            await model.aclose()


async def _step(job: StepJob, send: MemoryObjectSendStream[Entry], outcome: Any = _UNCALLED) -> None:
    try:
        if outcome is _UNCALLED:
            outcome = job.function(*job.args)
        if inspect.isasyncgen(outcome):
            items = []
            try:
                async for item in outcome:
                    if job.items:
                        await send.send(("item", item))
                    else:
                        items.append(item)
            finally:
                with anyio.CancelScope(shield=True):
                    await outcome.aclose()
            result = None if job.items else items
        else:
            result = await outcome if inspect.isawaitable(outcome) else outcome
    except Exception as exc:
        await send.send(("error", (portable(exc), None)))
    else:
        await send.send(("result", result))


async def _produce(
    job: ModelJob | StepJob, api_key: str | None, send: MemoryObjectSendStream[Entry], outcome: Any
) -> None:
    async with send:
        if isinstance(job, ModelJob):
            await _model(job, api_key, send)
        else:
            await _step(job, send, outcome)


def _is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 (an object whose __call__ is async)
    return any(inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (function, call))


def _wait(future: Future[list[Entry]]) -> list[Entry]:
    """The future's result, waited for in slices, so that Ray's cancellation (a KeyboardInterrupt
    raised between two bytecodes of this thread) is not held back by one long blocking wait."""
    while True:
        try:
            return future.result(timeout=_SLICE)
        except TimeoutError:
            if future.done():
                raise


async def _next_batch(receive: MemoryObjectReceiveStream[Entry], seconds: float) -> list[Entry]:
    """The next entry, and whatever follows it within `seconds` (0: that entry alone)."""
    try:
        batch = [await receive.receive()]
    except anyio.EndOfStream:
        return [("error", (LionflowError("the operation ended without a result"), None))]
    if seconds > 0:
        with anyio.move_on_after(seconds):
            while batch[-1][0] not in _FINAL:
                try:
                    batch.append(await receive.receive())
                except anyio.EndOfStream:
                    break
    return batch


def operation_task(
    job: ModelJob | StepJob, secrets: tuple[Any, ...], batch_seconds: float
) -> Iterator[list[Entry]]:
    """The body of an operation's Ray task (``num_returns="streaming"``): batches of entries.

    `secrets` holds, at most, one object reference to the API key (a `Secret` in the object
    store): the task's arguments never carry the key itself."""
    api_key: str | None = None
    if secrets:
        import ray  # (only in a Ray worker)

        api_key = ray.get(secrets[0]).reveal()
    outcome = _UNCALLED
    if isinstance(job, StepJob) and not _is_async(job.function):
        # A synchronous step runs here, in the main thread, where a cancellation interrupts it (on
        # the portal's loop nothing could); what it returns may still be awaitable or items.
        try:
            outcome = job.function(*job.args)
        except Exception as exc:
            yield [("error", (portable(exc), None))]
            return
        if not (inspect.isawaitable(outcome) or inspect.isasyncgen(outcome)):
            yield [("result", outcome)]
            return
    send, receive = anyio.create_memory_object_stream[Entry](max_buffer_size=1024)
    with anyio.from_thread.start_blocking_portal(backend="asyncio") as portal:
        portal.start_task_soon(_produce, job, api_key, send, outcome)
        while True:
            batch = _wait(portal.start_task_soon(_next_batch, receive, batch_seconds))
            yield batch
            if batch[-1][0] in _FINAL:
                return
