"""Review findings: each test pins a bug found by attacking `lionflow.toon` (decode vs the compiled
codec vs `PartialTOON`, the encoder's edge values, the streaming integration)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lionflow import ToonDecodeError, toon
from lionflow.toon._decode import _decode_pure

from .test_decode import documents, same


def all_three(text: str, **options: Any) -> list[Any]:
    """What `decode`, the pure decoder and `PartialTOON` (fed a character at a time) make of `text`:
    a value, or the error's (line, column)."""
    results: list[Any] = []

    def run(read: Any) -> None:
        try:
            results.append(read())
        except ToonDecodeError as error:
            results.append(("error", error.line, error.column))

    def partial() -> Any:
        reader = toon.PartialTOON(**options)
        for char in text:
            reader.feed(char)
        return reader.close()

    run(lambda: toon.decode(text, **options))
    run(lambda: _decode_pure(text, **options))
    run(partial)
    return results


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b[2]: 1,2", {"a b": [1, 2]}),
        ("x:\n  g  2[1]: a", {"x": {"g  2": ["a"]}}),
        ("- x[2]: 1,2", {"- x": [1, 2]}),
        ("t b[1]{c}:\n  1", {"t b": [{"c": 1}]}),
    ],
)
def test_s7_4_an_unquoted_header_key_may_hold_inner_spaces(text: str, expected: Any) -> None:
    # §7.4 accepts any unquoted key token; §6 forbids whitespace only *between* a key and its '['.
    # The pure decoder refused these while `toons` (and the TS reference) read them, so decode()
    # and PartialTOON.close() disagreed.
    assert all(same(result, expected) for result in all_three(text)), all_three(text)


def test_s6_whitespace_between_key_and_bracket_is_still_a_strict_error() -> None:
    assert all_three("foo [2]: bar,baz") == [("error", 1, 4)] * 3  # at the space
    assert all(same(r, {"foo [2]": "bar,baz"}) for r in all_three("foo [2]: bar,baz", strict=False))


@pytest.mark.parametrize(("text", "expected"), [("  true", True), ("\n    hello\n", "hello"), (" 7", 7)])
def test_s5_a_lone_indented_root_primitive_is_that_primitive(text: str, expected: Any) -> None:
    # §5: exactly one non-blank line that is neither a header nor a key-value line is the root
    # primitive, whatever its indentation (toons and the TS reference agree).
    indent = 1 if text == " 7" else 2
    assert all(same(result, expected) for result in all_three(text, indent=indent)), all_three(text)


@pytest.mark.parametrize(
    "text",
    [
        "[1]:\n  - a[2]:\n\n      - 1\n      - 2",  # a blank line inside the outer item's span (§12)
        "x[1]:\n  - a:\n\n      b: 1",
        "[1]{[1]{a}:}:\n  x",  # content after a nested field group (§6)
        "t[1|]{a|c[1]{a}:b}:\n  1|2",
        "a\t[1]: a",  # a tab between a key and its '[' (§6)
        "x[1]:\n  - \t[1]: a",
    ],
)
def test_decode_refuses_what_partial_toon_refuses_where_toons_is_lenient(text: str) -> None:
    # `toons` reads these, the spec (and the TS reference) refuse them: decode() returned toons'
    # value while PartialTOON.close() raised. Now decode() raises the same error, same place.
    results = all_three(text)
    assert results[1][0] == "error"
    assert results == [results[1]] * 3, results


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[1]{ "","\u001f\u001f"}:\n null,null', [{"": None, "\x1f\x1f": None}]),  # found by hypothesis
        ('[1]{"a" ,"b"}:\n 1,2', [{"a": 1, "b": 2}]),
        ('[1]{"a", "b"}:\n 1,2', [{"a": 1, "b": 2}]),
        ('[1]{"a","b"  }:\n 1,2', [{"a": 1, "b": 2}]),
        ('[1|]{ "a" | b }:\n 1|2', [{"a": 1, "b": 2}]),
        ('[1\t]{"a" \t "b"}:\n 1\t2', [{"a": 1, "b": 2}]),
        ('"k"[1]{ "a" }:\n 1', {"k": [{"a": 1}]}),
        ('[1]:\n - "k"[1]{ "a" }:\n   1', [{"k": [{"a": 1}]}]),
        ('[1]{ "a" {b} }:\n 1', [{"a": {"b": 1}}]),
        ('[1]{a{ "b" },c}:\n 1,2', [{"a": {"b": 1}, "c": 2}]),
        ("[1]{a{b} ,c}:\n 1,2", [{"a": {"b": 1}, "c": 2}]),
        ("[1]{ a , b }:\n 1,2", [{"a": 1, "b": 2}]),  # unquoted names were already trimmed
    ],
)
def test_s12_spaces_around_a_quoted_field_name_are_tolerated(text: str, expected: Any) -> None:
    # §12: surrounding whitespace around tokens SHOULD be tolerated. The pure decoder trimmed the
    # spaces around an unquoted field name (and around quoted cells in rows) but refused them
    # around a quoted field name or after a nested group, while `toons` read them: decode()
    # returned a value where PartialTOON.close() raised.
    assert all(same(result, expected) for result in all_three(text, indent=1)), all_three(text, indent=1)


@pytest.mark.parametrize(
    "text",
    ['[1]{"a" "b"}:\n 1,2', '[1]{"a" b}:\n 1,2', '[1]{\t"a"}:\n 1', '[1]{"a"\t}:\n 1', "[1]{ }:\n 1"],
)
def test_s6_a_field_list_with_spaces_still_needs_its_delimiters(text: str) -> None:
    # Tolerating spaces does not join two names, nor make a tab (not the active delimiter) a space.
    results = all_three(text, indent=1)
    assert results[1][0] == "error"
    assert results == [results[1]] * 3, results


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '""[2:]{id,name"",ok}:\n "": 0,null,false\n "0": 1,null,true',
            {"": {"": {"id": 0, 'name""': None, "ok": False}, "0": {"id": 1, 'name""': None, "ok": True}}},
        ),  # found by hypothesis
        ('[1]{name"x,y",ok}:\n 1,2', [{'name"x,y"': 1, "ok": 2}]),  # the quoted span hides the ','
        ('[1|]{a"b"c|d}:\n 1|2', [{'a"b"c': 1, "d": 2}]),
        ('[1]{a"}"{b}}:\n 1', [{'a"}"': {"b": 1}}]),
    ],
)
def test_s7_4_an_unquoted_field_name_may_hold_a_quoted_span(text: str, expected: Any) -> None:
    # §7.4 as we read it (see above): an unquoted key is the token as written, and `na""me: 1` and
    # `k""[1]:` already read so; a quoted span inside it hides delimiters, as `find_unquoted` does
    # for a key. The pure decoder refused a '"' in an unquoted field name; `toons` and the TS
    # reference keep it, so decode() and PartialTOON.close() disagreed.
    assert all(same(result, expected) for result in all_three(text, indent=1)), all_three(text, indent=1)


def test_s6_a_quoted_span_does_not_hide_another_delimiter_in_an_unquoted_name() -> None:
    assert all_three('[1]{a"x"|b}:\n 1') == [("error", 1, 5)] * 3  # '|' outside the span, header says ','


@pytest.mark.parametrize("text", ["a: " + "7" * 5000, "[2]: 1," + "7" * 5000, "t[1]{a}:\n  " + "7" * 5000])
def test_s4_an_integer_too_long_for_python_is_an_out_of_range_toon_error(text: str) -> None:
    # Python refuses int() of more than 4300 digits with a bare ValueError (no line, no column);
    # §4 lets a decoder reject an out-of-range number, as our documented policy does for 1e400.
    results = all_three(text)
    assert results[0][0] == "error"
    assert results == [results[0]] * 3, results


_NOISE = list('\n \t-:#[]{},|"\\\r1')
_NOISE += ["  ", "- ", "\n\n", "\n  \n", "[2]:", "[1]{a}:", "{x[1]{a}:}", "\t[1]"]
_NOISE += [' "', '" ', " ,", " }", "{ "]  # spaces next to quotes and field-list punctuation (§12)
_edits = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1), st.sampled_from(["insert", "delete"]), st.sampled_from(_NOISE)
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(documents, st.sampled_from([1, 2, 3, 4]), _edits)
def test_decode_and_partial_toon_agree_on_damaged_documents(value: Any, indent: int, edits: Any) -> None:
    # Encoder output with a few characters inserted or deleted: mostly invalid, or valid in odd
    # ways. decode() (toons when installed) and PartialTOON must give the same value or the same
    # error at the same place (a guard: the leniencies above were found this way, with more examples).
    text = toon.encode(value, indent=indent)
    for where, action, noise in edits:
        at = int(where * len(text))
        text = text[:at] + noise + text[at:] if action == "insert" else text[:at] + text[at + 1 :]
    results = all_three(text, indent=indent)
    assert all(same(result, results[1]) for result in results), (text, results)
