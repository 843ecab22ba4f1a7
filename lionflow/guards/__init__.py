"""Guards on what models are asked and what they stream (checked in windows of characters, held
back or released first), and the StreamingHandler.

::

    from lionflow.guards import OutputGuard, blocklist

    no_secrets = OutputGuard(blocklist(["BEGIN PRIVATE KEY"]), name="no-secrets", window=200, overlap=50)
    model = iModel(provider="openai", model="gpt-4o-mini", guards=[no_secrets])
"""

from lionflow.errors import GuardViolation
from lionflow.guards.checks import blocklist, max_length
from lionflow.guards.handler import StreamingHandler, TextWithMetadata
from lionflow.guards.judges import json_schema, llm_judge
from lionflow.guards.output import GuardResult, InputGuard, OutputGuard, Window
from lionflow.guards.rails import Rails

__all__ = [
    "GuardResult",
    "GuardViolation",
    "InputGuard",
    "OutputGuard",
    "Rails",
    "StreamingHandler",
    "TextWithMetadata",
    "Window",
    "blocklist",
    "json_schema",
    "llm_judge",
    "max_length",
]
