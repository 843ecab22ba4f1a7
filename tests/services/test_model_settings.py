"""What a user of the model object could do before calls got a CallContext (issue 12), and still
does: setting the timeout, retry policy, adapter or stream flag governs the calls that follow, and a
bad argument is reported before the provider's client is built."""

from __future__ import annotations

import anyio
import pytest

from lionflow import ConfigurationError, ProviderTimeout, RateLimitError, RetryPolicy, Timeout, iModel
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


async def test_a_timeout_set_on_the_model_governs_its_next_calls() -> None:
    model = ScriptedModel(responses=["late"], connect_delay=2.0, timeout=30)
    model.timeout = Timeout(connect=0.05)
    with anyio.fail_after(5), pytest.raises(ProviderTimeout):
        await model.invoke("hi")


async def test_a_retry_policy_set_on_the_model_governs_its_next_calls() -> None:
    model = ScriptedModel(responses=["ok"], fail_on_open=[RateLimitError("slow down")], max_retries=0)
    model.retry = RetryPolicy(max_retries=1, initial_delay=0)
    with anyio.fail_after(5):
        response = await model.invoke("hi")
    assert response.text == "ok"


async def test_the_stream_flag_is_readable_and_settable_as_provider_stream() -> None:
    # The `stream=` flag (once `iModel.streaming`, renamed so that it is not confused with
    # `stream()`): setting it governs the next requests.
    model = ScriptedModel(responses=["a", "b"], stream=False)
    assert model.provider_stream is False
    await model.invoke("hi")
    assert model.requests[-1].stream is False
    model.provider_stream = True
    await model.invoke("hi")
    assert model.requests[-1].stream is True


async def test_a_replaced_adapter_is_the_one_called() -> None:
    # Each call reads the model's context as it starts, so `model.adapter = ...` governs later calls.
    model = ScriptedModel(responses=["first"])
    other = ScriptedModel(responses=["second"])
    model.adapter = other.adapter
    response = await model.invoke("hi")
    assert response.text == "second"


def test_a_bad_timeout_is_reported_before_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bad timeout on a model whose key is not set is reported as such, before the SDK client is
    # built (the adapter would complain of the key first).
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="timeout must be"):
        iModel(provider="openai", model="gpt-4o-mini", timeout=-1)
