"""What each real Anthropic Messages recording normalizes to (see tests/providers/conformance.py).

The values are read from the recordings: text and reasoning are the concatenated ``text_delta`` and
``thinking_delta`` strings, tool arguments the joined ``input_json_delta`` fragments, usage the
``message_start`` input tokens with ``message_delta``'s final ``output_tokens``.

The requested model is not always the recorded one: the SDK warns (an error under pytest) when a
deprecated model such as claude-sonnet-4-20250514 is requested, and the replay does not depend on it.
"""

from __future__ import annotations

from lionflow import Usage
from tests.providers.conformance import Expected

_CROSSING = (
    "Here are the basic steps for safely crossing the street:\n\n"
    "**At intersections with traffic lights:**\n"
    '- Wait for the pedestrian "Walk" signal\n'
    "- Look both ways before stepping into the street\n"
    "- Make eye contact with drivers when possible\n"
    "- Stay alert for turning vehicles\n\n"
    "**At intersections without signals:**\n"
    "- Use crosswalks when available\n"
    "- Stop at the curb and look left, right, then left again\n"
    "- Wait for a clear gap in traffic\n"
    "- Walk briskly but don't run\n"
    "- Keep looking for traffic as you cross\n\n"
    "**General safety tips:**\n"
    "- Put away phones and remove headphones\n"
    "- Wear bright or reflective clothing in low light\n"
    "- Never assume drivers see you\n"
    "- Avoid crossing between parked cars\n"
    "- Walk facing traffic when there's no sidewalk\n\n"
    "**In busy urban areas:**\n"
    "- Follow pedestrian signals strictly\n"
    "- Be extra cautious of cyclists in bike lanes\n"
    "- Watch for buses and large vehicles with blind spots\n\n"
    "The key is to be visible, alert, and predictable in your movements. "
    "Always prioritize safety over speed when crossing streets."
)

EXPECTED: dict[str, Expected] = {
    "anthropic_basic_text": Expected(
        provider="anthropic",
        model="claude-3-opus-latest",
        text="Hello there!",
        reasoning="",
        tool_calls=[],
        finish_reason="stop",
        native_finish=("stop_reason", "end_turn"),
        usage=Usage(input_tokens=11, output_tokens=6, total_tokens=17),
    ),
    "anthropic_refusal": Expected(
        provider="anthropic",
        model="claude-opus-4-7",
        text="",
        tool_calls=[],
        finish_reason="refusal",
        native_finish=("stop_reason", "refusal"),
        usage=Usage(input_tokens=20, output_tokens=0, total_tokens=20),
    ),
    "anthropic_text_tool_use": Expected(
        provider="anthropic",
        model="claude-sonnet-4-6",
        endpoint="messages",
        text="I'll check the current weather in Paris for you.",
        tool_calls=[("get_weather", {"location": "Paris"})],
        finish_reason="tool_calls",
        native_finish=("stop_reason", "tool_use"),
        usage=Usage(input_tokens=377, output_tokens=65, total_tokens=442, cached_tokens=0),
    ),
    "anthropic_thinking_text": Expected(
        provider="anthropic",
        model="claude-sonnet-4-6",
        text=_CROSSING,
        reasoning=(
            "This is a straightforward question about pedestrian safety. I should provide clear, helpful "
            "advice about how to safely cross a street. This is basic safety information that could help "
            "prevent accidents."
        ),
        tool_calls=[],
        finish_reason="stop",
        native_finish=("stop_reason", "end_turn"),
        usage=Usage(input_tokens=43, output_tokens=282, total_tokens=325),
    ),
}
