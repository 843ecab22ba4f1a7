"""The seed's TOON streaming examples (pytoon), run as written against `lionflow serve`.

The seed calls the official OpenAI and Anthropic clients directly. Here they reach a lionflow
server on 127.0.0.1 whose models are scripted (``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` point
the clients at it), and ``import pytoon`` is ``from lionflow import toon as pytoon``. Every other
line is the seed's, character for character (the code is the text of ``SEED_*`` below, executed).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from lionflow.serve import create_app
from lionflow.testing import ScriptedModel
from tests.serve.conftest import serving

pytestmark = pytest.mark.anyio

IMPORT = "from lionflow import toon as pytoon"

SEED_OPENAI = """
IMPORT
import openai

# 1. Encode data upfront
data = {"employees": [...]}
toon_str = pytoon.encode(data)

# 2. Create prompt
prompt = f"Given this data:\\n{toon_str}\\n\\nWho has the highest salary?"

# 3. Stream response
client = openai.OpenAI()
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": prompt}],
    stream=True
)

# 4. Collect and display chunks
chunks = []
for chunk in stream:
    if chunk.choices[0].delta.content:
        content = chunk.choices[0].delta.content
        print(content, end="", flush=True)
        chunks.append(content)

print()  # Newline after stream

# 5. Parse complete response
full_response = "".join(chunks)
try:
    result = pytoon.decode(full_response)
    print(f"\\nParsed result: {result}")
except ValueError:
    print(f"\\nText result: {full_response}")
""".replace("IMPORT", IMPORT)

SEED_ANTHROPIC = """
IMPORT
import anthropic

# Encode data
data = {...}
toon_str = pytoon.encode(data)

# Stream with Claude
client = anthropic.Anthropic()
with client.messages.stream(
    model="claude-3-opus-20240229",
    messages=[{
        "role": "user",
        "content": f"Data:\\n{toon_str}\\n\\nQuestion: ..."
    }],
    max_tokens=1024
) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)

    # Get complete response
    full_response = stream.get_final_text()

# Parse if needed
try:
    result = pytoon.decode(full_response)
except ValueError:
    result = full_response
""".replace("IMPORT", IMPORT)

SEED_COMPLETE = '''
#!/usr/bin/env python3
"""Complete streaming + TOON example."""

IMPORT
import openai
import sys

def stream_query(data, question):
    """Stream LLM response with TOON data."""
    client = openai.OpenAI()

    # Encode data upfront
    try:
        toon_str = pytoon.encode(data)
    except Exception as e:
        print(f"Encoding error: {e}", file=sys.stderr)
        return None

    # Construct prompt
    prompt = f"Data:\\n{toon_str}\\n\\nQuestion: {question}"

    # Stream response
    print("Response: ", end="", flush=True)
    try:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            stream=True
        )

        chunks = []
        for chunk in stream:
            if chunk.choices[0].delta.content:
                content = chunk.choices[0].delta.content
                print(content, end="", flush=True)
                chunks.append(content)

        print("\\n")  # Newline after stream

        # Parse complete response
        full_response = "".join(chunks)
        try:
            return pytoon.decode(full_response)
        except ValueError:
            return full_response

    except Exception as e:
        print(f"\\nStreaming error: {e}", file=sys.stderr)
        return None

def main():
    # Sample data
    data = {
        "products": [
            {"id": 1, "name": "Widget", "price": 19.99},
            {"id": 2, "name": "Gadget", "price": 29.99},
            {"id": 3, "name": "Doohickey", "price": 39.99}
        ]
    }

    # Query with streaming
    result = stream_query(data, "What is the most expensive product?")

    if result:
        print(f"Parsed result: {result}")
    else:
        print("Query failed")

if __name__ == "__main__":
    main()
'''.replace("IMPORT", IMPORT)

ANSWER = 'name: Doohickey\nprice: 39.99\nreason: "highest price, by 10.00"'


@contextlib.contextmanager
def seed_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A lionflow server with the seed's two model names, scripted to answer `ANSWER` in TOON; the
    clients' environment points at it. Yields the prompts the models received."""
    prompts: list[str] = []

    def answer(messages: list[dict[str, Any]]) -> str:
        prompts.append(json.dumps(messages[-1]["content"]))
        return ANSWER

    models = [
        ScriptedModel(name=name, responses=answer, chunk_size=5)
        for name in ("gpt-4o-mini", "claude-3-opus-20240229")
    ]
    with serving(create_app(models)) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
        yield prompts


def run_seed(code: str) -> tuple[dict[str, Any], str]:
    """Execute a seed example as a script; its globals and what it printed."""
    printed = io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "<seed 001>", "exec"), namespace)
    return namespace, printed.getvalue()


async def test_the_openai_example_encodes_streams_and_parses_the_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with seed_server(monkeypatch) as prompts:
        namespace, printed = await anyio.to_thread.run_sync(run_seed, SEED_OPENAI)
    assert namespace["toon_str"] == "employees[1]: ..."  # the seed's placeholder, in TOON
    assert "employees[1]: ..." in prompts[0]
    assert printed.startswith(ANSWER)  # streamed as it came
    assert namespace["result"] == {"name": "Doohickey", "price": 39.99, "reason": "highest price, by 10.00"}
    assert "Parsed result: {'name': 'Doohickey'" in printed


async def test_the_anthropic_example_streams_and_parses_the_final_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with seed_server(monkeypatch):
        namespace, printed = await anyio.to_thread.run_sync(run_seed, SEED_ANTHROPIC)
    assert namespace["full_response"] == ANSWER
    assert printed == ANSWER
    assert namespace["result"]["price"] == 39.99


async def test_the_complete_example_sends_the_products_as_a_toon_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with seed_server(monkeypatch) as prompts:
        _, printed = await anyio.to_thread.run_sync(run_seed, SEED_COMPLETE)
    table = "products[3]{id,name,price}:\\n  1,Widget,19.99\\n  2,Gadget,29.99\\n  3,Doohickey,39.99"
    assert table in prompts[0]  # the JSON-escaped prompt holds the table
    assert printed.startswith("Response: " + ANSWER)
    assert "Parsed result: {'name': 'Doohickey', 'price': 39.99" in printed
