"""A structured reply in TOON, parsed while it streams, offline: the model is asked (in the prompt)
for a TOON document shaped like a pydantic model, and each partial object shows what the lines
received so far say.

    python docs/examples/toon_reply.py
"""

import asyncio

from pydantic import BaseModel

from lionflow.testing import ScriptedModel


class Stop(BaseModel):
    city: str
    nights: int


class Trip(BaseModel):
    title: str = ""
    stops: list[Stop] = []


# What a model asked for a Trip in TOON writes: the stops as a table, one row per stop.
REPLY = "title: Fjords by ferry\nstops[3]{city,nights}:\n  Bergen,2\n  Ålesund,1\n  Tromsø,3"


async def main() -> None:
    model = ScriptedModel(responses=[REPLY], chunk_size=6, delay=0.02)
    async with model.stream("Plan a trip", response_format=Trip, reply_format="toon") as call:
        async for trip in call.partials():
            print(f"{trip.title!r:26} {[(stop.city, stop.nights) for stop in trip.stops]}")
    assert call.response is not None
    print(f"\nparsed: {call.response.parsed!r}")
    print(f"asked with: {model.requests[0].messages[0]['content'][:72]}...")


if __name__ == "__main__":
    asyncio.run(main())
