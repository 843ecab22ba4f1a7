"""`communicate`: one conversation turn on a branch: instruction in, streamed answer out, both kept."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping
from types import TracebackType
from typing import Any

import anyio
from pydantic import BaseModel

from lionflow.errors import ConfigurationError, StreamClosed, StreamConsumed
from lionflow.services.call import ModelCall
from lionflow.services.chunk import Chunk
from lionflow.services.imodel import iModel
from lionflow.services.response import Response
from lionflow.session.branch import Branch
from lionflow.session.messages import AssistantResponseContent, InstructionContent, Message
from lionflow.session.session import Session
from lionflow.session.stores.base import wait_for

__all__ = ["Turn", "communicate"]

_TURN_KEYS = frozenset({"instruction", "imodel", "context", "guidance", "branch"})


def _resolve_model(session: Session, imodel: iModel | str | None) -> iModel:
    if isinstance(imodel, iModel):
        return imodel
    return session.services.get(imodel)


def _resolve_branch(session: Session, branch: Branch | str | None) -> Branch:
    if branch is None:
        branches = session.branches
        return branches[0] if branches else session.create_branch("main")
    if isinstance(branch, str) and not session.has_branch(branch):
        return session.create_branch(branch)
    return session.get_branch(branch)


class _TurnState:
    """Shared by a Turn and its driver, so that dropping the Turn finalizes the driver at once."""

    __slots__ = ("call", "error", "instruction", "response", "response_message")

    def __init__(self) -> None:
        self.call: ModelCall | None = None
        self.instruction: Message | None = None
        self.response: Response | None = None
        self.response_message: Message | None = None
        self.error: BaseException | None = None


async def _run_turn(
    session: Session,
    branch: Branch,
    model: iModel,
    instruction: Message,
    params: dict[str, Any],
    state: _TurnState,
) -> AsyncGenerator[Chunk, None]:
    # The instruction joins the branch now, so the branch reads right during the turn; the store gets
    # the instruction and the answer together when the turn ends, in one transaction.
    history = branch.chat_messages()
    call = model.invoke([*history, instruction.chat_msg], **params)  # may refuse: nothing recorded yet
    placement = session._place(branch, instruction)
    state.instruction = instruction
    state.call = call
    ending: BaseException | None = None
    try:
        async for chunk in call:
            yield chunk
    except BaseException as exc:
        ending = exc
        if not isinstance(exc, GeneratorExit | anyio.get_cancelled_exc_class()):
            state.error = exc
        raise
    finally:
        # Close the model call first: left early, it builds its partial Response only on closing.
        with anyio.CancelScope(shield=True):
            await call.aclose()
        response = call.response
        if response is None:  # closed before the model was called: an empty, incomplete answer
            response = Response(
                model=model.model, provider=model.provider, incomplete=True, finish_reason="cancelled"
            )
        state.response = response
        answer = Message(content=AssistantResponseContent.from_response(response))
        state.response_message = answer
        placements = [p for p in (placement, session._place(branch, answer)) if p is not None]
        future = session._persist([instruction, answer], placements)
        if future is not None:
            # Durable before the turn counts as over, even when it ends by cancellation.
            with anyio.CancelScope(shield=True):
                try:
                    await wait_for(future)
                except Exception:
                    if ending is None:
                        raise  # a completed turn that could not be stored is an error
                    # the turn already ends with its own error; the session keeps this one for flush()


class Turn:
    """One `communicate` turn: await it for the `Response`, or iterate it for `Chunk`s.

    Either way the instruction and the answer are recorded in the branch (and, with a store, written
    in one transaction when the turn ends). An error or cancellation records the partial answer with
    ``incomplete=True`` and is re-raised. `instruction` and `response_message` are the two messages.
    """

    def __init__(
        self, session: Session, branch: Branch, model: iModel, instruction: Message, params: dict[str, Any]
    ) -> None:
        self.session = session
        self.branch = branch
        self.model = model
        self._state = _TurnState()
        self._state.instruction = instruction
        self._args = (session, branch, model, instruction, params)
        self._gen: AsyncGenerator[Chunk, None] | None = None
        self._closed = False
        structure = params.get("response_format")
        self._structured = isinstance(structure, type) and issubclass(structure, BaseModel)

    @property
    def instruction(self) -> Message:
        assert self._state.instruction is not None
        return self._state.instruction

    @property
    def response(self) -> Response | None:
        """The Response once the turn has ended (partial if it failed), else None."""
        return self._state.response

    @property
    def response_message(self) -> Message | None:
        """The assistant message recorded in the branch, once the turn has ended."""
        return self._state.response_message

    def _start(self) -> AsyncGenerator[Chunk, None]:
        if self._closed:
            raise StreamClosed("this turn was closed before it started")
        if self._gen is not None:
            raise StreamConsumed("this turn was already iterated; a turn runs once (see .response)")
        self._gen = _run_turn(*self._args, self._state)
        return self._gen

    def __aiter__(self) -> Turn:
        self._start()
        return self

    def __anext__(self) -> Any:
        gen = self._gen if self._gen is not None else self._start()
        return gen.__anext__()

    def __await__(self) -> Generator[object, None, Any]:
        return self._collect().__await__()

    async def _collect(self) -> Any:
        """The Response; with ``response_format=Model``, the validated Model instance."""
        gen = self._gen if self._gen is not None else self._start()
        async for _ in gen:
            pass
        if self._state.error is not None:
            raise self._state.error
        response = self._state.response
        assert response is not None
        return response.parsed if self._structured else response

    async def aclose(self) -> None:
        """Stop the turn; what had arrived is recorded as an incomplete answer."""
        if self._gen is not None:
            await self._gen.aclose()
        else:
            self._closed = True

    async def __aenter__(self) -> Turn:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def communicate(
    session: Session,
    branch: Branch | str | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    instruction: str | None = None,
    imodel: iModel | str | None = None,
    context: Any = None,
    guidance: str | None = None,
    **params: Any,
) -> Turn:
    """One turn: send the branch's history plus `instruction` to a model, record both in the branch.

    The seed form and the keyword form are the same call::

        await communicate(session=s, branch=b, parameters={"instruction": "Hi", "imodel": model.name})
        await communicate(s, b, instruction="Hi", imodel=model.name, temperature=0.2)

        async for chunk in communicate(s, b, instruction="Tell me more"):   # streamed
            print(chunk, end="")

    Awaited with ``response_format=Model``, it returns the validated `Model` instance (also kept as
    `response.parsed` and persisted in the answer's ``structured`` field).

    `imodel` is a registered name, an iModel, or None for the session's default (first registered).
    `branch` is a Branch, a name or an id; a name that does not exist yet creates that branch, and
    None means the first branch (a new ``"main"`` when there is none). `context` and `guidance` go
    into the instruction message. Other keywords (and other `parameters` keys) are generation
    parameters for the model call.
    """
    given = dict(parameters or {})
    for key, value in (
        ("instruction", instruction),
        ("imodel", imodel),
        ("context", context),
        ("guidance", guidance),
    ):
        if value is not None:
            given[key] = value
    branch = given.pop("branch", None) if branch is None else branch
    text = given.pop("instruction", None)
    if not isinstance(text, str) or not text:
        raise ConfigurationError("communicate needs an instruction: a non-empty string")
    model = _resolve_model(session, given.pop("imodel", None))
    content = InstructionContent(
        instruction=text, context=given.pop("context", None), guidance=given.pop("guidance", None)
    )
    call_params = {**{k: v for k, v in given.items() if k not in _TURN_KEYS}, **params}
    return Turn(session, _resolve_branch(session, branch), model, Message(content=content), call_params)
