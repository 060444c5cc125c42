"""GitHub's REST shapes read into the ports' types: a commit and a changed file of a compare
or a commit, defensively (a field of the wrong type reads as missing)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.domain.errors import DeliveryFailed
from bot.ports import Commit, FileChange

FILE_STATUS = {
    "added": "added",
    "removed": "removed",
    "modified": "modified",
    "renamed": "renamed",
    "copied": "added",
    "changed": "modified",
    "unchanged": "modified",
}


def commit_from(item: Mapping[str, Any]) -> Commit:
    sha = item.get("sha")
    if not isinstance(sha, str) or not sha:
        raise DeliveryFailed("a commit in GitHub's reply has no sha", retryable=False)
    detail = mapping(item.get("commit"))
    git_author = mapping(detail.get("author"))
    author_login = opt_str(mapping(item.get("author")).get("login"))
    return Commit(
        sha=sha,
        message=opt_str(detail.get("message")) or "",
        author=opt_str(git_author.get("name")) or author_login or "unknown",
        author_login=author_login,
        committer_login=opt_str(mapping(item.get("committer")).get("login")),
        author_email=opt_str(git_author.get("email")),
        committer_email=opt_str(mapping(detail.get("committer")).get("email")),
        authored_at=parse_time(git_author.get("date")),
        url=opt_str(item.get("html_url")),
    )


def file_from(item: Mapping[str, Any]) -> FileChange:
    status = opt_str(item.get("status")) or "modified"
    return FileChange(
        path=opt_str(item.get("filename")) or "",
        additions=count(item.get("additions")),
        deletions=count(item.get("deletions")),
        status=FILE_STATUS.get(status, "modified"),
        previous_path=opt_str(item.get("previous_filename")),
    )


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
