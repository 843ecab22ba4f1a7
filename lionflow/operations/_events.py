"""What a flow run hands out: `FlowEvent`s beside the chunks, and the `FlowResults` at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from lionflow.operations.builder import Operation
from lionflow.services.chunk import Chunk
from lionflow.services.response import Response

OnError = Literal["fail_fast", "continue"]
EventKind = Literal["started", "item", "completed", "failed", "skipped", "cancelled"]


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """An operation's lifecycle, interleaved with its chunks: started, then exactly one of completed
    (with `result`), failed (with `error`), skipped (a dependency did not complete) or cancelled
    (the flow stopped before it finished). An item stream (a ``response_format=list[Model]`` reply,
    an async-generator step, a `for_each` operation) also announces each item the moment it is
    complete: ``item``, with the item as `result`.

    Its `str()` is empty, so a loop printing every item shows only the text.
    """

    kind: EventKind
    operation: Operation
    result: Any = None
    error: BaseException | None = None

    def __str__(self) -> str:
        return ""


class FlowResults(dict[str, Any]):
    """`{operation_id: result}` of the operations that completed, with what became of the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: dict[str, BaseException] = {}
        self.skipped: list[str] = []
        self.cancelled: list[str] = []


Item = tuple[str, Chunk | FlowEvent]


def context_value(result: Any) -> Any:
    """An operation's result as another operation's context: a reply's parsed value or text, a
    pydantic model as its JSON, anything else as it is."""
    if isinstance(result, Response):
        return result.parsed if result.parsed is not None else result.text
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return result
