"""`toon.PartialTOON`: TOON decoded while it arrives. What it shows only grows, and `close()` is
exactly `decode` on the whole text (or its error)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lionflow import ToonDecodeError, toon
from lionflow.structured.partial_model import PartialBuilder
from lionflow.toon._decode import _decode_pure

from .test_decode import INVALID, VALID, documents, layouts, same

toons = pytest.importorskip("toons")


def grows(old: Any, new: Any) -> bool:
    """`new` is `old` grown: strings extended, containers with more items or keys, nothing else."""
    if isinstance(old, str):
        return isinstance(new, str) and new.startswith(old)
    if isinstance(old, dict):
        return (
            isinstance(new, dict)
            and list(new)[: len(old)] == list(old)
            and all(grows(old[k], new[k]) for k in old)
        )
    if isinstance(old, list):
        return (
            isinstance(new, list)
            and len(new) >= len(old)
            and all(grows(a, b) for a, b in zip(old, new, strict=False))
        )
    return type(old) is type(new) and old == new


def pieces(text: str, sizes: list[int]) -> list[str]:
    out, start, turn = [], 0, 0
    while start < len(text):
        size = sizes[turn % len(sizes)]
        out.append(text[start : start + size])
        start += size
        turn += 1
    return out


def feed_checking(text: str, sizes: list[int], *, monotonic: bool = True, **options: Any) -> PartialTOON:
    partial = toon.PartialTOON(**options)
    shown: Any = None
    for piece in pieces(text, sizes):
        partial.feed(piece)
        now = partial.value
        if shown is not None and monotonic:
            assert grows(shown, now), (shown, now, piece)
        shown = copy.deepcopy(now)
    return partial


PartialTOON = toon.PartialTOON
split_sizes = st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(documents, layouts, split_sizes)
def test_random_documents_in_random_pieces_only_grow_and_close_to_decode(
    value: Any, layout: tuple[str, int], sizes: list[int]
) -> None:
    delimiter, indent = layout
    text = toons.dumps(value, delimiter=delimiter, indent_size=indent)
    partial = feed_checking(text, sizes, indent=indent)
    final = partial.close()
    assert same(final, toon.decode(text, indent=indent))
    assert same(final, _decode_pure(text, indent=indent))
    assert partial.done


@pytest.mark.parametrize(("name", "text", "options", "expected"), VALID, ids=[c[0] for c in VALID])
@pytest.mark.parametrize("sizes", [[1], [2, 5], [7, 3, 1]], ids=["by1", "by2-5", "by7-3-1"])
def test_spec_cases_in_pieces_close_to_decode(
    name: str, text: str, options: dict[str, Any], expected: Any, sizes: list[int]
) -> None:
    # non-strict last-write-wins replaces a value shown: the one exception the spec makes
    partial = feed_checking(text, sizes, monotonic="last_write_wins" not in name, **options)
    assert same(partial.close(), expected)


@pytest.mark.parametrize(
    ("text", "options", "line", "column"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
@pytest.mark.parametrize("sizes", [[1], [3, 7]], ids=["by1", "by3-7"])
def test_must_fail_documents_raise_what_decode_raises_by_close(
    text: str, options: dict[str, Any], line: int, column: int | None, sizes: list[int]
) -> None:
    partial = toon.PartialTOON(**options)
    with pytest.raises(ToonDecodeError) as caught:
        for piece in pieces(text, sizes):
            partial.feed(piece)
        partial.close()
    with pytest.raises(ToonDecodeError) as whole:
        _decode_pure(text, **options)
    assert str(caught.value) == str(whole.value)
    with pytest.raises(ToonDecodeError):
        partial.close()  # it stays failed


def test_s7_a_string_value_grows_while_numbers_and_literals_wait_for_their_line() -> None:
    partial = toon.PartialTOON()
    seen = []
    for char in 'name: Ada Lovelace\nage: 36\nok: true\nq: "a\\"b\\u00e9c"\n':
        partial.feed(char)
        seen.append(copy.deepcopy(partial.value))
    assert {"name": "Ada"} in seen
    assert {"name": "Ada Lovelace"} in seen
    assert not any(isinstance(v, dict) and v.get("age") == 3 for v in seen)  # never the 3 of 36
    assert {"name": "Ada Lovelace", "age": 36} in seen
    assert not any(isinstance(v, dict) and "ok" in v and v["ok"] is not True for v in seen)
    assert {
        "name": "Ada Lovelace",
        "age": 36,
        "ok": True,
        "q": 'a"b',
    } in seen  # the escape held back until whole
    assert partial.close() == {"name": "Ada Lovelace", "age": 36, "ok": True, "q": 'a"bé c'.replace(" ", "")}


def test_s9_3_a_tabular_row_appears_only_when_its_line_is_complete() -> None:
    partial = toon.PartialTOON()
    partial.feed("users[2]{id,name}:\n  1,Ada\n  2,B")
    assert partial.value == {"users": [{"id": 1, "name": "Ada"}]}
    partial.feed("ob\n")
    assert partial.value == {"users": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]}


def test_s8_a_key_waits_until_its_value_kind_is_known() -> None:
    partial = toon.PartialTOON()
    partial.feed("a: 1\nuser")
    assert partial.value == {"a": 1}
    partial.feed(":")
    assert partial.value == {"a": 1}  # an object, a string, a number or [] still
    partial.feed("\n  name: A")
    assert partial.value == {"a": 1, "user": {"name": "A"}}


def test_s10_a_list_item_object_shows_its_first_string_field_as_it_grows() -> None:
    partial = toon.PartialTOON()
    partial.feed("items[2]:\n  - title: Dune\n    note: spi")
    items = partial.value["items"]
    assert items == [{"title": "Dune", "note": "spi"}]
    partial.feed("ce\n  - title: Em")
    assert partial.value["items"] is items  # the same list, filled in place
    assert items == [{"title": "Dune", "note": "spice"}, {"title": "Em"}]
    first = items[0]
    partial.feed("ma\n")
    assert partial.value["items"][0] is first
    assert partial.close() == {"items": [{"title": "Dune", "note": "spice"}, {"title": "Emma"}]}


def test_containers_stay_reported_open_until_a_dedent_proves_them_closed() -> None:
    partial = toon.PartialTOON()
    partial.feed("a:\n  b: 1\n")
    root = partial.value
    assert partial.open_containers() == [root, root["a"]]
    assert partial.path_depth == 2
    assert partial.in_string is False
    partial.feed("c: x")  # the first character at depth 0 closes `a`
    assert partial.open_containers() == [root]
    growing: bool = partial.in_string
    assert growing
    assert partial.value == {"a": {"b": 1}, "c": "x"}
    revision = partial.revision
    partial.feed("yz")
    assert partial.revision > revision
    partial.close()
    assert partial.done
    assert partial.open_containers() == []


def test_a_count_a_dedent_proves_unmet_raises_from_feed() -> None:
    partial = toon.PartialTOON()
    partial.feed("items[3]:\n  - a\n")
    with pytest.raises(ToonDecodeError) as caught:
        partial.feed("x")
    assert caught.value.line == 1
    with pytest.raises(ToonDecodeError):
        partial.feed("more")


def test_feed_after_close_is_refused() -> None:
    partial = toon.PartialTOON()
    partial.feed("a: 1")
    assert partial.close() == {"a": 1}
    assert partial.close() == {"a": 1}
    with pytest.raises(RuntimeError):
        partial.feed("b: 2")


def test_a_long_single_line_value_is_shown_without_rescanning() -> None:
    partial = toon.PartialTOON()
    partial.feed("text: ")
    for _ in range(20_000):
        partial.feed("ab ")
    assert partial.value["text"] == ("ab " * 20_000).rstrip()
    assert partial.close() == {"text": ("ab " * 20_000).rstrip()}


class Person(BaseModel):
    name: str = ""
    bio: str = ""
    tags: list[str] = []


def test_the_partial_pydantic_builder_reads_it_unchanged() -> None:
    partial = toon.PartialTOON()
    builder = PartialBuilder(Person)
    built = []
    for char in "name: Ada\nbio: wrote the first program\ntags[2]: math,poetry\n":
        partial.feed(char)
        model = builder.build(partial)  # type: ignore[arg-type, unused-ignore]
        if model is not None:
            built.append(model.model_copy(deep=True))
    assert next(m for m in built if m.name).name == "A"  # the name grows from its first letter
    assert any(m.bio == "wrote the" for m in built)
    assert built[-1] == Person(name="Ada", bio="wrote the first program", tags=["math", "poetry"])
