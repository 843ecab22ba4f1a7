"""Where a flow's operations run: the contract, and the default (`LocalExecutor`, this process).

An executor does two things for the runner: it makes the model call of a communicate operation
(`invoke`) and it runs a user step (`run_step`). Everything else (the session, the turns, the
events and their order, cancellation) stays with the runner in the driver process, whatever the
executor, so a flow reads the same on every executor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from lionflow.services.chunk import Chunk
from lionflow.services.imodel import iModel
from lionflow.services.response import Response


@runtime_checkable
class CallLike(Protocol):
    """What a turn needs of a model call: its chunks, a way to stop it from any task, and the
    `Response` (partial if it ended early) once it has ended. `ModelCall` is one."""

    @property
    def response(self) -> Response[Any] | None: ...

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...


class Executor(Protocol):
    """Runs the model calls and user steps of a flow (`flow(builder, executor=...)`)."""

    def invoke(self, model: iModel, messages: list[dict[str, Any]], **params: Any) -> CallLike:
        """The model call of one turn: `messages` are provider chat dicts (the branch and the
        instruction), `params` the call's generation parameters."""
        ...

    def run_step(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """Start a user step: what ``function(*args)`` returns (a value, an awaitable, or an async
        generator of items), or the same from wherever the executor runs it."""
        ...


class LocalExecutor:
    """The default: every model call and step runs in this process, on the flow's event loop."""

    def invoke(self, model: iModel, messages: list[dict[str, Any]], **params: Any) -> CallLike:
        return model.invoke(messages, **params)

    def run_step(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return function(*args)

    def __repr__(self) -> str:
        return "LocalExecutor()"


LOCAL = LocalExecutor()
