"""docs/examples/pipelined_posts.py runs, and shows a post finished before the idea list was."""

from __future__ import annotations

from tests.helpers import run_example


def test_the_pipelined_posts_example_writes_a_post_before_the_ideas_are_all_listed() -> None:
    out = run_example("pipelined_posts.py")
    lines = [line.split(None, 2)[1:] for line in out.splitlines() if line.strip()]
    kinds = [line[0] for line in lines if line]
    assert kinds.index("post") < kinds.index("done")  # the first post came before the list ended
    assert kinds.count("idea") == 3
    assert kinds.count("post") == 3
    assert out.rstrip().endswith("3 ideas, 3 posts")
