"""`ServiceRegistry`: the models a session can call, by name."""

from __future__ import annotations

from collections.abc import Iterator

from lionflow.errors import ConfigurationError
from lionflow.services.imodel import iModel


class ServiceRegistry:
    """Models registered under their `name`; the first one registered is the default.

    >>> registry = ServiceRegistry()
    >>> registry.register(model)          # then registry.get(model.name)
    """

    def __init__(self) -> None:
        self._models: dict[str, iModel] = {}

    def register(self, model: iModel, *, name: str | None = None) -> iModel:
        """Add `model` under `name` (default `model.name`). A taken name is an error."""
        key = name or model.name
        if key in self._models:
            raise ConfigurationError(
                f"a model named {key!r} is already registered; give the new one another name= "
                f"(iModel(..., name='...'))"
            )
        self._models[key] = model
        return model

    def get(self, name: str | None = None) -> iModel:
        """The model registered as `name`, or the default (first registered) when `name` is None."""
        if name is None:
            if not self._models:
                raise ConfigurationError("no model is registered; call session.services.register(model)")
            return next(iter(self._models.values()))
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "none"
            raise ConfigurationError(f"no model named {name!r} is registered; registered: {known}") from None

    @property
    def default(self) -> iModel:
        return self.get()

    def names(self) -> list[str]:
        return list(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __iter__(self) -> Iterator[iModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)
