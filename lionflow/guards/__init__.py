"""Guards on what models are asked and what they stream (checked in windows of characters, held
back or released first), and the StreamingHandler.

::

    from lionflow.guards import OutputGuard, blocklist

    no_secrets = OutputGuard(blocklist(["BEGIN PRIVATE KEY"]), name="no-secrets", window=200, overlap=50)
    model = iModel(provider="openai", model="gpt-4o-mini", guards=[no_secrets])
"""

from lionflow.errors import GuardViolation
from lionflow.guards.checks import blocklist, max_length
from lionflow.guards.output import GuardResult, InputGuard, OutputGuard, Window

__all__ = [
    "GuardResult",
    "GuardViolation",
    "InputGuard",
    "OutputGuard",
    "Window",
    "blocklist",
    "max_length",
]
