"""docs/examples/pipelined_posts.py runs, and shows a post finished before the idea list was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_pipelined_posts_example_writes_a_post_before_the_ideas_are_all_listed() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs/examples/pipelined_posts.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split(None, 2)[1:] for line in result.stdout.splitlines() if line.strip()]
    kinds = [line[0] for line in lines if line]
    assert kinds.index("post") < kinds.index("done")  # the first post came before the list ended
    assert kinds.count("idea") == 3
    assert kinds.count("post") == 3
    assert result.stdout.rstrip().endswith("3 ideas, 3 posts")
