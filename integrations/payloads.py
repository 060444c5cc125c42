"""Helpers shared by the CI payload parsers: typed field access that names what is missing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from integrations.errors import PayloadError

__all__ = [
    "SHA_RE",
    "PayloadError",
    "get_path",
    "optional_str",
    "require_mapping",
    "require_sha",
    "require_str",
]

SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def get_path(data: Any, path: str) -> Any:
    """`get_path(d, "deployment.creator.login")`; None when any step is missing."""
    current = data
    for part in path.split("."):
        # Parsed JSON holds plain dicts: told by their type, before the slower ABC check.
        if type(current) is not dict and not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def require_str(data: Any, path: str) -> str:
    value = get_path(data, path)
    if value is None or value == "":
        raise PayloadError(path)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(path, "must be a string")
    return str(value)


def optional_str(data: Any, path: str) -> str | None:
    value = get_path(data, path)
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str | int | float):
        return str(value)
    return None


def require_sha(data: Any, *paths: str) -> str:
    """The first of `paths` that holds a commit sha (40 or 64 hex characters)."""
    for path in paths:
        value = get_path(data, path)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not SHA_RE.match(value.lower()):
            raise PayloadError(path, "must be a full commit sha (40 hex characters)")
        return value.lower()
    raise PayloadError(paths[0])


def require_mapping(data: Any, path: str) -> Mapping[str, Any]:
    value = get_path(data, path) if path else data
    if not isinstance(value, Mapping):
        raise PayloadError(path or "body", "must be a JSON object")
    return value
