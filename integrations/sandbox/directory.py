"""The sandbox's people and user groups, read from a small YAML directory file.

The built-in file is `directory.yaml` beside this module (Rita the release manager, Sam the
SRE, Olga the service owner, Stan who approves nothing; group ids as in the example config);
`RELEASEBOT_SANDBOX_DIRECTORY` names another one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_DIRECTORY", "group_names", "load_directory"]

DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "directory.yaml"


def load_directory(path: Path | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(users for users.info, members of each user group) from the sandbox directory file."""
    data = _read(path)
    users: dict[str, Any] = {}
    groups: dict[str, list[str]] = {group: [] for group in (data.get("groups") or {})}
    for user_id, user in (data.get("users") or {}).items():
        name = str(user.get("name") or user_id)
        users[str(user_id)] = {
            "name": name.split(" ")[0].lower(),
            "real_name": name,
            "profile": {"email": user.get("email"), "display_name": name},
        }
        for group in user.get("groups") or []:
            groups.setdefault(str(group), []).append(str(user_id))
    return users, groups


def group_names(path: Path | None = None) -> dict[str, str]:
    """Group id -> the group's name (its id when the file gives none)."""
    data = _read(path)
    return {str(g): str((v or {}).get("name") or g) for g, v in (data.get("groups") or {}).items()}


def _read(path: Path | None) -> dict[str, Any]:
    data: dict[str, Any] = (
        yaml.safe_load((path or DEFAULT_DIRECTORY).read_text(encoding="utf-8")) or {}
    )
    return data
