"""PartialJSON against the jiter reference at every prefix, and the cases other parsers get wrong."""

from __future__ import annotations

import json
from typing import Any

import jiter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lionflow.structured import PartialJSON, PartialJSONError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
).filter(lambda value: isinstance(value, dict | list))


def _reference(prefix: str, parser: PartialJSON) -> Any:
    """jiter on the prefix, less a number still being written at the very end (lionflow leaves
    those out: '12' may yet become '123')."""
    pending = parser._pending
    if pending and pending[0] in "-0123456789":
        prefix = prefix[: len(prefix) - len(pending)]
    return jiter.from_json(prefix.encode(), partial_mode="trailing-strings")


def _cuts(data: st.DataObject, length: int) -> list[int]:
    points = data.draw(st.lists(st.integers(1, max(1, length - 1)), max_size=12, unique=True))
    return sorted({*points, length})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]), data=st.data())
def test_every_prefix_agrees_with_jiter_and_the_end_with_json_loads(
    document: Any, ascii_only: bool, indent: int | None, data: st.DataObject
) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only, indent=indent)
    parser = PartialJSON()
    start = 0
    for cut in _cuts(data, len(text)):
        parser.feed(text[start:cut])
        start = cut
        assert parser.value == _reference(text[:cut], parser), text[:cut]
    assert parser.done
    assert parser.value == json.loads(text)


@settings(max_examples=150, deadline=None)
@given(document=documents)
def test_fed_one_character_at_a_time(document: Any) -> None:
    text = json.dumps(document, ensure_ascii=True)
    parser = PartialJSON()
    for position, char in enumerate(text, start=1):
        parser.feed(char)
        assert parser.value == _reference(text[:position], parser), text[:position]
    assert parser.value == json.loads(text)


def _feed(*deltas: str) -> list[Any]:
    parser = PartialJSON()
    values = []
    for delta in deltas:
        parser.feed(delta)
        values.append(json.loads(json.dumps(parser.value)))  # a snapshot
    return values


def test_escapes_split_across_deltas_are_held_back_not_garbled() -> None:
    assert _feed('{"a": "x\\', 'ny"}') == [{"a": "x"}, {"a": "x\ny"}]
    assert _feed('["\\u00', "e9", '!"]') == [[""], ["é"], ["é!"]]
    assert _feed('["\\ud83d', '\\ude00"]') == [[""], ["😀"]]  # a surrogate pair split in two
    assert _feed('["\\"quoted\\"', ' and \\\\ slash"]') == [['"quoted"'], ['"quoted" and \\ slash']]


def test_a_child_key_named_like_its_parent_key() -> None:
    values = _feed('{"name": {"name": "in', 'ner"}, "other": 1}')
    assert values == [{"name": {"name": "in"}}, {"name": {"name": "inner"}, "other": 1}]


def test_numbers_and_literals_appear_only_once_complete() -> None:
    assert _feed("[12", "3, tr", "ue, -0.", "5e1, nul", "l]") == [
        [],
        [123],
        [123, True],
        [123, True, -5.0],
        [123, True, -5.0, None],
    ]


def test_keys_appear_with_their_values() -> None:
    assert _feed('{"ke', 'y"', ": ", '"', "v") == [{}, {}, {}, {"key": ""}, {"key": "v"}]


def test_preamble_and_code_fences_are_ignored() -> None:
    assert _feed("Here you go:\n```json\n", '{"a": [1, 2]}', "\n```\nHope that helps!") == [
        None,
        {"a": [1, 2]},
        {"a": [1, 2]},
    ]


@pytest.mark.parametrize(
    ("text", "position"),
    [('{"a" 1}', 5), ('{"a": tru', None), ("[1, }", 4), ('{"a": 01}', 6), ('["bad \\x"]', 6), ("[1 2]", 3)],
)
def test_invalid_json_names_the_position_and_keeps_the_last_value(text: str, position: int | None) -> None:
    parser = PartialJSON()
    if position is None:  # still a valid prefix: no error yet
        parser.feed(text)
        return
    with pytest.raises(PartialJSONError) as caught:
        for char in text:
            parser.feed(char)
    assert caught.value.position == position
    assert f"at position {position}" in str(caught.value)
    assert parser.value is not None  # what had been parsed stays available
