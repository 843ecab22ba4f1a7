"""The adapter contract, and the base every adapter over an official SDK builds on.

An adapter maps one provider call to an async stream of Chunks; what every provider shares
(retries, timeouts, limits, assembling the Response, closing the stream) lives once in
`lionflow.services.driver`. `Provider` is the contract, `ProviderSettings` what an adapter is built
from, and `SdkProvider` adds what the SDK adapters share: the API key, the endpoint check, closing
the client and one `_map_errors()` idiom. docs/providers.md ("Adding a provider") walks through
writing one; `lionflow.services.providers.scripted` is the annotated template.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Literal

from lionflow.errors import (
    ConfigurationError,
    MissingCredentials,
    MissingDependency,
    ProviderError,
    TimeoutPhase,
)
from lionflow.services.chunk import Chunk
from lionflow.services.providers._errors import interrupted, malformed

__all__ = [
    "ChunkStream",
    "ModelRequest",
    "Provider",
    "ProviderSettings",
    "SdkProvider",
    "listed",
    "tool_chunk",
]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One request as an adapter receives it.

    `params` holds the generation parameters (temperature, max_tokens, top_p, stop, seed, tools,
    tool_choice, ...) merged from the iModel's defaults and the call's arguments; `stream` chooses
    the provider-side mode only (the caller may iterate either way).
    """

    model: str
    messages: list[dict[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = True
    # A structured reply lionflow asks for in the prompt, not through the API (``reply_format="toon"``):
    # what the reply is parsed into, and in which notation. Adapters never see it in `params`.
    structure: Any = None
    reply_format: Literal["json", "toon"] = "json"

    @property
    def expected(self) -> Any:
        """What the reply is parsed into: the prompt-asked `structure`, or the API's ``response_format``."""
        return self.structure if self.reply_format == "toon" else self.params.get("response_format")


class ChunkStream:
    """An open provider stream: async-iterates Chunks, and `aclose()` releases the connection.

    `chunks` is usually an async generator mapping SDK events; `close` releases what was opened
    before the generator started (the SDK stream, an HTTP response). Closing is idempotent and
    safe whether or not iteration began.
    """

    __slots__ = ("_chunks", "_close", "_closed")

    def __init__(
        self, chunks: AsyncIterator[Chunk], *, close: Callable[[], Awaitable[Any] | None] | None = None
    ) -> None:
        self._chunks = chunks
        self._close = close
        self._closed = False

    def __aiter__(self) -> ChunkStream:
        return self

    def __anext__(self) -> Awaitable[Chunk]:
        # The inner awaitable itself, not a coroutine around it: this runs once per chunk.
        return self._chunks.__anext__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if self._close is not None:
                result = self._close()
                if inspect.isawaitable(result):
                    await result


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """What an adapter is built from: the model id, where and how to reach the provider, and the
    adapter's own `options` (the `iModel` keywords named in its `option_names`, such as
    ``default_headers``). Frozen: an adapter reads its settings, never changes them."""

    model: str
    api_key: str | None = None
    base_url: str | None = None
    endpoint: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


class Provider(ABC):
    """Base class of provider adapters.

    Subclasses set `name`, list their own options in `option_names` (every other keyword an iModel
    receives becomes a default request parameter), and implement `open()`, which sends the request
    and returns once the provider has answered (connected), as a `ChunkStream`. The constructor
    takes one `ProviderSettings` and refuses an option the adapter does not have.

    Contract for the stream: text, reasoning and refusal deltas as they arrive; every tool-call
    fragment carries `tool_call_id` and `tool_name`; exactly one `finish` chunk with a normalized
    `finish_reason` (native value in `metadata`); one `usage` chunk with complete totals where the
    provider reports usage. Errors are raised as `lionflow.errors` types with the SDK
    error as ``__cause__``.
    """

    name: ClassVar[str]
    option_names: ClassVar[frozenset[str]] = frozenset()
    default_model: ClassVar[str | None] = None
    transport: ClassVar[str] = "sdk"
    """How the adapter reaches its provider: ``"sdk"`` (the official SDK, or no network at all) or
    ``"native"`` (httpx and lionflow's own decoding, `_native`)."""
    native: ClassVar[str | None] = None
    """Where the ``transport="native"`` twin of this adapter lives (``"module:Class"``), if it has one."""

    def __init__(self, settings: ProviderSettings) -> None:
        unknown = sorted(set(settings.options) - self.option_names)
        if unknown:
            known = ", ".join(sorted(self.option_names)) or "none"
            raise ConfigurationError(
                f"provider {self.name!r} has no option {', '.join(map(repr, unknown))}; its options: {known}"
            )
        self.settings = settings

    @property
    def model(self) -> str:
        """The model id requests go to unless they name another."""
        return self.settings.model

    @classmethod
    def for_endpoint(cls, endpoint: str | None) -> type[Provider]:
        """The adapter class serving `endpoint` (``iModel(endpoint=...)``); this one by default.

        A provider with several APIs (OpenAI: Chat Completions and Responses) returns the class of
        the one asked for, and raises `ConfigurationError` for an endpoint it does not have.
        """
        return cls

    @classmethod
    def for_transport(cls, transport: str) -> type[Provider]:
        """The adapter class speaking `transport` (``iModel(transport=...)``): this one for its own
        transport, its `native` twin for ``"native"``; `ConfigurationError` for anything else."""
        if transport == cls.transport:
            return cls
        if transport == "native" and cls.native is not None:
            module_name, _, attr = cls.native.partition(":")
            try:
                module = importlib.import_module(module_name)
            except MissingDependency:
                raise
            except ImportError as missing:  # the `native` extra's packages (httpx, msgspec, h2)
                raise MissingDependency(
                    cls.name, missing.name or "httpx", "native", what='transport="native"'
                ) from missing
            native: type[Provider] = getattr(module, attr)
            return native
        if transport not in ("sdk", "native"):
            raise ConfigurationError(f"transport must be 'sdk' or 'native', not {transport!r}")
        raise ConfigurationError(f"provider {cls.name!r} has no {transport!r} transport")

    @classmethod
    def close_option(cls, keyword: str) -> str | None:
        """The option `keyword` is most likely a misspelling of, if any (``organisation`` for
        ``organization``): `iModel` refuses such a keyword rather than send it as a request parameter."""
        if keyword in cls.option_names:
            return None
        # A typo changes a letter or two; a name that adds a word (max_tool_calls beside the option
        # tool_calls) is another parameter.
        matches = [
            option
            for option in difflib.get_close_matches(keyword, cls.option_names, n=3, cutoff=0.85)
            if abs(len(option) - len(keyword)) <= 2
        ]
        return matches[0] if matches else None

    @abstractmethod
    async def open(self, request: ModelRequest) -> ChunkStream:
        """Send `request` and return the open stream of its chunks."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release client resources (connection pools). Called by `iModel.aclose()`."""


async def listed(chunks: Iterable[Chunk]) -> AsyncIterator[Chunk]:
    """`chunks` as an async iterator: the stream of a non-streamed answer, mapped whole."""
    for chunk in chunks:
        yield chunk


def tool_chunk(data: str, index: int, tool: tuple[str, str], metadata: dict[str, Any], raw: Any) -> Chunk:
    """A ``tool_call`` chunk: an argument fragment `data` of the call `tool` (its id and name, which
    every fragment carries, even where the wire sends them once), of content part `index`."""
    return Chunk(
        type="tool_call",
        data=data,
        index=index,
        tool_call_id=tool[0],
        tool_name=tool[1],
        metadata=metadata,
        raw_response=raw,
    )


PLACEHOLDER_KEY = "no-key"
"""The key a client is built with when none is needed: the SDKs refuse to build one without a key."""


class _ErrorMap:
    """`SdkProvider._map_errors()` for one phase: a plain class, since a stream enters it once per
    event it reads and a generator-based context manager costs a new generator each time."""

    __slots__ = ("_mid_stream", "_phase", "_provider")

    def __init__(self, provider: SdkProvider, phase: TimeoutPhase, mid_stream: bool) -> None:
        self._provider = provider
        self._phase = phase
        self._mid_stream = mid_stream

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        provider = self._provider
        error: ProviderError
        if isinstance(exc, provider.malformed_errors):  # a body or event that is not the JSON it should be
            error = malformed(exc, provider.name)
        elif isinstance(exc, provider.sdk_errors):
            error = provider._error(exc, self._phase)
        else:
            return
        raise (interrupted(error) if self._mid_stream else error) from exc


def backstop_timeout(timeout: Callable[..., Any]) -> Any:
    """An SDK's timeouts (built by its `timeout` class) as backstops only: a minute to connect, not
    the SDKs' 5 s, which a busy event loop (a server relaying a thousand streams) overruns with
    connections that were in fact made; ten minutes between reads. lionflow's `Timeout` phases are
    the ones that decide."""
    return timeout(600.0, connect=60.0)


class SdkProvider(Provider):
    """Base of the adapters over an official SDK's client: the endpoint check, the API key, the
    client's life, and the error-mapping idiom.

    The key (`api_key`) is the settings' one, else the first of `api_key_variables` set in the
    environment. It may be
    missing only when the client talks to a server of the user's choosing (`base_url`, or the
    SDK's own `base_url_variable` in the environment), which may need none; `client_key` is then
    `PLACEHOLDER_KEY`. `server` is that custom server, or None for the provider's own API.
    `base_url_variable` is read here, so it need not be one the SDK reads itself.
    `endpoints` names the endpoint the adapter serves, first, and its other spellings (None always
    selects it). A subclass builds its SDK client in `_make_client()`; `aclose()` closes it.

    Errors: wrap every SDK call in ``with self._map_errors(phase):``, and in a stream only the
    read of the next event, never the ``yield``. An exception of `sdk_errors` becomes `_error()`'s
    lionflow error, and a body that is not JSON a `ProviderError`; `phase` says where the adapter
    was waiting: ``connect`` in `open()`, ``first_chunk`` reading the stream before any chunk went
    out, ``idle`` after one. In a stream the error is the `StreamInterrupted` it is (a
    `ProviderTimeout` stays one). Either way it is chained to the SDK's exception.
    """

    api_key_variables: ClassVar[tuple[str, ...]]
    base_url_variable: ClassVar[str | None] = None
    default_base_url: ClassVar[str | None] = None
    """Where the client goes without a `server`: None leaves it to the SDK (its provider's own API).
    An adapter that reuses another provider's SDK (an OpenAI-compatible API) sets its own."""
    endpoints: ClassVar[tuple[str, ...]]
    sdk_errors: ClassVar[tuple[type[BaseException], ...]]
    """The SDK's exceptions that `_map_errors()` maps (its API error root, its HTTP client's)."""
    malformed_errors: ClassVar[tuple[type[BaseException], ...]] = (json.JSONDecodeError,)
    """What the JSON decoder raises for data that is not JSON: `_map_errors()` reports a malformed
    response."""

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.for_endpoint(settings.endpoint)
        variable = self.base_url_variable
        self.server = settings.base_url or (os.environ.get(variable) if variable else None)
        self.api_key = self._api_key(settings.api_key)
        self.client_key = self.api_key or PLACEHOLDER_KEY
        self._error_maps = {
            (phase, mid_stream): _ErrorMap(self, phase, mid_stream)
            for phase in ("connect", "first_chunk", "idle", "total")
            for mid_stream in (False, True)
        }
        self._client = self._make_client()

    def _api_key(self, api_key: str | None) -> str | None:
        if api_key:
            return api_key
        for variable in self.api_key_variables:
            if value := os.environ.get(variable):
                return value
        if self.server is not None:
            return None
        raise MissingCredentials(
            f"provider {self.name!r} needs an API key: set {' or '.join(self.api_key_variables)} "
            "in the environment, or pass api_key="
        )

    @classmethod
    def for_endpoint(cls, endpoint: str | None) -> type[Provider]:
        if endpoint is None or endpoint.strip("/").lower() in cls.endpoints:
            return cls
        raise ConfigurationError(
            f"provider {cls.name!r} has only the {cls.endpoints[0]!r} endpoint, not {endpoint!r}"
        )

    def _client_arguments(self, timeout: Callable[..., Any] | None = None) -> dict[str, Any]:
        """What the official SDKs' clients (openai, anthropic, groq) are built with alike: the key,
        the server, the ``default_headers`` option, no retries of their own, and, given the SDK's
        `timeout` class, its timeouts as backstops (see `backstop_timeout`)."""
        arguments = {
            "api_key": self.client_key,
            "base_url": self.server or self.default_base_url,
            "default_headers": self.settings.options.get("default_headers"),
            "max_retries": 0,
        }
        if timeout is not None:
            arguments["timeout"] = backstop_timeout(timeout)
        return arguments

    @abstractmethod
    def _make_client(self) -> Any:
        """The SDK client, built from `settings`, `client_key` and the options; with the SDK's own
        retries off (lionflow retries itself, only before the first chunk)."""

    @abstractmethod
    def _error(self, error: BaseException, phase: TimeoutPhase) -> ProviderError:
        """The lionflow error for `error`, an exception of `sdk_errors` raised in `phase`."""

    def _map_errors(self, phase: TimeoutPhase = "connect", *, mid_stream: bool | None = None) -> _ErrorMap:
        """A context manager that raises the SDK's exceptions as lionflow errors (see the class).

        `mid_stream` (default: any phase but ``connect``) makes the error a `StreamInterrupted`; an
        adapter whose SDK sends the request only when the stream is first read passes False until
        the provider's answer began.
        """
        return self._error_maps[phase, phase != "connect" if mid_stream is None else mid_stream]

    async def aclose(self) -> None:
        await self._client.close()
