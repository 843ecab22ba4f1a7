"""An answer streamed through an output guard, offline (a scripted model): the guard holds the text
back until its window is checked, and stops the answer before a blocked phrase reaches the screen.

    python docs/examples/guarded_stream.py
"""

import asyncio

from lionflow.guards import OutputGuard, blocklist
from lionflow.testing import ScriptedModel

ANSWER = (
    "Here is the configuration you asked for. The server listens on port 8443 and reads its "
    "certificate from disk. Its key follows: -----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
)


async def main() -> None:
    no_keys = OutputGuard(blocklist(["BEGIN PRIVATE KEY"]), name="no-keys", window=40, overlap=20)
    model = ScriptedModel(name="assistant", responses=[ANSWER], chunk_size=3, delay=0.005)
    async with model.invoke("show me the config", guards=[no_keys]) as call:
        async for chunk in call:
            print(chunk, end="", flush=True)
    response = call.response
    assert response is not None
    print(f"\n[{response.finish_reason}: {response.metadata['guard']['name']}]")


if __name__ == "__main__":
    asyncio.run(main())
