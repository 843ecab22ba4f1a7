"""JSON-schema constrained decoding for local models, with xgrammar.

One `GrammarCompiler` per loaded model (it holds the tokenizer's vocabulary), compiled grammars cached
by schema, and a fresh logits processor for every call (a processor carries one generation's state).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel

from lionflow.errors import ConfigurationError, MissingDependency
from lionflow.services.providers._structured import list_wrapper
from lionflow.structured.items import list_item_type

# xgrammar 0.2 writes a length-bounded string (maxLength) with the character class below, which
# admits raw control characters and no escapes; JSON forbids both, so json.loads rejects such output.
# The unbounded string rule is right; we give the bounded one JSON's own character class.
_LOOSE_STRING_CHARACTER = r"[^\"\\\r\n]"
_JSON_STRING_CHARACTER = r"[^\0-\x1f\"\\]"


def schema_of(response_format: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model class, a schema dict, or an OpenAI-style
    ``{"type": "json_schema", "json_schema": {"schema": ...}}``; ``list[Model]`` is asked for as
    ``{"items": [...]}``, as from every API."""
    item = list_item_type(response_format)
    if item is not None:
        response_format = list_wrapper(item)
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema" and isinstance(
            response_format.get("json_schema"), dict
        ):
            return dict(response_format["json_schema"].get("schema") or {})
        if response_format.get("type") == "json_object":  # OpenAI's JSON mode: any JSON object
            return {"type": "object"}
        return response_format
    raise ConfigurationError(
        f"response_format must be a pydantic model class or a JSON schema dict, not {response_format!r}"
    )


class JSONGrammar:
    """Compiles JSON schemas for one tokenizer and makes per-call logits processors."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        try:
            import xgrammar
        except ImportError as exc:
            raise MissingDependency("transformers", "xgrammar", "transformers") from exc
        self._xgr = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgrammar.GrammarCompiler(info)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _compile(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        grammar = self._xgr.Grammar.from_json_schema(key, any_whitespace=False, separators=(",", ":"))
        text = str(grammar).replace(_LOOSE_STRING_CHARACTER, _JSON_STRING_CHARACTER)
        compiled = self._compiler.compile_grammar(text)
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return compiled

    def logits_processor(self, response_format: Any) -> Any:
        """A new processor constraining one generation to the schema of `response_format`."""
        return self._xgr.contrib.hf.LogitsProcessor(self._compile(schema_of(response_format)))
