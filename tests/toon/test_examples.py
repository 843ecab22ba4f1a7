"""The TOON examples in docs/examples run, and show what docs/toon.md says they show."""

from __future__ import annotations

from tests.helpers import run_example


def test_encode_before_streaming_puts_a_table_in_the_prompt_and_parses_the_reply() -> None:
    out = run_example("toon_prompt.py")
    assert out.startswith("employees[3]{id,name,team,salary}:\n  1,Ada Lovelace,engines,132000\n")
    assert "(129 characters of TOON, 206 of compact JSON)" in out
    assert out.rstrip().endswith("Parsed: {'name': 'Grace Hopper', 'salary': 141000}")


def test_a_toon_reply_fills_in_row_by_row_while_it_streams() -> None:
    out = run_example("toon_reply.py")
    rows = [line for line in out.splitlines() if line.startswith("'Fjords by ferry'")]
    counts = [line.count("(") for line in rows]
    assert counts[-1] == 3
    assert sorted(set(counts)) == [0, 1, 2, 3]  # one stop more at a time, as each row's line ended
    assert "parsed: Trip(title='Fjords by ferry', stops=[Stop(city='Bergen', nights=2)" in out
    assert "asked with: Reply with one TOON document" in out
