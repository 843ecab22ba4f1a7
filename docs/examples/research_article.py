"""A two-stage flow: research, then an article written from it, plus a word count of your own.

python docs/examples/research_article.py
"""

import asyncio

from lionflow import Session
from lionflow.operations import Builder, Inputs, flow
from lionflow.testing import ScriptedModel


async def word_count(inputs: Inputs) -> int:
    return len(inputs["article"].text.split())


async def main() -> None:
    session = Session()
    session.services.register(
        ScriptedModel(
            responses=lambda messages: (
                "Exercise: better sleep, steadier mood, a stronger heart."
                if "Context:" not in messages[-1]["content"]
                else "Move daily: you sleep better, feel steadier and your heart grows stronger."
            )
        ),
        name="writer",
    )
    builder = Builder(session=session)
    research = builder.communicate("List 3 key benefits of exercise", imodel="writer", branch="research")
    article = builder.communicate(
        "Write a short article using these benefits",
        imodel="writer",
        branch="article",
        context_from=[research],
    )
    count = builder.add(word_count, depends_on=[article])

    results = await flow(builder)
    print("research:", results[research.id].text)
    print("article: ", results[article.id].text)
    print("words:   ", results[count.id])
    print("\nwhat the article step was sent:")
    print(session.get_branch("article").messages[0].chat_msg["content"])


asyncio.run(main())
