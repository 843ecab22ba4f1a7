"""Structured streaming: incremental partial JSON and partially filled pydantic objects.

Not built yet: PartialJSON and stream_partial arrive with the structured-streaming work.
"""

__all__: list[str] = []
