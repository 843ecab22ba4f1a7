"""`communicate`: one conversation turn on a branch: instruction in, streamed answer out, both kept.

A turn is whole: its request carries the branch as it was when the turn started, and when the turn
ends the instruction and its answer join the branch together (`Session.add_turn`, one write), so
turns that run at the same time on one branch never interleave.
"""

from __future__ import annotations

import types
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any, Generic, Literal, cast, overload

from pydantic import BaseModel
from typing_extensions import TypeVar

from lionflow.errors import ConfigurationError, StreamClosed, StreamConsumed
from lionflow.operations._turn import TurnState, run_turn
from lionflow.operations.executors.base import LOCAL, Executor
from lionflow.services.chunk import Chunk
from lionflow.services.driver import wait_done
from lionflow.services.imodel import iModel
from lionflow.services.response import Response
from lionflow.session.branch import Branch
from lionflow.session.messages import InstructionContent, Message
from lionflow.session.session import Session
from lionflow.structured.items import list_item_type

_TURN_KEYS = frozenset({"instruction", "imodel", "context", "guidance", "branch"})

R = TypeVar("R", default=Any)  # what awaiting the turn gives: a Response, or the structured object
M = TypeVar("M", bound=BaseModel)
# (None is a value: `response_format=None` turns off a model-wide default for one turn)
_UNSET: Any = object()


def _resolve_model(session: Session, imodel: iModel | str | None) -> iModel:
    if isinstance(imodel, iModel):
        return imodel
    if imodel is not None and not isinstance(imodel, str):
        raise ConfigurationError(
            f"imodel must be an iModel or the name of one registered in the session, not {imodel!r}"
        )
    return session.services.get(imodel)


def _resolve_branch(session: Session, branch: Branch | str | None) -> Branch:
    if branch is not None and not isinstance(branch, Branch | str):
        raise ConfigurationError(
            f"branch must be a Branch, a branch name or id, or None for the first branch; not {branch!r}"
        )
    if branch is None:
        branches = session.branches
        return branches[0] if branches else session.create_branch("main")
    if isinstance(branch, str) and not session.has_branch(branch):
        return session.create_branch(branch)
    return session.get_branch(branch)


class Turn(Generic[R]):
    """One `communicate` turn: await it for the `Response`, or iterate it for `Chunk`s.

    With ``response_format=Model`` awaiting it gives the validated `Model`: to a type checker the turn
    is a ``Turn[Model]`` (without, a ``Turn[Response]``).

    Either way the instruction and the answer are recorded together in the branch when the turn
    ends (and, with a store, written in one transaction). While the turn runs, the instruction is
    `instruction` but not yet in the branch. An error or cancellation records the partial answer with
    ``incomplete=True`` and is re-raised; `aclose()` (from any task) stops the turn and records it the
    same way. Keep a turn you use after its loop in an ``async with`` block::

        async with communicate(session, branch, instruction="Tell me more") as turn:
            async for chunk in turn:
                ...
        turn.response_message    # the recorded answer

    Until it ends, a turn holds what its model call holds (the provider stream and, with
    ``max_concurrent``, a slot of the model); see `ModelCall`.
    """

    def __init__(
        self,
        session: Session,
        branch: Branch,
        model: iModel,
        instruction: Message,
        params: dict[str, Any],
        *,
        executor: Executor = LOCAL,
    ) -> None:
        self.session = session
        self.executor = executor
        self.branch = branch
        self.model = model
        self._state = TurnState(instruction)
        self._params = params
        self._gen: types.AsyncGeneratorType[Chunk, None] | None = None
        # new -> running -> stopped (aclose() after the start); new -> closed (aclose() before it)
        self._status: Literal["new", "running", "stopped", "closed"] = "new"
        structure = params.get("response_format")
        self._structured = (isinstance(structure, type) and issubclass(structure, BaseModel)) or (
            list_item_type(structure) is not None
        )

    @property
    def instruction(self) -> Message:
        """The instruction message; it joins the branch, with the answer, when the turn ends."""
        return self._state.instruction

    @property
    def response(self) -> Response | None:
        """The Response once the turn has ended (partial if it failed), else None."""
        return self._state.response

    @property
    def response_message(self) -> Message | None:
        """The assistant message recorded in the branch, once the turn has ended."""
        return self._state.response_message

    def _start(self) -> types.AsyncGeneratorType[Chunk, None]:
        if self._status == "closed":
            raise StreamClosed("this turn was closed before it started")
        if self._status != "new":
            raise StreamConsumed("this turn was already iterated; a turn runs once (see .response)")
        self._status = "running"
        gen = run_turn(self.session, self.branch, self.model, self._params, self._state, self.executor)
        assert isinstance(gen, types.AsyncGeneratorType)
        self._gen = gen
        return gen

    def __aiter__(self) -> Turn[R]:
        self._start()
        return self

    def __anext__(self) -> Any:
        if self._status == "running":
            gen = self._gen
        elif self._status == "stopped":
            return self._after_stop()
        else:
            gen = self._start()
        assert gen is not None
        return gen.__anext__()

    async def _after_stop(self) -> Chunk:
        # aclose() from another task may still be recording the turn: end the loop once it has.
        await wait_done(self._state.done)
        raise StopAsyncIteration

    def __await__(self) -> Generator[object, None, R]:
        return self._collect().__await__()

    async def _collect(self) -> R:
        """The Response; with ``response_format=Model``, the validated Model instance."""
        if self._status == "new":
            self._start()
        if self._status == "closed":
            raise StreamClosed("this turn was closed before it started")
        if self._status == "running":
            assert self._gen is not None
            async for _ in self._gen:
                pass
        else:
            await wait_done(self._state.done)
        if self._state.error is not None:
            raise self._state.error
        response = self._state.response
        if response is None:
            raise StreamClosed("this turn was stopped before it sent its request")
        # (the turn was typed by its response_format: R is that model, or Response without one)
        return cast("R", response.parsed if self._structured else response)

    async def aclose(self) -> None:
        """Stop the turn, from any task; what had arrived is recorded as an incomplete answer.

        Safe to call more than once. When another task is iterating or awaiting the turn (a stop
        button), its loop ends as if the stream had ended; `aclose()` returns once the turn is
        recorded.
        """
        if self._status == "new":
            self._status = "closed"
            return
        if self._status != "running":
            await wait_done(self._state.done)
            return
        self._status = "stopped"
        gen = self._gen
        assert gen is not None
        if gen.ag_running:
            # Another task is inside the turn: stop its model call (or its wait before the
            # request); that task then records the turn, and this one waits until it has.
            self._state.stop()
            if self._state.call is not None:
                await self._state.call.aclose()
            await wait_done(self._state.done)
        else:
            await gen.aclose()

    async def __aenter__(self) -> Turn[R]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A started turn dropped unfinished: see `ModelCall.__del__`.
        state = self._state
        if state.close_dropped is not None and state.done is not None and not state.done.is_set():
            assert self._gen is not None
            state.close_dropped(self._gen)


@overload
def communicate(
    session: Session,
    branch: Branch | str | None = None,
    parameters: None = None,
    *,
    instruction: str | None = None,
    imodel: iModel | str | None = None,
    context: Any = None,
    guidance: str | None = None,
    response_format: type[M],
    executor: Executor | None = None,
    **params: Any,
) -> Turn[M]: ...
@overload
def communicate(
    session: Session,
    branch: Branch | str | None = None,
    parameters: None = None,
    *,
    instruction: str | None = None,
    imodel: iModel | str | None = None,
    context: Any = None,
    guidance: str | None = None,
    response_format: type[list[M]],
    executor: Executor | None = None,
    **params: Any,
) -> Turn[list[M]]: ...
@overload
def communicate(
    session: Session,
    branch: Branch | str | None = None,
    parameters: None = None,
    *,
    instruction: str | None = None,
    imodel: iModel | str | None = None,
    context: Any = None,
    guidance: str | None = None,
    response_format: Mapping[str, Any] | None = ...,
    executor: Executor | None = None,
    **params: Any,
) -> Turn[Response]: ...
@overload
def communicate(  # the seed form: what awaiting gives depends on the `parameters` dict
    session: Session,
    branch: Branch | str | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    instruction: str | None = None,
    imodel: iModel | str | None = None,
    context: Any = None,
    guidance: str | None = None,
    response_format: object = ...,
    executor: Executor | None = None,
    **params: Any,
) -> Turn[Any]: ...
def communicate(
    session: Session,
    branch: Branch | str | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    instruction: str | None = None,
    imodel: iModel | str | None = None,
    context: Any = None,
    guidance: str | None = None,
    response_format: object = _UNSET,
    executor: Executor | None = None,
    **params: Any,
) -> Turn[Any]:
    """One turn: send the branch's history plus `instruction` to a model, record both in the branch.

    The seed form and the keyword form are the same call::

        await communicate(session=s, branch=b, parameters={"instruction": "Hi", "imodel": model.name})
        await communicate(s, b, instruction="Hi", imodel=model.name, temperature=0.2)

        async for chunk in communicate(s, b, instruction="Tell me more"):   # streamed
            print(chunk, end="")

    Awaited with ``response_format=Model``, it returns the validated `Model` instance (also kept as
    `response.parsed` and persisted in the answer's ``structured`` field); a type checker sees a
    ``Turn[Model]``; with ``response_format=list[Model]``, a list of them (``Turn[list[Model]]``),
    and without one a ``Turn[Response]``. (In the seed form, with
    ``response_format`` inside `parameters`, it cannot tell: the turn is a ``Turn[Any]``.)

    `imodel` is a registered name, an iModel, or None for the session's default (first registered).
    `branch` is a Branch, a name or an id; a name that does not exist yet creates that branch, and
    None means the first branch (a new ``"main"`` when there is none). `context` and `guidance` go
    into the instruction message. Other keywords (and other `parameters` keys) are generation
    parameters for the model call. `executor` runs the model call elsewhere (a `RayExecutor`); the
    turn is still recorded here. By default the call runs in this process.
    """
    if not isinstance(session, Session):
        raise ConfigurationError(f"communicate needs session=<a lionflow Session>, not {session!r}")
    if response_format is not _UNSET:
        params["response_format"] = response_format
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ConfigurationError(f"parameters must be a dict like {{'instruction': ...}}, not {parameters!r}")
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
    return Turn(
        session,
        _resolve_branch(session, branch),
        model,
        Message(content=content),
        call_params,
        executor=LOCAL if executor is None else executor,
    )
