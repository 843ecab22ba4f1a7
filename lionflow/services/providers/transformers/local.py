"""Local Hugging Face transformers models, in-process: `iModel(provider="transformers", model=...)`.

``generate()`` runs in a worker thread; each new token is decoded there and handed to the event loop
without blocking either side, so the loop keeps serving other tasks while a model generates.

- **Serialized per model.** Calls on one loaded model take turns (a lock around ``generate()``);
  calls on different models run in parallel. Batching is not done.
- **Cancellation.** Leaving the loop sets a flag that a stopping criterion checks at every step:
  generation stops after the token in progress, and the worker thread is joined before the stream
  counts as closed.
- **Prompt.** The tokenizer's chat template when it has one; otherwise a plain transcript::

      System: <system prompt>

      User: <message>
      Assistant: <reply>
      Tool result: <content>
      Assistant:

- **Parameters.** ``max_tokens`` is ``max_new_tokens`` (default 256); ``temperature`` unset or 0 is
  greedy decoding, above 0 samples (with ``top_p``, and ``seed`` seeding torch first); ``stop`` strings
  end the reply and are left out of it; ``response_format=<pydantic model or JSON schema>`` constrains
  decoding with xgrammar to compact JSON. Other keywords go to ``generate()`` (``top_k``,
  ``repetition_penalty``, ...). Tools are not supported.
- **Usage** counts tokens exactly: the prompt's tokens in, every generated token (EOS included) out.
  ``finish_reason`` is ``length`` when ``max_tokens`` ran out, else ``stop`` (native value in
  ``metadata["stop_reason"]``: ``eos``, ``stop_string`` or ``max_new_tokens``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import anyio
import anyio.to_thread

from lionflow.errors import ConfigurationError, LionflowError, ProviderError
from lionflow.services.chunk import Chunk, Usage, delta_chunk
from lionflow.services.providers._params import content_text
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider, ProviderSettings
from lionflow.services.providers.transformers.bridge import Bridge
from lionflow.services.providers.transformers.loading import (
    LoadedModel,
    load_model,
    resolve_device,
    resolve_dtype,
)

DEFAULT_MAX_NEW_TOKENS = 256
_OWN_PARAMS = frozenset({"max_tokens", "temperature", "top_p", "seed", "stop", "response_format"})


def plain_prompt(messages: Sequence[Mapping[str, Any]]) -> str:
    """The transcript used when a tokenizer has no chat template (see the module docstring)."""
    lines: list[str] = []
    for message in messages:
        role, text = message.get("role"), content_text(message.get("content"))
        if role in ("system", "developer"):
            lines.append(f"System: {text}\n")
        elif role == "assistant":
            lines.append(f"Assistant: {text}")
        elif role == "tool":
            lines.append(f"Tool result: {text}")
        else:
            lines.append(f"User: {text}")
    lines.append("Assistant:")
    return "\n".join(lines)


class _Detokenizer:
    """Incremental decoding: each token's new text once, never splitting a multi-byte character.

    Decodes a short window of recent tokens rather than the whole reply, so the work per token
    stays constant; text ending in U+FFFD (an incomplete UTF-8 sequence) waits for the next token.
    """

    def __init__(self, tokenizer: Any) -> None:
        # The Rust tokenizer decodes four times faster than the Python wrapper around it, which
        # adds nothing here unless it cleans up spaces; this runs twice per generated token.
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
            self._decoder: Any = backend
        else:
            self._decoder = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self._decoder.decode(ids, skip_special_tokens=True))

    def push(self, ids: list[int]) -> str:
        self._ids.extend(ids)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :]


class _StopStrings:
    """Cuts the reply at the first stop string, holding back text that may begin one."""

    def __init__(self, stop: str | Sequence[str] | None) -> None:
        self.stops = [stop] if isinstance(stop, str) else [s for s in stop or () if s]
        self._held = ""
        self.hit = False

    def push(self, text: str) -> str:
        if not self.stops:
            return text
        text = self._held + text
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit, self._held = True, ""
            return text[:cut]
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class _Generation:
    """One call: a worker thread running ``generate()`` and the chunks it produces."""

    def __init__(
        self, loaded: LoadedModel, request: ModelRequest, prompt_ids: Any, attention_mask: Any
    ) -> None:
        params = dict(request.params)
        self.loaded = loaded
        self.streaming = request.stream
        self.prompt_ids = prompt_ids
        self.attention_mask = attention_mask
        self.max_new_tokens = int(params.get("max_tokens") or DEFAULT_MAX_NEW_TOKENS)
        self.temperature = float(params.get("temperature") or 0.0)
        self.top_p = params.get("top_p")
        self.seed = params.get("seed")
        self.response_format = params.get("response_format")
        self.extra = {k: v for k, v in params.items() if k not in _OWN_PARAMS}
        self.stop_strings = _StopStrings(params.get("stop"))
        self.detokenizer = _Detokenizer(loaded.tokenizer)
        self.cancelled = threading.Event()
        self.generated: list[int] = []
        self.bridge = Bridge()
        self.thread = threading.Thread(target=self._run, name=f"lionflow-generate-{loaded.name}", daemon=True)
        self.meta = {"provider": "transformers", "model": loaded.name}
        self._buffer: list[str] = []

    # -- the worker thread ----------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        text = self.stop_strings.push(text)
        if text:
            if self.streaming:
                self.bridge.put("text", text)
            else:
                self._buffer.append(text)
        if self.stop_strings.hit:
            self.cancelled.set()  # the reply is complete: stop generating

    def on_tokens(self, ids: list[int]) -> None:
        if self.stop_strings.hit or self.cancelled.is_set():
            return
        self.generated.extend(ids)
        self._emit(self.detokenizer.push(ids))

    def _generate(self) -> None:
        import torch

        from lionflow.services.providers.transformers.hooks import FlagStoppingCriteria, TokenStreamer

        kwargs: dict[str, Any] = {
            "input_ids": self.prompt_ids,
            "attention_mask": self.attention_mask,
            "max_new_tokens": self.max_new_tokens,
            "streamer": TokenStreamer(self.on_tokens),
            "stopping_criteria": [FlagStoppingCriteria(self.cancelled)],
            "pad_token_id": self.loaded.tokenizer.pad_token_id or min(self.loaded.eos_token_ids, default=0),
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
            if self.top_p is not None:
                kwargs["top_p"] = self.top_p
            if self.seed is not None:
                torch.manual_seed(int(self.seed))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.response_format is not None:
            kwargs["logits_processor"] = [self.loaded.grammar().logits_processor(self.response_format)]
        with torch.inference_mode():
            self.loaded.model.generate(**kwargs, **self.extra)

    def _acquire(self) -> bool:
        """Wait for this model's turn; False when the caller left first."""
        while not self.loaded.generate_lock.acquire(timeout=0.05):
            if self.cancelled.is_set():
                return False
        return True

    def _run(self) -> None:
        try:
            if self._acquire():
                try:
                    if not self.cancelled.is_set():
                        self._generate()
                finally:
                    self.loaded.generate_lock.release()
            if not self.stop_strings.hit:
                self._emit(self.detokenizer.flush())
                self._emit(self.stop_strings.flush())
            if self._buffer:
                self.bridge.put("text", "".join(self._buffer))
            self.bridge.put("done", None)
        except BaseException as exc:  # everything goes to the caller, who decides
            self.bridge.put("error", exc)

    # -- the event loop side --------------------------------------------------------------------

    def _finish(self) -> tuple[str, str]:
        if self.stop_strings.hit:
            return "stop", "stop_string"
        if self.generated and self.generated[-1] in self.loaded.eos_token_ids:
            return "stop", "eos"
        if len(self.generated) >= self.max_new_tokens:
            return "length", "max_new_tokens"
        return "stop", "stopped"

    async def chunks(self) -> AsyncIterator[Chunk]:
        while True:
            kind, value = await self.bridge.get()
            if kind == "text":
                yield delta_chunk("text", value, 0, self.meta, None)
            elif kind == "done":
                usage = Usage(input_tokens=int(self.prompt_ids.shape[-1]), output_tokens=len(self.generated))
                yield Chunk(type="usage", usage=usage, metadata=self.meta)
                reason, native = self._finish()
                yield Chunk(type="finish", finish_reason=reason, metadata=self.meta | {"stop_reason": native})  # type: ignore[arg-type]
                return
            else:
                if isinstance(value, LionflowError):
                    raise value
                if isinstance(value, TypeError | ValueError):
                    raise ConfigurationError(f"generate() refused the parameters: {value}") from value
                raise ProviderError(f"local generation failed: {value!r}", provider="transformers") from value

    async def close(self) -> None:
        """Stop generating (after the token in progress) and wait for the thread to end, in a
        worker thread so that the event loop runs on meanwhile. A caller that stops waiting (its
        close grace ran out) leaves the thread to end by itself: the flag is set either way."""
        self.cancelled.set()
        if self.thread.is_alive():
            await anyio.to_thread.run_sync(self.thread.join, abandon_on_cancel=True)


class TransformersProvider(Provider):
    """A local transformers causal LM; see the module docstring for its behaviour.

    ``iModel(provider="transformers", model="<hub id or folder>", device="auto", dtype=None)``.
    The model and tokenizer load on the first call (in a worker thread) and are shared by every
    iModel in the process that names the same (model, device, dtype).
    """

    name: ClassVar[str] = "transformers"
    option_names: ClassVar[frozenset[str]] = frozenset({"device", "dtype", "trust_remote_code"})

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        if settings.base_url is not None:
            raise ConfigurationError(
                "the transformers provider runs models in-process; base_url does not apply"
            )
        options = settings.options
        self.device = resolve_device(options.get("device", "auto"))
        self.dtype = resolve_dtype(options.get("dtype"))
        self.trust_remote_code = bool(options.get("trust_remote_code", False))

    def _prompt(self, loaded: LoadedModel, request: ModelRequest) -> tuple[Any, Any]:
        tokenizer = loaded.tokenizer
        if request.params.get("tools"):
            raise ConfigurationError("the transformers provider does not support tools")
        if getattr(tokenizer, "chat_template", None):
            messages = [
                {"role": m["role"], "content": content_text(m.get("content"))} for m in request.messages
            ]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = plain_prompt(request.messages)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        return encoded["input_ids"].to(loaded.device), encoded["attention_mask"].to(loaded.device)

    async def open(self, request: ModelRequest) -> ChunkStream:
        loaded = await load_model(
            self.model, self.device, self.dtype, trust_remote_code=self.trust_remote_code
        )
        prompt_ids, attention_mask = self._prompt(loaded, request)
        generation = _Generation(loaded, request, prompt_ids, attention_mask)
        generation.thread.start()
        return ChunkStream(generation.chunks(), close=generation.close)
