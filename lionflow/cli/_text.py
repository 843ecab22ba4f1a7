"""Text from models and stores, made safe to show on a terminal."""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """`text` with every control character but newline and tab shown as a middle dot: a model's
    text (a random-weight one's surely) or a stored one could hold terminal escapes (ESC, BEL,
    the C1 CSI), which must never reach the terminal raw."""
    return "".join(
        "\N{MIDDLE DOT}" if unicodedata.category(c) == "Cc" and c not in "\n\t" else c for c in text
    )


def one_line(text: str) -> str:
    """`text` on one line (an error message made of a user's exception, say), printable."""
    return printable(" ".join(text.split()))
