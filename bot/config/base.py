"""What every part of the config schema builds on: the base model and how problems are raised.

Checks that span several keys (a rule about two fields, or one service referring to another
environment) raise one pydantic error of type `releasebot_config` whose context carries
`problems`: `(relative path, message)` pairs, so each lands on the key the user has to edit.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]

PROBLEM = "releasebot_config"


class ConfigModel(BaseModel):
    """A part of `releasebot.yaml`: frozen, and refusing keys it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keys accepted in the YAML besides the fields (a shorthand a before-validator rewrites);
    # they count as known keys for "did you mean" suggestions.
    _input_keys: ClassVar[tuple[str, ...]] = ()


def problems_error(problems: Sequence[tuple[Loc, str]]) -> PydanticCustomError:
    """One pydantic error carrying several problems, each relative to the failing model."""
    text = "; ".join(f"{render_path(loc)}: {msg}" if loc else msg for loc, msg in problems)
    return PydanticCustomError(PROBLEM, "{text}", {"text": text, "problems": tuple(problems)})


def invalid(message: str, *at: str | int) -> PydanticCustomError:
    """One problem, at the key `at` below the failing model (or on the model itself)."""
    return problems_error([(at, message)])


def render_path(loc: Loc) -> str:
    """`("services", "x", "environments", 1, "gate")` -> `services.x.environments[1].gate`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(top level)"


def quoted_list(items: Sequence[str], conjunction: str = "and") -> str:
    """`['a', 'b', 'c']` -> `'a', 'b' and 'c'`."""
    quoted = [f"'{item}'" for item in items]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"


def suggest(word: str, candidates: Sequence[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or `""` when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
