"""How a `communicate` turn runs: its request on the branch as it was, then the turn recorded whole.

`Turn` (`lionflow.operations.communicate`) drives `run_turn` and shares `TurnState` with it, so
that a Turn dropped, stopped or closed from another task ends the run at once and still records it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import anyio

from lionflow.operations.executors.base import CallLike, Executor
from lionflow.services.chunk import Chunk
from lionflow.services.driver import close_when_dropped
from lionflow.services.imodel import iModel
from lionflow.services.response import Response
from lionflow.session.branch import Branch
from lionflow.session.messages import AssistantResponseContent, Message
from lionflow.session.session import Session


class TurnState:
    """Shared by a Turn and its driver, so that dropping the Turn finalizes the driver at once."""

    __slots__ = (
        "call",
        "close_dropped",
        "done",
        "error",
        "instruction",
        "response",
        "response_message",
        "scope",
        "stop_requested",
    )

    def __init__(self, instruction: Message) -> None:
        self.instruction = instruction
        self.call: CallLike | None = None
        self.response: Response | None = None
        self.response_message: Message | None = None
        self.error: BaseException | None = None
        self.scope: anyio.CancelScope | None = None  # around the driver's wait before the request
        self.stop_requested = False
        self.done: anyio.Event | None = None  # set when the turn has ended and been recorded
        self.close_dropped: Callable[[AsyncGenerator[Any, None]], None] | None = None

    def stop(self) -> None:
        self.stop_requested = True
        if self.scope is not None:
            self.scope.cancel()


async def run_turn(
    session: Session,
    branch: Branch,
    model: iModel,
    params: dict[str, Any],
    state: TurnState,
    executor: Executor,
) -> AsyncGenerator[Chunk, None]:
    state.done = anyio.Event()
    state.close_dropped = close_when_dropped()
    instruction = state.instruction
    call: CallLike | None = None
    ending: BaseException | None = None
    try:
        try:
            with anyio.CancelScope() as scope:  # aclose() from another task may stop the turn here
                state.scope = scope
                try:
                    # a store that cannot be written fails before any request
                    await session.check_store(branch)
                except Exception:
                    if not scope.cancel_called:  # (else the check reported the stop as its own error)
                        raise
            state.scope = None
            if not scope.cancel_called:
                # The request carries the branch as it is now; the turn joins the branch only when
                # it ends, whole, so a turn running at the same time lands before or after it.
                call = executor.invoke(model, [*branch.chat_messages(), instruction.chat_msg], **params)
                state.call = call
                async for chunk in call:
                    yield chunk
            # else stopped before the request: recorded below as an empty, incomplete answer, as a
            # turn stopped while its call waits for the model's slot is
        except BaseException as exc:
            ending = exc
            if not isinstance(exc, GeneratorExit | anyio.get_cancelled_exc_class()):
                state.error = exc
            raise
        finally:
            # An error before the request (the store's check, the arguments) fails the turn with
            # nothing recorded; a stop or a cancellation before it records an empty answer.
            if call is not None or not isinstance(ending, Exception):
                await record_turn(session, branch, model, call, state, ended_early=ending is not None)
    finally:
        state.scope = None
        state.done.set()


async def record_turn(
    session: Session,
    branch: Branch,
    model: iModel,
    call: CallLike | None,
    state: TurnState,
    *,
    ended_early: bool,
) -> None:
    """Record the turn, whole, in the branch and the store, however it ended."""
    response = None
    if call is not None:
        # Close the model call first: left early, it builds its partial Response only on closing.
        with anyio.CancelScope(shield=True):
            await call.aclose()
        response = call.response
    if response is None:  # closed before the model was called: an empty, incomplete answer
        response = Response(
            model=model.model, provider=model.provider, incomplete=True, finish_reason="cancelled"
        )
    state.response = response
    # A guard that stopped the answer is named in the record (the text is what it let through).
    guard = response.metadata.get("guard")
    answer = Message(
        content=AssistantResponseContent.from_response(response), metadata={"guard": guard} if guard else {}
    )
    state.response_message = answer
    # A turn that already ends with its own error, cancellation or stop gives its caller that one;
    # a store error is then kept by the session for `flush()`. A completed turn that could not be
    # stored raises it (the turn stays in memory).
    # Durable before the turn counts as over, even when it ends by cancellation.
    with anyio.CancelScope(shield=True):
        await session.add_turn(
            branch, state.instruction, answer, raise_errors=not (ended_early or state.stop_requested)
        )
