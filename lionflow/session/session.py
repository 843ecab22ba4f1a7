"""`Session`: one message store, its branches, the models it calls, and (optionally) persistence."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from lionflow.errors import ConfigurationError
from lionflow.session.branch import Branch
from lionflow.session.messages import Message, SystemContent
from lionflow.session.services import ServiceRegistry
from lionflow.session.stores.base import (
    BranchRecord,
    SessionSnapshot,
    SessionStore,
    StoreWrite,
    export_snapshot,
    import_snapshot,
    wait_for,
)

__all__ = ["Conversations", "MessageStore", "Session"]

log = logging.getLogger("lionflow.session")

BranchRef = Branch | str


class MessageStore(Mapping[str, Message]):
    """The session's messages by id (``session.messages[message_id]``), in insertion order."""

    def __init__(self) -> None:
        self._messages: dict[str, Message] = {}

    def __getitem__(self, message_id: str) -> Message:
        try:
            return self._messages[message_id]
        except KeyError:
            raise KeyError(f"no message {message_id!r} in this session") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    def _add(self, message: Message) -> bool:
        """Add `message`; False when it was already there (it may then go in another branch)."""
        known = self._messages.get(message.id)
        if known is not None:
            if known != message:
                raise ConfigurationError(f"another message with id {message.id!r} is already in this session")
            return False
        self._messages[message.id] = message
        return True


class Conversations:
    """The seed API's view of branches as progressions: ``add_item(message, progressions=[...])``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add_item(self, item: Message, progressions: Iterable[BranchRef] | None = None) -> Message:
        """Add `item` to the session and append it to each branch in `progressions` (names, ids or
        Branch objects). With a store, the message is written durably in one transaction."""
        branches = [self._session.get_branch(ref) for ref in progressions or ()]
        self._session._record([(branch, item) for branch in branches] or [(None, item)])
        return item

    @property
    def progressions(self) -> list[Branch]:
        return self._session.branches


class Session:
    """Conversation state: one store of messages by id, branches as ordered progressions of ids,
    the models it can call (`services`), and optional persistence.

    ::

        session = Session(store=SQLiteStore("chat.db"))     # or Session() for memory only
        session.services.register(model)
        branch = session.create_branch(name="chat", system="Be brief.")
        await communicate(session=session, branch=branch, parameters={"instruction": "Hi"})
        again = await Session.load(store, session.id)      # later, in another process

    With a store, every message is written durably as it is added (one transaction per turn or
    `add_item`), on the store's own thread: the event loop never waits on disk. `await flush()`
    waits for the writes in flight and raises any that failed.
    """

    def __init__(
        self,
        *,
        store: SessionStore | None = None,
        id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.id = id or uuid.uuid4().hex
        self.created_at = datetime.now(UTC)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.store = store
        self.services = ServiceRegistry()
        self.messages = MessageStore()
        self.conversations = Conversations(self)
        self._branches: dict[str, Branch] = {}
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._failed: list[BaseException] = []
        if store is not None and id is None:
            self._submit(StoreWrite(self.id, self.created_at, self.metadata))

    def __repr__(self) -> str:
        names = [branch.name for branch in self.branches]
        return f"Session(id={self.id!r}, branches={names!r}, messages={len(self.messages)})"

    # -- branches --------------------------------------------------------------------------------

    @property
    def branches(self) -> list[Branch]:
        """The branches, oldest first."""
        return list(self._branches.values())

    def get_branch(self, ref: BranchRef) -> Branch:
        """The branch with this name or id (or the Branch itself, if it is this session's)."""
        if isinstance(ref, Branch):
            if self._branches.get(ref.id) is not ref:
                raise ConfigurationError(f"branch {ref.name!r} belongs to another session")
            return ref
        branch = self._branches.get(ref)  # by id; an empty Branch is falsy, hence no `or` here
        if branch is None:
            branch = next((b for b in self._branches.values() if b.name == ref), None)
        if branch is None:
            known = ", ".join(b.name for b in self._branches.values()) or "none"
            raise ConfigurationError(f"no branch named {ref!r} in this session; branches: {known}")
        return branch

    def has_branch(self, ref: str) -> bool:
        return ref in self._branches or any(b.name == ref for b in self._branches.values())

    def create_branch(
        self,
        name: str | None = None,
        *,
        system: str | Message | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Branch:
        """A new branch, optionally starting with a system message. Names are unique in a session."""
        name = name or f"branch-{len(self._branches) + 1}"
        if self.has_branch(name):
            raise ConfigurationError(f"a branch named {name!r} already exists in this session")
        branch = Branch(self, name=name, metadata=metadata)
        self._branches[branch.id] = branch
        if system is None:
            self._submit(self._write_of([], new_branches=[branch]))
        else:
            message = system if isinstance(system, Message) else Message(content=SystemContent(system=system))
            self._record([(branch, message)], new_branches=[branch])
        return branch

    def fork(self, branch: BranchRef, *, at: str | None = None, name: str | None = None) -> Branch:
        """A new branch sharing `branch`'s messages up to and including message `at` (all by default)."""
        source = self.get_branch(branch)
        order = list(source.order)
        if at is not None:
            if at not in order:
                raise ConfigurationError(f"message {at!r} is not in branch {source.name!r}")
            order = order[: order.index(at) + 1]
        name = name or f"{source.name}-fork-{len(self._branches) + 1}"
        if self.has_branch(name):
            raise ConfigurationError(f"a branch named {name!r} already exists in this session")
        fork = Branch(self, name=name, metadata=dict(source.metadata), order=order)
        self._branches[fork.id] = fork
        placements = tuple((fork.id, position, message_id) for position, message_id in enumerate(order))
        self._submit(self._write_of([], new_branches=[fork], placements=placements))
        return fork

    # -- recording messages ----------------------------------------------------------------------

    def _place(self, branch: Branch | None, message: Message) -> tuple[str, int, str] | None:
        """Add `message` in memory (and to `branch`); the placement to persist, if any."""
        self.messages._add(message)
        if branch is None:
            return None
        return (branch.id, branch._append(message.id), message.id)

    def _write_of(
        self,
        messages: list[Message],
        *,
        new_branches: Iterable[Branch] = (),
        placements: tuple[tuple[str, int, str], ...] = (),
    ) -> StoreWrite:
        return StoreWrite(
            session_id=self.id,
            session_created_at=self.created_at,
            session_metadata=self.metadata,
            branches=tuple(BranchRecord(b.id, b.name, b.created_at, b.metadata) for b in new_branches),
            messages=tuple(messages),
            placements=placements,
        )

    def _record(
        self, entries: list[tuple[Branch | None, Message]], *, new_branches: Iterable[Branch] = ()
    ) -> concurrent.futures.Future[None] | None:
        """Add messages (to branches) in memory and persist them in one write."""
        placements = tuple(
            p for branch, message in entries if (p := self._place(branch, message)) is not None
        )
        unique = list({message.id: message for _, message in entries}.values())
        return self._submit(self._write_of(unique, new_branches=new_branches, placements=placements))

    def _persist(
        self, messages: list[Message], placements: list[tuple[str, int, str]]
    ) -> concurrent.futures.Future[None] | None:
        """Persist messages already placed in memory (a turn written when it ends), in one write."""
        return self._submit(self._write_of(messages, placements=tuple(placements)))

    def _submit(self, write: StoreWrite) -> concurrent.futures.Future[None] | None:
        if self.store is None:
            return None
        future = self.store.submit(write)
        self._pending.add(future)
        future.add_done_callback(self._written)
        return future

    def _written(self, future: concurrent.futures.Future[None]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self._failed.append(error)
            log.error("lionflow: writing session %s failed: %r", self.id, error)

    async def check_store(self) -> None:
        """Raise `StoreError` if the session's store cannot be opened (no-op without a store).

        A turn calls this before its request, so a bad store path fails before any model is called.
        """
        if self.store is not None:
            await self.store.check()

    async def add_turn(self, branch: Branch, instruction: Message, answer: Message) -> None:
        """Append a whole turn (the instruction, then its answer) to `branch` and store both in one
        write. Nothing else lands between them, whatever runs concurrently. A failed write raises
        `StoreError` naming the session and the turn; the turn stays in memory."""
        future = self._record([(branch, instruction), (branch, answer)])
        if future is not None:
            await wait_for(future)

    async def flush(self) -> None:
        """Wait until every write so far is durable; raise the first that failed."""
        for future in list(self._pending):
            with contextlib.suppress(Exception):
                await wait_for(future)
        if self._failed:
            error, self._failed = self._failed[0], []
            raise error

    # -- loading, export, import -----------------------------------------------------------------

    def _snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            id=self.id,
            created_at=self.created_at,
            metadata=self.metadata,
            messages=list(self.messages.values()),
            branches=[
                (BranchRecord(b.id, b.name, b.created_at, b.metadata), list(b.order))
                for b in self._branches.values()
            ],
        )

    @classmethod
    def _from_snapshot(cls, snapshot: SessionSnapshot, store: SessionStore | None) -> Session:
        session = cls(id=snapshot.id, metadata=snapshot.metadata)
        session.store = store
        session.created_at = snapshot.created_at
        for message in snapshot.messages:
            session.messages._add(message)
        for record, order in snapshot.branches:
            branch = Branch(
                session,
                name=record.name,
                id=record.id,
                created_at=record.created_at,
                metadata=record.metadata,
                order=order,
            )
            session._branches[branch.id] = branch
        return session

    @classmethod
    async def load(cls, store: SessionStore, session_id: str) -> Session:
        """The session `session_id` from `store`, attached to it (new messages are written there).
        Models are not stored: register them again on the loaded session."""
        snapshot = await store.load_session(session_id)
        if snapshot is None:
            raise KeyError(f"no session {session_id!r} in {store!r}")
        return cls._from_snapshot(snapshot, store)

    def export(self) -> dict[str, Any]:
        """The session as a JSON-able dict: messages, branches and their order, metadata."""
        return export_snapshot(self._snapshot())

    @classmethod
    async def from_export(cls, data: dict[str, Any], *, store: SessionStore | None = None) -> Session:
        """A session from `export()` data; with a `store`, it is written there too."""
        session = cls._from_snapshot(import_snapshot(data), store)
        if store is not None:
            await store.import_session(data)
        return session
