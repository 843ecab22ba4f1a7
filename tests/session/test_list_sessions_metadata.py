"""`list_sessions()` carries each session's metadata (so that a command can show its name)."""

from __future__ import annotations

import pytest

from lionflow.session.session import Session
from tests.session.conftest import Stores

pytestmark = pytest.mark.anyio


async def test_list_sessions_carries_the_metadata(store_factory: Stores) -> None:
    async with store_factory.open() as store:
        named = Session(store=store, metadata={"name": "tea", "tags": ["a"]})
        plain = Session(store=store)
        await named.flush()
        await plain.flush()
        infos = {info.id: info for info in await store.list_sessions()}
    assert infos[named.id].metadata == {"name": "tea", "tags": ["a"]}
    assert infos[plain.id].metadata == {}
