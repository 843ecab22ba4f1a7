"""One lionflow server, three kinds of client: the official anthropic client, the openai client's
Responses API continuing a stored conversation, and a raw HTTP client that loses its stream and
resumes it with Last-Event-ID. Offline: a scripted model, and a store in a temporary folder.

    python docs/examples/serve_clients.py

From the command line the same server is ``lionflow serve --db serve.db``.
"""

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import uvicorn
from fastapi import FastAPI

from lionflow import Session, SQLiteStore
from lionflow.serve import create_app
from lionflow.testing import ScriptedModel


def reply(messages: list[dict[str, Any]]) -> str:
    return f"You said: {messages[-1]['content']}"


def start_server(app: FastAPI) -> str:
    """Serve `app` on a free port of 127.0.0.1 in a background thread; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


async def main(url: str, store: SQLiteStore) -> None:
    # 1. The anthropic client, streamed.
    async with (
        anthropic.AsyncAnthropic(base_url=url, api_key="unused") as claude,
        claude.messages.stream(
            model="echo", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
        ) as stream,
    ):
        print("anthropic:", await stream.get_final_text())

    # 2. The Responses API: a stored conversation, continued by previous_response_id.
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused") as client:
        first = await client.responses.create(model="echo", input="remember the number 7")
        second = await client.responses.create(
            model="echo", input="what was it?", previous_response_id=first.id
        )
        print("responses:", second.output_text)
    session = await Session.load(store, first.id)  # every answer is a session turn
    print("stored turns:", len(session.get_branch(first.id).messages) // 2)

    # 3. Raw HTTP: read three events of a stream, hang up, and resume after the last one seen
    #    (any client that reads server-sent events can: a browser's EventSource does it by itself).
    body = {
        "model": "echo",
        "stream": True,
        "messages": [{"role": "user", "content": "a long answer please"}],
    }
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        seen: list[str] = []
        async with http.stream("POST", "/v1/chat/completions", json=body) as cut:
            async for line in cut.aiter_lines():
                if line.startswith("data: "):
                    seen.append(line)
                if line.startswith("id: "):
                    last_id = line.removeprefix("id: ")
                if len(seen) == 3:
                    break
        completion_id = seen[0].split('"id":"', 1)[1].split('"', 1)[0]
        rest = await http.get(
            f"/v1/chat/completions/{completion_id}",
            headers={"accept": "text/event-stream", "last-event-id": last_id},
        )
    events = seen + [line for line in rest.text.splitlines() if line.startswith("data: ")]
    print(f"resumed after event {last_id}: {len(events)} events in all, the last {events[-1]!r}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "serve.db")
        model = ScriptedModel(name="echo", responses=reply, delay=0.01)
        # resume_grace: a stream whose client went away runs on for 5 s, awaiting its return.
        base_url = start_server(create_app([model], store=store, resume_grace=5))
        asyncio.run(main(base_url, store))
