"""Slack users and user groups, cached briefly (usergroups.users.list is a Tier 2 method)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.errors import DeliveryFailed
from bot.ports import SlackUser
from integrations.slack.sender import NETWORK_ERRORS, api_failure, network_failure

DEFAULT_TTL = 300.0


class WebApiDirectory:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl: float = DEFAULT_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._now = monotonic
        self._users: dict[str, tuple[float, SlackUser]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._emails: dict[str, tuple[float, str | None]] = {}

    async def user(self, user_id: str) -> SlackUser:
        cached = self._users.get(user_id)
        if cached is not None and self._now() - cached[0] < self._ttl:
            return cached[1]
        data = await self._call("users.info", user=user_id)
        raw: Mapping[str, Any] = data.get("user") or {}
        profile: Mapping[str, Any] = raw.get("profile") or {}
        found = SlackUser(
            id=user_id,
            name=profile.get("display_name") or raw.get("real_name") or raw.get("name"),
            email=profile.get("email"),
            is_bot=bool(raw.get("is_bot")),
        )
        self._users[user_id] = (self._now(), found)
        return found

    async def group_members(self, group_id: str) -> frozenset[str]:
        cached = self._groups.get(group_id)
        if cached is not None and self._now() - cached[0] < self._ttl:
            return cached[1]
        data = await self._call("usergroups.users.list", usergroup=group_id)
        members = frozenset(str(u) for u in data.get("users") or [])
        self._groups[group_id] = (self._now(), members)
        return members

    async def user_id_by_email(self, email: str) -> str | None:
        """The Slack user with this e-mail address (users.lookupByEmail), or None."""
        key = email.strip().lower()
        cached = self._emails.get(key)
        if cached is not None and self._now() - cached[0] < self._ttl:
            return cached[1]
        try:
            data = await self._call("users.lookupByEmail", email=email.strip())
        except DeliveryFailed as failure:
            if "users_not_found" not in failure.reason:
                raise
            data = {}
        raw: Mapping[str, Any] = data.get("user") or {}
        found = str(raw["id"]) if raw.get("id") and not raw.get("deleted") else None
        self._emails[key] = (self._now(), found)
        return found

    async def _call(self, method: str, **params: str) -> Mapping[str, Any]:
        try:
            response = await self._client.api_call(method, http_verb="GET", params=params)
        except SlackApiError as exc:
            raise api_failure(method, exc) from None
        except NETWORK_ERRORS as exc:
            raise network_failure(method, exc) from None
        except SlackClientError as exc:  # no answer from Slack either: a lookup may be retried
            raise network_failure(method, exc) from None
        data: Mapping[str, Any] = response.data if isinstance(response.data, dict) else {}
        return data
