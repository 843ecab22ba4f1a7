"""`Rails`: a guarded model with the two streaming calls NeMo Guardrails users know,
``stream_async(messages=)`` (the text as it is released) and ``generate_async(messages=,
streaming_handler=)`` (the whole reply, the text fed to a `StreamingHandler` meanwhile)::

    app = Rails(iModel(provider="openai", model="gpt-4o-mini"), guards=[no_secrets])
    async for chunk in app.stream_async(messages=history):
        print(chunk, end="")
    result = await app.generate_async(messages=history, streaming_handler=StreamingHandler())
    # {"role": "assistant", "content": "..."}
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol

from lionflow.errors import ConfigurationError
from lionflow.guards.handler import StreamingHandler
from lionflow.guards.output import InputGuard, OutputGuard


class _Model(Protocol):  # an iModel (guards, a leaf, does not import services)
    def invoke(self, messages: Any, **params: Any) -> Any: ...


class Rails:
    """`model` behind `guards` (input and output, `lionflow.guards`), called as NeMo Guardrails'
    ``LLMRails`` is: the reply is the text the output guards let through."""

    def __init__(self, model: _Model, *, guards: Iterable[InputGuard | OutputGuard] = ()) -> None:
        if not callable(getattr(model, "invoke", None)):
            raise ConfigurationError(f"Rails needs a model (an iModel), not {model!r}")
        self.model = model
        self.guards = list(guards)

    async def stream_async(self, messages: Sequence[dict[str, Any]]) -> AsyncIterator[str]:
        """The reply's text, piece by piece, as the guards release it."""
        async with self.model.invoke(list(messages), guards=self.guards) as call:
            async for chunk in call:
                if chunk.type == "text" and chunk.data:
                    yield chunk.data

    async def generate_async(
        self, messages: Sequence[dict[str, Any]], *, streaming_handler: StreamingHandler[Any] | None = None
    ) -> dict[str, str]:
        """The reply as a chat message (``{"role": "assistant", "content": ...}``); with a
        `streaming_handler`, its text is pushed there as it is released, and the handler ends with it."""
        response = await self.model.invoke(
            list(messages), guards=self.guards, streaming_handler=streaming_handler
        )
        return {"role": "assistant", "content": response.text}
