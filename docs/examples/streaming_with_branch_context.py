"""Seed example 2, "Streaming with Branch Context", as written, on the offline scripted provider.

Only the imports and ``provider="scripted"`` differ from the seed. The seed persists the streamed
reply by hand (the last block); with lionflow, ``communicate`` records both sides of a turn itself,
so that block is only needed for a turn streamed straight from ``model.invoke`` as below.
See docs/examples/persistent_chat.py for the automatic form.

    python docs/examples/streaming_with_branch_context.py
"""

import asyncio

from lionflow import Branch, Session, iModel
from lionflow.operations import communicate


async def stream_with_context() -> tuple[Session, Branch]:
    """Stream responses while maintaining conversation context"""
    session = Session()
    model = iModel(
        provider="scripted",
        endpoint="messages",
        model="claude-3-5-sonnet-20241022",
        temperature=0.7,
        stream=True,
    )
    session.services.register(model)

    branch = session.create_branch(name="streaming-chat")

    # Turn 1: Regular response (builds context)
    await communicate(
        session=session,
        branch=branch,
        parameters={
            "instruction": "Tell me about async programming in Python",
            "imodel": model.name,
        },
    )

    # Turn 2: Streaming response (uses context)
    print("\nUser: Can you give me a practical example?")
    print("Assistant: ", end="", flush=True)

    # Get conversation history for streaming
    from lionflow import prepare_messages_for_chat

    messages = [session.messages[msg_id] for msg_id in branch.order]
    chat_messages = prepare_messages_for_chat(messages)

    # Add new instruction
    from lionflow import InstructionContent, Message

    new_message = Message(content=InstructionContent(instruction="Can you give me a practical example?"))
    chat_messages.append(new_message.chat_msg)

    # Stream
    full_response = []
    async for chunk in model.invoke(messages=chat_messages):
        if hasattr(chunk, "data"):
            text = chunk.data
            full_response.append(text)
            print(text, end="", flush=True)

    print("\n")

    # Save streamed response to branch
    from lionflow import AssistantResponseContent

    response_message = Message(content=AssistantResponseContent(assistant_response="".join(full_response)))
    session.conversations.add_item(response_message, progressions=[branch.name])

    return session, branch


session, branch = asyncio.run(stream_with_context())
print(f"[branch {branch.name!r} holds {len(branch.order)} messages]")
