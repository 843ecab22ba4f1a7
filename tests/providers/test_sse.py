"""lionflow's SSE decoder (the native transport's): the WHATWG event stream rules, on bytes split anywhere."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from lionflow.services.providers._sse import SseDecoder, SseEvent


def decode(*pieces: bytes, end: bool = False) -> list[SseEvent]:
    decoder = SseDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + (decoder.end() if end else [])


def view(events: list[SseEvent]) -> list[tuple[str | None, bytes, str | None, int | None]]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def test_the_specifications_examples() -> None:
    # WHATWG HTML, 9.2.6: several data lines make one event, joined with LF.
    assert view(decode(b"data: YHOO\ndata: +2\ndata: 10\n\n")) == [(None, b"YHOO\n+2\n10", None, None)]
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    assert view(decode(stream)) == [
        (None, b"first event", "1", None),
        (None, b"second event", "", None),  # an `id` with no value resets it to empty
        (None, b" third event", "", None),  # only one space after the colon is dropped
    ]
    # `data` alone is an empty data line; two make one LF; an event with no data is not dispatched.
    assert view(decode(b"data\n\ndata\ndata\n\ndata:\n")) == [
        (None, b"", None, None),
        (None, b"\n", None, None),
    ]


def test_event_names_ids_and_retry() -> None:
    stream = (
        b"event: content_block_delta\ndata: {}\n\n"
        b"id: 7\nretry: 3000\ndata: a\n\n"
        b"retry: soon\nid: bad\x00id\ndata: b\n\n"
        b"event: ping\n\n"  # no data: nothing, and the name does not carry over
        b"data: c\n\n"
    )
    assert view(decode(stream)) == [
        ("content_block_delta", b"{}", None, None),
        (None, b"a", "7", 3000),
        (None, b"b", "7", 3000),  # a retry that is not digits and an id with NUL are ignored
        (None, b"c", "7", 3000),
    ]


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert view(decode(b":keep-alive\nfoo: bar\ndata: x\n: more\n\n")) == [(None, b"x", None, None)]


def test_cr_lf_and_crlf_end_lines_alike() -> None:
    for end in (b"\n", b"\r", b"\r\n"):
        stream = b"event: e" + end + b"data: 1" + end + b"data: 2" + end + end
        assert view(decode(stream)) == [("e", b"1\n2", None, None)], end


def test_a_crlf_split_between_two_reads_is_one_line_end() -> None:
    # CR ends one read, LF begins the next: one line end, not a line end and an empty line.
    assert view(decode(b"data: a\r", b"\ndata: b\r\n\r\n")) == [(None, b"a\nb", None, None)]


def test_a_byte_order_mark_is_dropped_only_at_the_start() -> None:
    assert view(decode(b"\xef\xbb", b"\xbfdata: a\n\n")) == [(None, b"a", None, None)]
    assert view(decode(b"data: \xef\xbb\xbfa\n\n")) == [(None, b"\xef\xbb\xbfa", None, None)]


def test_an_unterminated_last_event_comes_only_from_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [SseEvent(None, b"a")]
    assert view(decoder.end()) == [(None, b"b", None, None)]
    assert decoder.end() == []


# An independent reading of the rules, on the whole stream at once (str and a regular expression).
def reference(stream: bytes) -> list[tuple[str | None, bytes, str | None, int | None]]:
    text = stream.decode("latin-1").removeprefix("\xef\xbb\xbf")
    events: list[tuple[str | None, bytes, str | None, int | None]] = []
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the last piece is unterminated
    name: str | None = None
    data: list[str] | None = None
    last_id: str | None = None
    retry: int | None = None
    for line in lines:
        if line == "":
            if data is not None:
                events.append((name, "\n".join(data).encode("latin-1"), last_id, retry))
            name, data = None, None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data = [*(data or []), value]
        elif field == "event":
            name = value
        elif field == "id" and "\x00" not in value:
            last_id = value
        elif field == "retry" and value.isdigit() and value.isascii():
            retry = int(value)
    return events


_LINES = st.sampled_from(
    [
        b"data: x",
        b"data:y",
        b"data",
        b"event: e",
        b"id: 1",
        b"id",
        b"retry: 5",
        b"retry: x",
        b": c",
        b"",
        b"foo: 1",
    ]
)
_ENDS = st.sampled_from([b"\n", b"\r", b"\r\n"])


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(_LINES, _ENDS), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_split_anywhere_reads_as_the_whole_stream(lines: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    stream = b"".join(line + end for line, end in lines)
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert view(decode(*pieces)) == reference(stream)
    assert view(decode(stream)) == reference(stream)
