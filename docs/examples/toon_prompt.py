"""The seed's pattern with lionflow, offline: encode the data as TOON before the call (about half
the characters of JSON for a table), stream the reply, parse the complete reply after the stream.

    python docs/examples/toon_prompt.py
"""

import asyncio
import json

from lionflow import toon
from lionflow.testing import ScriptedModel

EMPLOYEES = {
    "employees": [
        {"id": 1, "name": "Ada Lovelace", "team": "engines", "salary": 132000},
        {"id": 2, "name": "Grace Hopper", "team": "compilers", "salary": 141000},
        {"id": 3, "name": "Alan Turing", "team": "codes", "salary": 128500},
    ]
}


async def main() -> None:
    # 1. Encode the data once, before the call
    data = toon.encode(EMPLOYEES)
    compact_json = json.dumps(EMPLOYEES, separators=(",", ":"))
    print(f"{data}\n\n({len(data)} characters of TOON, {len(compact_json)} of compact JSON)\n")

    # 2. Stream the reply (a scripted model here; any iModel works the same)
    model = ScriptedModel(responses=["name: Grace Hopper\nsalary: 141000"], chunk_size=4, delay=0.01)
    chunks = []
    async for chunk in model.invoke(f"Given this data:\n{data}\n\nWho has the highest salary?"):
        print(chunk, end="", flush=True)
        chunks.append(str(chunk))
    print()

    # 3. Parse the complete reply
    print(f"\nParsed: {toon.decode(''.join(chunks))}")


if __name__ == "__main__":
    asyncio.run(main())
