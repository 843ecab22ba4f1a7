"""`Session`: one message store, its branches, the models it calls, and (optionally) persistence."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from lionflow.errors import ConfigurationError
from lionflow.session.branch import Branch, BranchRef, Conversations, MessageStore
from lionflow.session.messages import Message, SystemContent
from lionflow.session.registry import ServiceRegistry
from lionflow.session.stores.base import (
    BranchRecord,
    BranchWrite,
    SessionSnapshot,
    SessionStore,
    StoreWrite,
    check_name,
    export_snapshot,
    import_snapshot,
    json_metadata,
    metadata_text,
    wait_for,
)

log = logging.getLogger("lionflow.session")


def _branch_record(branch: Branch) -> BranchRecord:
    """What a store keeps of a branch besides its order; `ConfigurationError` for metadata that JSON
    cannot hold."""
    metadata = json_metadata(branch.metadata, what=f"metadata of branch {branch.name!r}")
    return BranchRecord(branch.id, branch.name, branch.created_at, metadata)


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
    `add_item`), on the store's own thread: the event loop never waits on disk. The store assigns
    each message its place in a branch when it writes it (after the last one stored), so turns
    added by other `Session` objects or processes to the same stored session are all kept.
    `await flush()` waits for the writes in flight and raises any that failed (and that no
    `add_turn` raised already). A branch whose creating write failed (`fork`, `create_branch`)
    is stored whole, with all its messages, by the next write that touches it. A write carries
    only the metadata this `Session` changed, so an older `Session` object never reverts another
    one's newer metadata. A message id is one message: storing a different message under an id
    the stored session already has fails with `StoreError` (the same message again is fine).

    Metadata (the session's, a branch's, a message's) is JSON: values pydantic serializes in JSON
    mode are stored that way (a datetime as an ISO string); anything else raises
    `ConfigurationError` when it is given, or, for a value put into `metadata` later, before the
    next write and at `check_store()` (so before a turn's request).
    """

    def __init__(
        self,
        *,
        store: SessionStore | None = None,
        id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.id = check_name(id, what="session id") if id is not None else uuid.uuid4().hex
        json_metadata(metadata or {}, what="session metadata")
        self.created_at = datetime.now(UTC)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.store = store
        self.services = ServiceRegistry()
        # The session alone changes these; branches and `messages` are views of them.
        self._messages: dict[str, Message] = {}
        self._orders: dict[str, list[str]] = {}  # branch id -> its message ids, shared with the Branch
        self.messages = MessageStore(self._messages)
        self.conversations = Conversations(self._add_item, lambda: self.branches)
        self._branches: dict[str, Branch] = {}
        self._branch_ids: dict[str, str] = {}  # name -> id: a flow of thousands of branches looks up in O(1)
        self._pending: set[concurrent.futures.Future[None]] = set()
        # The store's thread updates these as writes end, hence the lock.
        self._lock = threading.Lock()
        # failed writes no caller was told of yet, for flush()
        self._failed: list[tuple[concurrent.futures.Future[None], BaseException]] = []
        # branches a failed write left unstored: the next write touching one carries its record, its
        # whole order and those messages (the store creates it only if it lacks it). A pending
        # creating write needs nothing carried: the store applies writes in submission order.
        self._unstored: set[str] = set()
        self._stored: set[str] = set()  # branches a write is known to have stored
        # the metadata JSON last written or loaded, by "" (the session) or branch id: a write
        # carries only what this Session changed, so it never reverts another writer's metadata
        self._sent: dict[str, str] = {}
        if store is not None and id is None:
            self._submit(self._write_of([]))

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
        if branch is None and ref in self._branch_ids:
            branch = self._branches[self._branch_ids[ref]]
        if branch is None:
            known = ", ".join(b.name for b in self._branches.values()) or "none"
            raise ConfigurationError(f"no branch named {ref!r} in this session; branches: {known}")
        return branch

    def has_branch(self, ref: str) -> bool:
        return ref in self._branches or ref in self._branch_ids

    def _new_name(self, name: str | None, default: str) -> str:
        name = check_name(name, what="a branch name") if name is not None else default
        if self.has_branch(name):
            raise ConfigurationError(f"a branch named {name!r} already exists in this session")
        return name

    def create_branch(
        self,
        name: str | None = None,
        *,
        system: str | Message | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Branch:
        """A new branch, optionally starting with a system message. Names are unique in a session;
        a name that is not valid text, or metadata JSON cannot hold, raises `ConfigurationError`."""
        name = self._new_name(name, f"branch-{len(self._branches) + 1}")
        json_metadata(metadata or {}, what=f"metadata of branch {name!r}")
        order: list[str] = []
        branch = Branch(self.messages, order, name=name, metadata=metadata)
        message = None
        if system is not None:
            message = system if isinstance(system, Message) else Message(content=SystemContent(system=system))
            self._check_message(message)
        self._record([(branch, message)] if message is not None else [], new=(branch, order))
        return branch

    def fork(self, branch: BranchRef, *, at: str | None = None, name: str | None = None) -> Branch:
        """A new branch sharing `branch`'s messages up to and including message `at` (all by default).
        With a store, the fork's whole order is appended to the new branch in one write."""
        source = self.get_branch(branch)
        order = list(source.order)
        if at is not None:
            if at not in order:
                raise ConfigurationError(f"message {at!r} is not in branch {source.name!r}")
            order = order[: order.index(at) + 1]
        name = self._new_name(name, f"{source.name}-fork-{len(self._branches) + 1}")
        fork = Branch(self.messages, order, name=name, metadata=dict(source.metadata))
        self._record([], new=(fork, order))
        return fork

    # -- recording messages ----------------------------------------------------------------------

    def _check_id(self, message: Message) -> None:
        """Refuse another message under an id already taken (the same message again is fine)."""
        known = self._messages.get(message.id)
        if known is not None and known != message:
            raise ConfigurationError(f"another message with id {message.id!r} is already in this session")

    def _check_message(self, message: Message) -> None:
        """Refuse, before anything changes, a message this session cannot hold or store."""
        self._check_id(message)
        if message.metadata:
            json_metadata(message.metadata, what=f"metadata of message {message.id}")

    def _metadata(
        self, key: str, metadata: dict[str, Any], *, what: str, changed: dict[str, str]
    ) -> dict[str, Any] | None:
        """`metadata` in JSON mode if it differs from what was last written (adding its text to
        `changed`), else None; `ConfigurationError` if JSON cannot hold it."""
        value = json_metadata(metadata, what=what)
        text = metadata_text(value)
        if self._sent.get(key) == text:
            return None
        changed[key] = text
        return value

    def _write_of(
        self,
        messages: list[Message],
        *,
        placements: tuple[tuple[str, str], ...] = (),
        new: Branch | None = None,
        turn: str | None = None,
    ) -> StoreWrite | None:
        """The write that stores `messages` and appends `placements` (branch id, message id); None
        without a store. It carries the metadata this Session changed since its last write, and
        each touched branch not known to be stored with its whole order and messages. Raises
        `ConfigurationError` for metadata JSON cannot hold (it may have been changed since it was
        given), before anything changes."""
        if self.store is None:
            return None
        changed: dict[str, str] = {}
        session_metadata = self._metadata("", self.metadata, what="session metadata", changed=changed)
        touched = {branch_id for branch_id, _ in placements}
        with self._lock:
            unstored = self._unstored & touched
        if new is not None:
            touched.add(new.id)
            unstored.add(new.id)
        carried: dict[str, Message] = {}
        branches = []
        # Only the branches this write touches: a write costs the same in a session of one branch
        # as in a flow's of thousands. (Another branch's changed metadata goes with its next write.)
        touching = [self._branches[branch_id] for branch_id in touched if branch_id in self._branches]
        for branch in [*touching, *([new] if new is not None else [])]:
            what = f"metadata of branch {branch.name!r}"
            metadata = self._metadata(branch.id, branch.metadata, what=what, changed=changed)
            order = None
            if branch.id in unstored:
                order = branch.order  # what it holds before this write's placements
                if metadata is None:
                    metadata = json_metadata(branch.metadata, what=what)
                carried.update((message_id, self.messages[message_id]) for message_id in order)
            if metadata is not None or order is not None:
                branches.append(BranchWrite(branch.id, branch.name, branch.created_at, metadata, order))
        carried.update((message.id, message) for message in messages)
        with self._lock:
            self._sent.update(changed)
        return StoreWrite(
            session_id=self.id,
            session_created_at=self.created_at,
            session_metadata=session_metadata,
            branches=tuple(branches),
            messages=tuple(carried.values()),
            placements=placements,
            turn=turn,
        )

    def _add_item(self, item: Message, progressions: Iterable[BranchRef] | None) -> Message:
        """`conversations.add_item`: `item` in the session and appended to each branch named."""
        branches = [self.get_branch(ref) for ref in progressions or ()]
        self._record([(branch, item) for branch in branches] or [(None, item)], turn=None)
        return item

    def _add_branch(self, branch: Branch, order: list[str]) -> None:
        self._branches[branch.id] = branch
        self._branch_ids[branch.name] = branch.id
        self._orders[branch.id] = order

    def _record(
        self,
        entries: list[tuple[Branch | None, Message]],
        *,
        new: tuple[Branch, list[str]] | None = None,
        turn: str | None = None,
    ) -> concurrent.futures.Future[None] | None:
        """Add messages (to branches) in memory, and the `new` branch (with the order list it was
        given), and persist them in one write. Everything is checked first, so a refused message
        changes nothing."""
        unique = list({message.id: message for _, message in entries}.values())
        for message in unique:
            self._check_message(message)
        placements = tuple((branch.id, message.id) for branch, message in entries if branch is not None)
        write = self._write_of(unique, placements=placements, new=None if new is None else new[0], turn=turn)
        if new is not None:
            self._add_branch(*new)
        for branch, message in entries:
            # (a message already here may go in another branch: the session keeps it once)
            self._messages.setdefault(message.id, message)
            if branch is not None:
                self._orders[branch.id].append(message.id)
        return self._submit(write)

    def _submit(self, write: StoreWrite | None) -> concurrent.futures.Future[None] | None:
        if self.store is None or write is None:
            return None
        future = self.store.submit(write)
        self._pending.add(future)
        future.add_done_callback(lambda done: self._written(done, write))
        return future

    def _written(self, future: concurrent.futures.Future[None], write: StoreWrite) -> None:
        # Runs on the store's thread. The log line is the error's message, which names the file,
        # the session and the turn, never the contents or metadata being written.
        self._pending.discard(future)
        error = None if future.cancelled() else future.exception()
        with self._lock:
            touched = {b.id for b in write.branches} | {branch_id for branch_id, _ in write.placements}
            if not future.cancelled() and error is None:
                self._stored.update(touched)
                self._unstored.difference_update(touched)
                return
            # Not written: a branch not known to be stored may lack its record or history on disk,
            # so the next write touching it carries it whole (a write queued behind this one fails
            # on the missing branch rather than store it partly).
            self._unstored.update(touched - self._stored)
            # Not written: the metadata it carried goes with the next write again (unless this
            # Session has sent newer metadata since).
            carried = [(b.id, b.metadata) for b in write.branches]
            for key, metadata in [("", write.session_metadata), *carried]:
                if metadata is not None and self._sent.get(key) == metadata_text(metadata):
                    del self._sent[key]
            if error is not None:
                self._failed.append((future, error))
        if error is not None:
            log.error("lionflow: a write of session %s failed: %s", self.id, error)

    def _told(self, future: concurrent.futures.Future[None]) -> None:
        """Its caller was given this write's error: flush() need not raise it again."""
        with self._lock:
            self._failed = [(f, error) for f, error in self._failed if f is not future]

    async def check_store(self, branch: Branch | None = None) -> None:
        """Raise `StoreError` if the session's store cannot be opened or written (no-op without a
        store), and `ConfigurationError` if the session's metadata (or `branch`'s, all branches'
        without one) was since changed to values JSON cannot hold.

        A turn calls this before its request, so a bad store path fails before any model is called.
        """
        if self.store is None:
            return
        json_metadata(self.metadata, what="session metadata")
        for checked in self._branches.values() if branch is None else [branch]:
            _branch_record(checked)
        await self.store.check(writable=True)

    async def add_turn(
        self, branch: Branch, instruction: Message, answer: Message, *, raise_errors: bool = True
    ) -> None:
        """Append a whole turn (the instruction, then its answer) to `branch` and store both in one
        write. Nothing else lands between them, whatever runs concurrently. A failed write raises
        `StoreError` naming the session and the turn (the instruction's id); the turn stays in
        memory, and later turns are stored normally. Metadata JSON cannot hold raises
        `ConfigurationError` before anything is added. With ``raise_errors=False`` (a turn that
        already ends with an error of its own) nothing is raised: `flush()` raises what failed."""
        branch = self.get_branch(branch)
        try:
            future = self._record([(branch, instruction), (branch, answer)], turn=instruction.id)
        except Exception:
            if raise_errors:
                raise
            return
        if future is None:
            return
        try:
            await wait_for(future)
        except Exception:
            if raise_errors:
                raise
        finally:
            # Told now, flush() need not raise it again; a cancelled waiter's write may still fail,
            # and flush() reports it then.
            if raise_errors and future.done():
                self._told(future)

    async def flush(self) -> None:
        """Wait until every write so far is durable; raise the first failure not raised already."""
        for future in list(self._pending):
            with contextlib.suppress(Exception):
                await wait_for(future)
        with self._lock:
            failed, self._failed = self._failed, []
        if failed:
            raise failed[0][1]

    # -- loading, export, import -----------------------------------------------------------------

    def _snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            id=self.id,
            created_at=self.created_at,
            metadata=json_metadata(self.metadata, what="session metadata"),
            messages=list(self.messages.values()),
            branches=[(_branch_record(b), list(b.order)) for b in self._branches.values()],
        )

    @classmethod
    def _from_snapshot(cls, snapshot: SessionSnapshot, store: SessionStore | None) -> Session:
        session = cls(id=snapshot.id, metadata=snapshot.metadata)
        session.store = store
        session.created_at = snapshot.created_at
        session._sent[""] = metadata_text(snapshot.metadata)
        for message in snapshot.messages:
            session._check_id(message)  # (an export may hold two messages under one id)
            session._messages[message.id] = message
        for record, stored_order in snapshot.branches:
            order = list(stored_order)
            branch = Branch(
                session.messages,
                order,
                name=record.name,
                id=record.id,
                created_at=record.created_at,
                metadata=record.metadata,
            )
            session._add_branch(branch, order)
            session._sent[branch.id] = metadata_text(record.metadata)
            session._stored.add(branch.id)
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
