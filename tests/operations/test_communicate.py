"""communicate: one turn on a branch, recorded whether awaited, streamed, failed or cancelled."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from lionflow import (
    AssistantResponseContent,
    ConfigurationError,
    InstructionContent,
    Session,
    StreamInterrupted,
)
from lionflow.operations import communicate
from lionflow.testing import ScriptedModel
from tests.helpers import no_task_left

pytestmark = pytest.mark.anyio


def _session(model: ScriptedModel) -> Session:
    session = Session()
    session.services.register(model)
    return session


async def test_the_seed_form_records_both_sides_and_returns_the_response() -> None:
    model = ScriptedModel(responses=["Async code waits without blocking."], name="claude")
    session = _session(model)
    branch = session.create_branch(name="streaming-chat")
    response = await communicate(
        session=session,
        branch=branch,
        parameters={"instruction": "Tell me about async programming in Python", "imodel": model.name},
    )
    assert response.text == "Async code waits without blocking."
    question, answer = branch.messages
    assert isinstance(question.content, InstructionContent)
    assert question.content.instruction == "Tell me about async programming in Python"
    assert isinstance(answer.content, AssistantResponseContent)
    assert answer.content.assistant_response == response.text
    assert answer.content.usage == response.usage
    assert answer.content.finish_reason == "stop"
    assert answer.content.provider == "scripted"
    assert not answer.content.incomplete


async def test_each_turn_sends_the_branch_history() -> None:
    model = ScriptedModel(responses=["first answer", "second answer"])
    session = _session(model)
    branch = session.create_branch(name="chat", system="Be brief.")
    await communicate(session, branch, instruction="first question")
    await communicate(session, branch, instruction="second question", guidance="one line", temperature=0.1)
    assert model.requests[1].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question\n\nGuidance:\none line"},
    ]
    assert model.requests[1].params == {"temperature": 0.1}
    assert len(branch) == 5


async def test_iterated_it_streams_chunks_and_records_the_turn() -> None:
    model = ScriptedModel(responses=["streamed words"], chunk_size=3)
    session = _session(model)
    turn = communicate(session, "chat", instruction="go")
    pieces = [chunk.data async for chunk in turn if chunk.type == "text"]
    assert pieces == ["str", "eam", "ed ", "wor", "ds"]
    branch = session.get_branch("chat")  # a branch named by communicate is created
    assert turn.response_message is not None
    assert branch.order == (turn.instruction.id, turn.response_message.id)
    assert branch.messages[1].chat_msg == {"role": "assistant", "content": "streamed words"}


async def test_an_error_mid_stream_records_the_partial_answer_and_reraises() -> None:
    model = ScriptedModel(responses=["abcdefgh"], chunk_size=2, fail_after=2, max_retries=0)
    session = _session(model)
    branch = session.create_branch(name="chat")
    with pytest.raises(StreamInterrupted):
        await communicate(session, branch, instruction="go")
    answer = branch.messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete
    assert answer.assistant_response == "abcd"
    assert answer.finish_reason == "error"


async def test_cancellation_records_the_partial_answer() -> None:
    model = ScriptedModel(responses=["slow words arrive one by one"], chunk_size=5, delay=0.03)
    session = _session(model)
    branch = session.create_branch(name="chat")
    async with no_task_left():
        with anyio.move_on_after(0.1):
            await communicate(session, branch, instruction="go")
    answer = branch.messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete
    assert answer.finish_reason == "cancelled"
    assert answer.assistant_response
    assert "slow words arrive one by one".startswith(answer.assistant_response)
    assert model.open_streams == 0


async def test_leaving_the_loop_early_records_what_arrived() -> None:
    model = ScriptedModel(responses=["one two three four"], chunk_size=4)
    session = _session(model)
    async with no_task_left():
        async for _chunk in communicate(session, "chat", instruction="go"):
            break
        await anyio.lowlevel.checkpoint()
    answer = session.get_branch("chat").messages[-1].content
    assert isinstance(answer, AssistantResponseContent)
    assert answer.incomplete
    assert answer.assistant_response == "one "
    assert model.open_streams == 0


async def test_models_are_found_by_name_or_default_and_unknown_names_are_clear() -> None:
    first, second = (
        ScriptedModel(responses=lambda _: "from first", name="first"),
        ScriptedModel(responses=lambda _: "from second", name="second"),
    )
    session = _session(first)
    session.services.register(second)
    assert (await communicate(session, instruction="a")).text == "from first"
    assert (await communicate(session, instruction="b", imodel="second")).text == "from second"
    assert (await communicate(session, instruction="c", imodel=second)).text == "from second"
    with pytest.raises(ConfigurationError, match="no model named 'third'"):
        communicate(session, instruction="d", imodel="third")
    with pytest.raises(ConfigurationError, match="needs an instruction"):
        communicate(session, parameters={"imodel": "first"})
    assert session.branches[0].name == "main"


async def test_context_reaches_the_model() -> None:
    model = ScriptedModel(responses=["ok"])
    session = _session(model)
    await communicate(session, instruction="Summarize", context={"facts": ["a", "b"]})
    assert (
        model.requests[0].messages[-1]["content"]
        == 'Summarize\n\nContext:\n{\n  "facts": [\n    "a",\n    "b"\n  ]\n}'
    )
