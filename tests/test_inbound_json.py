"""Every JSON body is read by `load_json`: pydantic's parser first, the standard library for
whatever that one refuses. A sender sees no difference: the same bodies are accepted, with the
same values, and the same ones refused, in the standard library's words."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.inbound import BadInput, check_nesting, check_text, load_json
from tests.helpers import FIXTURES


def by_the_standard_library(raw: bytes) -> Any:
    """What `load_json` answered when it used `json` alone."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput("body is not UTF-8") from None
    check_nesting(raw)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"malformed JSON: {exc}") from None
    check_text(data)
    return data


def answer(read: Any, raw: bytes) -> tuple[str, str]:
    """What a sender is answered, and the value as written back out (keys in order, ints
    and floats told apart, NaN comparable)."""
    try:
        return "accepted", json.dumps(read(raw))
    except BadInput as refusal:
        return "refused", str(refusal)


ODD_BODIES = [
    b'\xef\xbb\xbf{"a": 1}',  # a byte order mark
    b"[NaN, Infinity, -Infinity]",
    b"123456789012345678901234567890",  # wider than 64 bits
    b'{"a": 1, "a": 2}',
    b'"\\ud834\\udd1e"',  # a surrogate pair: one character
    b"[1,]",
    b'{"a": 1} trailing',
    b"\xff{}",
    b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8
    b"",
    b"{'a': 1}",
    b'"a\x01b"',
    b"[1.]",
    b'"\\x41"',
]


@pytest.mark.parametrize("raw", ODD_BODIES, ids=range(len(ODD_BODIES)))
def test_an_odd_body_gets_the_answer_the_standard_library_gave(raw: bytes) -> None:
    assert answer(load_json, raw) == answer(by_the_standard_library, raw)


@pytest.mark.parametrize("raw", [b'{"text": "\\ud800"}', b'{"text": "a\\u0000b"}'])
def test_text_that_cannot_be_stored_is_still_refused(raw: bytes) -> None:
    with pytest.raises(BadInput, match="lone surrogate|NUL character"):
        load_json(raw)


def test_every_published_payload_reads_as_the_standard_library_reads_it() -> None:
    bodies = sorted(FIXTURES.rglob("*.json"))
    assert len(bodies) > 20
    for path in bodies:
        raw = path.read_bytes()
        assert answer(load_json, raw) == answer(by_the_standard_library, raw), path.name


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_any_json_value_reads_back_as_the_standard_library_reads_it(
    value: Any, ascii_only: bool
) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    assert answer(load_json, raw) == answer(by_the_standard_library, raw)
