# ruff: noqa: E501
"""`toon.decode` against the TOON spec v4.0 (cases written from SPEC.md, each named for its section),
and against `toons` (a conformant Rust codec) on random documents."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lionflow import ToonDecodeError, toon
from lionflow.toon._decode import _decode_pure

toons = pytest.importorskip("toons")


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, types and key order included (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# (test id naming the SPEC.md section, document, options, expected value)
VALID: list[tuple[str, str, dict[str, Any], Any]] = [
    ("s4_integers_are_ints", "a: 42\nb: -7\nc: 0\nd: -0", {}, {"a": 42, "b": -7, "c": 0, "d": 0}),
    ("s4_big_integers_stay_exact", "n: 123456789012345678901234567890", {}, {"n": 123456789012345678901234567890}),
    ("s4_fraction_or_exponent_is_a_float", "a: 1.5\nb: 1E+03\nc: -0.0\nd: 0e1", {}, {"a": 1.5, "b": 1000.0, "c": 0.0, "d": 0.0}),
    ("s4_leading_zeros_are_strings", "a: 05\nb: -007\nc: 0123", {}, {"a": "05", "b": "-007", "c": "0123"}),
    ("s4_not_numbers_are_strings", "a: .5\nb: 1.\nc: +1\nd: Infinity\ne: NaN\nf: 0x10\ng: 1_000", {}, {"a": ".5", "b": "1.", "c": "+1", "d": "Infinity", "e": "NaN", "f": "0x10", "g": "1_000"}),
    ("s4_literals_are_case_sensitive", "a: true\nb: false\nc: null\nd: True", {}, {"a": True, "b": False, "c": None, "d": "True"}),
    ("s4_a_quoted_token_is_always_a_string", 'a: "42"\nb: "true"\nc: "null"', {}, {"a": "42", "b": "true", "c": "null"}),
    ("s4_empty_array_as_a_whole_value", "a: []\nb[0]:", {}, {"a": [], "b": []}),
    ("s5_empty_document_is_an_empty_object", "", {}, {}),
    ("s5_only_comments_and_blanks_is_an_empty_object", "# hi\n\n  # there\n", {}, {}),
    ("s5_root_primitive_string", "hello", {}, "hello"),
    ("s5_root_primitive_number", "1e6", {}, 1000000.0),
    ("s5_root_primitive_quoted", '"a:b"', {}, "a:b"),
    ("s5_root_empty_array", "[]", {}, []),
    ("s5_root_inline_array", "[3]: 1,b,true", {}, [1, "b", True]),
    ("s5_root_tabular_array", "[2]{id,name}:\n  1,Ada\n  2,Bob", {}, [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]),
    ("s5_root_keyed_object", "[2:]{age,city}:\n  alice: 30,Berlin\n  bob: 25,Oslo", {}, {"alice": {"age": 30, "city": "Berlin"}, "bob": {"age": 25, "city": "Oslo"}}),
    ("s5_1_comments_are_dropped_anywhere", "a:\n  # inside\n  b: 1\n# outdented\n  c: 2", {}, {"a": {"b": 1, "c": 2}}),
    ("s5_1_a_hash_after_content_is_data", "msg: hello # world\nnote: #x", {}, {"msg": "hello # world", "note": "#x"}),
    ("s5_1_comment_between_rows_counts_nothing", "t[2]{a}:\n  1\n  # skip\n  2", {}, {"t": [{"a": 1}, {"a": 2}]}),
    ("s5_2_colon_before_bracket_is_not_a_header", "a:b[2]: x", {}, {"a": "b[2]: x"}),
    ("s5_2_quoted_key_with_colon_is_a_header", '"a:b"[2]: 1,2', {}, {"a:b": [1, 2]}),
    ("s6_pipe_and_tab_delimiters", "p[2|]: a,b|c\nt[2\t]: x y\tz", {}, {"p": ["a,b", "c"], "t": ["x y", "z"]}),
    ("s6_nested_field_groups", "o[1]{id,c{n,k}}:\n  1,Ada,DK", {}, {"o": [{"id": 1, "c": {"n": "Ada", "k": "DK"}}]}),
    ("s6_a_dotted_key_is_one_literal_key", "data.meta.items[1]{id}:\n  7\nuser.name: Ada", {}, {"data.meta.items": [{"id": 7}], "user.name": "Ada"}),
    ("s7_1_escapes", r'a: "x\\y\"z\n\r\t\u00e9\u001F"', {}, {"a": 'x\\y"z\n\r\té\x1f'}),
    ("s7_1_quoted_key_is_unescaped", r'"\t:x": v', {}, {"\t:x": "v"}),
    ("s7_4_any_unquoted_key_token", "foo-bar: 1\n2key: x\n__proto__: p", {}, {"foo-bar": 1, "2key": "x", "__proto__": "p"}),
    ("s7_4_unquoted_values_encoders_would_quote", "a: -x\nb: b:c\nc: [x]", {}, {"a": "-x", "b": "b:c", "c": "[x]"}),
    ("s8_key_colon_alone_opens_an_object", "user:\nmatches:\n  n: 1", {}, {"user": {}, "matches": {"n": 1}}),
    ("s8_siblings_close_at_a_dedent", "a:\n  b:\n    c: 1\n  d: 2\ne: 3", {}, {"a": {"b": {"c": 1}, "d": 2}, "e": 3}),
    ("s9_1_inline_values_trimmed_and_empty_tokens", "a[3]: x , ,z\nb[2]: x,", {}, {"a": ["x", "", "z"], "b": ["x", ""]}),
    ("s9_1_brackets_inside_inline_arrays_are_strings", "a[2]: [],[x]", {}, {"a": ["[]", "[x]"]}),
    ("s9_1_one_empty_string", 'a[1]: ""', {}, {"a": [""]}),
    ("s9_2_arrays_of_arrays", "p[3]:\n  - [2]: a,b\n  - [0]:\n  - []", {}, {"p": [["a", "b"], [], []]}),
    ("s9_3_rows_end_at_a_shallower_key_value_line", "t[2]{a,b}:\n  1,2\n  3,4\nx: 3,4", {}, {"t": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "x": "3,4"}),
    ("s9_3_a_quoted_colon_keeps_a_row", 't[1]{a,b}:\n  1,"a:b"', {}, {"t": [{"a": 1, "b": "a:b"}]}),
    ("s9_4_list_form_mixed_items", "i[4]:\n  - 1\n  - a: 1\n  - [2]: x,y\n  -", {}, {"i": [1, {"a": 1}, ["x", "y"], {}]}),
    ("s9_5_keyed_entries_split_at_the_first_colon", "m[3:]{v}:\n  a,b: 5\n  k[2]: 6\n  c: []", {}, {"m": {"a,b": {"v": 5}, "k[2]": {"v": 6}, "c": {"v": "[]"}}}),
    ("s9_5_empty_keyed_object", "m[0:]{v}:", {}, {"m": {}}),
    ("s10_list_item_object_depths", "i[2]:\n  - id: 1\n    tags[2]: a,b\n  - u[1]{n}:\n      Ada\n    s: on", {}, {"i": [{"id": 1, "tags": ["a", "b"]}, {"u": [{"n": "Ada"}], "s": "on"}]}),
    ("s10_nested_object_as_first_field", "i[1]:\n  - p:\n      q: 1\n    r: 2", {}, {"i": [{"p": {"q": 1}, "r": 2}]}),
    ("s11_2_delimiter_is_never_inherited", "i[1\t]:\n  - tags[3]: a,b,c\n  - s: a,b", {"strict": False}, {"i": [{"tags": ["a", "b", "c"]}, {"s": "a,b"}]}),
    ("s12_crlf_and_trailing_cr", "a: 1\r\nb[2]{x}:\r\n  1\r\n  2\r", {}, {"a": 1, "b": [{"x": 1}, {"x": 2}]}),
    ("s12_nbsp_is_content", "k: \u00a0v\ni[2]: \u00a0a ,b", {}, {"k": "\u00a0v", "i": ["\u00a0a", "b"]}),
    ("s12_whitespace_only_line_is_blank", "a:\n   \nb: 2", {}, {"a": {}, "b": 2}),
    ("s12_blank_lines_between_fields_and_after_header", "a: 1\n\nb[1]:\n\n  - x\n\nc: 2", {}, {"a": 1, "b": ["x"], "c": 2}),
    ("s12_indent_four", "a:\n    b: 1", {"indent": 4}, {"a": {"b": 1}}),
    ("s12_leading_bom_is_stripped", "\ufeffa: 1", {}, {"a": 1}),
    ("s14_1_non_strict_ignores_counts_and_widths", "a[3]: x\nt[1]{p,q}:\n  1\n  2,3", {"strict": False}, {"a": ["x"], "t": [{"p": 1}, {"p": 2, "q": 3}]}),
    ("s14_2_non_strict_floors_indentation", "a:\n   b: 1", {"strict": False}, {"a": {"b": 1}}),
    ("s14_2_non_strict_skips_blank_lines_in_spans", "i[2]:\n  - a\n\n  - b", {"strict": False}, {"i": ["a", "b"]}),
    ("s14_2_non_strict_skips_orphan_lines", "a: 1\n  b: 2\nc: 3", {"strict": False}, {"a": 1, "c": 3}),
    ("s14_2_non_strict_malformed_header_is_a_key", "foo[2]extra: a,b\nkey[]: 1,2", {"strict": False}, {"foo[2]extra": "a,b", "key[]": "1,2"}),
    ("s14_2_non_strict_ignores_content_after_root_array", "[1]: 1\njunk: 3", {"strict": False}, [1]),
    ("s14_3_non_strict_last_write_wins", "name: Ada\nname: Bob\ni[1]{a,a{x}}:\n  1,2", {"strict": False}, {"name": "Bob", "i": [{"a": {"x": 2}}]}),
    ("s16_no_unicode_normalization", '"\u00e9": 1\n"e\u0301": 2', {}, {"\u00e9": 1, "e\u0301": 2}),
]  # fmt: skip


@pytest.mark.parametrize(("text", "options", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_decodes_per_spec(text: str, options: dict[str, Any], expected: Any) -> None:
    assert same(_decode_pure(text, **options), expected)
    assert same(toon.decode(text, **options), expected)


# (test id naming the SPEC.md section, document, options, line, column or None)
INVALID: list[tuple[str, str, dict[str, Any], int, int | None]] = [
    ("s4_number_out_of_range", "a: 1e400", {}, 1, 4),
    ("s5_content_after_root_array", "[2]: 1,2\njunk: 3", {}, 2, 1),
    ("s5_content_after_keyed_root", "[1:]{v}:\n  a: 1\njunk: 3", {}, 3, 1),
    ("s5_content_after_root_empty_array", "[]\njunk: 3", {}, 2, 1),
    ("s5_two_root_scalars", "hello\nworld", {}, 1, 1),
    ("s5_two_root_scalars_non_strict", "hello\nworld", {"strict": False}, 1, 1),
    ("s6_malformed_length_leading_zero", "items[03]: a", {}, 1, 6),
    ("s6_malformed_length_sign", "items[+3]: a", {}, 1, None),
    ("s6_malformed_length_empty", "key[]: 1,2", {}, 1, None),
    ("s6_content_between_bracket_and_colon", "foo[2]extra: a,b", {}, 1, None),
    ("s6_space_before_colon", "items[2] : a,b", {}, 1, None),
    ("s6_keyed_header_without_fields", "m[2:]:", {}, 1, None),
    ("s6_keyed_marker_after_delimiter", "m[2|:]{v}:", {}, 1, None),
    ("s6_empty_field_list", "items[1]{}:\n  1", {}, 1, None),
    ("s6_empty_nested_field_group", "items[1]{id,meta{}}:\n  1", {}, 1, None),
    ("s6_unclosed_field_list", "items[1]{a,b:\n  1,2", {}, 1, None),
    ("s6_repeated_field", "items[1]{a,a}:\n  1,2", {}, 1, None),
    ("s6_field_list_delimiter_mismatch", "items[2\t]{a,b}:\n  1\t2", {}, 1, None),
    ("s6_content_after_a_fields_header", "items[2]{a,b}: 1,2", {}, 1, 15),
    ("s6_keyless_header_nested_in_object", "a:\n  [2]: 1,2", {}, 2, 3),
    ("s6_keyless_fields_header_in_list_item", "i[1]:\n  - [2]{x}:", {}, 2, 5),
    ("s7_1_unknown_escape", r'x: "a\qb"', {}, 1, 6),
    ("s7_1_short_unicode_escape", r'x: "\u00b"', {}, 1, 5),
    ("s7_1_surrogate_escape", r'x: "\uD800"', {}, 1, 5),
    ("s7_1_unterminated_string", 'x: "abc', {}, 1, 4),
    ("s7_1_unterminated_string_non_strict", 'x: "abc', {"strict": False}, 1, 4),
    ("s7_4_text_after_closing_quote", 'k: "abc" def', {}, 1, 9),
    ("s7_4_key_without_colon", "a:\n  user", {}, 2, 3),
    ("s8_depth_jump", "a:\n    b: 1", {}, 2, 5),
    ("s8_orphan_line", "a: 1\n  b: 2", {}, 2, 3),
    ("s9_1_inline_count_too_small", "items[2]: a", {}, 1, 1),
    ("s9_1_inline_count_too_large", "items[1]: a,b", {}, 1, 1),
    ("s9_2_inner_count", "p[1]:\n  - [3]: 1,2", {}, 2, 5),
    ("s9_3_too_few_rows", "items[3]{a,b}:\n  1,2", {}, 1, 1),
    ("s9_3_row_too_narrow", "t[1]{a,b}:\n  1", {}, 2, 3),
    ("s9_3_key_value_line_at_row_depth", "t[1]{a,b}:\n  1,2\n  x: 3", {}, 3, 3),
    ("s9_4_non_item_at_item_depth", "i[2]:\n  - a\n  - b\n  x: 1", {}, 4, 3),
    ("s9_4_too_few_items", "i[2]:\n  - a", {}, 1, 1),
    ("s9_5_entry_without_colon", "m[1:]{v}:\n  a 1", {}, 2, 3),
    ("s9_5_entry_width", "m[1:]{v,w}:\n  a: 1", {}, 2, None),
    ("s12_tab_in_indentation", "\ta: 1", {}, 1, 1),
    ("s12_indentation_not_a_multiple", "a:\n   b: 1", {}, 2, 4),
    ("s12_blank_line_between_list_items", "i[2]:\n  - a\n\n  - b", {}, 3, 1),
    ("s12_blank_line_between_rows", "t[2]{a}:\n  1\n\n  2", {}, 3, 1),
    ("s12_blank_line_between_list_item_fields", "i[1]:\n  - a: 1\n\n    b: 2", {}, 3, 1),
    ("s14_3_duplicate_key", "name: Ada\nname: Bob", {}, 2, 1),
    ("s14_3_duplicate_nested_key", "a:\n  b: 1\n  b: 2", {}, 3, 3),
    ("s14_3_duplicate_list_item_field", "i[1]:\n  - a: 1\n    a: 2", {}, 3, 5),
    ("s14_3_duplicate_entry_key", "m[2:]{v}:\n  a: 1\n  a: 2", {}, 3, 3),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "options", "line", "column"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_rejects_per_spec_with_line_and_column(
    text: str, options: dict[str, Any], line: int, column: int | None
) -> None:
    for decoder in (_decode_pure, toon.decode):
        with pytest.raises(ToonDecodeError) as caught:
            decoder(text, **options)
        assert caught.value.line == line
        if column is not None:
            assert caught.value.column == column
        assert isinstance(caught.value, ValueError)
        assert f"line {line}" in str(caught.value)


def test_bytes_are_read_as_strict_utf8() -> None:
    assert toon.decode("name: caf\u00e9".encode()) == {"name": "caf\u00e9"}
    with pytest.raises(ToonDecodeError) as caught:
        toon.decode(b"a: 1\nb: \xff")
    assert (caught.value.line, caught.value.column) == (2, 4)


def test_bad_options_are_refused_before_reading() -> None:
    with pytest.raises(ValueError, match="indent"):
        toon.decode("a: 1", indent=0)


# -- against toons, on documents it writes ----------------------------------------------------------

_keys = st.text(st.characters(codec="utf-8"), max_size=6)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=12)
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)
# Uniform rows, so the tabular and keyed forms come up often.
_rows = st.lists(
    st.fixed_dictionaries({"id": st.integers(), "name": _scalars, "ok": st.booleans()}),
    min_size=1,
    max_size=6,
)
documents = st.one_of(
    json_values,
    st.dictionaries(_keys, json_values, max_size=6),
    st.dictionaries(_keys, _rows, min_size=1, max_size=3),
    st.dictionaries(
        _keys, st.dictionaries(_keys, _rows.map(lambda r: r[0]), min_size=2, max_size=4), max_size=2
    ),
)
layouts = st.tuples(st.sampled_from([",", "|", "\t"]), st.sampled_from([2, 4]))


@settings(max_examples=300, deadline=None)
@given(documents, layouts)
def test_pure_decoder_matches_toons_on_random_documents(value: Any, layout: tuple[str, int]) -> None:
    delimiter, indent = layout
    text = toons.dumps(value, delimiter=delimiter, indent_size=indent)
    expected = toons.loads(text, indent_size=indent)
    assert same(_decode_pure(text, indent=indent), expected)
    assert same(_decode_pure(text, indent=indent, strict=False), expected)
    assert same(toon.decode(text, indent=indent), _decode_pure(text, indent=indent))
