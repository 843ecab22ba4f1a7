"""What each real Chat Completions recording normalizes to (see tests/providers/conformance.py).

The values are read from the recordings: text, reasoning and refusal are the concatenated
``delta.content``, ``delta.reasoning_content`` / ``delta.reasoning`` and ``delta.refusal`` strings,
tool arguments the joined ``function.arguments`` fragments, usage the one ``usage`` object (on a
``choices=[]`` chunk for OpenAI, on the finish chunk for DeepSeek).

The OpenAI refusal ends with ``finish_reason="stop"`` on the wire; lionflow reports ``refusal`` and
keeps the native value in the finish chunk's metadata.
"""

from __future__ import annotations

from lionflow import StreamInterrupted, Usage
from tests.providers.conformance import Expected

_DEEPSEEK_REASONING = (
    "Hmm, the user just said \"Hello\". It's a simple greeting but I wonder if there's more to it.  \n\n"
    "The message is very brief, so I don't have much context to work with. Maybe they're just testing "
    "if I'm responsive, or perhaps they're new to chatting with AI.  \n\n"
    "I should keep my reply warm and inviting to encourage further conversation. A smiley face would "
    "help make it friendly. Since they didn't specify a need, I'll leave it open-ended by asking how I "
    "can help them today.  \n\n"
    'The tone should be cheerful but professional - not too stiff, not too casual. "Hello there!" '
    'feels right for a start. Adding "What can I do for you today?" turns it into an invitation '
    "rather than just mirroring their greeting.  \n\n"
    "I'll avoid assumptions about their gender, location, or intent since there's zero information. "
    "If they're just being polite, they might not reply further - and that's okay too."
)

EXPECTED: dict[str, Expected] = {
    "openai_chat_refusal": Expected(
        provider="openai",
        model="gpt-4o-2024-08-06",
        text="",
        refusal="I'm sorry, I can't assist with that request.",
        tool_calls=[],
        finish_reason="refusal",
        native_finish=("finish_reason", "stop"),
        usage=Usage(input_tokens=79, output_tokens=11, total_tokens=90),
    ),
    "openai_chat_text_usage": Expected(
        provider="openai",
        model="gpt-4o-mini",
        text="The capital of the UK is London.",
        reasoning="",
        refusal="",
        tool_calls=[],
        finish_reason="stop",
        native_finish=("finish_reason", "stop"),
        usage=Usage(input_tokens=78, output_tokens=9, total_tokens=87),
    ),
    "openai_chat_tool_call_usage": Expected(
        provider="openai",
        model="gpt-4o-mini",
        text="",
        tool_calls=[("get_capital", {"country": "UK"})],
        finish_reason="tool_calls",
        native_finish=("finish_reason", "tool_calls"),
        usage=Usage(input_tokens=53, output_tokens=15, total_tokens=68),
    ),
    # The chunk with a top-level "error" also carries usage, but the SDK raises before it is parsed.
    "openai_compat_midstream_error_openrouter": Expected(
        provider="openai",
        model="minimax/minimax-m2:free",
        text="",
        reasoning="We need to respond to a greeting. The user",
        error=StreamInterrupted,
    ),
    "openai_compat_reasoning_content_deepseek": Expected(
        provider="openai",
        model="deepseek-reasoner",
        text="Hello there! 😊 How can I help you today?",
        reasoning=_DEEPSEEK_REASONING,
        tool_calls=[],
        finish_reason="stop",
        native_finish=("finish_reason", "stop"),
        usage=Usage(input_tokens=6, output_tokens=212, total_tokens=218, reasoning_tokens=198),
    ),
}
