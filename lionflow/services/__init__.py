"""Models and what they stream: iModel, Chunk, Response, usage and errors."""

from lionflow.errors import (
    AuthenticationError,
    ConfigurationError,
    FlowValidationError,
    LionflowError,
    MissingCredentials,
    MissingDependency,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
    StreamClosed,
    StreamConsumed,
    StreamError,
    StreamInterrupted,
    UnknownProviderError,
)
from lionflow.services.call import ModelCall
from lionflow.services.chunk import FINISH_REASONS, Chunk, ChunkType, FinishReason, Usage
from lionflow.services.driver import CallContext
from lionflow.services.imodel import iModel
from lionflow.services.policy import RetryPolicy, Timeout
from lionflow.services.providers import provider_names, register_provider
from lionflow.services.providers.base import ChunkStream, ModelRequest, Provider
from lionflow.services.response import Response, ToolCall

__all__ = [
    "FINISH_REASONS",
    "AuthenticationError",
    "CallContext",
    "Chunk",
    "ChunkStream",
    "ChunkType",
    "ConfigurationError",
    "FinishReason",
    "FlowValidationError",
    "LionflowError",
    "MissingCredentials",
    "MissingDependency",
    "ModelCall",
    "ModelRequest",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTimeout",
    "RateLimitError",
    "Response",
    "RetryPolicy",
    "StreamClosed",
    "StreamConsumed",
    "StreamError",
    "StreamInterrupted",
    "Timeout",
    "ToolCall",
    "UnknownProviderError",
    "Usage",
    "iModel",
    "provider_names",
    "register_provider",
]
