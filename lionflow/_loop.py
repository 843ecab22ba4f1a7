"""One way for a thread to reach the event loop, on either anyio backend."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio.from_thread
import anyio.lowlevel
import sniffio


def thread_caller() -> Callable[[Callable[[], object]], None]:
    """For the running event loop: a function any thread may call to have a callback run soon in
    that loop, without waiting for it. Once the loop has ended, the call does nothing: nobody is
    waiting any more.

    It is each backend's own thread-safe "call soon" (asyncio's ``call_soon_threadsafe``, trio's
    ``run_sync_soon``), found through anyio's backend-neutral token; any other backend gets anyio's
    ``from_thread.run_sync``, which does the same but waits until the loop ran the callback.
    """
    token = anyio.lowlevel.current_token()
    call_soon: Callable[[Callable[[], object]], object] | None = None
    for name in ("call_soon_threadsafe", "run_sync_soon"):
        native = getattr(token.native_token, name, None)
        if callable(native):
            call_soon = cast("Callable[[Callable[[], object]], object]", native)
            break
    if call_soon is None:

        def call_soon(callback: Callable[[], object]) -> object:
            return anyio.from_thread.run_sync(callback, token=token)

    def call(callback: Callable[[], object]) -> None:
        # a closed asyncio loop raises RuntimeError; trio's and anyio's RunFinishedError are ones too
        with contextlib.suppress(RuntimeError):
            call_soon(callback)

    return call


_TASKS: set[Any] = set()  # asyncio keeps only weak references to its tasks


def spawn(work: Callable[[], Awaitable[None]]) -> None:
    """Run `work()` in the running event loop beside the caller, outside its task tree: trio's
    system task, an asyncio task kept referenced until it ends. For work whose owner cannot hold a
    task group across its lifetime (a stream read by an async generator, which must not yield
    inside one); the owner cancels it with a cancel scope inside `work` and waits for its end.
    `work` must not raise: a system task's error would end trio's run."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(work)
        return
    import asyncio

    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work())  # type: ignore[arg-type]
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
