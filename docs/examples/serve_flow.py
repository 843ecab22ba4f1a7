"""A lionflow workflow served over HTTP and streamed back as server-sent events: the server and a
client (httpx, reading the events by hand as any language would) in one script, offline (a
scripted model).

    python docs/examples/serve_flow.py

The flow is two steps, the second writing from the first's answer; the client names the topic in
the request's ``inputs``, and prints each operation's text as it streams. With
``create_app(..., store=SQLiteStore("serve.db"))`` every run is also recorded as a session.
"""

import json
import threading
import time

import httpx
import uvicorn

from lionflow import Session
from lionflow.operations import Builder
from lionflow.serve import create_app
from lionflow.testing import ScriptedModel

writer = ScriptedModel(
    name="writer",
    responses=["1. Warm cups. 2. Quiet mornings.", "Tea is warm cups on quiet mornings."],
    chunk_size=8,
)


def article(session: Session) -> Builder:
    """The flow: ideas about the topic the client sent, then a line written from them."""
    topic = session.metadata["inputs"].get("topic", "anything")
    builder = Builder(session=session)
    ideas = builder.communicate(f"List two ideas about {topic}", imodel="writer", name="ideas")
    builder.communicate("Write one line from these ideas", imodel="writer", name="line", context_from=[ideas])
    return builder


app = create_app([writer], flows={"article": article})


def start_server() -> str:
    """Serve `app` on a free port of 127.0.0.1 in a background thread; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}"


def main(base_url: str) -> None:
    body = {"inputs": {"topic": "tea"}}
    with httpx.stream("POST", f"{base_url}/v1/flows/article/runs", json=body, timeout=30) as reply:
        event = ""
        for line in reply.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if event == "operation.started":
                    print(f"[{data['name']}] ", end="")
                elif event == "operation.chunk" and data["chunk"]["type"] == "text":
                    print(data["chunk"]["data"], end="", flush=True)
                elif event == "operation.completed":
                    print()
                elif event.startswith("run.") and event != "run.started":
                    print(f"{event}: {len(data['completed'])} operations completed")


if __name__ == "__main__":
    main(start_server())
