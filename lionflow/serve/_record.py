"""Every turn a server answers, recorded in its store as a session turn.

A chat completion (or an Anthropic message) is a branch of its own, named by the answer's id, in a
session per end user (the request's ``user``, or Anthropic's ``metadata.user_id``) or, without one,
a session of its own: the request's messages, then the answer. A Responses conversation is a
session whose branches are its lines of responses: a response continues the branch of its
``previous_response_id`` when it is that branch's latest answer (and no other answer is running on
it), and otherwise forks the branch at that response, so that two continuations of one response
never mix. Each answer is also kept under its id (`ServedRecord`): where its turn is, and the API's
object for it, which ``GET`` of that id returns.

An answer that did not complete (the client went away, the upstream failed) is recorded with what
had arrived, marked incomplete. A store that fails to write is logged: the answer still reaches its
client. One that fails to read (``GET`` of an answer, ``previous_response_id``) is a 503 in the API's
shape, its cause logged and never told (it names the server's files).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lionflow.errors import ConfigurationError, StoreError
from lionflow.serve._errors import APIError
from lionflow.services.response import Response, ToolCall
from lionflow.session.branch import Branch
from lionflow.session.messages import Message
from lionflow.session.messages.content import (
    ActionResponseContent,
    AssistantResponseContent,
    InstructionContent,
    SystemContent,
)
from lionflow.session.session import Session
from lionflow.session.stores.base import ServedRecord, SessionStore, wait_for

_log = logging.getLogger("lionflow.serve")


def store_unavailable(action: str) -> APIError:
    """The 503 for a store that failed to `action`; call it while handling the store's error, which
    is logged here (its message names the database's path: the client is not told it)."""
    _log.exception("the store could not %s", action)
    return APIError(
        503,
        f"the server's store could not {action}; see the server's log",
        kind="server_error",
        code="store_unavailable",
    )


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and "text" in part
        )
    return json.dumps(content, ensure_ascii=False, default=str)


def _tool_calls(calls: Any) -> list[ToolCall]:
    result = []
    for position, call in enumerate(calls or []):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        result.append(
            ToolCall(
                id=str(call.get("id") or ""),
                name=str(function.get("name") or ""),
                arguments=parsed if isinstance(parsed, dict) else {},
                raw_arguments=raw,
                index=position,
            )
        )
    return result


def message_of(chat: dict[str, Any]) -> Message:
    """A request's chat dict (lionflow's form, which is OpenAI's) as a session message."""
    role = chat.get("role")
    if role in ("system", "developer"):
        return Message(content=SystemContent(system=_text(chat.get("content"))))
    if role == "assistant":
        answer = AssistantResponseContent(
            assistant_response=_text(chat.get("content")), tool_calls=_tool_calls(chat.get("tool_calls"))
        )
        return Message(content=answer)
    if role == "tool":
        output = ActionResponseContent(
            call_id=str(chat.get("tool_call_id") or ""), output=chat.get("content")
        )
        return Message(content=output)
    # a user message; parts that are not text (an image) are kept as its context
    content = chat.get("content")
    others: list[Any] = []
    if isinstance(content, list):
        others = [part for part in content if not (isinstance(part, dict) and "text" in part)]
    return Message(content=InstructionContent(instruction=_text(content), context=others or None))


@dataclass
class Recording:
    """Where one answer's turn goes: `messages` (the request's, the last the turn's instruction)
    are appended to `branch` with the answer when it ends."""

    recorder: Recorder
    served_id: str
    kind: str
    session: Session
    branch: Branch
    messages: list[Message]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def record(self, body: dict[str, Any], message_id: str | None = None) -> ServedRecord:
        return ServedRecord(
            id=self.served_id,
            kind=self.kind,
            session_id=self.session.id,
            branch=self.branch.name,
            message_id=message_id,
            body=body,
            created_at=self.created_at,
        )

    async def started(self, body: dict[str, Any]) -> None:
        """Keep the answer's id now, while it runs (a background response is looked up by it)."""
        self.recorder.running.add(self.served_id)
        await self.recorder.keep(self.record(body))

    async def finish(self, response: Response | None, body: Callable[[Response], dict[str, Any]]) -> None:
        """Record the turn with `response` (None: the call never began) and keep the answer's
        object, `body(response)`, under its id."""
        if response is None:
            response = Response(incomplete=True, finish_reason="cancelled")
        answer = Message(content=AssistantResponseContent.from_response(response))
        try:
            *before, instruction = self.messages
            for message in before:
                self.session.conversations.add_item(message, progressions=[self.branch])
            await self.session.add_turn(self.branch, instruction, answer, raise_errors=False)
            await self.session.flush()
        except Exception:
            _log.exception("could not record answer %s in session %s", self.served_id, self.session.id)
        finally:
            self.recorder.busy.discard((self.session.id, self.branch.name))
        try:
            await self.recorder.keep(self.record(body(response), answer.id))
        finally:
            self.recorder.running.discard(self.served_id)


def once(body: Callable[[Response], dict[str, Any]]) -> Callable[[Response], dict[str, Any]]:
    """`body`, made once: a whole answer's object is the one returned and the one stored."""
    made: list[dict[str, Any]] = []

    def made_once(response: Response) -> dict[str, Any]:
        if not made:
            made.append(body(response))
        return made[0]

    return made_once


def ended_by(
    recording: Recording | None, body: Callable[[Response], dict[str, Any]]
) -> Callable[[Response | None], Awaitable[None]] | None:
    """What a call's end does with its Response: `recording.finish` it (nothing without one)."""
    if recording is None:
        return None
    return lambda response: recording.finish(response, body)


class Recorder:
    """The app's store, as the API modules record their answers in it (see the module's doc)."""

    def __init__(self, store: SessionStore | None) -> None:
        self.store = store
        self.busy: set[tuple[str, str]] = set()  # (session, branch) with an answer running on it
        # The answers this server runs now: one stored as running that is not among them was left
        # so by a server that stopped (killed) before it ended. (One server per store.)
        self.running: set[str] = set()

    def _orphaned(self, record: ServedRecord) -> bool:
        return record.message_id is None and record.id not in self.running

    async def load(self, served_id: str, kind: str) -> dict[str, Any]:
        """The object of the answer stored under `served_id`, or a 404 `APIError`."""
        record = None if self.store is None else await self._load_served(served_id)
        if record is None or record.kind != kind:
            reason = "no such answer is stored here" if self.store else "this server stores no answers"
            raise APIError(404, f"{served_id[:80]!r}: {reason}", code="not_found")
        if self._orphaned(record) and record.body.get("status") == "in_progress":
            # Never to end: said so, or a client polling until it ends would poll forever.
            error = {"code": "server_error", "message": "the server stopped before this response ended"}
            return record.body | {"status": "failed", "error": error}
        return record.body

    async def _load_served(self, served_id: str) -> ServedRecord | None:
        assert self.store is not None
        try:
            return await self.store.load_served(served_id)
        except StoreError:
            raise store_unavailable(f"read answer {served_id[:80]!r}") from None

    async def keep(self, record: ServedRecord) -> None:
        assert self.store is not None
        try:
            await wait_for(self.store.submit_served(record))
        except Exception:
            _log.exception("could not store answer %s", record.id)

    def chat(
        self, served_id: str, kind: str, messages: Iterable[dict[str, Any]], user: str | None
    ) -> Recording | None:
        """The recording of a chat completion (or message) `served_id`; None without a store."""
        if self.store is None:
            return None
        session_id = f"user-{user}" if user else served_id
        metadata = {"user": user} if user else {}
        try:
            session = Session(store=self.store, id=session_id, metadata=metadata)
            branch = session.create_branch(name=served_id, metadata={"kind": kind})
        except Exception:  # (a closed store raises as the branch's write is queued)
            _log.exception("could not record answer %s in session %s", served_id, session_id)
            return None
        return Recording(self, served_id, kind, session, branch, [message_of(chat) for chat in messages])

    async def response(
        self,
        served_id: str,
        *,
        previous: str | None,
        instructions: str | None,
        inputs: list[dict[str, Any]],
        keep: bool,
    ) -> tuple[Recording | None, list[dict[str, Any]]]:
        """The recording of response `served_id` (None unless `keep`), and the conversation before
        it: the chat dicts of `previous`'s branch up to it, without their system messages (a
        response's instructions are its own)."""
        history: list[dict[str, Any]] = []
        try:
            if previous is None:
                if not keep:
                    return None, []
                assert self.store is not None
                session = Session(store=self.store, id=served_id)
                branch = session.create_branch(name=served_id, system=instructions)
            else:
                session, branch, answer = await self._previous(previous)
                upto = branch.order[: branch.order.index(answer) + 1]
                history = [
                    chat
                    for chat in (session.messages[i].chat_msg for i in upto)
                    if chat.get("role") != "system"
                ]
                if not keep:
                    return None, history
                if upto != branch.order or (session.id, branch.name) in self.busy:
                    # An earlier response, or one another answer is continuing now: a branch of its own.
                    branch = session.fork(branch, at=answer, name=served_id)
        except APIError:
            raise
        except Exception:  # (a closed store raises as the branch's write is queued)
            _log.exception("could not record response %s", served_id)
            return None, history
        self.busy.add((session.id, branch.name))
        messages = [message_of(chat) for chat in inputs]
        return Recording(self, served_id, "response", session, branch, messages), history

    async def _previous(self, previous: str) -> tuple[Session, Branch, str]:
        """The session, branch and answer message of stored response `previous`, or an `APIError`."""
        record = None if self.store is None else await self._load_served(previous)
        if record is None or record.kind != "response":
            reason = "none is stored here" if self.store is not None else "this server stores no responses"
            message = f"there is no response {previous!r} to continue: {reason}"
            raise APIError(404, message, param="previous_response_id", code="not_found")
        if record.message_id is None:
            message = f"response {previous!r} has not ended yet: continue it once it has"
            if self._orphaned(record):
                message = f"response {previous!r} never ended: the server stopped while it ran"
            raise APIError(400, message, param="previous_response_id")
        assert self.store is not None
        try:
            session = await Session.load(self.store, record.session_id)
            branch = session.get_branch(record.branch)
        except (KeyError, ConfigurationError):
            branch = None
        except StoreError:
            raise store_unavailable(f"read the conversation of response {previous[:80]!r}") from None
        if branch is None or record.message_id not in branch.order:
            message = f"response {previous!r} is not stored whole (its session was deleted or not written)"
            raise APIError(404, message, param="previous_response_id", code="not_found")
        return session, branch, record.message_id
