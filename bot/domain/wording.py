"""Plain-English phrasing shared by the rules that explain themselves to people.

    join(["a", "b", "c"])              # "a, b and c"
    join(["U1", "U2"], "or")           # "U1 or U2"
    count(1204, "line")                # "1,204 lines"
    capitalize("at least 3 commits")   # "At least 3 commits"

Gate refusals, quorum progress and risk reasons are built from these, so a list of people
reads the same in all of them.
"""

from __future__ import annotations

from collections.abc import Sequence


def join(items: Sequence[str], conjunction: str = "and") -> str:
    """`["a"]` -> "a", `["a", "b"]` -> "a and b", `["a", "b", "c"]` -> "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def count(n: int, noun: str) -> str:
    """`1 line`, `1,204 lines`: the number with thousands separators and the noun pluralised."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def capitalize(text: str) -> str:
    """The first letter upper-cased, the rest left as it is."""
    return text[:1].upper() + text[1:]
