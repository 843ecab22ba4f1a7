"""Chunk, Usage and Response as users handle them."""

from __future__ import annotations

import pickle

import pydantic
import pytest

from lionflow import Chunk, Usage
from lionflow.services.response import ResponseAssembler


def test_str_of_a_chunk_is_its_data() -> None:
    assert str(Chunk(type="text", data="Hello")) == "Hello"
    assert str(Chunk(type="finish", finish_reason="stop")) == ""
    assert f"{Chunk(type='text', data='x')}" == "x"


def test_chunks_are_frozen() -> None:
    chunk = Chunk(type="text", data="a")
    with pytest.raises(pydantic.ValidationError):
        chunk.data = "b"  # (frozen: pydantic refuses the assignment when it runs)


def test_chunks_serialize_without_the_raw_event() -> None:
    raw = object()
    chunk = Chunk(type="text", data="hi", index=1, metadata={"model": "m"}, raw_response=raw)
    dumped = chunk.model_dump()
    assert "raw_response" not in dumped
    assert "raw_response" not in repr(chunk)
    restored = Chunk.model_validate_json(chunk.model_dump_json())
    assert restored.data == "hi"
    assert restored.index == 1
    assert restored.metadata == {"model": "m"}
    assert restored.raw_response is None
    assert chunk.raw_response is raw


def test_unknown_chunk_types_and_finish_reasons_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        Chunk(type="delta")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Chunk(type="finish", finish_reason="end_turn")  # type: ignore[arg-type]


def test_usage_fills_the_total_and_adds_up() -> None:
    usage = Usage(input_tokens=10, output_tokens=5)
    assert usage.total_tokens == 15
    assert Usage(input_tokens=1, output_tokens=1, total_tokens=7).total_tokens == 7  # as reported
    both = usage + Usage(input_tokens=1, output_tokens=2, reasoning_tokens=1)
    assert (both.input_tokens, both.output_tokens, both.total_tokens, both.reasoning_tokens) == (11, 7, 18, 1)


def test_chunks_pickle() -> None:
    chunk = Chunk(type="usage", usage=Usage(input_tokens=3))
    assert pickle.loads(pickle.dumps(chunk)) == chunk


def _assemble(chunks: list[Chunk]) -> ResponseAssembler:
    assembler = ResponseAssembler(model="m", provider="p")
    for chunk in chunks:
        assembler.add(chunk)
    return assembler


def test_assembler_joins_each_kind_and_parses_tool_arguments() -> None:
    assembler = _assemble(
        [
            Chunk(type="reasoning", data="Think"),
            Chunk(type="reasoning", data="ing."),
            Chunk(type="text", data="Calling "),
            Chunk(type="tool_call", index=0, tool_call_id="a", tool_name="weather", data='{"city": '),
            Chunk(type="tool_call", index=1, tool_call_id="b", tool_name="time", data='{"tz": "UTC"}'),
            Chunk(type="tool_call", index=0, tool_call_id="a", tool_name="weather", data='"Paris"}'),
            Chunk(type="text", data="tools."),
            Chunk(type="usage", usage=Usage(input_tokens=5, output_tokens=7)),
            Chunk(type="finish", finish_reason="tool_calls", metadata={"finish_reason": "tool_calls"}),
        ]
    )
    response = assembler.build(duration=1.5, time_to_first_chunk=0.25)
    assert response.text == "Calling tools."
    assert response.reasoning == "Thinking."
    assert [(c.id, c.name, c.arguments, c.index) for c in response.tool_calls] == [
        ("a", "weather", {"city": "Paris"}, 0),
        ("b", "time", {"tz": "UTC"}, 1),
    ]
    assert response.usage == Usage(input_tokens=5, output_tokens=7)
    assert response.finish_reason == "tool_calls"
    assert response.metadata["finish_reason"] == "tool_calls"
    assert response.chunk_count == 9
    assert (response.duration, response.time_to_first_chunk) == (1.5, 0.25)
    assert not response.incomplete


def test_broken_tool_arguments_are_kept_raw_with_the_reason() -> None:
    response = _assemble([Chunk(type="tool_call", tool_call_id="a", tool_name="f", data='{"x": 1')]).build(
        duration=0, time_to_first_chunk=None, incomplete=True, finish_reason="error"
    )
    (call,) = response.tool_calls
    assert call.arguments == {}
    assert call.raw_arguments == '{"x": 1'
    assert call.arguments_error is not None
    assert "not valid JSON" in call.arguments_error
    assert response.incomplete
    assert response.finish_reason == "error"


def test_refusals_are_collected_apart_from_text() -> None:
    response = _assemble(
        [
            Chunk(type="refusal", data="I can't "),
            Chunk(type="refusal", data="help."),
            Chunk(type="finish", finish_reason="refusal"),
        ]
    ).build(duration=0, time_to_first_chunk=0)
    assert response.refusal == "I can't help."
    assert response.text == ""
    assert response.finish_reason == "refusal"
