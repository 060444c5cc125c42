"""Sensitive paths: .gitignore-style globs matched against the files a change touches.

Sensitive paths (`risk.sensitive_paths`) follow .gitignore semantics, matched case-sensitively
against repository-relative paths:

- a pattern without a slash matches that name in any directory (`Dockerfile` matches
  `Dockerfile` and `svc/Dockerfile`); one with a slash is anchored at the repository root
  (`migrations/**`, `/Dockerfile` for the root one only);
- `*` matches within one path segment, `?` one character other than `/`, `[a-z]` and `[!a-z]`
  a character class; `**/` matches zero or more directories, a trailing `/**` everything
  inside; `\\` escapes the next character;
- a pattern that matches a directory matches every file in it, and a trailing `/` matches
  directories only (`migrations/` matches `migrations/0001.py` and `app/migrations/x.py`);
- a pattern starting with `!` un-marks paths an earlier pattern marked (the last match wins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache


def sensitive_paths(paths: Iterable[str], patterns: Sequence[str]) -> tuple[str, ...]:
    """The distinct paths the patterns mark as sensitive, in their first order of appearance."""
    compiled = [_compile(pattern) for pattern in patterns]
    found: dict[str, None] = {}
    for path in paths:
        if path not in found and _marked(_normalize(path), compiled):
            found[path] = None
    return tuple(found)


def path_matches(pattern: str, path: str) -> bool:
    """Does this one pattern (a leading `!` is taken literally here) match this path?"""
    return _regex(pattern).fullmatch(_normalize(path)) is not None


def glob_to_regex(pattern: str) -> str:
    """The regular expression (for `re.fullmatch`) of a .gitignore-style pattern."""
    body = pattern.strip()
    directory_only = body.endswith("/")
    body = body.rstrip("/")
    anchored = "/" in body  # before the leading slash goes: "/Dockerfile" is anchored
    segments = [segment for segment in body.split("/") if segment]
    if not segments:
        return r"(?!)"  # matches nothing
    if not anchored:
        segments.insert(0, "**")
    out = ""
    slash = ""  # the separator to put before the next segment
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**" and last:
            out += slash + ".+"  # everything inside
        elif segment == "**":
            out += slash + "(?:.+/)?"  # zero or more directories
            slash = ""
            continue
        else:
            out += slash + _translate_segment(segment)
        slash = "/"
    # A match on a directory covers the files in it; `dir/` matches directories only.
    return out + ("/.+" if directory_only else "(?:/.+)?")


def _normalize(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


_Compiled = tuple[bool, re.Pattern[str]]  # (negated, regex)


def _compile(pattern: str) -> _Compiled:
    stripped = pattern.strip()
    if stripped.startswith("!"):
        return True, _regex(stripped[1:])
    return False, _regex(stripped)


def _marked(path: str, compiled: Sequence[_Compiled]) -> bool:
    marked = False
    for negated, regex in compiled:
        if marked == negated and regex.fullmatch(path):
            marked = not negated
    return marked


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(pattern), re.DOTALL)


def _translate_segment(segment: str) -> str:
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(segment[i]))
        elif char == "[":
            found = _character_class(segment, i)
            if found is None:
                out.append(re.escape(char))
            else:
                regex, i = found
                out.append(regex)
                continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _character_class(segment: str, start: int) -> tuple[str, int] | None:
    """`[...]` at `start` as a regex that never matches `/`, and the index after it."""
    i = start + 1
    negated = i < len(segment) and segment[i] in "!^"
    if negated:
        i += 1
    first = i
    while i < len(segment) and (segment[i] != "]" or i == first):
        i += 1
    if i >= len(segment):
        return None  # no closing bracket: a literal "["
    content, end = segment[first:i], i + 1
    items: list[str] = []
    j = 0
    while j < len(content):
        if j + 2 < len(content) and content[j + 1] == "-":
            low, high = content[j], content[j + 2]
            if low <= high:
                items.append(f"{re.escape(low)}-{re.escape(high)}")
            j += 3
        else:
            items.append(re.escape(content[j]))
            j += 1
    inner = "".join(items)
    if negated:
        return f"[^/{inner}]", end
    if not inner:
        return r"(?!)", end
    return f"(?:(?!/)[{inner}])", end
