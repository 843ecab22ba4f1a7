"""The request of ``chat.completions.create`` for the groq SDK, from a lionflow `ModelRequest`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from groq.resources.chat.completions import AsyncCompletions

from lionflow.services.providers._chat_completions_request import chat_messages, chat_params
from lionflow.services.providers._params import sdk_parameters
from lionflow.services.providers._structured import (
    RESPONSE_FORMAT_TYPES,
    output_format,
    schema_instruction,
    with_system_note,
)
from lionflow.services.providers.base import ModelRequest

_SDK_PARAMS = sdk_parameters(AsyncCompletions.create)


def _json_mode(params: dict[str, Any]) -> str | None:
    """Turn a model class or JSON schema given as ``response_format`` into Groq's JSON mode, in
    `params`; the schema then travels in the returned system-prompt note.

    JSON mode works on every Groq model, while ``json_schema`` is refused by the models without
    Structured Outputs. JSON mode needs the word JSON in the prompt, and the note says what to fill in.
    A response format dict (``{"type": "json_schema", ...}``, ``{"type": "json_object"}``) is Groq's
    own form and is sent as given.
    """
    value = params.get("response_format")
    if value is None or (isinstance(value, Mapping) and value.get("type") in RESPONSE_FORMAT_TYPES):
        return None
    spec = output_format(value)
    assert spec is not None
    params["response_format"] = {"type": "json_object"}
    return schema_instruction(spec)


def request_arguments(request: ModelRequest) -> dict[str, Any]:
    """The keyword arguments of ``create()`` but `stream`: ``max_tokens`` as ``max_completion_tokens``
    (Groq's current name), ``developer`` messages as ``system`` (Groq has no developer role), and a
    structured output as JSON mode with the schema in a system note."""
    params = dict(request.params)
    note = _json_mode(params)
    arguments = chat_params(params, max_tokens_field="max_completion_tokens", sdk_params=_SDK_PARAMS)
    arguments["model"] = request.model
    messages = chat_messages(request.messages, developer_role="system")
    arguments["messages"] = messages if note is None else with_system_note(messages, note)
    return arguments
