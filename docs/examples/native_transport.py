"""The same model through both transports: the official SDK, then lionflow's native one, and the CPU
each took in this process. Offline: the "provider" is `lionflow serve` in another process on
127.0.0.1, relaying its scripted echo model over the OpenAI and Anthropic APIs, so the real openai
and anthropic wire formats are spoken.

    python docs/examples/native_transport.py

With a real provider, only the model changes: ``iModel(provider="openai", model="gpt-4o-mini",
transport="native")``. A server relaying many streams: ``lionflow serve --transport native``.
"""

import asyncio
import subprocess
import sys
import time

from lionflow import iModel

PROMPT = " ".join(f"w{i}" for i in range(3000))  # the echo model streams it back


def start_provider() -> tuple[subprocess.Popen[str], str]:
    """`lionflow serve` with its scripted echo model, on a free port; the process and its base URL."""
    command = [sys.executable, "-m", "lionflow", "serve", "--port", "0", "--model", "echo=scripted:echo"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()  # "lionflow serving on http://127.0.0.1:PORT/v1 (...)"
    return process, line.split()[3].removesuffix("/v1")


async def stream(model: iModel) -> tuple[str, int, float]:
    """One call streamed to its end: the text, the chunks, and the CPU seconds it took."""
    started = time.process_time()
    text, chunks = "", 0
    async for chunk in model.invoke(PROMPT):
        if chunk.type == "text":
            text += chunk.data
            chunks += 1
    return text, chunks, time.process_time() - started


async def main(url: str) -> None:
    for provider, base_url in [("openai", f"{url}/v1"), ("anthropic", url)]:
        texts, cpus = {}, {}
        for transport in ("sdk", "native"):
            model = iModel(provider=provider, model="echo", base_url=base_url, transport=transport)
            try:
                await stream(model)  # the first call also opens the connection pool: not counted
                runs = [await stream(model) for _ in range(3)]
            finally:
                await model.aclose()
            texts[transport] = runs[0][0]
            cpus[transport] = min(cpu for _, _, cpu in runs)
            chunks = runs[0][1]
            print(f"{provider:<10} {transport:<7} {chunks:>5} chunks  {cpus[transport] * 1e3:6.1f} ms of CPU")
        assert texts["sdk"] == texts["native"], "the transports disagree"
        print(f"{provider:<10} native took {cpus['native'] / cpus['sdk']:.0%} of the SDK's CPU, same text")


if __name__ == "__main__":
    provider, url = start_provider()
    try:
        asyncio.run(main(url))
    finally:
        provider.terminate()
        provider.wait()
