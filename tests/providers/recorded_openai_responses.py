"""What the real OpenAI Responses API recordings must normalize to (read from the recordings themselves).

Each value comes from the recorded events: the argument deltas joined, the text deltas joined, the
``usage`` and ``status`` of the terminal ``response.completed`` event.
"""

from __future__ import annotations

from lionflow import Usage
from tests.providers.conformance import Expected

EXPECTED: dict[str, Expected] = {
    # gpt-4o, 2025-03, no sequence_number: one function_call item (call_kL0P..., get_capital) whose
    # arguments arrive as 5 deltas joining to {"country":"France"}; status completed.
    "openai_responses_function_call_old": Expected(
        provider="openai",
        endpoint="responses",
        model="gpt-4o",
        text="",
        reasoning="",
        tool_calls=[("get_capital", {"country": "France"})],
        finish_reason="tool_calls",
        native_finish=("status", "completed"),
        usage=Usage(
            input_tokens=255, output_tokens=16, total_tokens=271, reasoning_tokens=0, cached_tokens=0
        ),
    ),
    # gpt-5: an encrypted reasoning item with an empty summary (no reasoning text on the wire) at
    # output_index 0, then a final_result call at output_index 1 with arguments {"result":6666}.
    "openai_responses_reasoning_function_call": Expected(
        provider="openai",
        endpoint="responses",
        model="gpt-5",
        extra={"reasoning": {"effort": "low"}},
        text="",
        reasoning="",
        tool_calls=[("final_result", {"result": 6666})],
        finish_reason="tool_calls",
        native_finish=("status", "completed"),
        usage=Usage(
            input_tokens=53, output_tokens=469, total_tokens=522, reasoning_tokens=448, cached_tokens=0
        ),
    ),
    # gpt-4o-mini: nine output_text deltas with logprobs; status completed, no tools.
    "openai_responses_text_logprobs": Expected(
        provider="openai",
        endpoint="responses",
        model="gpt-4o-mini",
        text="The capital of Minas Gerais is Belo Horizonte.",
        reasoning="",
        tool_calls=[],
        finish_reason="stop",
        native_finish=("status", "completed"),
        usage=Usage(input_tokens=25, output_tokens=10, total_tokens=35, reasoning_tokens=0, cached_tokens=0),
    ),
}
