"""`iModel`: one service over every provider."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

import anyio
from pydantic import BaseModel

from lionflow.errors import ConfigurationError
from lionflow.guards.handler import StreamingHandler
from lionflow.guards.output import InputGuard, OutputGuard
from lionflow.services.call import ModelCall
from lionflow.services.driver import CallContext
from lionflow.services.policy import RateLimiter, RetryPolicy, Timeout, check_count, check_seconds
from lionflow.services.providers import provider_class, provider_names
from lionflow.services.providers._structured import with_system_note
from lionflow.services.providers.base import ModelRequest, Provider, ProviderSettings


@runtime_checkable
class _HasChatMsg(Protocol):
    @property
    def chat_msg(self) -> dict[str, Any]: ...


ChatMessageLike = Mapping[str, Any] | _HasChatMsg
"""A provider chat dict (``{"role": "user", "content": "hi"}``) or a lionflow `Message`."""

M = TypeVar("M", bound=BaseModel)

# (None is a value: `response_format=None` turns off a model-wide default for one call)
_UNSET: Any = object()


_EXPECTED_MESSAGES = (
    "expected a list of chat dicts like {'role': 'user', 'content': '...'} or lionflow Messages, or a string"
)


def _chat_messages(messages: object) -> list[dict[str, Any]]:
    # `object`: the types say what a caller should pass; this checks what one did pass.
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping | _HasChatMsg):
        # (iterating one would give its keys or fields, and a puzzling error about those)
        raise ConfigurationError("messages is a single message; wrap it in a list: messages=[message]")
    if isinstance(messages, bytes | bytearray) or not isinstance(messages, Iterable):
        what = "None" if messages is None else f"a {type(messages).__name__}"
        raise ConfigurationError(f"messages is {what}; {_EXPECTED_MESSAGES}")
    result: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        if isinstance(message, Mapping):
            if "role" not in message:
                raise ConfigurationError(f"messages[{position}] has no 'role': {dict(message)!r}")
            result.append(dict(message))
        elif isinstance(message, _HasChatMsg):
            result.append(message.chat_msg)
        else:
            raise ConfigurationError(
                f"messages[{position}] is a {type(message).__name__}; "
                "expected a chat dict like {'role': 'user', 'content': '...'} or a lionflow Message"
            )
    if not result:
        raise ConfigurationError("messages is empty; a model call needs at least one message")
    return result


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _guards(guards: Iterable[object]) -> tuple[InputGuard | OutputGuard, ...]:
    if isinstance(guards, InputGuard | OutputGuard):
        guards = [guards]
    checked = tuple(guards)
    for guard in checked:
        if not isinstance(guard, InputGuard | OutputGuard):
            raise ConfigurationError(
                f"guards are InputGuards and OutputGuards (lionflow.guards), not {guard!r}"
            )
    return checked  # type: ignore[return-value]


def _check_params(params: Mapping[str, Any]) -> None:
    temperature = params.get("temperature")
    if temperature is not None and (not _is_number(temperature) or not temperature >= 0):
        raise ConfigurationError(f"temperature must be a number >= 0, not {temperature!r}")
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise ConfigurationError(f"max_tokens must be a positive integer, not {max_tokens!r}")
    top_p = params.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0 <= top_p <= 1):
        raise ConfigurationError(f"top_p must be a number between 0 and 1, not {top_p!r}")
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigurationError(f"seed must be an integer, not {seed!r}")


def _check_settings(settings: Mapping[str, object]) -> None:
    """iModel's own arguments: ConfigurationError saying what was expected, before anything is built."""
    for name in ("model", "name", "api_key", "base_url", "endpoint"):
        value = settings[name]
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a string, not {value!r}")
    if not isinstance(settings["stream"], bool):
        raise ConfigurationError(f"stream must be True or False, not {settings['stream']!r}")
    check_count(settings["max_retries"], "max_retries", minimum=0)
    check_seconds(settings["retry_initial_delay"], "retry_initial_delay")
    check_seconds(settings["retry_max_delay"], "retry_max_delay")
    for name in ("max_concurrent", "requests_per_minute"):
        if settings[name] is not None:
            check_count(settings[name], name, minimum=1)


class iModel:
    """One model behind one provider, with streaming, retries, timeouts and limits built in.

    ::

        model = iModel(provider="openai", model="gpt-4o-mini", temperature=0.7, name="gpt")
        async for chunk in model.invoke(messages=[{"role": "user", "content": "hi"}]):
            print(chunk, end="", flush=True)
        response = await model.invoke(messages=[...])

    `provider` picks the adapter (see `lionflow.provider_names()`). `stream` chooses the
    provider-side mode only (kept as `provider_stream`): every call can be awaited or iterated.
    Generation parameters given here (`temperature`, `max_tokens`, `top_p`, `stop`, `seed`, and any other
    keyword, such as `tools`) are defaults for every call; `invoke(**params)` overrides them.
    Keywords the adapter knows as its own options (`ScriptedModel`'s ``responses=``, say) configure
    the adapter instead.

    `timeout` is seconds (connect, first chunk and idle gap alike) or a `Timeout`. The SDKs' own
    timeouts (their defaults, or one a call passes on to the SDK, such as ``invoke(...,
    timeout=5)`` for the openai, anthropic and groq SDKs) raise the same `ProviderTimeout`, with the
    phase they ran out in.

    `transport` is how the SDK providers are reached: ``"sdk"`` (the default) through the official
    SDK, ``"native"`` over httpx with lionflow's own SSE and JSON decoding (extra
    ``lionflow[native]``): the same chunks, Responses and errors at a fraction of the CPU per delta,
    with ``raw_response`` the decoded event (a dict) instead of an SDK object. See docs/providers.md.

    Retryable errors are retried up to `max_retries` times with exponential backoff and jitter,
    only before the first chunk reached the caller. `max_concurrent` bounds the calls in flight on
    this model, and `requests_per_minute` the requests started in any 60-second window.
    """

    def __init__(
        self,
        provider: str,
        model: str | None = None,
        *,
        name: str | None = None,
        stream: bool = True,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        endpoint: str | None = None,
        transport: str = "sdk",
        max_retries: int = 2,
        retry_initial_delay: float = 0.5,
        retry_max_delay: float = 20.0,
        timeout: float | Timeout | None = None,
        max_concurrent: int | None = None,
        requests_per_minute: int | None = None,
        guards: Iterable[InputGuard | OutputGuard] = (),
        **kwargs: Any,
    ) -> None:
        if not isinstance(provider, str):
            raise ConfigurationError(
                f"provider must be a provider name such as 'openai', not {provider!r}; "
                f"known: {', '.join(provider_names())}"
            )
        _check_settings(
            {
                "model": model,
                "name": name,
                "api_key": api_key,
                "base_url": base_url,
                "endpoint": endpoint,
                "stream": stream,
                "max_retries": max_retries,
                "retry_initial_delay": retry_initial_delay,
                "retry_max_delay": retry_max_delay,
                "max_concurrent": max_concurrent,
                "requests_per_minute": requests_per_minute,
            }
        )
        if not isinstance(transport, str):
            raise ConfigurationError(f"transport must be 'sdk' or 'native', not {transport!r}")
        adapter_cls = provider_class(provider).for_endpoint(endpoint).for_transport(transport)
        model = model or getattr(adapter_cls, "default_model", None)
        if not model:
            raise ConfigurationError(f"provider {provider!r} needs model=, the model id to call")

        options = {key: kwargs.pop(key) for key in list(kwargs) if key in adapter_cls.option_names}
        for key in kwargs:
            # A misspelled option would otherwise travel to the provider as a request parameter.
            intended = adapter_cls.close_option(key)
            if intended is not None:
                raise ConfigurationError(
                    f"provider {provider!r} has no option {key!r}; did you mean {intended!r}?"
                )
        explicit = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "top_p": top_p,
            "stop": stop,
            "seed": seed,
        }
        self.params: dict[str, Any] = {k: v for k, v in explicit.items() if v is not None} | kwargs
        _check_params(self.params)

        self.provider = provider
        self.model = model
        self.name = name or model
        # The `stream=` argument: how the provider is asked to answer (streamed, or one whole
        # reply). Not to be confused with `stream()`, the context-manager form of a call: every call
        # can be awaited or iterated whatever this says.
        self.provider_stream = stream
        self.max_concurrent = max_concurrent
        self.requests_per_minute = requests_per_minute
        # Checked before the adapter (and its SDK client) is built: a bad argument is reported
        # as such, not as the missing key the adapter would complain of first.
        timeouts = Timeout.of(timeout)
        retry = RetryPolicy(
            max_retries=max_retries, initial_delay=retry_initial_delay, max_delay=retry_max_delay
        )
        adapter = adapter_cls(
            ProviderSettings(
                model=model, api_key=api_key, base_url=base_url, endpoint=endpoint, options=options
            )
        )
        # Everything a call needs from its model, handed over as each call starts: a call never
        # reads the iModel. Setting `timeout`, `retry` or `adapter` here governs the calls after it.
        self._context = CallContext(
            adapter=adapter,
            provider=provider,
            timeout=timeouts,
            retry=retry,
            slots=None if max_concurrent is None else anyio.Semaphore(max_concurrent),
            rate_limiter=None if requests_per_minute is None else RateLimiter(requests_per_minute),
            guards=_guards(guards),
        )

    @property
    def adapter(self) -> Provider:
        """The provider adapter the calls go through."""
        return self._context.adapter

    @adapter.setter
    def adapter(self, adapter: Provider) -> None:
        self._context = dataclasses.replace(self._context, adapter=adapter)

    @property
    def timeout(self) -> Timeout:
        """The call timeouts (`Timeout`); a new value governs the calls started after it."""
        return self._context.timeout

    @timeout.setter
    def timeout(self, timeout: float | Timeout | None) -> None:
        self._context = dataclasses.replace(self._context, timeout=Timeout.of(timeout))

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy (`RetryPolicy`); a new one governs the calls started after it."""
        return self._context.retry

    @retry.setter
    def retry(self, retry: RetryPolicy) -> None:
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, not {retry!r}")
        self._context = dataclasses.replace(self._context, retry=retry)

    def __repr__(self) -> str:
        return f"iModel(provider={self.provider!r}, model={self.model!r}, name={self.name!r})"

    def settings(self) -> dict[str, Any]:
        """The keywords that build this model again, elsewhere: ``iModel(**model.settings())``
        (how a model travels to another process, such as a Ray worker). The API key is left out:
        pass it there as ``api_key=``, or let the provider read its environment variable. A model
        whose `adapter` was replaced is rebuilt with the adapter its settings name."""
        adapter = self.adapter.settings
        retry = self.retry
        return {
            "provider": self.provider,
            "model": self.model,
            "name": self.name,
            "stream": self.provider_stream,
            "base_url": adapter.base_url,
            "endpoint": adapter.endpoint,
            "transport": self.adapter.transport,
            "max_retries": retry.max_retries,
            "retry_initial_delay": retry.initial_delay,
            "retry_max_delay": retry.max_delay,
            "timeout": self.timeout,
            "max_concurrent": self.max_concurrent,
            "requests_per_minute": self.requests_per_minute,
            "guards": self._context.guards,
            **adapter.options,
            **self.params,
        }

    def request(self, messages: str | Iterable[ChatMessageLike], **params: Any) -> ModelRequest:
        """The `ModelRequest` that `invoke()` would send; useful to inspect what a provider receives."""
        merged = self.params | params
        _check_params(merged)
        chat = _chat_messages(messages)
        reply_format = merged.pop("reply_format", "json")
        if reply_format == "json":
            return ModelRequest(model=self.model, messages=chat, params=merged, stream=self.provider_stream)
        if reply_format != "toon":
            raise ConfigurationError(f"reply_format must be 'json' or 'toon', not {reply_format!r}")
        # Asked for in the prompt: the API is asked for plain text, the reply parsed as TOON.
        from lionflow.toon._prompt import reply_instruction  # (a TOON request is the only user)

        structure = merged.pop("response_format", None)
        return ModelRequest(
            model=self.model,
            messages=with_system_note(chat, reply_instruction(structure)),
            params=merged,
            stream=self.provider_stream,
            structure=structure,
            reply_format="toon",
        )

    @overload
    def invoke(
        self, messages: str | Iterable[ChatMessageLike], *, response_format: type[M], **params: Any
    ) -> ModelCall[M]: ...
    @overload
    def invoke(
        self, messages: str | Iterable[ChatMessageLike], *, response_format: type[list[M]], **params: Any
    ) -> ModelCall[list[M]]: ...
    @overload
    def invoke(
        self, messages: str | Iterable[ChatMessageLike], *, response_format: object = ..., **params: Any
    ) -> ModelCall[Any]: ...
    def invoke(
        self,
        messages: str | Iterable[ChatMessageLike],
        *,
        response_format: object = _UNSET,
        **params: Any,
    ) -> ModelCall[Any]:
        """Call the model. Await the result for a `Response`, or iterate it for `Chunk`s.

        `messages` is a list of chat dicts or `Message`s (a plain string is one user message);
        `params` override this model's default generation parameters for this call.
        ``guards=[...]`` adds guards to the model's for this call (`lionflow.guards`);
        ``streaming_handler=`` a `StreamingHandler` that gets the call's text as it is released, and
        its end, whatever it is.
        ``response_format=Model`` (a pydantic model class) asks for a structured reply: the call is a
        ``ModelCall[Model]``, its response a ``Response[Model]`` whose `parsed` is the validated
        `Model`; ``response_format=list[Model]`` a list of them (`ModelCall.items()` yields each as
        it closes). A JSON schema dict is accepted too (`parsed` is then the JSON value).
        """
        if response_format is not _UNSET:
            params["response_format"] = response_format
        context = self._context
        guards = params.pop("guards", None)
        if guards:  # the model's guards, then the call's
            context = dataclasses.replace(context, guards=context.guards + _guards(guards))
        handler = params.pop("streaming_handler", None)
        if handler is not None and not isinstance(handler, StreamingHandler):
            raise ConfigurationError(f"streaming_handler must be a StreamingHandler, not {handler!r}")
        return ModelCall(context, self.request(messages, **params), streaming_handler=handler)

    @overload
    def stream(
        self, messages: str | Iterable[ChatMessageLike], *, response_format: type[M], **params: Any
    ) -> ModelCall[M]: ...
    @overload
    def stream(
        self, messages: str | Iterable[ChatMessageLike], *, response_format: type[list[M]], **params: Any
    ) -> ModelCall[list[M]]: ...
    @overload
    def stream(
        self, messages: str | Iterable[ChatMessageLike], *, response_format: object = ..., **params: Any
    ) -> ModelCall[Any]: ...
    def stream(
        self,
        messages: str | Iterable[ChatMessageLike],
        *,
        response_format: object = _UNSET,
        **params: Any,
    ) -> ModelCall[Any]:
        """The context-manager form of `invoke()`: the stream is closed when the block ends.

        ::

            async with model.stream(messages=msgs) as call:
                async for chunk in call:
                    ...
            response = call.response

            async with model.stream(messages=msgs, response_format=Person) as call:
                async for person in call.partials():     # Person objects, filling in
                    ...
        """
        return self.invoke(messages, response_format=response_format, **params)

    async def aclose(self) -> None:
        """Release the provider client's resources (connection pools)."""
        await self.adapter.aclose()

    async def __aenter__(self) -> iModel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
