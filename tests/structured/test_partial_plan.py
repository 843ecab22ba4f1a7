"""The compiled partial builder shows exactly what the builder before it showed, at every delta.

Each document streams in deltas of 1-4 characters through `PartialJSON`; after each delta that changes
the value, the compiled `PartialBuilder` and the one it replaced (`_old_builder`, kept as the oracle)
both build, and must agree on whether there is a new object and on the object itself: its values, their
types, and the fields set. Then: plans are per model class (two classes, generic parameters, recursive
models, a model rebuilt), and TOON (a parser without a structure count) takes the checked path.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

import pytest
from pydantic import BaseModel, Field

from lionflow import toon
from lionflow.structured import PartialBuilder, PartialJSON, PartialJSONError
from tests.structured import _old_builder

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

WORDS = ["lion", "flow", "stream", "chunk", "token", "delta", "partial", "object", "é", "\\n", '"']


def _deltas(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(text):
        step = rng.randint(1, 4)
        pieces.append(text[i : i + step])
        i += step
    return pieces


def _snapshot(value: Any) -> Any:
    """Everything a user can see of a partial value, types included (lists are shared and grow)."""
    if isinstance(value, BaseModel):
        fields = {name: _snapshot(item) for name, item in value.__dict__.items()}
        return (type(value), fields, frozenset(value.model_fields_set))
    if isinstance(value, list | tuple):
        return (type(value), [_snapshot(item) for item in value])
    if isinstance(value, dict):
        return (type(value), {key: _snapshot(item) for key, item in value.items()})
    if isinstance(value, set | frozenset):
        return (type(value), sorted(value, key=repr))
    return (type(value), value)


def _agree(model: type[M], text: str, *, seed: int = 1) -> int:
    """Stream `text` through both builders; they must agree at every delta. Returns how many objects."""
    parser = PartialJSON()
    new, old = PartialBuilder(model), _old_builder.PartialBuilder(model)
    seen, shown = -1, 0
    for index, piece in enumerate(_deltas(text, seed)):
        parser.feed(piece)
        if parser.revision == seen or parser.done:
            continue
        seen = parser.revision
        ours, theirs = new.build(parser), old.build(parser)
        assert (ours is None) == (theirs is None), (index, piece, ours, theirs)
        if ours is not None:
            shown += 1
            assert _snapshot(ours) == _snapshot(theirs), (index, piece)
    assert parser.done
    return shown


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


# -- the four shapes of the benchmark, small ------------------------------------------------------


class Item(BaseModel):
    id: int = 0
    name: str = ""
    tags: list[str] = []
    score: float = 0.0
    active: bool = False


class Listing(BaseModel):
    items: list[Item] = []


class Note(BaseModel):
    title: str = ""
    body: str = ""
    summary: str | None = None
    rating: int = 0


class Notebook(BaseModel):
    notes: list[Note] = []


class Node(BaseModel):
    name: str = ""
    value: int = 0
    children: list[Node] = []


class Forest(BaseModel):
    trees: list[Node] = []


class Essay(BaseModel):
    title: str = ""
    text: str = ""


def _tree(depth: int, rng: random.Random) -> dict[str, Any]:
    node: dict[str, Any] = {"name": _sentence(rng, 2), "value": rng.randint(0, 999)}
    if depth > 1:
        node["children"] = [_tree(depth - 1, rng) for _ in range(2)]
    return node


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_small_items(seed: int) -> None:
    rng = random.Random(seed)
    items = [
        {
            "id": i,
            "name": _sentence(rng, 3),
            "tags": [rng.choice(["a", "bb"]) for _ in range(rng.randint(0, 3))],
            "score": round(rng.random() * 100, 3),
            "active": rng.random() < 0.5,
        }
        for i in range(40)
    ]
    assert _agree(Listing, json.dumps({"items": items}), seed=seed) > 100


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_items_with_long_text_fields(seed: int) -> None:
    rng = random.Random(seed)
    notes = [
        {"title": _sentence(rng, 20), "body": _sentence(rng, 20), "summary": _sentence(rng, 20), "rating": 3}
        for _ in range(12)
    ]
    notes[3]["summary"] = None  # an explicit null where the field takes one
    assert _agree(Notebook, json.dumps({"notes": notes}, ensure_ascii=seed != 2), seed=seed) > 500


@pytest.mark.parametrize("seed", [1, 2])
def test_objects_nested_six_deep(seed: int) -> None:
    rng = random.Random(seed)
    trees = [_tree(6, rng) for _ in range(2)]
    assert _agree(Forest, json.dumps({"trees": trees}), seed=seed) > 200


@pytest.mark.parametrize("seed", [1, 2])
def test_one_huge_string_field(seed: int) -> None:
    rng = random.Random(seed)
    text = json.dumps({"title": "an essay", "text": _sentence(rng, 2000)})
    assert _agree(Essay, text, seed=seed) > 1000


# -- the kinds of annotation ------------------------------------------------------------------------


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    city: str
    name: str = ""


class Everything(BaseModel):
    name: str
    nickname: str | None = None
    address: Address | None = None
    aliased: str = Field(default="", alias="displayName")
    tags: list[str] = []
    made: list[str] = Field(default_factory=list)
    matrix: list[list[str]] = []
    friends: list[Address] = []
    color: Color | None = None
    kind: Literal["basic", "premium"] | None = None
    joined: datetime | None = None
    scores: dict[str, int] = {}
    groups: dict[str, list[str]] = {}
    pair: tuple[int, str] | None = None
    unique: set[str] = set()
    loose: Any = None
    either: int | str | None = None
    shapes: list[int] | dict[str, int] | None = None
    ratio: float = 0.0
    flag: bool = False


EVERYTHING = {
    "name": "ada",
    "nickname": None,
    "address": {"city": "london", "name": "home", "extra": "ignored"},
    "displayName": "Countess",
    "tags": ["math", "engines", ""],
    "made": ["notes"],
    "matrix": [["a", "b"], [], ["c"]],
    "friends": [{"city": "paris"}, {"name": "x", "city": "rome"}],
    "color": "green",
    "kind": "premium",
    "joined": "1833-06-05T00:00:00",
    "scores": {"logic": 10, "poetry": 7},
    "groups": {"one": ["a", "b"], "two": []},
    "pair": [1, "x"],
    "unique": ["a", "b", "a"],
    "loose": {"anything": ["goes", 1, None]},
    "either": "5",
    "shapes": {"a": 1},
    "ratio": 3,
    "flag": True,
    "unknown": {"deep": ["ignored", "text"]},
}


@pytest.mark.parametrize("seed", range(6))
def test_every_kind_of_field(seed: int) -> None:
    rng = random.Random(seed)
    keys = list(EVERYTHING)
    rng.shuffle(keys)  # the order of keys decides which field grows last
    document = {key: EVERYTHING[key] for key in keys}
    assert _agree(Everything, json.dumps(document, indent=seed % 2 or None), seed=seed) > 20


def test_a_string_in_a_dict_field_and_in_an_any_field_still_shows_by_revision() -> None:
    class Loose(BaseModel):
        notes: dict[str, str] = {}
        free: Any = None
        tail: list[Any] = []

    text = json.dumps({"notes": {"a": "x" * 30, "b": "y" * 30}, "free": ["z" * 30], "tail": ["w" * 30]})
    assert _agree(Loose, text) > 3


# -- one plan per model class --------------------------------------------------------------------


def _make(kind: type) -> type[BaseModel]:
    class Thing(BaseModel):  # the same name and field, a different type
        value: kind | None = None  # type: ignore[valid-type]
        label: str = ""

    return Thing


def test_two_classes_of_the_same_name_keep_their_own_plans() -> None:
    as_int, as_str = _make(int), _make(str)
    text = '{"label": "abc", "value": "12"}'
    for model in (as_int, as_str, as_int):
        _agree(model, text)
    parser = PartialJSON()
    parser.feed('{"value": "12", "label": "a')
    ints, strs = PartialBuilder(as_int).build(parser), PartialBuilder(as_str).build(parser)
    assert ints is not None
    assert strs is not None
    assert ints.value == 12  # type: ignore[attr-defined]
    assert strs.value == "12"  # type: ignore[attr-defined]


class Box(BaseModel, Generic[T]):
    content: T | None = None
    items: list[T] = []


def test_generic_models_get_a_plan_per_parameter() -> None:
    text = '{"items": ["1", "22"], "content": "333"}'
    for model in (Box[int], Box[str], Box[int]):
        _agree(model, text)
    parser = PartialJSON()
    parser.feed(text)
    numbers = PartialBuilder(Box[int]).build(parser)
    words = PartialBuilder(Box[str]).build(parser)
    assert numbers == Box[int](items=[1, 22], content=333)
    assert words == Box[str](items=["1", "22"], content="333")


class Employee(BaseModel):
    name: str = ""
    team: Team | None = None


class Team(BaseModel):
    title: str = ""
    lead: Employee | None = None
    members: list[Employee] = []


Employee.model_rebuild()


def test_recursive_and_mutually_recursive_models_do_not_loop() -> None:
    deep: dict[str, Any] = {"name": "leaf"}
    for level in range(30):
        deep = {"name": f"n{level}", "children": [deep, {"name": "x" * level}]}
    _agree(Node, json.dumps(deep))
    team = {"title": "core", "lead": {"name": "ada", "team": {"title": "inner", "members": [{"name": "b"}]}}}
    _agree(Employee, json.dumps({"name": "root", "team": team}))


def test_a_model_rebuilt_with_other_fields_gets_a_new_plan() -> None:
    class Later(BaseModel):
        value: Undefined | None = None

    parser = PartialJSON()
    parser.feed('{"value": {"size": 3}}')

    class Undefined(BaseModel):
        size: int = 0

    Later.model_rebuild(_types_namespace={"Undefined": Undefined})
    built = PartialBuilder(Later).build(parser)
    assert built is not None
    assert built.value == Undefined(size=3)
    _agree(Later, '{"value": {"size": 3}}')


# -- a parser without a structure count ------------------------------------------------------------


class Person(BaseModel):
    name: str = ""
    bio: str = ""
    tags: list[str] = []
    friends: list[Address] = []


def test_toon_takes_the_checked_path_and_agrees() -> None:
    text = (
        "name: Ada Lovelace\nbio: wrote the first program for an engine of gears\n"
        "tags[3]: math,poetry,engines\nfriends[2]{city,name}:\n  london,charles\n  paris,mary\n"
    )
    for seed in range(4):
        parser = toon.PartialTOON()
        new, old = PartialBuilder(Person), _old_builder.PartialBuilder(Person)
        for piece in _deltas(text, seed):
            parser.feed(piece)
            ours, theirs = new.build(parser), old.build(parser)  # type: ignore[arg-type, unused-ignore]
            assert (ours is None) == (theirs is None)
            if ours is not None:
                assert _snapshot(ours) == _snapshot(theirs)


# -- what the path builds read of PartialJSON ----------------------------------------------------------


def test_the_structure_count_stands_still_only_while_a_string_grows() -> None:
    parser = PartialJSON()
    counts = []
    for piece in ['{"a": "', "xy", "z", '", "b": [1', ", 2", '], "c": "q', "r", '"}']:
        parser.feed(piece)
        counts.append(parser.structure)
    # the string "xyz" grows without a change of structure; a value added or a container closed moves it
    assert counts[1] == counts[2] == counts[0]
    assert len(set(counts[2:6])) == 4
    assert counts[6] == counts[5]
    assert counts[7] > counts[6]


@pytest.mark.parametrize(
    ("pieces", "position"),
    [
        (['{"a": "ab\x01c"}'], 9),
        (['{"a": "ab', 'c\x1fd"}'], 10),
        (['{"a": "\\n\x02"}'], 9),
        (['{"a": "\\', 'u00e9\x03"}'], 13),
    ],
)
def test_a_control_character_in_a_string_is_refused_where_it_stands(pieces: list[str], position: int) -> None:
    parser = PartialJSON()
    with pytest.raises(PartialJSONError, match=f"position {position}"):
        for piece in pieces:
            parser.feed(piece)


@pytest.mark.parametrize("pieces", [['{"a": "ab', "ce\nf"], ['{"a": "abc', "e\nf"], ['{"a": "abce\nf']])
def test_the_text_before_a_control_character_is_kept_however_the_deltas_were_split(
    pieces: list[str],
) -> None:
    parser = PartialJSON()
    with pytest.raises(PartialJSONError, match="position 11"):
        for piece in pieces:
            parser.feed(piece)
    assert parser.value == {"a": "abce"}  # the value keeps all the valid text before the error
