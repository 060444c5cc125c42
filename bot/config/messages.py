"""Pydantic's validation errors as plain-English problems at the YAML path the user edits.

`located(error, root)` turns each error into `(path from root, message)`: internal parts of
pydantic's locations are dropped, problems raised by the schema's own checks are unpacked,
and an unknown key gets a "did you mean" from the keys the model at that path accepts.
"""

from __future__ import annotations

import json
import re
from types import UnionType
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.config.base import PROBLEM, ConfigModel, Loc, suggest

# Parts pydantic adds to a loc that are not keys of the YAML document.
_INTERNAL_LOC = re.compile(
    r"^(\[key\]|(function-(before|after|wrap|plain)|tagged-union|chain|nullable|lax-or-strict"
    r"|json-or-python|union|definition-ref|model|default)\[.*\]|`.*`)$"
)

_EXPECTED_KIND = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "datetime_type": 'a date and time like "2026-12-23T00:00:00+01:00"',
    "datetime_parsing": 'a date and time like "2026-12-23T00:00:00+01:00"',
    "datetime_from_date_parsing": 'a date and time like "2026-12-23T00:00:00+01:00"',
}


def located(error: ValidationError, root: type[BaseModel]) -> list[tuple[Loc, str]]:
    """Each problem of a ValidationError as (path from `root`, plain-English message)."""
    problems: list[tuple[Loc, str]] = []
    for detail in error.errors(include_url=False):
        raw: Loc = tuple(detail["loc"])
        loc = tuple(part for part in raw if not _is_internal(part))
        ctx = detail.get("ctx") or {}
        if detail["type"] == PROBLEM:
            problems.extend((loc + tuple(sub), message) for sub, message in ctx["problems"])
        else:
            message = _message(detail, loc, root, is_key="[key]" in raw)
            problems.append((loc, message))
    return problems


def _is_internal(part: str | int) -> bool:
    return isinstance(part, str) and bool(_INTERNAL_LOC.match(part))


def _message(detail: ErrorDetails, loc: Loc, root: type[BaseModel], *, is_key: bool) -> str:
    kind, msg, value = detail["type"], detail["msg"], detail["input"]
    ctx = detail.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        return f"unknown key '{key}'{suggest(key, _known_keys(root, loc[:-1]))}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = suggest(value, options) if isinstance(value, str) else ""
        if is_key:
            return f"unknown key '{value}'{hint}: use {ctx.get('expected')}"
        return f"must be {ctx.get('expected')}{hint}"
    if kind in _EXPECTED_KIND:
        text = f"must be {_EXPECTED_KIND[kind]}"
        if value is None:
            return f"has no value; it {text}"
        if kind == "string_type" and isinstance(value, bool | int | float):
            return f"{text}; put {json.dumps(value)} in quotes"
        return text
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        limit = ctx.get(key)
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {sign} {limit}"
    if kind in ("too_short", "string_too_short"):
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"needs at least {minimum} entries"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _known_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model at this path accepts (for "did you mean")."""
    node: object = root
    for part in loc:
        node = _step(_unwrap(node), part)
        if node is None:
            return []
    model = _unwrap(node)
    if isinstance(model, type) and issubclass(model, ConfigModel):
        return [*model.model_fields, *model._input_keys]
    return []


def _step(node: object, part: str | int) -> object | None:
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    origin, args = get_origin(node), get_args(node)
    inner: object = None
    if origin is list and isinstance(part, int) and args:
        inner = args[0]
    elif origin is dict and len(args) == 2:
        inner = args[1]
    return inner


def _unwrap(node: object) -> object:
    """Strip Annotated[...] and `X | None` down to X."""
    while True:
        origin = get_origin(node)
        if origin is Annotated:
            node = get_args(node)[0]
        elif origin is Union or origin is UnionType:
            members = [arg for arg in get_args(node) if arg is not type(None)]
            if len(members) != 1:
                return node
            node = members[0]
        else:
            return node
