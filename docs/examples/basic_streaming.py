"""Seed example 1, "Basic Streaming Chat", as written, on the offline scripted provider.

Only the imports and ``provider="scripted"`` differ from the seed. With an API key set, change the
provider back to "openai" (and install ``lionflow[openai]``) to stream from a real model.

    python docs/examples/basic_streaming.py
"""

import asyncio

from lionflow import Session, iModel


async def stream_chat() -> None:
    """Stream tokens as they're generated"""
    session = Session()
    model = iModel(
        provider="scripted",
        model="gpt-4o-mini",
        temperature=0.7,
        stream=True,  # Enable streaming
    )
    session.services.register(model)

    from lionflow import InstructionContent, Message

    # Create message
    message = Message(
        content=InstructionContent(instruction="Write a short story about a robot learning to paint")
    )

    # Stream response
    print("Assistant: ", end="", flush=True)

    async for chunk in model.invoke(messages=[message.chat_msg]):
        if hasattr(chunk, "data"):
            # Extract text from chunk
            text = chunk.data
            print(text, end="", flush=True)

    print()  # Newline at end


asyncio.run(stream_chat())
