from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from lionflow import iModel
from lionflow.services.providers import provider_class, provider_names
from lionflow.services.providers.base import SdkProvider
from tests.loopback import LoopbackServer
from tests.providers.helpers import ProviderCase


def _provider_environment() -> list[str]:
    """Every variable an SDK adapter reads its key or its server from, found from the adapters."""
    names: set[str] = set()
    for provider in provider_names():
        adapter = provider_class(provider)
        if issubclass(adapter, SdkProvider):
            names.update(adapter.api_key_variables)
            names.update([adapter.base_url_variable] if adapter.base_url_variable else [])
    return sorted(names)


PROVIDER_ENV = _provider_environment()


@pytest.fixture(autouse=True)
def _no_provider_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests decide credentials and endpoints themselves; a developer's real key must never be used.
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def case(request: pytest.FixtureRequest) -> ProviderCase:
    """The provider under test: the test module's ``CASE`` (test_common_behaviour parametrizes it)."""
    found = getattr(request.module, "CASE", None)
    assert isinstance(found, ProviderCase), f"{request.module.__name__} declares no CASE"
    return found


@pytest.fixture
async def make(case: ProviderCase, server: LoopbackServer) -> AsyncIterator[Callable[..., iModel]]:
    """``make(**kwargs)``: an iModel of the case's provider that calls the loopback server (see
    `ProviderCase.loopback_model`). Every model made is closed when the test ends."""
    models: list[iModel] = []

    def factory(**kwargs: object) -> iModel:
        model = case.loopback_model(server, **kwargs)
        models.append(model)
        return model

    yield factory
    for model in models:
        await model.aclose()
