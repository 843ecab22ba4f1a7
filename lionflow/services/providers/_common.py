"""What every adapter needs and no SDK provides: credentials and the client's life, HTTP error
mapping, and the request parameters every API shares (tools, tool_choice, stop).

Chat messages are parsed once into a neutral form in `lionflow.services.providers.messages`;
adapters render that form.
"""

from __future__ import annotations

import email.utils
import inspect
import json
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from lionflow.errors import (
    AuthenticationError,
    ConfigurationError,
    MissingCredentials,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    RateLimitError,
    StreamInterrupted,
    TimeoutPhase,
)
from lionflow.services.chunk import Chunk
from lionflow.services.providers.base import Provider

__all__ = [
    "PLACEHOLDER_KEY",
    "SdkProvider",
    "ToolChoice",
    "ToolSpec",
    "content_text",
    "interrupted",
    "listed",
    "malformed",
    "parse_arguments",
    "resolve_api_key",
    "retry_after_seconds",
    "sdk_arguments",
    "sdk_parameters",
    "sdk_timeout",
    "status_error",
    "stop_sequences",
    "tool_choice",
    "tool_list",
    "tool_specs",
]


# -- credentials -----------------------------------------------------------------------------------


def resolve_api_key(
    api_key: str | None, env_vars: Sequence[str], provider: str, *, required: bool = True
) -> str | None:
    """`api_key`, else the first of `env_vars` that is set.

    Raises `MissingCredentials` naming the variables when none is found and `required` (adapters
    pass ``required=False`` when the user pointed `base_url` at a server that may need no key).
    """
    if api_key:
        return api_key
    for name in env_vars:
        value = os.environ.get(name)
        if value:
            return value
    if required:
        names = " or ".join(env_vars)
        raise MissingCredentials(
            f"provider {provider!r} needs an API key: set {names} in the environment, or pass api_key="
        )
    return None


PLACEHOLDER_KEY = "no-key"
"""The key a client is built with when none is needed: the SDKs refuse to build one without a key."""


class SdkProvider(Provider):
    """Base of the adapters over an official SDK's client: the endpoint check, the API key, `aclose()`.

    The key is `api_key`, else the first of `api_key_variables` set in the environment. It may be
    missing only when the client talks to a server of the user's choosing (`base_url`, or the
    SDK's own `base_url_variable` in the environment), which may need none; `client_key` is then
    `PLACEHOLDER_KEY`. `server` is that custom server, or None for the provider's own API.

    `endpoints` names the endpoint the adapter serves, first, and its other spellings (None always
    selects it). A subclass builds its client as `_client` in its constructor, after calling this
    one; `aclose()` closes it.
    """

    api_key_variables: ClassVar[tuple[str, ...]]
    base_url_variable: ClassVar[str | None] = None
    endpoints: ClassVar[tuple[str, ...]]
    _client: Any

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.for_endpoint(endpoint)
        variable = self.base_url_variable
        self.server = base_url or (os.environ.get(variable) if variable else None)
        key = resolve_api_key(api_key, self.api_key_variables, self.name, required=self.server is None)
        super().__init__(model=model, api_key=key, base_url=base_url, endpoint=endpoint)
        self.client_key = key or PLACEHOLDER_KEY

    @classmethod
    def for_endpoint(cls, endpoint: str | None) -> type[Provider]:
        if endpoint is None or endpoint.strip("/").lower() in cls.endpoints:
            return cls
        raise ConfigurationError(
            f"provider {cls.name!r} has only the {cls.endpoints[0]!r} endpoint, not {endpoint!r}"
        )

    async def aclose(self) -> None:
        await self._client.close()


async def listed(chunks: Iterable[Chunk]) -> AsyncIterator[Chunk]:
    """`chunks` as an async iterator: the stream of a non-streamed answer, mapped whole."""
    for chunk in chunks:
        yield chunk


# -- errors ----------------------------------------------------------------------------------------


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if present.

    A value that is none of these (a proxy's own text, ``nan``) counts as absent: the error it came
    with must still map to its own class.
    """
    if not headers:
        return None
    millis = _seconds(headers.get("retry-after-ms") or "")
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def status_error(
    status: int, message: str, *, provider: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """The lionflow error for an HTTP error status: 401/403, 429, or any other."""
    if status in (401, 403):
        return AuthenticationError(f"HTTP {status}: {message}", provider=provider)
    if status == 429:
        return RateLimitError(
            f"HTTP 429: {message}", provider=provider, retry_after=retry_after_seconds(headers)
        )
    return ProviderHTTPError(status, message, provider=provider)


def malformed(error: ValueError, provider: str) -> ProviderError:
    """The error for a body or stream event that is not the JSON it should be (a proxy's error
    page sent with status 200, an event cut short); the caller chains `error`."""
    return ProviderError(f"{provider} sent a malformed response: {error}", provider=provider)


def interrupted(error: ProviderError) -> ProviderError:
    """`error`, raised during iteration, as the StreamInterrupted it is (same message, retryability).

    A `ProviderTimeout` stays one: its phase already says that it happened in the stream.
    """
    if isinstance(error, StreamInterrupted | ProviderTimeout):
        return error
    result = StreamInterrupted(error.message, provider=error.provider, retryable=error.retryable)
    result.__cause__ = error.__cause__ or error
    return result


# What the HTTP client (httpx, or the httpx2 fork some SDKs use) names each of its timeouts; the
# client's own exceptions are matched by name so that this module imports no HTTP library.
_HTTP_TIMEOUTS = {
    "ConnectTimeout": "connect",
    "ReadTimeout": "read",
    "WriteTimeout": "write",
    "PoolTimeout": "pool",
}


def _http_timeout(error: BaseException) -> tuple[str, float | None]:
    """Which of the HTTP client's timeouts ran out under `error` (an SDK's timeout error or the
    HTTP client's own), and the seconds the request was given for it."""
    kind = "read"
    seconds: float | None = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _HTTP_TIMEOUTS.get(type(current).__name__, kind)
        try:
            request = getattr(current, "request", None)
        except RuntimeError:  # httpx's way of saying that the error has no request
            request = None
        extensions = getattr(request, "extensions", None)
        settings = extensions.get("timeout") if isinstance(extensions, Mapping) else None
        if isinstance(settings, Mapping) and isinstance(settings.get(kind), int | float):
            seconds = float(settings[kind])
        current = current.__cause__ or current.__context__
    return kind, seconds


def sdk_timeout(error: BaseException, phase: TimeoutPhase, *, provider: str) -> ProviderTimeout:
    """A timeout of the SDK's own (a ``timeout=`` the request was sent with, or its HTTP client's
    default) as the `ProviderTimeout` it is; the caller chains `error`.

    `phase` is where the adapter was waiting: ``connect`` until the provider's answer began (in
    `open()`), ``first_chunk`` reading the stream before any chunk, ``idle`` after one. A connect,
    write or pool timeout means the request never reached the provider: always ``connect``.
    """
    kind, seconds = _http_timeout(error)
    if kind != "read":
        phase = "connect"
    return ProviderTimeout(
        phase,
        math.nan if seconds is None else seconds,
        provider=provider,
        detail=f"the {provider} SDK's {kind} timeout ran out",
    )


# -- request parameters ----------------------------------------------------------------------------


def sdk_parameters(method: Callable[..., Any]) -> frozenset[str]:
    """The keyword arguments an SDK method takes."""
    return frozenset(inspect.signature(method).parameters) - {"self"}


def sdk_arguments(params: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """`params` as keyword arguments of an SDK method that takes `known` (see `sdk_parameters`).

    The others travel in the request body as given (``extra_body``, over one the caller gave), so
    that what this SDK version does not list (a newer parameter, a compatible server's own) still
    reaches the API.
    """
    arguments: dict[str, Any] = {}
    extra_body = dict(params.get("extra_body") or {})
    for key, value in params.items():
        if key != "extra_body":
            (arguments if key in known else extra_body)[key] = value
    if extra_body:
        arguments["extra_body"] = extra_body
    return arguments


# -- messages --------------------------------------------------------------------------------------


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") in ("text", "input_text", "output_text"):
                texts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ConfigurationError(f"message content part of type {kind!r} is not supported here")
        return "".join(texts)
    return str(content)


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments as an object, from a JSON string or a mapping."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        value = json.loads(arguments)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"tool-call arguments are not valid JSON: {arguments!r}") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"tool-call arguments must be a JSON object, not {arguments!r}")
    return value


def stop_sequences(stop: Any) -> list[str]:
    """The ``stop`` parameter as a list of sequences (empty when none); `ConfigurationError` unless
    it is a string or a list of strings."""
    if stop is None or stop == "":
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list | tuple) and all(isinstance(item, str) for item in stop):
        if "" in stop:
            raise ConfigurationError(f"stop sequences must not be empty: {stop!r}")
        return list(stop)
    raise ConfigurationError(f"stop must be a string or a list of strings, not {stop!r}")


# -- tools -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool in provider-neutral form; `parameters` is a JSON schema of an object."""

    name: str
    description: str
    parameters: dict[str, Any]


def _tool_spec(tool: Any) -> ToolSpec:
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        return ToolSpec(tool.__name__, (tool.__doc__ or "").strip(), tool.model_json_schema())
    if not isinstance(tool, Mapping):
        raise ConfigurationError(f"a tool must be a dict or a pydantic model class, not {tool!r}")
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        tool = tool["function"]  # OpenAI chat form
    name = tool.get("name")
    if not name or not isinstance(name, str):
        raise ConfigurationError(f"a tool needs a 'name' (a non-empty string): {dict(tool)!r}")
    parameters = tool.get("parameters", tool.get("input_schema")) or {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping):
        raise ConfigurationError(
            f"tool {name!r}: 'parameters' must be a JSON schema object (a dict), not {parameters!r}"
        )
    return ToolSpec(name, str(tool.get("description") or ""), dict(parameters))


def _tool_name(tool: Any) -> str | None:
    """The name a tool is called by, or None for one that has none to check (a provider's own)."""
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        return tool.__name__
    if isinstance(tool, Mapping):
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
        return name if isinstance(name, str) else None
    return None


def tool_list(tools: Any) -> list[Any]:
    """The ``tools`` parameter as a list; `ConfigurationError` unless it is a list (or another
    iterable) of tools: a string, a single dict or a model class is a mistake, not a list of tools."""
    if tools is None:
        return []
    if isinstance(tools, str | bytes | Mapping | type) or not isinstance(tools, Iterable):
        raise ConfigurationError(
            f"tools must be a list of tools (dicts or pydantic model classes), not {tools!r}"
        )
    result = list(tools)
    counts = Counter(name for name in map(_tool_name, result) if name is not None)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        # The model could not say which one it calls; the APIs reject it or keep one of them.
        raise ConfigurationError(f"tools has more than one tool named {', '.join(map(repr, duplicates))}")
    return result


def tool_specs(tools: Any) -> list[ToolSpec]:
    """Tools given in OpenAI form, flat ``{name, description, parameters}`` form, Anthropic form
    (``input_schema``) or as pydantic model classes, normalized."""
    return [_tool_spec(tool) for tool in tool_list(tools)]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``auto``, ``none``, ``required`` (some tool), or ``tool`` with the one `name` to call."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


def _choice(choice: Any) -> ToolChoice:
    if isinstance(choice, str) and choice:
        if choice in ("auto", "none", "required"):
            return ToolChoice(choice)  # type: ignore[arg-type]
        if choice == "any":
            return ToolChoice("required")
        return ToolChoice("tool", choice)
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
        if name and isinstance(name, str):
            return ToolChoice("tool", name)
        if name is None and choice.get("type") in ("auto", "none", "required", "any"):
            return _choice(choice["type"])
    raise ConfigurationError(
        f"tool_choice {choice!r} is not understood; use auto, none, required or a tool name"
    )


def tool_choice(choice: Any, tools: Sequence[Any]) -> ToolChoice | None:
    """Normalize ``"auto" | "none" | "required" | "any" | {"type": "function", "function": {"name"}}
    | {"name": ...} | "<tool name>"`` for a request that offers `tools` (see `tool_list`).

    `ConfigurationError` for a choice no API could honour: ``required`` or a tool's name without
    tools, or the name of a tool not among them. ``auto`` and ``none`` without tools say nothing
    and are not sent (None): some APIs reject a tool_choice without tools.
    """
    if choice is None:
        return None
    result = _choice(choice)
    if not tools:
        if result.mode in ("auto", "none"):
            return None
        raise ConfigurationError(f"tool_choice {choice!r} needs tools=: the request offers no tools")
    names = [_tool_name(tool) for tool in tools]
    if result.mode == "tool" and None not in names and result.name not in names:
        raise ConfigurationError(
            f"tool_choice names {result.name!r}, which is not among the tools: "
            + ", ".join(repr(name) for name in names)
        )
    return result
