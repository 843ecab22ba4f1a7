"""Sessions and branches: one message store, branches as ordered progressions of message ids."""

from __future__ import annotations

import pytest

from lionflow import (
    ActionRequestContent,
    ActionResponseContent,
    AssistantResponseContent,
    ConfigurationError,
    InstructionContent,
    Message,
    Session,
    prepare_messages_for_chat,
)


def _say(text: str) -> Message:
    return Message(content=InstructionContent(instruction=text))


def test_branches_are_progressions_over_one_message_store() -> None:
    session = Session()
    chat = session.create_branch(name="chat", system="Be brief.")
    notes = session.create_branch(name="notes")
    shared = _say("hello")
    session.conversations.add_item(shared, progressions=[chat.name, notes.id])
    assert len(session.messages) == 2  # the system message and one shared message, stored once
    assert chat.order[-1] == notes.order[-1] == shared.id
    assert [session.messages[i].role for i in chat.order] == ["system", "user"]
    assert session.get_branch("notes") is notes
    assert session.get_branch(notes.id) is notes
    assert session.branches == [chat, notes]


def test_branch_names_are_unique_and_unknown_ones_are_clear() -> None:
    session = Session()
    session.create_branch(name="chat")
    with pytest.raises(ConfigurationError, match="already exists"):
        session.create_branch(name="chat")
    with pytest.raises(ConfigurationError, match="no branch named 'other' in this session; branches: chat"):
        session.get_branch("other")
    with pytest.raises(ConfigurationError, match="another session"):
        session.get_branch(Session().create_branch(name="chat"))


def test_fork_shares_history_up_to_a_message() -> None:
    session = Session()
    main = session.create_branch(name="main")
    first, second, third = _say("one"), _say("two"), _say("three")
    for message in (first, second, third):
        session.conversations.add_item(message, progressions=[main])
    fork = session.fork(main, at=second.id, name="what-if")
    assert fork.order == (first.id, second.id)
    session.conversations.add_item(_say("other path"), progressions=[fork])
    assert len(main) == 3  # the original is untouched
    assert len(fork) == 3
    assert session.fork(main).order == main.order
    with pytest.raises(ConfigurationError, match="not in branch"):
        session.fork(main, at="nope")


def test_the_same_message_id_with_other_content_is_refused() -> None:
    session = Session()
    branch = session.create_branch()
    message = _say("original")
    session.conversations.add_item(message, progressions=[branch])
    impostor = Message(id=message.id, content=InstructionContent(instruction="changed"))
    with pytest.raises(ConfigurationError, match="already in this session"):
        session.conversations.add_item(impostor, progressions=[branch])


def test_sessions_are_independent() -> None:
    first, second = Session(), Session()
    first.create_branch(name="chat")
    second.create_branch(name="chat")  # the same name in another session is fine
    first.conversations.add_item(_say("only in first"), progressions=["chat"])
    assert len(first.messages) == 1
    assert len(second.messages) == 0
    assert first.id != second.id


def test_tool_requests_and_results_read_as_chat_messages() -> None:
    messages = [
        Message(content=ActionRequestContent(function="weather", arguments={"city": "Oslo"}, call_id="c1")),
        Message(content=ActionResponseContent(call_id="c1", function="weather", output={"temp": -3})),
        Message(content=ActionResponseContent(call_id="c2", function="clock", error="timed out")),
    ]
    request, result, failure = prepare_messages_for_chat(messages)
    assert request == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
        ],
    }
    assert result == {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "weather",
        "content": '{\n  "temp": -3\n}',
    }
    assert failure["content"] == "Error: timed out"
    assert [m.role for m in messages] == ["assistant", "tool", "tool"]


def test_export_and_import_keep_everything() -> None:
    session = Session(metadata={"user": "ada"})
    branch = session.create_branch(name="chat", system="sys")
    session.conversations.add_item(_say("q"), progressions=[branch])
    session.conversations.add_item(
        Message(content=AssistantResponseContent(assistant_response="a", model="m")), progressions=[branch]
    )
    session.fork(branch, name="alt")
    data = session.export()
    assert data["format"] == "lionflow.session"
    import anyio

    restored = anyio.run(Session.from_export, data)
    assert restored.id == session.id
    assert restored.metadata == {"user": "ada"}
    assert list(restored.messages.values()) == list(session.messages.values())
    assert [(b.name, b.order) for b in restored.branches] == [(b.name, b.order) for b in session.branches]


def test_branches_are_found_by_name_and_a_name_is_fixed_once_created() -> None:
    session = Session()
    branches = [session.create_branch(f"b{i}") for i in range(300)]
    fork = session.fork("b7", name="b7-copy")
    assert session.get_branch("b299") is branches[299]
    assert session.get_branch("b7-copy") is fork
    assert session.has_branch("b7-copy")
    assert not session.has_branch("b300")
    with pytest.raises(AttributeError):
        branches[0].name = "renamed"  # type: ignore[misc]  # read-only on purpose: checks it raises
    assert session.get_branch("b0") is branches[0]
