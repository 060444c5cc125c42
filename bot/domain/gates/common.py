"""What every gate rule shares: how a principal is shown and how moments are checked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Mention = Callable[[str], str]
"""Renders a user or group id for people: Slack's `<@U1>`, or the id itself (`plain`)."""


def plain(principal: str) -> str:
    """The id as it is."""
    return principal


def fold(text: str) -> str:
    """Case- and space-insensitive form of a login, e-mail or sha."""
    return text.strip().casefold()


def require_aware(moment: datetime, name: str) -> None:
    """Refuse a naive moment: every moment the rules compare must carry its timezone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {moment.isoformat()}")
