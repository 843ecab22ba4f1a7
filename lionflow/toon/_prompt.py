"""Asking a model for a TOON reply: the instruction, with an example of the shape built from the
schema of what the reply is parsed into (a pydantic model, a list of them, or a JSON schema).

No API has a TOON mode, so the request asks in words and shows the shape in TOON itself: a model
copies a concrete example far more reliably than it reads a schema. The example has two elements
in every list, so a list of objects shows as a table.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter

from lionflow.errors import ConfigurationError
from lionflow.toon._encode import encode

_MAX_DEPTH = 8  # an example of a recursive model stops here


def schema_of(structure: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model class, a ``list[Model]``, or a JSON schema dict."""
    if isinstance(structure, type) and issubclass(structure, BaseModel):
        return structure.model_json_schema()
    if typing.get_origin(structure) is list:
        return TypeAdapter(structure).json_schema()
    if isinstance(structure, Mapping):
        return dict(structure)
    raise ConfigurationError(
        "reply_format='toon' needs response_format=<a pydantic model class, a list of one, "
        f"or a JSON schema>, not {structure!r}"
    )


def example_of(schema: Mapping[str, Any]) -> Any:
    """A value of the shape `schema` describes, with placeholder values (a field's first example or
    enum value where it has one; never its default, which is often empty: the shape must show)."""
    definitions = schema.get("$defs", {})

    def value(node: Mapping[str, Any], depth: int, name: str) -> Any:
        if "$ref" in node:
            node = definitions.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        for key in ("examples", "enum"):
            if node.get(key):
                return node[key][0]
        if "const" in node:
            return node["const"]
        for key in ("anyOf", "oneOf", "allOf"):
            options = [option for option in node.get(key, ()) if option.get("type") != "null"]
            if options:
                return value(options[0], depth, name)
        kind = node.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind == "object" or "properties" in node:
            if depth >= _MAX_DEPTH:
                return {}
            return {key: value(field, depth + 1, key) for key, field in node.get("properties", {}).items()}
        if kind == "array":
            if depth >= _MAX_DEPTH:
                return []
            item = node.get("items") or {"type": "string"}
            return [value(item, depth + 1, name) for _ in range(2)]
        if kind == "integer":
            return 1
        if kind == "number":
            return 1.5
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return f"<{node.get('title') or name or 'text'}>".lower().replace(" ", "_")

    return value(schema, 0, str(schema.get("title") or ""))


def reply_instruction(structure: Any) -> str:
    """The system-prompt note asking for a TOON reply shaped like `structure`."""
    example = encode(example_of(schema_of(structure)))
    return (
        "Reply with one TOON document and nothing else: no JSON, no Markdown, no code fence. "
        "TOON writes objects as indented `key: value` lines (2 spaces per level), a list of primitives as "
        "`key[N]: a,b,c`, and a list of objects with the same fields as a table: `key[N]{field1,field2}:` "
        "followed by one comma-separated row per object, indented. N is the exact number of elements. "
        "Quote a string with double quotes when it contains a comma or colon, or looks like a number, "
        "true, false or null. Your reply must have exactly this shape (the values here are placeholders):\n"
        f"{example}"
    )


def unfenced(text: str) -> str:
    """`text` without a Markdown code fence around it (models add one though asked not to): a first
    line of three backticks (with a language or not) and everything from a later line of three
    backticks."""
    stripped = text.lstrip()
    if not stripped.startswith("```"):
        return text
    newline = stripped.find("\n")
    if newline < 0:
        return ""
    body = stripped[newline + 1 :]
    end = body.find("\n```")
    if end >= 0:
        return body[:end]
    return body.removesuffix("```")


class Unfence:
    """`unfenced` for text arriving in pieces: `feed` returns the part of each piece that is the
    document, holding back only what could still turn out to be a fence (linear in the text)."""

    def __init__(self) -> None:
        # start: not known yet whether the text is fenced; open: in the fence's first line (dropped);
        # body: inside the fence; plain: not fenced; done: past the closing fence
        self._state = "start"
        self._held = ""  # start: blank text and backticks so far; body: what may begin the closing fence
        self._strip_newline = False  # body: `_held` began with a newline that is not the document's

    def feed(self, piece: str) -> str:
        state = self._state
        if state == "plain":
            return piece
        if state == "start":
            self._held += piece
            head = self._held.lstrip()
            if not head or (len(head) < 3 and "```".startswith(head)):
                return ""
            if not head.startswith("```"):
                self._state, text, self._held = "plain", self._held, ""
                return text
            self._state, piece, self._held = "open", head[3:], ""
            state = "open"
        if state == "open":
            newline = piece.find("\n")
            if newline < 0:
                return ""
            # the body starts a line: a closing fence may be its very first characters
            self._state, self._held, self._strip_newline = "body", "\n", True
            piece = piece[newline + 1 :]
        if self._state != "body":
            return ""
        return self._body(piece)

    def _body(self, piece: str) -> str:
        text = self._held + piece
        end = text.find("\n```")
        if end >= 0:
            self._state, self._held, out = "done", "", text[:end]
        else:
            keep = next((k for k in (3, 2, 1) if text.endswith("\n```"[:k])), 0)
            out, self._held = (text[:-keep], text[-keep:]) if keep else (text, "")
        if self._strip_newline and out:
            out, self._strip_newline = out[1:], False
        return out

    def finish(self) -> str:
        """What was held back, once the text has ended."""
        rest, self._held = self._held, ""
        if self._state == "body" and self._strip_newline:
            rest = rest[1:]
        return rest if self._state in ("start", "body") else ""
