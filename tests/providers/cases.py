"""Where the provider tests find what they test, so that adding a provider edits no list here.

- Every adapter module ``lionflow/services/providers/<api>.py`` (the shared ``_*`` modules, the
  ``*_request`` modules, ``base`` and the offline ``scripted`` aside) has its test module
  ``tests/providers/test_<api>.py``, which declares its provider as a module-level ``CASE``; the
  behaviour every adapter shares (test_common_behaviour.py and the request tests) runs against each.
- Every recorded stream ``../shared/fixtures/sse/<name>.sse`` is claimed by name in one of the
  ``tests/providers/recorded_<api>.py`` modules' ``EXPECTED`` dicts (see conformance.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import lionflow.services.providers
from tests.providers.conformance import Expected
from tests.providers.helpers import ProviderCase

_ADAPTERS = Path(lionflow.services.providers.__file__).parent
_TESTS = Path(__file__).parent
_NOT_ADAPTERS = {"__init__", "base", "scripted"}


def adapter_apis() -> list[str]:
    """The names of the SDK adapter modules (``openai_chat``, ``anthropic_messages``, ...), sorted."""
    return sorted(
        path.stem
        for path in _ADAPTERS.glob("*.py")
        if not path.stem.startswith("_")
        and not path.stem.endswith(("_request", "_response"))  # an adapter's request/response halves
        and path.stem not in _NOT_ADAPTERS
    )


def provider_cases() -> list[ProviderCase]:
    """The ``CASE`` of each adapter's test module, in the order of `adapter_apis`."""
    cases = []
    for api in adapter_apis():
        module = importlib.import_module(f"tests.providers.test_{api}")
        case = getattr(module, "CASE", None)
        assert isinstance(case, ProviderCase), f"tests/providers/test_{api}.py declares no CASE"
        cases.append(case)
    return cases


def recorded_expectations() -> dict[str, Expected]:
    """Every ``recorded_<api>.py`` module's ``EXPECTED``, merged; a recording claimed twice is an error."""
    merged: dict[str, Expected] = {}
    for path in sorted(_TESTS.glob("recorded_*.py")):
        expected: dict[str, Expected] = importlib.import_module(f"tests.providers.{path.stem}").EXPECTED
        claimed = merged.keys() & expected.keys()
        assert not claimed, f"{path.name} claims recordings another module claims: {sorted(claimed)}"
        merged |= expected
    return merged
