"""Local-model throughput on the tiny random-weight Llama: what the streaming bridge costs.

    .venv/bin/python benchmarks/local_model.py [--tokens 400] [--rounds 5]

Builds the tiny model (lionflow.services.providers.transformers.tiny_model) in a temporary folder, then
generates the same number of tokens four ways, with and without JSON-grammar constraints:

- ``generate()`` called directly, no streamer, in a fresh thread per call as lionflow does: the
  baseline;
- lionflow streamed (``async for`` over ``iModel.invoke``): worker thread, token hand-off to the
  event loop, incremental detokenization, Chunks;
- lionflow not streamed (``stream=False``, awaited).

Two figures: the bridge cost, streamed over not streamed (the hand-off to the event loop and the
chunks, everything else equal); and the total over the bare ``generate()``, which also counts the
incremental decoding and the stopping criterion both lionflow modes run. Target: the bridge under
5% of generation time.

Every generation runs in a worker thread and the main thread (the event loop) never runs torch:
PyTorch's OpenMP workers of a thread that computed keep spinning for a while afterwards, and on a
small machine they would slow whichever thread computes next, skewing the comparison. For the same
reason the tiny model is built in a subprocess.
Greedy decoding, so every way generates the same tokens: free text suppresses EOS to make exactly
``--tokens``; constrained JSON ends where the grammar does, the same for all three.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import anyio

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pydantic import BaseModel, Field

from lionflow import iModel

PROMPT = [{"role": "user", "content": "Tell me about lions."}]


class Listing(BaseModel):
    notes: list[str] = Field(max_length=200)


class _Direct:
    """The baseline: the same model loaded once with transformers, ``generate()`` called directly."""

    def __init__(self, path: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from lionflow.services.providers.transformers.grammar import JSONGrammar

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()
        self.grammar = JSONGrammar(self.tokenizer, self.model.config.vocab_size)
        text = self.tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
        self.ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def run(self, tokens: int, grammar: bool) -> tuple[float, int]:
        import torch

        kwargs: dict[str, Any] = {"max_new_tokens": tokens, "do_sample": False}
        if grammar:
            kwargs["logits_processor"] = [self.grammar.logits_processor(Listing)]
        else:
            kwargs["min_new_tokens"] = tokens
        result: list[Any] = []

        def generate() -> None:
            with torch.inference_mode():
                result.append(
                    self.model.generate(**self.ids, pad_token_id=self.tokenizer.pad_token_id, **kwargs)
                )

        started = time.perf_counter()
        worker = threading.Thread(target=generate)
        worker.start()
        worker.join()
        elapsed = time.perf_counter() - started
        return elapsed, int(result[0].shape[1] - self.ids["input_ids"].shape[1])


async def _lionflow(path: str, tokens: int, grammar: bool, stream: bool) -> tuple[float, int]:
    model = iModel(provider="transformers", model=path, device="cpu", stream=stream, max_tokens=tokens)
    params: dict[str, Any] = {"response_format": Listing} if grammar else {"min_new_tokens": tokens}
    call = model.invoke(PROMPT, **params)
    started = time.perf_counter()
    if stream:
        async for _ in call:
            pass
    else:
        await call
    elapsed = time.perf_counter() - started
    assert call.response is not None
    assert call.response.usage is not None
    return elapsed, call.response.usage.output_tokens


async def main(tokens: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        module = "lionflow.services.providers.transformers.tiny_model"
        subprocess.run([sys.executable, "-m", module, folder], check=True, capture_output=True)  # noqa: ASYNC221
        path = folder
        direct_model = _Direct(path)
        direct_model.run(8, False)  # load and warm both sides outside the timings
        await _lionflow(path, 8, False, True)
        print(f"tiny Llama (2 layers, hidden 64), {tokens} tokens per call, best of {rounds}, CPU\n")
        print(
            f"{'tokens':<16}{'generate()':>14}{'streamed':>14}{'not streamed':>14}{'bridge':>9}{'total':>9}"
        )
        for grammar in (False, True):
            # Rounds interleave the three ways, so that drift in the machine's speed hits all alike.
            runs: dict[str, list[tuple[float, int]]] = {"direct": [], "streamed": [], "whole": []}
            for _ in range(rounds):
                runs["direct"].append(direct_model.run(tokens, grammar))
                runs["streamed"].append(await _lionflow(path, tokens, grammar, True))
                runs["whole"].append(await _lionflow(path, tokens, grammar, False))
            (direct, count), (streamed, streamed_count), (whole, whole_count) = (
                min(runs[way]) for way in ("direct", "streamed", "whole")
            )
            if not count == streamed_count == whole_count:
                raise RuntimeError(f"token counts differ: {count}, {streamed_count}, {whole_count}")
            label = f"{'grammar' if grammar else 'free text'} ({count})"
            bridge = (streamed - whole) / whole * 100
            total = (streamed - direct) / direct * 100
            print(
                f"{label:<16}{count / direct:>10,.0f} t/s{count / streamed:>10,.0f} t/s"
                f"{count / whole:>10,.0f} t/s{bridge:>8.1f}%{total:>8.1f}%"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    anyio.run(main, args.tokens, args.rounds)
