"""Every real recording in ../shared/fixtures/sse, replayed through its official SDK and normalized."""

from __future__ import annotations

import os

import pytest

from lionflow.services.providers import provider_class, provider_names
from lionflow.services.providers.base import SdkProvider
from tests.loopback import LoopbackServer
from tests.providers.cases import adapter_apis, provider_cases, recorded_expectations
from tests.providers.conformance import FIXTURES, Expected, recording_names, replay

pytestmark = pytest.mark.anyio

EXPECTED: dict[str, Expected] = recorded_expectations()

if not FIXTURES.is_dir():
    if os.environ.get("CI"):
        raise RuntimeError(f"the recorded provider streams are missing: {FIXTURES}")
    pytest.skip(f"recorded provider streams not found at {FIXTURES}", allow_module_level=True)


def test_every_registered_sdk_provider_has_its_adapters_tested() -> None:
    # A provider registered without a test module (or a test module left behind) shows here. Other
    # tests register adapters of their own; lionflow's are those in its provider folder.
    builtin = {
        name
        for name in provider_names()
        if issubclass(adapter := provider_class(name), SdkProvider)
        and adapter.__module__.startswith("lionflow.services.providers.")
    }
    assert {case.provider for case in provider_cases()} == builtin
    assert len(provider_cases()) == len(adapter_apis())


def test_every_recording_has_an_expectation() -> None:
    assert recording_names(), f"no recordings in {FIXTURES}"
    assert sorted(EXPECTED) == recording_names()


@pytest.mark.parametrize("name", recording_names())
async def test_recording_normalizes(server: LoopbackServer, name: str) -> None:
    expected = EXPECTED[name]
    replayed = await replay(server, name, expected)
    chunks, response = replayed.chunks, replayed.response

    if expected.error is not None:
        assert isinstance(replayed.error, expected.error), replayed.error
        assert replayed.error.response is response
        assert response.incomplete
        assert response.finish_reason == "error"
    else:
        assert replayed.error is None, replayed.error
        # the invariants of every complete stream
        kinds = [c.type for c in chunks]
        assert kinds.count("finish") == 1
        assert kinds[-1] == "finish"
        assert kinds.count("usage") <= 1
        assert not response.incomplete
        if expected.finish_reason is not None:
            assert response.finish_reason == expected.finish_reason
        if expected.native_finish is not None:
            key, value = expected.native_finish
            assert chunks[-1].metadata.get(key) == value
        if expected.usage is not None:
            assert kinds.count("usage") == 1
            assert response.usage == expected.usage
    assert all(c.tool_call_id and c.tool_name for c in chunks if c.type == "tool_call")
    if expected.text is not None:
        assert response.text == expected.text
    if expected.reasoning is not None:
        assert response.reasoning == expected.reasoning
    if expected.reasoning_nonempty:
        assert response.reasoning.strip()
    if expected.refusal is not None:
        assert response.refusal == expected.refusal
    if expected.tool_calls is not None:
        assert [(c.name, c.arguments) for c in response.tool_calls] == expected.tool_calls
        assert all(c.id for c in response.tool_calls)
