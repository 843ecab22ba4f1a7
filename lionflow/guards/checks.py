"""Checks to build guards from: `blocklist` and `max_length` (each a callable a guard runs on a
`Window`, or, for an `InputGuard`, on the request's text)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from lionflow.errors import ConfigurationError
from lionflow.guards.output import GuardResult


class blocklist:
    """Fails on text containing any of `words` (plain text, matched as written: regex-safe) or
    `patterns` (regular expressions). Case-insensitive unless `case_sensitive`; `whole_words`
    matches words only between word boundaries. The reason names what matched, never the text.

    A blocked word is caught whatever the chunking, provided it is no longer than the guard's
    ``overlap + 1`` characters (see `OutputGuard`)."""

    def __init__(
        self,
        words: Iterable[str] = (),
        *,
        patterns: Iterable[str] = (),
        case_sensitive: bool = False,
        whole_words: bool = False,
    ) -> None:
        if isinstance(words, str):
            raise ConfigurationError("blocklist takes a list of words, not one string")
        words = list(words)
        sources = [re.escape(word) for word in words if word]
        if whole_words:
            sources = [rf"\b{source}\b" for source in sources]
        if any(not isinstance(word, str) for word in words):
            raise ConfigurationError("blocklist words must be strings")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigurationError(
                    f"blocklist pattern {pattern!r} is not a regular expression: {exc}"
                ) from None
            sources.append(f"(?:{pattern})")
        if not sources:
            raise ConfigurationError("blocklist needs at least one word or pattern")
        self._pattern = re.compile("|".join(sources), 0 if case_sensitive else re.IGNORECASE)
        self.__name__ = "blocklist"

    def __call__(self, text: str) -> GuardResult:
        found = self._pattern.search(text)
        if found is None:
            return GuardResult(True)
        return GuardResult(False, f"blocked text at position {getattr(text, 'start', 0) + found.start()}")


class max_length:
    """Fails once the answer is longer than `characters` (for an `InputGuard`: the request's text)."""

    def __init__(self, characters: int) -> None:
        if isinstance(characters, bool) or not isinstance(characters, int) or characters < 0:
            raise ConfigurationError(f"max_length takes a number of characters, not {characters!r}")
        self.characters = characters
        self.__name__ = "max_length"

    def __call__(self, text: Any) -> GuardResult:
        end = getattr(text, "end", len(text))
        if end <= self.characters:
            return GuardResult(True)
        return GuardResult(False, f"longer than {self.characters} characters")
