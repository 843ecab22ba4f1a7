"""Regressions from a review: each test failed before its fix."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

from lionflow import ConfigurationError, InstructionContent, Message, Session, SQLiteStore
from lionflow.operations import Builder, FlowEvent, communicate, flow_stream
from lionflow.structured import stream_partial
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


async def _pieces(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


async def test_a_consumer_slower_than_five_seconds_still_gets_the_end_of_the_flow() -> None:
    async def step() -> str:
        return "done"

    builder = Builder()
    builder.add(step)
    seen: list[str] = []
    with anyio.fail_after(20):  # the end was once dropped after 5 s of a full queue: a hang
        async for _op, item in flow_stream(builder, buffer=1):
            assert isinstance(item, FlowEvent)  # a step that streams nothing yields only its events
            seen.append(item.kind)
            if len(seen) == 1:
                await anyio.sleep(5.2)
    assert seen == ["started", "completed"]


async def test_leaving_a_flow_with_a_full_queue_closes_at_once() -> None:
    builder = Builder()
    builder.session.services.register(ScriptedModel(responses=lambda _: "x" * 500, chunk_size=1))
    builder.communicate("go", imodel="scripted")
    async with flow_stream(builder, buffer=1) as stream:
        async for _item in stream:
            break
        with anyio.fail_after(2):  # once took 5 s, waiting to hand its end to nobody
            await stream.aclose()


async def test_cancelling_a_flush_does_not_cancel_the_write(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "a.db") as store:
        session = Session(store=store)
        branch = session.create_branch(name="chat")
        for index in range(2000):  # keep the store's thread busy
            session.conversations.add_item(Message(content=InstructionContent(instruction=f"m{index}")))
        kept = Message(content=InstructionContent(instruction="must land"))
        session.conversations.add_item(kept, progressions=[branch])
        with anyio.move_on_after(0.01):
            await session.flush()
        await session.flush()
        loaded = await Session.load(store, session.id)
    assert loaded.get_branch("chat").messages == [kept]


async def test_a_call_refused_before_sending_records_nothing() -> None:
    model = ScriptedModel(responses=["fine"])
    session = Session()
    session.services.register(model)
    branch = session.create_branch(name="chat")
    with pytest.raises(ConfigurationError, match="temperature"):
        await communicate(session, branch, instruction="hi", temperature=-1)
    assert branch.order == ()
    await communicate(session, branch, instruction="hello again")
    assert model.requests[0].messages == [{"role": "user", "content": "hello again"}]


class Named(BaseModel):
    name: str = ""


async def test_text_after_the_document_is_not_part_of_it() -> None:
    reply = '```json\n{"name": "a"}\n```\nNote: use {name} in templates.'
    response = await ScriptedModel(responses=[reply]).invoke("hi", response_format=Named)
    assert response.parsed == Named(name="a")
    seen = [p async for p in stream_partial(_pieces('{"name": "a"}\n', '{"name": "b"}'), Named)]
    assert seen[-1] == Named(name="a")


async def test_growth_inside_a_dict_field_is_shown() -> None:
    class Scores(BaseModel):
        scores: dict[str, int] = {}

    seen = [
        dict(p.scores)
        async for p in stream_partial(_pieces('{"scores": {"a": 1,', ' "b": 2,', ' "c": 3}}'), Scores)
    ]
    assert {"a": 1, "b": 2} in seen


async def test_an_explicit_null_shows_as_none_not_the_default() -> None:
    class Item(BaseModel):
        name: str = ""
        note: str | None = "n/a"

    class Doc(BaseModel):
        items: list[Item] = []

    text = '{"items": [{"name": "x", "note": null}, {"name": "y"'
    seen = [p.model_copy(deep=True) async for p in stream_partial(_pieces(text, "}]}"), Doc)]
    assert all(p.items[0].note is None for p in seen if p.items and p.items[0].name == "x")


async def test_a_mixed_tuple_appears_once_complete_as_a_tuple() -> None:
    class Pair(BaseModel):
        pair: tuple[str, int] | None = None
        after: str = ""

    seen = [p async for p in stream_partial(_pieces('{"pair": ["ab", ', '3], "after": "x"', "}"), Pair)]
    assert {p.pair for p in seen} <= {None, ("ab", 3)}
    assert seen[-1] == Pair(pair=("ab", 3), after="x")


async def test_a_store_dropped_without_closing_ends_its_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "dropped.db")
    session = Session(store=store)
    await session.flush()
    name = f"lionflow-sqlite:{Path(store.path).name}"
    del session, store
    for _ in range(100):
        gc.collect()  # the session and its views form a cycle: only the collector frees them
        if not any(t.name == name for t in threading.enumerate()):
            break
        await anyio.sleep(0.02)
    assert not any(t.name == name for t in threading.enumerate())
