from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loopback import LoopbackServer


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs twice: lionflow promises anyio, so both of its backends must work."""
    return str(request.param)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A real HTTP server on 127.0.0.1 streaming scripted bodies (see tests/loopback.py)."""
    with LoopbackServer() as running:
        yield running
