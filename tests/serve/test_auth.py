"""API keys: with keys configured every request needs one (either header), /healthz none; a wrong or
missing key is a 401 in the API's own shape, and no key ever reaches a log or an error body."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import openai
import pytest
from fastapi import FastAPI

from lionflow import ConfigurationError
from lionflow.serve import create_app
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
KEYS = ["sk-first-KEY-0001", "sk-second-KEY-0002"]
HI: dict[str, object] = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def app() -> FastAPI:
    return create_app([ScriptedModel(name="echo", responses=["ok"] * 10)], api_keys=KEYS)


async def test_the_official_client_needs_a_right_key(serve: Serve) -> None:
    base_url = serve(app()) + "/v1"
    for key in KEYS:
        async with openai.AsyncOpenAI(base_url=base_url, api_key=key) as client:
            completion = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "hi"}]
            )
            assert completion.choices[0].message.content == "ok"
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-wrong-SECRET-42", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


async def test_either_header_carries_the_key_and_health_needs_none(serve: Serve) -> None:
    base_url = serve(app())
    url = base_url + "/v1/chat/completions"
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, json=HI, headers={"x-api-key": KEYS[1]})).status_code == 200
        assert (
            await http.post(url, json=HI, headers={"authorization": f"Bearer {KEYS[0]}"})
        ).status_code == 200
        missing = await http.post(url, json=HI)
        assert missing.status_code == 401
        assert "needs an API key" in missing.json()["error"]["message"]
        assert (await http.get(base_url + "/v1/models")).status_code == 401
        assert (await http.get(base_url + "/healthz")).status_code == 200
        # the Anthropic API's own error shape for its path
        anthropic = await http.post(base_url + "/v1/messages", json={}, headers={"x-api-key": "nope"})
        assert anthropic.status_code == 401
        assert anthropic.json()["error"]["type"] == "authentication_error"


async def test_no_key_reaches_a_log_or_an_error(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    base_url = serve(app())
    secret = "sk-wrong-SECRET-42"
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient() as http:
            for headers in ({"authorization": f"Bearer {secret}"}, {"x-api-key": secret}):
                reply = await http.post(base_url + "/v1/chat/completions", json=HI, headers=headers)
                assert reply.status_code == 401
                assert secret not in reply.text
            ok = await http.post(base_url + "/v1/chat/completions", json=HI, headers={"x-api-key": KEYS[0]})
            assert KEYS[0] not in ok.text
    assert secret not in caplog.text
    assert all(key not in caplog.text for key in KEYS)


def test_empty_keys_are_refused() -> None:
    for keys in ([], [""], ["ok", ""]):
        with pytest.raises(ConfigurationError, match="api_keys"):
            create_app([ScriptedModel(name="echo")], api_keys=keys)
