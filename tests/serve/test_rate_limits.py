"""Rate limits: each key (each client address, without keys) has its own count; one request over
the limit is a 429 with retry-after in the API's own shape, which the official clients read."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import httpx
import openai
import pytest
from fastapi import FastAPI

from lionflow import ConfigurationError
from lionflow.serve import create_app
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio

Serve = Callable[[FastAPI], str]
KEYS = ["sk-one-KEY-0001", "sk-two-KEY-0002"]
HI: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


def _model() -> ScriptedModel:
    return ScriptedModel(name="echo", responses=lambda messages: "ok")


async def test_each_key_has_its_own_limit_and_the_next_request_is_a_429(serve: Serve) -> None:
    url = serve(create_app([_model()], api_keys=KEYS, rate_limit="3/minute"))
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS[0], max_retries=0) as first:
        for _ in range(3):
            await first.chat.completions.create(model="echo", messages=HI)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as caught:
            await first.chat.completions.create(model="echo", messages=HI)  # type: ignore[arg-type]
    retry_after = int(caught.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert caught.value.code == "rate_limit_exceeded"
    assert KEYS[0] not in caught.value.response.text
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS[1], max_retries=0) as second:
        reply = await second.chat.completions.create(model="echo", messages=HI)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "ok"


async def test_the_anthropic_client_reads_its_own_429(serve: Serve) -> None:
    url = serve(create_app([_model()], api_keys=KEYS, rate_limit="1/minute"))
    async with anthropic.AsyncAnthropic(base_url=url, api_key=KEYS[0], max_retries=0) as client:
        await client.messages.create(model="echo", max_tokens=8, messages=HI)  # type: ignore[arg-type]
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model="echo", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }


async def test_without_keys_the_limit_is_per_client_address_and_healthz_is_free(serve: Serve) -> None:
    url = serve(create_app([_model()], rate_limit="2/minute"))
    async with httpx.AsyncClient(base_url=url) as http:
        body = {"model": "echo", "messages": HI}
        statuses = [(await http.post("/v1/chat/completions", json=body)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert [(await http.get("/healthz")).status_code for _ in range(5)] == [200] * 5


def test_a_malformed_limit_is_refused_when_the_app_is_made() -> None:
    with pytest.raises(ConfigurationError, match="'often'"):
        create_app([_model()], rate_limit="often")
