"""`toon.encode` against TOON spec v4.0, case by case from SPEC.md (each test names its section), plus
round trips through an independent decoder (`toons`) and through ours, for random values.

Every case runs on both writers: the pure-Python one, and `encode` as a user calls it (which hands
whole documents to `toons` when the `lionflow[toon]` extra is installed). They must write the same text.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lionflow.errors import ConfigurationError
from lionflow.toon import decode, encode
from lionflow.toon._encode import _encode, _holds_halfway
from lionflow.toon._normalize import Walk, normalize

Case = tuple[object, dict[str, Any], str]
Writer = Callable[..., str]


def _pure(value: object, *, indent: int = 2, delimiter: str = ",") -> str:
    return _encode(value, indent, delimiter, compiled=False)


@pytest.fixture(params=["pure", "public"])
def write(request: pytest.FixtureRequest) -> Writer:
    """The pure-Python writer, and `encode` itself (the compiled path when `toons` is installed)."""
    return _pure if request.param == "pure" else encode


def _check(write: Writer, value: object, options: dict[str, Any], expected: str) -> None:
    assert write(value, **options) == expected


# §2 / §3: canonical numbers and the data model ----------------------------------------------------

NUMBERS: list[Case] = [
    (1, {}, "1"),
    (-7, {}, "-7"),
    (1.0, {}, "1"),
    (1.5000, {}, "1.5"),
    (-0.0, {}, "0"),
    (0.1 + 0.2, {}, "0.30000000000000004"),
    (1e6, {}, "1000000"),
    (1e-6, {}, "0.000001"),
    (1e20, {}, "100000000000000000000"),
    (123456789.125, {}, "123456789.125"),
    (-0.00001, {}, "-0.00001"),
    (2**64, {}, "18446744073709551616"),
    # Outside [1e-6, 1e21) §2 allows an exponent; lionflow writes plain decimal there too.
    (1e21, {}, "1000000000000000000000"),
    (1e-7, {}, "0.0000001"),
    (float("nan"), {}, "null"),
    (float("inf"), {}, "null"),
    (float("-inf"), {}, "null"),
    (True, {}, "true"),
    (False, {}, "false"),
    (None, {}, "null"),
    ({"n": [1.0, -0.0, 2.5, 1e-7]}, {}, "n[4]: 1,0,2.5,0.0000001"),
]


@pytest.mark.parametrize(("value", "options", "expected"), NUMBERS)
def test_s2_numbers_are_canonical_plain_decimal(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


def test_s2_a_column_of_floats_is_canonical_however_its_values_print(write: Writer) -> None:
    rows = [{"x": value} for value in (1.0, 2.5, -0.0, 1e22, float("nan"), 0.1, 100.0)]
    assert write({"r": rows}) == "r[7]{x}:\n  1\n  2.5\n  0\n  10000000000000000000000\n  null\n  0.1\n  100"


# Floats whose exact value lies halfway between the two shortest decimals that read back as them:
# written rounded to even, as Python's repr and JavaScript's Number#toString write them, by both
# writers (`toons`, the compiled one, rounds such halves up).
TIES = [
    (562949953421312.25, "562949953421312.2"),
    (2.0**-25, "0.000000029802322387695312"),
    (-1526373867391712.25, "-1526373867391712.2"),
    (1.5815811157226562, "1.5815811157226562"),
]


def test_s2_a_float_halfway_between_two_shortest_decimals_is_written_rounded_to_even(
    write: Writer,
) -> None:
    class Scores(BaseModel):
        best: float
        all: list[float]

    for number, text in TIES:
        assert write(number) == text
        assert write({"x": number}) == f"x: {text}"
        assert write({"n": "a", "deep": {"x": number}}) == f"n: a\ndeep:\n  x: {text}"
        assert write([1, number]) == f"[2]: 1,{text}"
        assert write({"rows": [{"a": 1, "b": number}]}) == f"rows[1]{{a,b}}:\n  1,{text}"
        assert write({"m": [[number]]}) == f"m[1]:\n  - [1]: {text}"
        assert write(Scores(best=number, all=[0.5, number])) == f"best: {text}\nall[2]: 0.5,{text}"


class Colour(enum.Enum):
    RED = "red"
    ONE = 1


class Person(BaseModel):
    name: str
    born: datetime.date
    tags: set[str] = set()


@dataclasses.dataclass
class Point:
    x: int
    y: float


HOST_VALUES: list[Case] = [
    (datetime.datetime(2026, 7, 22, 9, 30, tzinfo=datetime.UTC), {}, '"2026-07-22T09:30:00+00:00"'),
    ({"d": datetime.date(2026, 7, 22)}, {}, "d: 2026-07-22"),
    ({"t": datetime.time(9, 30)}, {}, 't: "09:30:00"'),
    ({"c": Colour.RED, "n": Colour.ONE}, {}, "c: red\nn: 1"),
    ({"s": (1, 2), "f": frozenset({3})}, {}, "s[2]: 1,2\nf[1]: 3"),
    ({"u": uuid.UUID(int=1)}, {}, "u: 00000000-0000-0000-0000-000000000001"),
    ({"p": Point(1, 2.0)}, {}, "p:\n  x: 1\n  y: 2"),
    ({1: "a", 2: "b"}, {}, '"1": a\n"2": b'),
    # Decimal keeps its exact digits (a float would round them) and is written as a number.
    (
        {"price": Decimal("19.990"), "big": Decimal("12345678901234567890.123456789")},
        {},
        "price: 19.99\nbig: 12345678901234567890.123456789",
    ),
    (
        {"z": Decimal("-0.00"), "tiny": Decimal("1E-9"), "nan": Decimal("NaN")},
        {},
        "z: 0\ntiny: 0.000000001\nnan: null",
    ),
    ([Decimal("1.50"), "1.50"], {}, '[2]: 1.5,"1.50"'),
]


@pytest.mark.parametrize(("value", "options", "expected"), HOST_VALUES)
def test_s3_host_values_are_normalized_to_the_json_model(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


def test_s3_pydantic_models_are_dumped_in_json_mode(write: Writer) -> None:
    people = [
        Person(name="Ada", born=datetime.date(1815, 12, 10)),
        Person(name="Alan", born=datetime.date(1912, 6, 23)),
    ]
    # pydantic dumps the empty set as [], which is no primitive: the array falls back to list form.
    assert write({"people": people}) == (
        "people[2]:\n  - name: Ada\n    born: 1815-12-10\n    tags: []"
        "\n  - name: Alan\n    born: 1912-06-23\n    tags: []"
    )
    assert write([Person(name="Ada", born=datetime.date(1815, 12, 10), tags={"math"})]) == (
        "[1]:\n  - name: Ada\n    born: 1815-12-10\n    tags[1]: math"
    )


class Row(BaseModel):
    id: int
    name: str


def test_s9_3_pydantic_rows_with_primitive_fields_give_the_tabular_form(write: Writer) -> None:
    assert write([Row(id=1, name="Ada"), Row(id=2, name="Bob")]) == "[2]{id,name}:\n  1,Ada\n  2,Bob"


# §5: root forms -----------------------------------------------------------------------------------

ROOTS: list[Case] = [
    ({}, {}, ""),
    ([], {}, "[]"),
    ("hello", {}, "hello"),
    ("42", {}, '"42"'),
    ("a:b", {}, '"a:b"'),
    ("a,b", {}, '"a,b"'),
    ("a,b", {"delimiter": "|"}, "a,b"),
    ("a|b", {"delimiter": "|"}, '"a|b"'),
    ([1, "x", True], {}, "[3]: 1,x,true"),
    ([{"a": 1}, {"a": 2}], {}, "[2]{a}:\n  1\n  2"),
    ([1, [2]], {}, "[2]:\n  - 1\n  - [1]: 2"),
    ({"a": 1}, {}, "a: 1"),
    (
        {"ada": {"age": 36, "city": "London"}, "alan": {"age": 41, "city": "Wilmslow"}},
        {},
        "[2:]{age,city}:\n  ada: 36,London\n  alan: 41,Wilmslow",
    ),
]


@pytest.mark.parametrize(("value", "options", "expected"), ROOTS)
def test_s5_root_forms(write: Writer, value: object, options: dict[str, Any], expected: str) -> None:
    _check(write, value, options, expected)


# §7.1: escapes ------------------------------------------------------------------------------------

ESCAPES: list[Case] = [
    ({"s": 'say "hi"'}, {}, 's: "say \\"hi\\""'),
    ({"s": "C:\\p"}, {}, 's: "C:\\\\p"'),
    ({"s": "a\nb\rc\td"}, {}, 's: "a\\nb\\rc\\td"'),
    ({"s": "a\u0004b\u001fc\u0000"}, {}, 's: "a\\u0004b\\u001fc\\u0000"'),
    ({"s": "x\\y"}, {}, 's: "x\\\\y"'),
    ({"s": "emoji 🚀, yes"}, {}, 's: "emoji 🚀, yes"'),
    ({"a\u0004b": 1}, {}, '"a\\u0004b": 1'),
    ({'q"k': 1}, {}, '"q\\"k": 1'),
    ({"s": "\u007f"}, {}, "s: \u007f"),
]


@pytest.mark.parametrize(("value", "options", "expected"), ESCAPES)
def test_s7_1_quoted_text_escapes_exactly_five_characters_and_control_codes(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


# §7.2: when a string value is quoted --------------------------------------------------------------

QUOTED_VALUES = [
    "",
    " padded",
    "padded ",
    "  ",
    "true",
    "false",
    "null",
    "42",
    "-3.14",
    "05",
    "+1",
    "1e-6",
    "1E6",
    "2.5e+10",
    "a:b",
    'a"b',
    "a\\b",
    "[test]",
    "x]",
    "{key}",
    "}",
    "tab\there",
    "line\nbreak",
    "-",
    "- item",
    "-x",
    "#",
    "#hello",
    "a,b",
]
BARE_VALUES = [
    "hello world",
    "café",
    "你好",
    "hello 👋 world",
    "True",
    "NULL",
    "1.",
    ".5",
    "0x10",
    "1_000",
    "Infinity",
    "a-b",
    "a#b",
    "x.y",
    "\u00a0nbsp",
    "a|b",
    "a\u00a0",
]


@pytest.mark.parametrize("text", QUOTED_VALUES)
def test_s7_2_strings_that_could_read_as_something_else_are_quoted(write: Writer, text: str) -> None:
    assert write({"v": text}).startswith('v: "')
    assert write([text]).startswith('[1]: "')


@pytest.mark.parametrize("text", BARE_VALUES)
def test_s7_2_other_strings_stay_bare(write: Writer, text: str) -> None:
    assert write({"v": text}) == f"v: {text}"
    assert write([text, text]) == f"[2]: {text},{text}"


def test_s7_2_strings_that_look_like_numbers_are_quoted_in_every_position(write: Writer) -> None:
    rows = [{"zip": "01234", "n": "7"} for _ in range(12)]
    assert write({"zips": rows}) == "zips[12]{zip,n}:\n" + "\n".join(['  "01234","7"'] * 12)
    assert write({"m": {"a": {"v": "1"}, "b": {"v": "x"}}}) == 'm[2:]{v}:\n  a: "1"\n  b: x'
    assert write(["true", "-", "3"]) == '[3]: "true","-","3"'
    assert write([["true"], {"a": "null"}]) == '[2]:\n  - [1]: "true"\n  - a: "null"'


def test_s7_2_a_long_column_needing_one_quote_quotes_just_that_value(write: Writer) -> None:
    names = [f"name {i}" for i in range(20)]
    names[13] = "Smith, J."
    assert write({"r": [{"n": name} for name in names]}).splitlines()[14] == '  "Smith, J."'
    names[13] = "trailing "
    assert write({"r": [{"n": name} for name in names]}).splitlines()[14] == '  "trailing "'
    names[13] = ""
    assert write({"r": [{"n": name} for name in names]}).splitlines()[14] == '  ""'
    names[13] = "two\nlines"
    assert write({"r": [{"n": name} for name in names]}).splitlines()[14] == '  "two\\nlines"'


# §7.3: keys ---------------------------------------------------------------------------------------

KEYS: list[Case] = [
    (
        {"user_name": 1, "_a": 2, "k.1": 3, "__proto__": 4, "A9": 5},
        {},
        "user_name: 1\n_a: 2\nk.1: 3\n__proto__: 4\nA9: 5",
    ),
    ({"order:id": 1}, {}, '"order:id": 1'),
    ({"full name": 1}, {}, '"full name": 1'),
    ({"-lead": 1, "a-b": 2}, {}, '"-lead": 1\n"a-b": 2'),
    ({"123": 1, "": 2}, {}, '"123": 1\n"": 2'),
    ({"café": "café", "名前": "x"}, {}, '"café": café\n"名前": x'),
    ({"x-items": [1, 2]}, {}, '"x-items"[2]: 1,2'),
    ({"": [1, 2, 3]}, {}, '""[3]: 1,2,3'),
    ({"r": [{"a b": 1, "c": 2}]}, {}, 'r[1]{"a b",c}:\n  1,2'),
    ({"m": {"my key": {"v": 1}, "42": {"v": 2}}}, {}, 'm[2:]{v}:\n  "my key": 1\n  "42": 2'),
    ({"data.meta.items": [{"id": 1}]}, {}, "data.meta.items[1]{id}:\n  1"),
]


@pytest.mark.parametrize(("value", "options", "expected"), KEYS)
def test_s7_3_keys_are_bare_only_when_they_are_identifiers(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


# §8: objects --------------------------------------------------------------------------------------

OBJECTS: list[Case] = [
    ({"id": 1, "name": "Ada", "active": True, "x": None}, {}, "id: 1\nname: Ada\nactive: true\nx: null"),
    ({"user": {"id": 1, "contact": {"email": "a@b.c"}}}, {}, "user:\n  id: 1\n  contact:\n    email: a@b.c"),
    ({"empty": {}, "after": 1}, {}, "empty:\nafter: 1"),
    ({"b": 1, "a": 2}, {}, "b: 1\na: 2"),
    # A single-entry object of objects, or objects differing in keys, nest instead of going keyed.
    ({"k": {"a": {"x": 1}}}, {}, "k:\n  a:\n    x: 1"),
    ({"k": {"a": {"x": 1}, "b": {"y": 2}}}, {}, "k:\n  a:\n    x: 1\n  b:\n    y: 2"),
    ({"k": {"a": {"x": 1}, "b": 2}}, {}, "k:\n  a:\n    x: 1\n  b: 2"),
    ({"k": {"a": {"x": [1]}, "b": {"x": [2]}}}, {}, "k:\n  a:\n    x[1]: 1\n  b:\n    x[1]: 2"),
]


@pytest.mark.parametrize(("value", "options", "expected"), OBJECTS)
def test_s8_objects(write: Writer, value: object, options: dict[str, Any], expected: str) -> None:
    _check(write, value, options, expected)


# §9.1 / §9.2: primitive arrays and arrays of arrays -----------------------------------------------

PRIMITIVE_ARRAYS: list[Case] = [
    ({"tags": ["a", "b", "c"]}, {}, "tags[3]: a,b,c"),
    ({"nums": [1, 2.5, -3]}, {}, "nums[3]: 1,2.5,-3"),
    ({"mixed": ["x", 1, True, None]}, {}, "mixed[4]: x,1,true,null"),
    ({"items": []}, {}, "items: []"),
    ({"one": [""]}, {}, 'one[1]: ""'),
    ({"two": ["", ""]}, {}, 'two[2]: "",""'),
    ({"s": ["a b", " c"]}, {}, 's[2]: a b," c"'),
]


@pytest.mark.parametrize(("value", "options", "expected"), PRIMITIVE_ARRAYS)
def test_s9_1_primitive_arrays_are_inline(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


NESTED_ARRAYS: list[Case] = [
    ({"pairs": [[1, 2], [3]]}, {}, "pairs[2]:\n  - [2]: 1,2\n  - [1]: 3"),
    ({"pairs": [[], []]}, {}, "pairs[2]:\n  - [0]:\n  - [0]:"),
    ({"deep": [[[1], []]]}, {}, "deep[1]:\n  - [2]:\n    - [1]: 1\n    - [0]:"),
    # An array of objects as a list item is never tabular: its objects are list items at +1.
    ({"a": [[{"x": 1}, {"x": 2}]]}, {}, "a[1]:\n  - [2]:\n    - x: 1\n    - x: 2"),
]


@pytest.mark.parametrize(("value", "options", "expected"), NESTED_ARRAYS)
def test_s9_2_arrays_of_arrays_are_list_items_with_their_own_headers(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


# §9.3: tabular form -------------------------------------------------------------------------------

TABULAR: list[Case] = [
    (
        {"users": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]},
        {},
        "users[2]{id,name}:\n  1,Ada\n  2,Bob",
    ),
    # Field order comes from the first row; later rows are reordered to it.
    ({"r": [{"a": 1, "b": 2, "c": 3}, {"c": 30, "b": 20, "a": 10}]}, {}, "r[2]{a,b,c}:\n  1,2,3\n  10,20,30"),
    ({"r": [{"a": None, "b": "x"}, {"a": 1.5, "b": True}]}, {}, "r[2]{a,b}:\n  null,x\n  1.5,true"),
    # Nested field groups, leaf cells depth-first.
    (
        {
            "orders": [
                {"id": 1, "customer": {"name": "Ada", "country": "DK"}, "total": 99},
                {"id": 2, "customer": {"country": "UK", "name": "Bob"}, "total": 149},
            ]
        },
        {},
        "orders[2]{id,customer{name,country},total}:\n  1,Ada,DK,99\n  2,Bob,UK,149",
    ),
    (
        {"s": [{"id": "s1", "from": {"name": "ACME", "at": {"city": "Berlin"}}}]},
        {},
        "s[1]{id,from{name,at{city}}}:\n  s1,ACME,Berlin",
    ),
    # A keyed-eligible object inside a column stays a nested group.
    ({"a": [{"t": {"p": {"x": 1}, "q": {"x": 2}}, "other": 9}]}, {}, "a[1]{t{p{x},q{x}},other}:\n  1,2,9"),
]


@pytest.mark.parametrize(("value", "options", "expected"), TABULAR)
def test_s9_3_uniform_objects_use_the_tabular_form(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


NOT_TABULAR: list[Case] = [
    ({"r": [{"a": 1}, {"b": 2}]}, {}, "r[2]:\n  - a: 1\n  - b: 2"),
    ({"r": [{"a": 1}, {"a": 1, "b": 2}]}, {}, "r[2]:\n  - a: 1\n  - a: 1\n    b: 2"),
    ({"r": [{}, {}]}, {}, "r[2]:\n  -\n  -"),
    ({"r": [{"a": [1]}, {"a": [2]}]}, {}, "r[2]:\n  - a[1]: 1\n  - a[1]: 2"),
    ({"r": [{"m": {"x": 1}}, {"m": None}]}, {}, "r[2]:\n  - m:\n      x: 1\n  - m: null"),
    ({"r": [{"id": 1, "meta": {}}]}, {}, "r[1]:\n  - id: 1\n    meta:"),
    ({"r": [{"m": {"x": 1}}, {"m": {"y": 1}}]}, {}, "r[2]:\n  - m:\n      x: 1\n  - m:\n      y: 1"),
    ({"r": [{"a": 1}, 2]}, {}, "r[2]:\n  - a: 1\n  - 2"),
]


@pytest.mark.parametrize(("value", "options", "expected"), NOT_TABULAR)
def test_s9_3_objects_not_sharing_primitive_columns_fall_back_to_list_form(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


# §9.4 / §10: list form and objects as list items --------------------------------------------------

LIST_FORM: list[Case] = [
    ({"items": [1, {"a": 1}, [2, 3], "x"]}, {}, "items[4]:\n  - 1\n  - a: 1\n  - [2]: 2,3\n  - x"),
    (
        {"items": [{"id": 1, "tags": ["a", "b"]}, {"id": 2}]},
        {},
        "items[2]:\n  - id: 1\n    tags[2]: a,b\n  - id: 2",
    ),
    ({"items": [{"data": [], "x": 1}, 5]}, {}, "items[2]:\n  - data: []\n    x: 1\n  - 5"),
    (
        {"items": [{"nums": [1, 2, 3], "name": "Ada"}, 1]},
        {},
        "items[2]:\n  - nums[3]: 1,2,3\n    name: Ada\n  - 1",
    ),
    # A tabular first field has its header on the hyphen line and its rows two levels deeper.
    (
        {"items": [{"users": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}], "status": "active"}, 1]},
        {},
        "items[2]:\n  - users[2]{id,name}:\n      1,Ada\n      2,Bob\n    status: active\n  - 1",
    ),
    (
        {"items": [{"matrix": [[1, 2], [3]]}, 1]},
        {},
        "items[2]:\n  - matrix[2]:\n      - [2]: 1,2\n      - [1]: 3\n  - 1",
    ),
    (
        {"items": [{"properties": {"state": {"type": "string"}}}, 1]},
        {},
        "items[2]:\n  - properties:\n      state:\n        type: string\n  - 1",
    ),
    (
        {"items": [{"m": {"a": {"v": 1}, "b": {"v": 2}}}, 1]},
        {},
        "items[2]:\n  - m[2:]{v}:\n      a: 1\n      b: 2\n  - 1",
    ),
    ({"items": [{"e": {}, "f": 1}, 2]}, {}, "items[2]:\n  - e:\n    f: 1\n  - 2"),
    ({"items": [{"s": "- x"}, "- y", "#z"]}, {}, 'items[3]:\n  - s: "- x"\n  - "- y"\n  - "#z"'),
]


@pytest.mark.parametrize(("value", "options", "expected"), LIST_FORM)
def test_s10_list_items_put_an_objects_first_field_on_the_hyphen_line(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


# §9.5: keyed tabular form -------------------------------------------------------------------------

KEYED: list[Case] = [
    (
        {
            "servers": {
                "alpha": {"host": "a.example.com", "port": 8080},
                "beta": {"port": 9090, "host": "b.example.com"},
            }
        },
        {},
        "servers[2:]{host,port}:\n  alpha: a.example.com,8080\n  beta: b.example.com,9090",
    ),
    ({"m": {"a": {"p": {"x": 1}}, "b": {"p": {"x": 2}}}}, {}, "m[2:]{p{x}}:\n  a: 1\n  b: 2"),
    ({"m": {"a": {"v": "x,y"}, "b": {"v": ""}}}, {}, 'm[2:]{v}:\n  a: "x,y"\n  b: ""'),
    ({"m": {"a": {"v": "x,y"}, "b": {"v": "z|w"}}}, {"delimiter": "|"}, 'm[2:|]{v}:\n  a: x,y\n  b: "z|w"'),
    ({"outer": {"m": {"a": {"v": 1}, "b": {"v": 2}}}}, {}, "outer:\n  m[2:]{v}:\n    a: 1\n    b: 2"),
]


@pytest.mark.parametrize(("value", "options", "expected"), KEYED)
def test_s9_5_objects_of_uniform_objects_use_the_keyed_tabular_form(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


# §11: delimiters ----------------------------------------------------------------------------------

DELIMITED: list[Case] = [
    ({"tags": ["a", "b|c", "d,e"]}, {"delimiter": "|"}, 'tags[3|]: a|"b|c"|d,e'),
    ({"tags": ["a", "b\tc", "d,e"]}, {"delimiter": "\t"}, 'tags[3\t]: a\t"b\\tc"\td,e'),
    ({"r": [{"a": 1, "b": "x|y"}]}, {"delimiter": "|"}, 'r[1|]{a|b}:\n  1|"x|y"'),
    ({"r": [{"a": 1, "b": "x,y"}]}, {"delimiter": "\t"}, "r[1\t]{a\tb}:\n  1\tx,y"),
    ({"r": [{"a": 1, "c": {"n": 2, "k": 3}}]}, {"delimiter": "|"}, "r[1|]{a|c{n|k}}:\n  1|2|3"),
    # Every header declares the document delimiter, inner list items and empty arrays included.
    (
        {"p": [[], [1, 2], [{"a": 1}, {"a": 2}]]},
        {"delimiter": "|"},
        "p[3|]:\n  - [0|]:\n  - [2|]: 1|2\n  - [2|]:\n    - a: 1\n    - a: 2",
    ),
    ({"p": [[1, 2]]}, {"delimiter": "\t"}, "p[1\t]:\n  - [2\t]: 1\t2"),
    # A field value is quoted against the document delimiter, even inside an array scope.
    ({"note": "a,b", "n": "a|b"}, {"delimiter": "|"}, 'note: a,b\nn: "a|b"'),
    (
        {"items": [{"s": "a|b", "t": ["c|d"]}, 1]},
        {"delimiter": "|"},
        'items[2|]:\n  - s: "a|b"\n    t[1|]: "c|d"\n  - 1',
    ),
    ({"note": "a,b"}, {"delimiter": "\t"}, "note: a,b"),
    ([{"id": 1}, {"id": 2}], {"delimiter": "|"}, "[2|]{id}:\n  1\n  2"),
]


@pytest.mark.parametrize(("value", "options", "expected"), DELIMITED)
def test_s11_every_header_declares_the_delimiter_and_values_are_quoted_against_it(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


# §12 / §13: indentation and options ---------------------------------------------------------------

INDENTS: list[Case] = [
    ({"a": {"b": {"c": 1}}}, {"indent": 4}, "a:\n    b:\n        c: 1"),
    ({"r": [{"x": 1}], "l": [1, [2]]}, {"indent": 4}, "r[1]{x}:\n    1\nl[2]:\n    - 1\n    - [1]: 2"),
    ({"i": [{"a": {"b": 1}, "c": 2}, 3]}, {"indent": 3}, "i[2]:\n   - a:\n         b: 1\n      c: 2\n   - 3"),
]


@pytest.mark.parametrize(("value", "options", "expected"), INDENTS)
def test_s12_indentation_is_indent_spaces_per_level(
    write: Writer, value: object, options: dict[str, Any], expected: str
) -> None:
    _check(write, value, options, expected)


def test_s12_an_indent_of_one_space_is_written_by_the_pure_writer() -> None:
    # toons refuses indent_size=1; encode must still answer, and with the same layout.
    assert encode({"a": {"b": [{"x": 1}]}}, indent=1) == "a:\n b[1]{x}:\n  1"


def test_s12_no_trailing_spaces_or_newline_and_lf_only(write: Writer) -> None:
    text = write({"a": {"b": ""}, "e": {}, "l": [{}, [], "x"], "t": [{"k": ""}]})
    assert not text.endswith("\n")
    assert "\r" not in text
    assert all(line == line.rstrip(" ") for line in text.split("\n"))


@pytest.mark.parametrize(
    "options",
    [
        {"indent": 0},
        {"indent": -2},
        {"indent": True},
        {"indent": 2.0},
        {"indent": "2"},
        {"delimiter": ";"},
        {"delimiter": ""},
        {"delimiter": ",,"},
    ],
)
def test_s13_bad_options_are_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        encode({"a": 1}, **options)


# Values TOON cannot hold -------------------------------------------------------------------------


def test_s3_an_unsupported_type_is_a_type_error_naming_it_and_its_path(write: Writer) -> None:
    with pytest.raises(TypeError, match=r"builtins\.bytes.*at \$\.rows\[1\]\.payload"):
        write({"rows": [{"payload": "x"}, {"payload": b"\x00"}]})
    with pytest.raises(TypeError, match=r"builtins\.object.*at \$\['my key'\]"):
        write({"my key": object()})
    with pytest.raises(TypeError, match=r"keys must be str or int, not tuple"):
        write({"a": {(1, 2): 3}})


def test_s3_a_value_that_contains_itself_is_refused(write: Writer) -> None:
    looped: dict[str, Any] = {"a": [1]}
    looped["a"].append(looped)
    with pytest.raises(ConfigurationError, match=r"contains itself at \$\.a\[1\]"):
        write(looped)
    shared = [1, 2]
    assert write({"x": shared, "y": shared}) == "x[2]: 1,2\ny[2]: 1,2"  # shared, not cyclic


def test_s3_nesting_is_bounded_with_a_clear_error(write: Writer) -> None:
    deep: object = 1
    for _ in range(95):
        deep = {"a": [deep]}
    assert write(deep).count("\n") == 94  # 190 levels: deep, but within bounds, so written
    lists: object = [1]
    for _ in range(198):
        lists = [lists]
    assert write(lists).endswith("- [1]: 1")
    for _ in range(10):
        deep = {"a": [deep]}
    with pytest.raises(ConfigurationError, match="nests deeper than"):
        write(deep)


@pytest.mark.parametrize(
    "value", [{"s": "a\ud800b"}, {"k\udfff": 1}, ["x", "\ud83d\ude00"], [{"a": "\udc00"}] * 3]
)
def test_s3_a_lone_surrogate_is_refused_because_toon_text_is_utf8(write: Writer, value: object) -> None:
    with pytest.raises(ConfigurationError, match="lone surrogate"):
        write(value)


def test_s3_a_lone_surrogate_error_names_where_it_is(write: Writer) -> None:
    with pytest.raises(ConfigurationError, match=r"at \$\.users\[1\]\.name"):
        write({"users": [{"name": "ok"}, {"name": "bad\ud800"}]})


# Round trips for random values --------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
    | st.sampled_from(
        ["", "-", "#x", "true", "null", "05", "1e5", "a,b", "a|b", "a\tb", " x ", "a: b", "[1]", "- x"]
    )
)
_KEYS = _TEXT | st.sampled_from(["id", "name", "a.b", "x-y", "", "123", "k y"])


def _json_values() -> st.SearchStrategy[object]:
    def extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        rows = st.lists(st.fixed_dictionaries({"id": _SCALARS, "name": _SCALARS}), min_size=1, max_size=4)
        nested_rows = st.lists(
            st.fixed_dictionaries({"id": _SCALARS, "at": st.fixed_dictionaries({"x": _SCALARS})}),
            min_size=1,
            max_size=3,
        )
        keyed = st.dictionaries(
            _KEYS, st.fixed_dictionaries({"v": _SCALARS, "w": _SCALARS}), min_size=2, max_size=3
        )
        return (
            st.lists(children, max_size=4)
            | st.dictionaries(_KEYS, children, max_size=4)
            | rows
            | nested_rows
            | keyed
        )

    return st.recursive(_SCALARS, extend, max_leaves=25)


def _same(a: object, b: object) -> bool:
    """JSON-model equality: numbers by value (TOON has one number type), key order ignored (tabular rows
    take the header's order, §2)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


_PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(value=_json_values(), delimiter=st.sampled_from([",", "|", "\t"]), indent=st.sampled_from([2, 3, 4]))
def test_s2_round_trip_through_an_independent_decoder(value: object, delimiter: str, indent: int) -> None:
    toons = pytest.importorskip("toons")
    for text in (
        _pure(value, indent=indent, delimiter=delimiter),
        encode(value, indent=indent, delimiter=delimiter),
    ):
        assert _same(toons.loads(text, indent_size=indent), value), text


@_PROPERTY
@given(value=_json_values(), delimiter=st.sampled_from([",", "|", "\t"]), indent=st.sampled_from([1, 2, 4]))
def test_s2_round_trip_through_our_decoder(value: object, delimiter: str, indent: int) -> None:
    text = _pure(value, indent=indent, delimiter=delimiter)
    assert _same(decode(text, indent=indent), value), text


@_PROPERTY
@given(value=_json_values(), delimiter=st.sampled_from([",", "|", "\t"]), indent=st.sampled_from([2, 3, 4]))
def test_the_compiled_writer_writes_exactly_what_the_pure_writer_writes(
    value: object, delimiter: str, indent: int
) -> None:
    toons = pytest.importorskip("toons")
    pure = _pure(value, indent=indent, delimiter=delimiter)
    assert encode(value, indent=indent, delimiter=delimiter) == pure
    walk = Walk()
    if not _holds_halfway(normalize(value, walk), walk):  # (which toons rounds up: `encode` then
        # leaves the document to the pure writer, as checked just above)
        assert toons.dumps(value, indent_size=indent, delimiter=delimiter) == pure
