"""What each real Gemini recording normalizes to (see tests/providers/conformance.py).

The values are read from the recordings: text and reasoning are the concatenated ``text`` of the
parts without and with ``"thought": true``; a ``functionCall`` part is one whole call; usage is the
LAST ``usageMetadata`` (Gemini repeats running totals on every event: in gemini_text the earlier
events say 15 prompt tokens, the last 13): promptTokenCount, candidatesTokenCount, totalTokenCount,
thoughtsTokenCount; the native finish is the last candidate's ``finishReason``.
"""

from __future__ import annotations

from lionflow import Usage
from tests.providers.conformance import Expected

_THOUGHTS = (
    "**Clarifying User Goals**\n\nI'm currently focused on defining the user's ultimate goal: "
    "ensuring their safety while crossing the street. I've pinpointed that this is a "
    "real-world scenario with significant safety considerations. However, I'm also mindful of "
    "my limitations as an AI and my inability to physically assist or visually assess the "
    "situation.\n\n\n"
    "**Developing a Safety Protocol**\n\nI'm now formulating a comprehensive safety procedure. "
    "I've pinpointed the essential first step: finding a safe crossing location, such as "
    "marked crosswalks or intersections. Stopping at the curb, and looking and listening for "
    'traffic are vital too. The rationale behind "look left, right, then left again" now needs '
    "further exploration. I'm focusing on crafting universally applicable and secure steps.\n\n\n"
    "**Prioritizing Safe Crossing**\n\nI've revised the procedure's initial step, emphasizing "
    "safe crossing zones (crosswalks, intersections). Next, I'm integrating the \"look left, "
    "right, then left\" sequence, considering why it's repeated. I'm focusing on crafting "
    "universal, safety-focused instructions that suit diverse situations and address my "
    "inherent limitations.\n\n\n"
    "**Crafting Safe Instructions**\n\nI've identified the core user intent: to learn safe "
    "street-crossing. Now, I'm focusing on crafting universally applicable steps. Finding safe "
    "crossing locations and looking-listening for traffic remain paramount. I'm prioritizing "
    "direct, clear language, addressing my limitations as an AI. I'm crafting advice that "
    "works generally, regardless of specific circumstances or locations.\n\n\n"
)
_ANSWER = (
    "This is a great question! Safely crossing the street is all about being aware and "
    "predictable. Here is a step-by-step"
    " guide that is widely taught for safety:\n\n### 1. Find a Safe Place to Cross\nThe best "
    "place is"
    " always at a designated **crosswalk** or a **street corner/intersection**. These are "
    "places where drivers expect to see pedestrians. Avoid"
    " crossing in the middle of the block or from between parked cars.\n\n### 2. Stop at the "
    "Edge of the"
    " Curb\nStand on the sidewalk, a safe distance from the edge of the street. This gives you "
    "a clear view of the traffic"
    " without putting you in danger.\n\n### 3. Look and Listen for Traffic\nFollow the "
    '"Left-Right-Left'
    '" rule:\n*   **Look left** for the traffic that will be closest to you first.\n*   '
    "**Look right** for oncoming traffic in the other lane.\n*   **Look left again** to make "
    "sure nothing"
    " has changed.\n*   **Listen** for the sound of approaching vehicles that you might not be "
    "able to see.\n\n### "
    "4. Wait for a Safe Gap\nWait until there is a large enough gap in traffic for you to walk "
    "all the way across."
    " Don't assume a driver will stop for you. If you can, try to **make eye contact** with "
    "drivers"
    " to ensure they have seen you.\n\n### 5. Walk, Don't Run\nOnce it's safe"
    ":\n*   Walk straight across the street.\n*   **Keep looking and listening** for traffic as "
    "you cross"
    ". The situation can change quickly.\n*   **Don't use your phone** or wear headphones that "
    "block out"
    " the sound of traffic.\n\n---\n\n### Special Situations:\n\n*   **At a Traffic Light:** Wait "
    "for the pedestrian signal"
    ' to show the "Walk" sign (often a symbol of a person walking). Even when the sign says to '
    "walk, you"
    " should still look left and right before crossing.\n*   **At a Stop Sign:** Wait for the "
    "car to come to a"
    " complete stop. Make eye contact with the driver before you step into the street to be "
    "sure they see you.\n\nThe"
    " most important rule is to **stay alert and be predictable**. Always assume a driver "
    "might not see you."
)

EXPECTED: dict[str, Expected] = {
    "gemini_text": Expected(
        provider="gemini",
        model="gemini-2.0-flash-exp",
        text="The capital of France is Paris.\n",
        reasoning="",
        tool_calls=[],
        finish_reason="stop",
        native_finish=("finishReason", "STOP"),
        usage=Usage(input_tokens=13, output_tokens=8, total_tokens=21),
    ),
    "gemini_function_call": Expected(
        provider="gemini",
        model="gemini-3-pro-preview",
        # the last event's part is {"text": ""}: no text at all
        text="",
        reasoning="",
        tool_calls=[("get_country", {})],
        # Gemini says STOP after a function call; lionflow reports the call
        finish_reason="tool_calls",
        native_finish=("finishReason", "STOP"),
        usage=Usage(input_tokens=29, output_tokens=212, total_tokens=241, reasoning_tokens=202),
    ),
    "gemini_thinking": Expected(
        provider="gemini",
        model="gemini-2.5-pro",
        text=_ANSWER,
        reasoning=_THOUGHTS,
        tool_calls=[],
        finish_reason="stop",
        native_finish=("finishReason", "STOP"),
        usage=Usage(input_tokens=34, output_tokens=1256, total_tokens=1290, reasoning_tokens=787),
    ),
}
