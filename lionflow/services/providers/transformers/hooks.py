"""The two hooks lionflow puts into ``generate()``: a token streamer and a cancellation criterion.

Kept apart because subclassing transformers' bases needs transformers imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


class TokenStreamer(BaseStreamer):  # type: ignore[misc]
    """Passes each step's new token ids to `on_tokens`; the prompt (the first put) is left out."""

    def __init__(self, on_tokens: Callable[[list[int]], None]) -> None:
        self._on_tokens = on_tokens
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._on_tokens([int(token) for token in value.reshape(-1).tolist()])

    def end(self) -> None:
        pass


class FlagStoppingCriteria(StoppingCriteria):  # type: ignore[misc]
    """Stops generation at the next step once `flag` is set (the caller left, or a stop string hit)."""

    def __init__(self, flag: threading.Event) -> None:
        self._flag = flag
        self._answers: dict[tuple[int, bool], Any] = {}  # one tensor per (batch size, answer), reused

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        key = (input_ids.shape[0], self._flag.is_set())
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = torch.full(
                (key[0],), key[1], dtype=torch.bool, device=input_ids.device
            )
        return answer
