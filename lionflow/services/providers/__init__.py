"""The provider registry: `provider="name"` picks an adapter class, imported only when used.

Adapters are registered by import path, so `import lionflow` loads no provider SDK. Before importing
an adapter, the registry checks that the modules it `requires` are installed, and otherwise raises
`MissingDependency` naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from lionflow.errors import MissingDependency, UnknownProviderError
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider

__all__ = [
    "ChunkStream",
    "ModelRequest",
    "Provider",
    "ProviderSpec",
    "provider_class",
    "provider_names",
    "register_provider",
]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A registered provider: where its adapter lives and what it needs installed."""

    name: str
    target: str | type[Provider]
    requires: tuple[str, ...] = ()
    extra: str | None = None


_REGISTRY: dict[str, ProviderSpec] = {}


def register_provider(
    name: str,
    target: str | type[Provider],
    *,
    requires: tuple[str, ...] | list[str] = (),
    extra: str | None = None,
    replace: bool = False,
) -> None:
    """Make `iModel(provider=name)` use an adapter.

    `target` is a `Provider` subclass or an import path ``"package.module:ClassName"`` (imported on
    first use). `requires` names modules that must be importable (the SDK); when one is missing,
    using the provider raises `MissingDependency` suggesting ``pip install "lionflow[<extra>]"``.

    >>> register_provider("mine", "my_package.adapters:MyProvider", requires=["my_sdk"])
    """
    if not replace and name in _REGISTRY:
        raise ValueError(f"provider {name!r} is already registered; pass replace=True to override it")
    _REGISTRY[name] = ProviderSpec(name=name, target=target, requires=tuple(requires), extra=extra)


def provider_names() -> list[str]:
    """The registered provider names, sorted."""
    return sorted(_REGISTRY)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a module blocked in sys.modules
        return False


def provider_class(name: str) -> type[Provider]:
    """The adapter class registered as `name`, importing it if needed."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UnknownProviderError(name, provider_names())
    if not isinstance(spec.target, str):
        return spec.target
    for module in spec.requires:
        if not _installed(module):
            raise MissingDependency(name, module, spec.extra)
    module_name, _, attr = spec.target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{spec.target} is not a lionflow Provider subclass")
    return cls


_ADAPTERS = "lionflow.services.providers"
for _name, _target, _requires, _extra in [
    ("openai", "openai_chat:OpenAIChatProvider", ["openai"], "openai"),
    ("anthropic", "anthropic_messages:AnthropicProvider", ["anthropic"], "anthropic"),
    ("groq", "groq_chat:GroqProvider", ["groq"], "groq"),
    ("gemini", "gemini_genai:GeminiProvider", ["google.genai"], "gemini"),
    ("transformers", "transformers.local:TransformersProvider", ["transformers", "torch"], "transformers"),
    ("scripted", "scripted:ScriptedProvider", [], None),
]:
    register_provider(_name, f"{_ADAPTERS}.{_target}", requires=_requires, extra=_extra)
