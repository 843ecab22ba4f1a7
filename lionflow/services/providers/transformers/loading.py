"""Loading local transformers models once per process, shared by every iModel that names them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import anyio

from lionflow.errors import ConfigurationError, ProviderError

_DTYPES = ("auto", "float32", "float16", "bfloat16")


def resolve_device(device: str) -> str:
    """``auto`` is cuda when a GPU is visible, else mps on Apple silicon, else cpu."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError(
            f"device={device!r} asked for, but torch sees no CUDA GPU; use 'cpu' or 'auto'"
        )
    return device


def resolve_dtype(dtype: Any) -> str | None:
    """A dtype name, from a name or a torch.dtype. None keeps float32 (transformers' default)."""
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ConfigurationError(f"dtype must be one of {', '.join(_DTYPES)} or a torch dtype, not {dtype!r}")
    return name


@dataclass
class LoadedModel:
    """A model and tokenizer in memory. `generate_lock` serializes generation on the model."""

    name: str
    device: str
    tokenizer: Any
    model: Any
    eos_token_ids: frozenset[int]
    generate_lock: threading.Lock = field(default_factory=threading.Lock)
    _grammar: Any = None
    _grammar_lock: threading.Lock = field(default_factory=threading.Lock)

    def grammar(self) -> Any:
        """The model's JSON grammar compiler (built on first use)."""
        from lionflow.services.providers.transformers.grammar import JSONGrammar

        with self._grammar_lock:
            if self._grammar is None:
                self._grammar = JSONGrammar(self.tokenizer, self.model.config.vocab_size)
            return self._grammar


_CACHE: dict[tuple[str, str, str | None], LoadedModel] = {}
_LOCKS: dict[tuple[str, str, str | None], threading.Lock] = {}
_CACHE_LOCK = threading.Lock()


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _load(name: str, device: str, dtype: str | None, trust_remote_code: bool) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ProviderError(
            f"could not load local model {name!r}: {exc}. Give a local folder or a Hugging Face Hub id "
            "that is in the local cache (downloads need network access).",
            provider="transformers",
            retryable=False,
        ) from exc
    model.to(device)
    model.eval()
    return LoadedModel(
        name=name, device=device, tokenizer=tokenizer, model=model, eos_token_ids=_eos_ids(model, tokenizer)
    )


def _load_once(name: str, device: str, dtype: str | None, trust_remote_code: bool) -> LoadedModel:
    key = (name, device, dtype)
    with _CACHE_LOCK:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:  # two first calls for one model load it once
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = _CACHE[key] = _load(name, device, dtype, trust_remote_code)
        return loaded


async def load_model(
    name: str, device: str, dtype: str | None, *, trust_remote_code: bool = False
) -> LoadedModel:
    """The model for (name, device, dtype), loading it in a worker thread the first time."""
    key = (name, device, dtype)
    loaded = _CACHE.get(key)
    if loaded is not None:
        return loaded
    return await anyio.to_thread.run_sync(_load_once, name, device, dtype, trust_remote_code)


def loaded_models() -> list[tuple[str, str, str | None]]:
    """The (model, device, dtype) keys loaded in this process."""
    return list(_CACHE)
