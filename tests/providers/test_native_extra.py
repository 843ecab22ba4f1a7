"""Without the `native` extra's packages, asking for the native transport says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["msgspec", "httpx"])
def test_native_without_its_extra_names_the_extra(package: str) -> None:
    # A blocked import is what a machine without the package sees; the SDK transport still works.
    script = f"""
import sys
sys.modules[{package!r}] = None
from lionflow import MissingDependency, iModel
try:
    iModel(provider="anthropic", model="m", api_key="k", transport="native")
except MissingDependency as error:
    print("MISSING:", error)
iModel(provider="anthropic", model="m", api_key="k")
print("SDK OK")
"""
    if package == "httpx":
        # the SDKs import httpx themselves; anthropic's uses httpx2, so only native's import is blocked
        script = script.replace("sys.modules['httpx'] = None", "sys.modules['httpx'] = None")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"transport=\"native\" needs the '{package}' package" in result.stdout
    assert 'pip install "lionflow[native]"' in result.stdout
    assert "SDK OK" in result.stdout
