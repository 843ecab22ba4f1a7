"""Messages and the services registry, as seed example 1 uses them."""

from __future__ import annotations

import pytest

from lionflow import (
    AssistantResponseContent,
    ConfigurationError,
    InstructionContent,
    Message,
    Session,
    SystemContent,
    prepare_messages_for_chat,
)
from lionflow.testing import ScriptedModel

pytestmark = pytest.mark.anyio


def test_chat_msg_follows_the_content() -> None:
    system = Message(content=SystemContent(system="Be brief."))
    question = Message(content=InstructionContent(instruction="Why?", guidance="One sentence."))
    answer = Message(content=AssistantResponseContent(assistant_response="Because."))
    assert prepare_messages_for_chat([system, question, answer]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why?\n\nGuidance:\nOne sentence."},
        {"role": "assistant", "content": "Because."},
    ]
    assert question.id != answer.id
    assert question.created_at.tzinfo is not None


def test_messages_round_trip_through_json() -> None:
    message = Message(content=InstructionContent(instruction="hi", context=[1, "two"]), metadata={"k": 1})
    restored = Message.model_validate_json(message.model_dump_json())
    assert restored == message
    assert isinstance(restored.content, InstructionContent)


async def test_an_assistant_message_keeps_what_the_stream_carried() -> None:
    response = await ScriptedModel(responses=["Done."], reasoning="thinking").invoke("go")
    content = AssistantResponseContent.from_response(response)
    assert content.assistant_response == "Done."
    assert content.reasoning == "thinking"
    assert content.usage == response.usage
    assert content.finish_reason == "stop"
    assert content.provider == "scripted"
    assert not content.incomplete


def test_services_register_by_name_and_refuse_duplicates() -> None:
    session = Session()
    gpt = session.services.register(ScriptedModel(name="gpt"))
    claude = session.services.register(ScriptedModel(name="claude"))
    assert session.services.get("claude") is claude
    assert session.services.default is gpt
    assert "gpt" in session.services
    assert len(session.services) == 2
    with pytest.raises(ConfigurationError, match="already registered"):
        session.services.register(ScriptedModel(name="gpt"))
    with pytest.raises(ConfigurationError, match="registered: claude, gpt"):
        session.services.get("gemini")
    with pytest.raises(ConfigurationError, match="no model is registered"):
        Session().services.get()
