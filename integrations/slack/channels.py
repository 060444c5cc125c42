"""The ids of channels configured by `#name`, for the Web API methods that take ids only.

`conversations.history` and `conversations.replies` refuse a `#name`, so looking for a post
in a channel configured by name needs its id first. `ChannelIds` keeps one map of name to
id for the process, filled two ways:

- for free: every `chat.postMessage` answer names the channel by its id (`learn`);
- by listing: `conversations.list` (public and private channels the bot can see, archived
  ones left out, `LIST_PAGE_SIZE` a page), read page by page until the name turns up. The
  pages read are kept, and a listing cut short (the name found, or Slack rate-limiting)
  goes on from where it stopped the next time.

A name still unknown after a whole listing is looked up again only `RELIST_SECONDS` after
that listing ended, however often it is asked for meanwhile: a channel created since turns
up then. Listing needs `channels:read` and `groups:read`.

    ids = ChannelIds(list_page)          # list_page(arguments) -> one conversations.list answer
    ids.learn("#releases", "C0RELEASES")
    await ids.id_of("#releases")         # "C0RELEASES", no call
    await ids.id_of("C0PAYMENTS")        # an id is its own id
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.domain.errors import DeliveryFailed

__all__ = ["LIST_PAGE_SIZE", "RELIST_SECONDS", "ChannelIds", "channel_name"]

LIST_PAGE_SIZE = 1000
"""Channels asked for per `conversations.list` page (Slack's largest page)."""
LIST_PAGES = 50
"""Pages one listing reads at most before it stops (50,000 channels)."""
RELIST_SECONDS = 300.0
"""How long after a whole listing a name it did not find is looked for again."""
LIST_TYPES = "public_channel,private_channel"

_ID = re.compile(r"[CGDUW][A-Z0-9]{2,}")  # a channel, a direct message, or a user

ListPage = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]]
"""One `conversations.list` call with these arguments, answering its data."""


def channel_name(channel: str) -> str | None:
    """The name of a channel given as `#name` or a bare name (lower case, as Slack keeps
    names), or None for an id (`C...`, `G...`, `D...`, or a user's, `U...`, `W...`)."""
    if channel.startswith("#"):
        return channel[1:].lower()
    if _ID.fullmatch(channel):
        return None
    return channel.lower()


class ChannelIds:
    """Channel ids by name, learnt from posts and from `conversations.list`, for the process."""

    def __init__(
        self,
        list_page: ListPage,
        *,
        relist_seconds: float = RELIST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_page = list_page
        self._relist_seconds = relist_seconds
        self._clock = clock
        self._ids: dict[str, str] = {}
        self._cursor: str | None = None  # where an unfinished listing goes on
        self._listed_at: float | None = None  # when the last whole listing ended
        self._lock = asyncio.Lock()

    def learn(self, channel: str, channel_id: str) -> None:
        """Remember the id Slack answered with for a post to `channel`."""
        name = channel_name(channel)
        if name is not None and _ID.fullmatch(channel_id):
            self._ids[name] = channel_id

    async def id_of(self, channel: str) -> str:
        """`channel`'s id: itself for an id, else from what was learnt or listed.

        Raises `DeliveryFailed`: retryable when Slack could not be read now (rate limited,
        5xx, no answer); not retryable when it will not let us list (a missing scope) or
        lists no channel of that name.
        """
        name = channel_name(channel)
        if name is None:
            return channel
        async with self._lock:  # one listing at a time; the others wait for its result
            found = self._ids.get(name)
            if found is None and self._may_list():
                found = await self._list_until(name)
        if found is None:
            raise DeliveryFailed(
                f"conversations.list: no channel named #{name} among those the bot can see "
                "(misspelt, archived, or private without the bot in it)",
                retryable=False,
            )
        return found

    def _may_list(self) -> bool:
        listed_at = self._listed_at
        return listed_at is None or self._clock() - listed_at >= self._relist_seconds

    async def _list_until(self, name: str) -> str | None:
        """Read pages, from where the last listing stopped, until `name` is among them or
        the list ends (then it counts as a whole listing)."""
        for _ in range(LIST_PAGES):
            arguments: dict[str, Any] = {
                "types": LIST_TYPES,
                "exclude_archived": True,
                "limit": LIST_PAGE_SIZE,
            }
            if self._cursor:
                arguments["cursor"] = self._cursor
            try:
                data = await self._list_page(arguments)
            except DeliveryFailed as failure:
                if not failure.retryable:
                    self._cursor = None  # a cursor Slack refuses is not tried again
                raise
            for item in data.get("channels") or []:
                if isinstance(item, Mapping):
                    self._note(item)
            metadata = data.get("response_metadata")
            cursor = metadata.get("next_cursor") if isinstance(metadata, Mapping) else None
            self._cursor = cursor if isinstance(cursor, str) and cursor else None
            if self._cursor is None:
                self._listed_at = self._clock()
                return self._ids.get(name)
            if name in self._ids:
                return self._ids[name]
        return self._ids.get(name)

    def _note(self, item: Mapping[str, Any]) -> None:
        channel_id, name = item.get("id"), item.get("name")
        if isinstance(channel_id, str) and isinstance(name, str) and _ID.fullmatch(channel_id):
            self._ids[name.lower()] = channel_id
