"""Limits on what arrives from outside, checked before a body is parsed in full or stored.

Every JSON body (webhooks, `/api/v1/gates`, Slack's payloads) goes through `load_json`:

- it must be UTF-8 and nest at most `MAX_JSON_DEPTH` arrays and objects deep. The depth is
  measured by a linear scan of the raw bytes before the parser runs, so a body nested
  50,000 deep is refused at once instead of exhausting the parser's recursion;
- no string in it may hold a NUL character or a lone UTF-16 surrogate (`"\\ud800"`): neither
  can be stored as text (PostgreSQL refuses NUL, UTF-8 has no surrogates).

A delivery id given in a header is kept whole, so it must fit the column that de-duplicates
deliveries (`MAX_DELIVERY_ID` characters): a longer one is refused rather than cut, since two
ids cut to the same prefix would make the second delivery a false duplicate.

Each refusal is a `BadInput` whose message says what is wrong; the handlers answer it with
400 and store nothing.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

from pydantic_core import from_json

MAX_JSON_DEPTH = 64
MAX_DELIVERY_ID = 200

# A JSON string, escapes included; possessive, and an unterminated string runs to the end,
# so the scan stays linear whatever the body holds.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
# Every byte to 0 but brackets: an opening one to +1, a closing one to -1 (a signed byte).
_STEPS = bytes(1 if b in b"[{" else 255 if b in b"]}" else 0 for b in range(256))


class BadInput(ValueError):
    """Input refused before anything is stored; the message says why (answered with 400)."""


def load_json(raw: bytes) -> Any:
    """The parsed body, or BadInput naming the first limit it breaks."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput("body is not UTF-8") from None
    check_nesting(raw)
    try:
        # pydantic's parser reads a webhook's 10-15 KB in half the time of `json`. Whatever
        # it refuses (a BOM, a lone surrogate's escape, malformed JSON) is read again by
        # `json`, so what is accepted, and the words a refusal is answered with, stay
        # `json`'s.
        data = from_json(raw, cache_strings="keys")
    except ValueError:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BadInput(f"malformed JSON: {exc}") from None
    # NUL and surrogates reach a JSON string only as escapes; a body without a backslash
    # (most) is told by memchr, far quicker than searching for the two bytes.
    if b"\\" in raw and b"\\u" in raw:
        check_text(data)
    return data


def check_nesting(raw: bytes, *, limit: int = MAX_JSON_DEPTH) -> None:
    """BadInput when arrays and objects in `raw` nest deeper than `limit` (strings skipped)."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return  # cannot nest deeper than it has openings (those in strings counted too)
    steps = array("b", _STRING.sub(b"", raw).translate(_STEPS).replace(b"\x00", b""))
    if max(accumulate(steps), default=0) > limit:
        raise BadInput(f"JSON is nested deeper than {limit} levels")


def check_text(data: Any) -> None:
    """BadInput when any key or string value in parsed JSON cannot be stored as text."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            check_string(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                check_string(key)
                pending.append(value)
        elif isinstance(item, list):
            pending.extend(item)


def check_string(value: str, *, what: str = "text") -> None:
    """BadInput for a NUL character or a lone surrogate in `value`."""
    if "\x00" in value:
        raise BadInput(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(
            f"{what} contains a lone surrogate (an unpaired \\ud800-\\udfff escape), "
            "which is not valid Unicode"
        ) from None


def delivery_id(value: str, *, header: str) -> str:
    """A delivery id from `header`, whole: BadInput when it is too long or not plain text."""
    if len(value) > MAX_DELIVERY_ID:
        raise BadInput(
            f"{header} is {len(value)} characters long; at most {MAX_DELIVERY_ID} are accepted"
        )
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise BadInput(f"{header} contains control characters")
    return value
