"""What the providers' structured-output tests share: the answer models, the expected answer, and the
checks on partial objects."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict

from lionflow import iModel
from tests.loopback import LoopbackServer
from tests.providers.helpers import HI


class Stop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    nights: int


class Trip(BaseModel):
    """A planned trip."""

    model_config = ConfigDict(extra="forbid")  # with every field required: strict mode's rules hold

    title: str
    stops: list[Stop]


class Note(BaseModel):
    """A field with a default is not required: strict mode refuses this schema."""

    text: str
    tags: list[str] = []


TRIP = Trip(
    title="Fjords: Ålesund → Tromsø ⛴", stops=[Stop(city="Ålesund", nights=2), Stop(city="Tromsø", nights=3)]
)
TRIP_JSON = TRIP.model_dump_json()
# A list reply, in the form lionflow asks for: the list under "items".
STOPS_JSON = '{"items": ' + json.dumps([stop.model_dump() for stop in TRIP.stops], ensure_ascii=False) + "}"

# A plain JSON schema given as response_format, with the title that names it.
POINT_SCHEMA: dict[str, Any] = {
    "title": "Point",
    "type": "object",
    "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
    "required": ["x", "y"],
    "additionalProperties": False,
}


def pieces(text: str, size: int = 4) -> list[str]:
    """`text` in deltas of `size` characters, as a model streams its JSON."""
    return [text[i : i + size] for i in range(0, len(text), size)]


async def streamed_partials(model: iModel) -> list[Trip]:
    """Every object `partials()` yields for one call asking for a `Trip`."""
    async with model.stream(HI, response_format=Trip) as call:
        found = [partial async for partial in call.partials()]
    assert call.response is not None
    assert call.response.parsed == TRIP
    return found


def assert_growing(partials: list[Trip]) -> None:
    """The partials fill in while the JSON arrives, and the last one is the whole, validated answer."""
    assert partials[-1] == TRIP
    assert all(isinstance(partial, Trip) for partial in partials)
    growing = partials[:-1]
    assert len(growing) >= 2
    titles = [partial.title or "" for partial in growing]
    counts = [len(partial.stops or []) for partial in growing]
    assert all(later.startswith(earlier) for earlier, later in pairwise(titles))
    assert counts == sorted(counts)
    assert titles[0] != titles[-1] or counts[0] != counts[-1]  # something did grow
    assert growing[0] != TRIP


async def items_as_they_close(model: iModel, server: LoopbackServer) -> list[tuple[Stop, int]]:
    """Every `Stop` that `items()` yields for one call asking for ``list[Stop]``, with how many of
    the reply's pieces the server had sent when it arrived."""
    seen: list[tuple[Stop, int]] = []
    async with model.stream(HI, response_format=list[Stop]) as call:
        async for stop in call.items():
            seen.append((stop, server.requests[-1].pieces_sent))
    assert call.response is not None
    assert call.response.parsed == TRIP.stops  # the whole list, validated: the same elements
    return seen
