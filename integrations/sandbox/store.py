"""The in-memory state of the sandbox's Slack: messages, threads, views, calls and faults.

`SlackState` holds everything one fake workspace knows; the Web API methods
(`integrations.sandbox.methods`) read and change it, and `FakeSlackWebApi`
(`integrations.sandbox.webapi`) serves it, holding a lock around every access.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "DEFAULT_EPOCH",
    "TEAM_ID",
    "ApiError",
    "Fault",
    "Json",
    "Message",
    "RecordedCall",
    "SlackState",
]

Json = dict[str, Any]

TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Releasebot Sandbox"
TEAM_URL = "https://releasebot-sandbox.slack.com/"
BOT_USER_ID = "U0RELBOT"
BOT_USER_NAME = "releasebot"
BOT_ID = "B0RELBOT"
APP_ID = "A0RELBOT"

DEFAULT_EPOCH = 1_700_000_000.0
"""Where the default clock stands, so timestamps are the same on every run."""

_MICROS = 1_000_000
_TS_STEP = 100
"""Microseconds between two timestamps handed out in the same instant."""


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call as the fake received it. `params` never holds the token."""

    method: str
    params: Json
    token: str | None


@dataclass
class Fault:
    """A failure queued by `fail_next`: answered instead of the next `remaining` calls.
    With `after` the call is carried out first (stored), and only its answer is lost."""

    status: int
    error: str
    retry_after: int | None
    remaining: int
    after: bool = False

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class ApiError(Exception):
    """A Slack logic error: HTTP 200 with `{"ok": false, "error": code}`."""

    def __init__(self, error: str, *messages: str) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)

    def body(self) -> Json:
        body: Json = {"ok": False, "error": self.error}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return body


@dataclass
class Message:
    """A message in a channel, with its earlier versions and the ts of its thread replies."""

    channel: str
    ts: str
    text: str
    blocks: list[Json]
    thread_ts: str | None = None
    broadcast: bool = False
    user: str = BOT_USER_ID
    edited_ts: str | None = None
    history: list[Json] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    metadata: Json | None = None  # {"event_type", "event_payload"}, as posted
    channel_id: str | None = None  # Slack's id of a channel posted to by #name

    @property
    def is_top_level(self) -> bool:
        return self.thread_ts is None or self.broadcast

    def record(self) -> Json:
        """The message as tests and the sandbox page see it (its channel by id, as Slack
        answered the post)."""
        return copy.deepcopy(
            {
                "channel": self.channel_id or self.channel,
                "ts": self.ts,
                "text": self.text,
                "blocks": self.blocks,
                "thread_ts": self.thread_ts,
                "user": self.user,
                "edited": self.edited_ts is not None,
                "history": self.history,
                "reply_count": len(self.replies),
                "metadata": self.metadata,
            }
        )

    def api(self, *, with_metadata: bool = False) -> Json:
        """The message as Slack's Web API renders it (its metadata only when asked for, as
        `include_all_metadata` does)."""
        message: Json = {
            "type": "message",
            "user": self.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks:
            message["blocks"] = copy.deepcopy(self.blocks)
        if self.thread_ts is not None:
            message["thread_ts"] = self.thread_ts
            message["parent_user_id"] = BOT_USER_ID
            if self.broadcast:
                message["subtype"] = "thread_broadcast"
        elif self.replies:
            message["thread_ts"] = self.ts
            message["reply_count"] = len(self.replies)
            message["reply_users"] = [BOT_USER_ID]
            message["reply_users_count"] = 1
            message["latest_reply"] = self.replies[-1]
        if self.edited_ts is not None:
            message["edited"] = {"user": self.user, "ts": self.edited_ts}
        if with_metadata and self.metadata is not None:
            message["metadata"] = copy.deepcopy(self.metadata)
        return message


class SlackState:
    """Everything the fake workspace knows. Not thread-safe: its owner holds a lock.

    `users` (id -> user fields) and `usergroups` (subteam id -> user ids) are the directory;
    `clock` returns epoch seconds and only seeds message timestamps, which always increase
    by at least 100 µs per message.
    """

    def __init__(
        self,
        *,
        users: dict[str, Json] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        clock: Callable[[], float] = lambda: DEFAULT_EPOCH,
    ) -> None:
        self.clock = clock
        self.last_micros = _to_micros(clock())
        self.users = copy.deepcopy(users or {})
        self.usergroups = copy.deepcopy(usergroups or {})
        self.calls: list[RecordedCall] = []
        self.channels: dict[str, list[Message]] = {}
        self.channel_ids: dict[str, str] = {}  # "#name" -> its id, for every named channel
        self.channel_names: dict[str, str] = {}  # and back
        self.by_ts: dict[tuple[str, str], Message] = {}
        self.ephemeral: list[Json] = []
        self.views: list[Json] = []
        self.home_views: dict[str, Json] = {}
        self.responses: list[Json] = []
        self.used_triggers: set[str] = set()
        self.faults: dict[str, list[Fault]] = {}

    def next_ts(self) -> str:
        """A fresh message ts ("1700000000.000100"), later than every one handed out before."""
        micros = max(_to_micros(self.clock()), self.last_micros + _TS_STEP)
        self.last_micros = micros
        return f"{micros // _MICROS}.{micros % _MICROS:06d}"

    def named(self, channel: str) -> str:
        """A `#name` channel, created (given its id) the first time it is named, as if the
        workspace had every channel the bot is asked to post to."""
        if channel not in self.channel_ids:
            digest = hashlib.sha256(channel.encode()).hexdigest()[:10].upper()
            self.channel_ids[channel] = f"C{digest}"
            self.channel_names[f"C{digest}"] = channel
        return channel

    def key_of(self, channel: str) -> str:
        """Where a channel's messages are kept: the `#name` of a named channel's id, else the
        channel as given (a name, or an id the sandbox never saw named)."""
        return self.channel_names.get(channel, channel)

    def id_of(self, key: str) -> str:
        """The id Slack would answer with for a channel kept under `key`."""
        return self.channel_ids.get(key, key)

    def take_fault(self, method: str) -> Fault | None:
        """The failure queued for `method`'s next call, if any (it counts as used)."""
        queue = self.faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            queue.pop(0)
        return fault

    def reset(self) -> None:
        """Forget calls, messages, views and pending faults; keep the directory and the clock."""
        self.calls.clear()
        self.channels.clear()
        self.channel_ids.clear()
        self.channel_names.clear()
        self.by_ts.clear()
        self.ephemeral.clear()
        self.views.clear()
        self.home_views.clear()
        self.responses.clear()
        self.used_triggers.clear()
        self.faults.clear()


def _to_micros(seconds: float) -> int:
    return int(round(seconds * _MICROS))
