"""The request of ``chat.completions.create`` for the OpenAI SDK, from a lionflow `ModelRequest`."""

from __future__ import annotations

from typing import Any

from openai.resources.chat.completions import AsyncCompletions

from lionflow.services.providers._chat_completions_request import chat_messages, chat_params
from lionflow.services.providers._params import sdk_parameters
from lionflow.services.providers.base import ModelRequest

_SDK_PARAMS = sdk_parameters(AsyncCompletions.create)


def request_arguments(request: ModelRequest, *, server: str | None) -> dict[str, Any]:
    """The keyword arguments of ``create()`` but `stream`, for OpenAI itself (`server` None) or a
    compatible server at that URL.

    ``max_tokens`` is sent as ``max_completion_tokens`` to OpenAI (its reasoning models reject
    ``max_tokens``) and as ``max_tokens`` to other servers, which may know only that name. A
    streamed call asks for usage: without ``include_usage`` OpenAI reports none.
    """
    openai_itself = server is None or "api.openai.com" in server
    max_tokens_field = "max_completion_tokens" if openai_itself else "max_tokens"
    arguments = chat_params(request.params, max_tokens_field=max_tokens_field, sdk_params=_SDK_PARAMS)
    arguments["model"] = request.model
    arguments["messages"] = chat_messages(request.messages)
    stream_options = arguments.pop("stream_options", None) or {}
    if request.stream:
        arguments["stream_options"] = {"include_usage": True, **stream_options}
    return arguments
