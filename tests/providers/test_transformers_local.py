"""The transformers provider on a tiny random-weight Llama built here, loaded offline.

Random weights make random text, so every expectation is computed independently from the same model
(a direct ``generate()`` and ``decode()``), never written down.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
import torch
from pydantic import BaseModel, Field
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor

from lionflow import Chunk, ConfigurationError, ProviderError, iModel
from lionflow.services.providers.transformers import loading as transformers_loading
from lionflow.services.providers.transformers.bridge import Bridge
from lionflow.services.providers.transformers.local import plain_prompt
from lionflow.services.providers.transformers.tiny_model import build_tiny_model

pytestmark = pytest.mark.anyio

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about lions."}]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything below loads from disk, never from the Hub
    yield build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
    if previous is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = previous


@pytest.fixture(scope="session")
def reference(tiny_model: Path) -> tuple[Any, Any]:
    """The same model loaded directly with transformers, to compute expectations independently."""
    return AutoTokenizer.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(tiny_model).eval()


@pytest.fixture(autouse=True)
def _no_generation_thread_left() -> Iterator[None]:
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("lionflow-generate")]
    assert not left, f"generation threads still running: {left}"


def _model(path: Path, **kwargs: Any) -> iModel:
    return iModel(provider="transformers", model=str(path), device="cpu", **kwargs)


def _greedy(
    reference: tuple[Any, Any], messages: list[dict[str, str]], max_new_tokens: int
) -> tuple[list[int], str, int]:
    tokenizer, model = reference
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    generated = out[0, ids.shape[1] :].tolist()
    return generated, tokenizer.decode(generated, skip_special_tokens=True), ids.shape[1]


async def test_streamed_and_awaited_greedy_text_match_a_direct_generate(
    tiny_model: Path, reference: Any
) -> None:
    generated, expected_text, prompt_tokens = _greedy(reference, PROMPT, 150)
    chunks: list[Chunk] = [c async for c in _model(tiny_model, max_tokens=150).invoke(PROMPT)]
    whole = await _model(tiny_model, max_tokens=150, stream=False).invoke(PROMPT)
    streamed = "".join(c.data for c in chunks if c.type == "text")
    assert streamed == expected_text  # the prompt is left out, nothing duplicated or lost
    assert whole.text == expected_text
    text_chunks = [c for c in chunks if c.type == "text"]
    # it really streamed: pieces arrive during generation (fast tokens share a chunk, 10 ms at most)
    assert len(text_chunks) > 3
    assert all(c.data for c in text_chunks)  # no empty pieces
    assert [c.type for c in chunks[-2:]] == ["usage", "finish"]
    usage = chunks[-2].usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (prompt_tokens, len(generated))


async def test_max_tokens_reached_is_length(tiny_model: Path) -> None:
    response = await _model(tiny_model).invoke(PROMPT, max_tokens=7)
    assert response.finish_reason == "length"
    assert response.metadata["stop_reason"] == "max_new_tokens"
    assert response.usage is not None
    assert response.usage.output_tokens == 7


async def test_a_stop_string_ends_the_reply_and_is_left_out(tiny_model: Path, reference: Any) -> None:
    _, full, _ = _greedy(reference, PROMPT, 40)
    stop = full[12:15]
    expected = full[: full.index(stop)]
    response = await _model(tiny_model, max_tokens=40).invoke(PROMPT, stop=[stop])
    assert response.text == expected
    assert response.finish_reason == "stop"
    assert response.metadata["stop_reason"] == "stop_string"


async def test_eos_is_stop(tiny_model: Path) -> None:
    # Constrained JSON ends with the grammar allowing nothing but EOS.
    class Flag(BaseModel):
        ok: bool

    response = await _model(tiny_model).invoke(PROMPT, max_tokens=50, response_format=Flag)
    assert response.finish_reason == "stop"
    assert response.metadata["stop_reason"] == "eos"
    Flag.model_validate_json(response.text)


class _StepCounter(LogitsProcessor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps += 1
        return scores


async def test_leaving_the_loop_stops_generation_within_a_few_tokens(tiny_model: Path) -> None:
    counter = _StepCounter()
    model = _model(tiny_model)
    async with model.stream(PROMPT, max_tokens=3000, logits_processor=[counter]) as call:
        seen = 0
        async for chunk in call:
            seen += chunk.type == "text"
            if seen == 3:
                break
    # the block's exit joined the worker thread: generation has ended, a few steps after the break
    assert counter.steps < 40
    assert call.response is not None
    assert call.response.incomplete


async def test_the_seed_form_break_also_stops_the_thread(tiny_model: Path) -> None:
    counter = _StepCounter()
    async for _chunk in _model(tiny_model).invoke(PROMPT, max_tokens=3000, logits_processor=[counter]):
        break
    for _ in range(200):
        if not any(t.name.startswith("lionflow-generate") for t in threading.enumerate()):
            break
        await anyio.sleep(0.01)
    assert counter.steps < 100


async def test_two_concurrent_streams_while_the_loop_keeps_ticking(tiny_model: Path, reference: Any) -> None:
    _, expected, _ = _greedy(reference, PROMPT, 60)
    model = _model(tiny_model, max_tokens=60)
    ticks = 0
    texts: list[str] = []
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.001)

    async def one() -> None:
        texts.append("".join([c.data async for c in model.invoke(PROMPT)]))

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        async with anyio.create_task_group() as calls:
            calls.start_soon(one)
            calls.start_soon(one)
        done.set()
    assert texts == [expected, expected]  # serialized on one model: both deterministic and intact
    assert ticks > 10  # the event loop ran all along


def _generation_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lionflow-generate")]


async def test_closing_a_held_call_after_a_break_ends_the_generation_thread(tiny_model: Path) -> None:
    counter = _StepCounter()
    call = _model(tiny_model).invoke(PROMPT, max_tokens=3000, logits_processor=[counter])
    async for _chunk in call:
        break
    assert _generation_threads()  # still generating: the call is held, nothing closed it yet

    with anyio.fail_after(10):
        await call.aclose()

    assert not _generation_threads()  # joined by the close, without blocking the event loop
    assert counter.steps < 100  # stopped a few tokens after the close, not at max_tokens
    assert call.response is not None
    assert call.response.incomplete


async def test_the_bridge_delivers_every_piece_and_the_end_at_once() -> None:
    bridge = Bridge(interval=60.0)  # a window collecting fast pieces would last a minute
    go = threading.Event()

    def generation_thread() -> None:
        go.wait()
        for piece in "abcdef":
            bridge.put("text", piece)
            time.sleep(0.002)
        bridge.put("done", None)

    worker = threading.Thread(target=generation_thread)
    worker.start()
    received: list[str] = []
    with anyio.fail_after(5):  # the end wakes the consumer at once, not after the interval
        go.set()
        while (item := await bridge.get())[0] == "text":
            received.append(item[1])
    worker.join()
    assert item == ("done", None)
    assert "".join(received) == "abcdef"  # in order, nothing lost; fast pieces may come joined


async def test_a_piece_after_a_pause_wakes_the_waiting_consumer() -> None:
    bridge = Bridge(interval=60.0)

    def generation_thread() -> None:
        time.sleep(0.05)  # the consumer is waiting by now
        bridge.put("text", "late")

    worker = threading.Thread(target=generation_thread)
    worker.start()
    with anyio.fail_after(5):
        assert await bridge.get() == ("text", "late")
    worker.join()


class Color(StrEnum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    city: str = Field(max_length=8)
    zip_code: int = Field(ge=0, le=99999)


class Person(BaseModel):
    name: str = Field(max_length=10)
    age: int = Field(ge=0, le=150)
    address: Address


class Inventory(BaseModel):
    tags: list[Literal["a", "bb", "ccc"]] = Field(max_length=4)
    color: Color
    in_stock: bool
    price: float = Field(ge=0, le=100)


class Scores(BaseModel):
    values: list[int] = Field(max_length=5)
    best: Person | None = None


def _whitespace_outside_strings(text: str) -> bool:
    """True when `text` has whitespace between JSON tokens (not inside a string)."""
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char.isspace():
            return True
    return False


@pytest.mark.parametrize("schema", [Person, Inventory, Scores])
async def test_constrained_json_always_validates(tiny_model: Path, schema: type[BaseModel]) -> None:
    model = _model(tiny_model, max_tokens=400, temperature=1.0)
    for seed in range(4):
        response = await model.invoke(PROMPT, response_format=schema, seed=seed)
        assert response.finish_reason == "stop", response.text
        assert not _whitespace_outside_strings(response.text)  # compact
        schema.model_validate(json.loads(response.text))


async def test_constrained_json_from_a_plain_schema(tiny_model: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["n"],
    }
    response = await _model(tiny_model).invoke(PROMPT, max_tokens=50, response_format=schema)
    value = json.loads(response.text)
    assert set(value) == {"n"}
    assert 1 <= value["n"] <= 9


async def test_json_mode_constrains_to_any_json_object(tiny_model: Path) -> None:
    call = _model(tiny_model).invoke(PROMPT, max_tokens=8, response_format={"type": "json_object"})
    # eight tokens may end inside the object (a JSONDecodeError, or lionflow's error wrapping it)
    with contextlib.suppress(ValueError):
        await call
    assert call.response is not None
    assert call.response.text.startswith("{")  # constrained from the first token
    if call.response.finish_reason == "stop":
        assert isinstance(json.loads(call.response.text), dict)


async def test_no_chat_template_falls_back_to_a_plain_transcript(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "plain", chat_template=False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    expected = len(tokenizer(plain_prompt(PROMPT), add_special_tokens=False)["input_ids"])
    response = await _model(path, max_tokens=3).invoke(PROMPT)
    assert response.usage is not None
    assert response.usage.input_tokens == expected
    assert plain_prompt(PROMPT).endswith("User: Tell me about lions.\nAssistant:")


async def test_a_model_loads_once_per_process(tiny_model: Path) -> None:
    first, second = _model(tiny_model, name="a"), _model(tiny_model, name="b")
    await first.invoke(PROMPT, max_tokens=2)
    await second.invoke(PROMPT, max_tokens=2)
    keys = [key for key in transformers_loading.loaded_models() if key[0] == str(tiny_model)]
    assert keys == [(str(tiny_model), "cpu", None)]


async def test_bad_settings_are_clear(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="dtype"):
        _model(tiny_model, dtype="float8")
    with pytest.raises(ConfigurationError, match="base_url"):
        iModel(provider="transformers", model=str(tiny_model), base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="tools"):
        await _model(tiny_model).invoke(PROMPT, tools=[{"name": "f"}])
    with pytest.raises(ProviderError, match="could not load local model"):
        await _model(tmp_path / "missing").invoke(PROMPT)
