"""docs/examples/native_transport.py runs as a user would run it, and both transports agree."""

from __future__ import annotations

from tests.helpers import run_example


def test_the_native_transport_example_runs() -> None:
    out = run_example("native_transport.py")
    for provider in ("openai", "anthropic"):
        assert f"{provider:<10} native took" in out
        assert f"{provider:<10} sdk " in out
    assert out.count("same text") == 2
