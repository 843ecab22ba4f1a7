"""What each real Groq recording normalizes to (see tests/providers/conformance.py).

The values are read from the recordings: reasoning and text are the concatenated ``delta.reasoning``
and ``delta.content`` strings, the tool call is the one whole ``tool_calls`` delta, usage the
``x_groq.usage`` of the last chunk (repeated there as top-level ``usage``).
"""

from __future__ import annotations

from lionflow import StreamInterrupted, Usage
from tests.providers.conformance import Expected

EXPECTED: dict[str, Expected] = {
    # Reasoning, then `event: error` (code tool_use_failed, status_code 400) and no [DONE].
    "groq_midstream_error": Expected(
        provider="groq",
        model="openai/gpt-oss-120b",
        text="",
        reasoning=(
            "We need to call the tool with invalid parameters first, then second call with valid args. "
            "The user wants us to test error handling. So first call should have wrong parameters "
            '(e.g., missing required "name" or extra param). The tool expects only "name". If we send '
            'extra property, that might cause error. Or missing "name". We\'ll do a call with missing '
            'name: {}. Then second call with name: "test". Let\'s do that.'
        ),
        tool_calls=[],
        error=StreamInterrupted,
    ),
    "groq_text": Expected(
        provider="groq",
        model="openai/gpt-oss-120b",
        text="The tool returned the expected result for the valid call.",
        reasoning=(
            "The user wants to test error handling by calling tool with non-existent parameters first "
            "(we did) and then second try with valid args. We have succeeded. Now respond concisely."
        ),
        tool_calls=[],
        finish_reason="stop",
        native_finish=("finish_reason", "stop"),
        usage=Usage(input_tokens=339, output_tokens=58, total_tokens=397, reasoning_tokens=38),
    ),
    "groq_tool_call": Expected(
        provider="groq",
        model="openai/gpt-oss-120b",
        text="",
        reasoning=(
            'We need to call the function with correct parameter "name". Provide a name, e.g., "example".'
        ),
        tool_calls=[("get_something_by_name", {"name": "example"})],
        finish_reason="tool_calls",
        native_finish=("finish_reason", "tool_calls"),
        usage=Usage(input_tokens=304, output_tokens=49, total_tokens=353, reasoning_tokens=23),
    ),
}
