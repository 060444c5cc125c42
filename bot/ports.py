"""Small protocols between the core and the outside world.

The core (bot/) calls these; integrations/ implement them; tests pass fakes that satisfy them.
Every method that talks to the network raises `bot.domain.errors.DeliveryFailed` on failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str


class SlackSender(Protocol):
    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> PostedMessage: ...

    async def update_message(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None: ...
