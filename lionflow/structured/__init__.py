"""Structured streaming: incremental partial JSON and partially filled pydantic objects.

`PartialJSON().feed(text)` / `.value` is the incremental parser (linear time); `stream_partial(source,
Model)` turns any stream of JSON text into partial `Model` instances, ending with the strictly
validated one; `PartialObjects(Model).feed(text)` does the same in a loop of your own.
"""

from lionflow.errors import PartialJSONError
from lionflow.structured.partial_json import PartialJSON
from lionflow.structured.partial_model import PartialBuilder, PartialObjects, stream_partial

__all__ = ["PartialBuilder", "PartialJSON", "PartialJSONError", "PartialObjects", "stream_partial"]
