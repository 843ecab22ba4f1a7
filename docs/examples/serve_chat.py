"""A lionflow model served over the OpenAI Chat Completions API, and streamed back by the official
openai client: the server and the client in one script, offline (a scripted model).

    python docs/examples/serve_chat.py

Serve real models the same way (``create_app([iModel(provider="anthropic", model=..., name="claude")])``)
or from the command line: ``lionflow serve --model claude=anthropic:claude-sonnet-4-5``.
"""

import asyncio
import threading
import time

import openai
import uvicorn

from lionflow.serve import create_app
from lionflow.testing import ScriptedModel

app = create_app([ScriptedModel(name="echo", responses=["Served by lionflow, streamed to openai."])])


def start_server() -> str:
    """Serve `app` on a free port of 127.0.0.1 in a background thread; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def main(base_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused") as client:
        stream = await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
            if chunk.usage:
                print(f"\n[{chunk.usage.total_tokens} tokens]")


if __name__ == "__main__":
    asyncio.run(main(start_server()))
