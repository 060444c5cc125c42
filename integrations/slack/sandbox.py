"""The local Slack sandbox: a fake Slack Web API inside the app, and a client that reaches it.

With no SLACK_BOT_TOKEN, the bot's Slack client is an `InProcessWebClient`: a real slack_sdk
`AsyncWebClient` whose HTTP requests are served in process by `FakeSlackWebApi`, so message
posting, editing, ephemeral answers, modals, users.info and usergroups.users.list all run
through the same code as with a real workspace. The people and groups come from a small
directory file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack.fakeapi import FakeSlackWebApi

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / "bot" / "sandbox" / "directory.yaml"
SANDBOX_TOKEN = "xoxb-sandbox"
SANDBOX_BASE_URL = "http://slack.sandbox/api/"


def load_directory(path: Path | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(users for users.info, members of each user group) from the sandbox directory file."""
    data = yaml.safe_load((path or DEFAULT_DIRECTORY).read_text(encoding="utf-8")) or {}
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
    data = yaml.safe_load((path or DEFAULT_DIRECTORY).read_text(encoding="utf-8")) or {}
    return {str(g): str((v or {}).get("name") or g) for g, v in (data.get("groups") or {}).items()}


def make_sandbox(
    directory: Path | None = None, *, clock: Callable[[], float] | None = None
) -> FakeSlackWebApi:
    """The sandbox Slack; `clock` (epoch seconds) stamps its messages, as Slack's ts does."""
    users, groups = load_directory(directory)
    if clock is None:
        return FakeSlackWebApi(users=users, usergroups=groups)
    return FakeSlackWebApi(users=users, usergroups=groups, clock=clock)


class InProcessWebClient(AsyncWebClient):
    """An AsyncWebClient whose requests are answered by an ASGI app in this process."""

    def __init__(self, sandbox: FakeSlackWebApi, *, token: str = SANDBOX_TOKEN) -> None:
        super().__init__(token=token, base_url=SANDBOX_BASE_URL)
        self._transport = httpx.ASGITransport(app=sandbox.app())

    async def _request(  # type: ignore[no-untyped-def]
        self, *, http_verb, api_url, req_args
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": dict(req_args.get("headers") or {})}
        if req_args.get("json") is not None:
            kwargs["content"] = json.dumps(req_args["json"]).encode()
            kwargs["headers"]["content-type"] = "application/json;charset=utf-8"
        elif req_args.get("data") is not None:
            kwargs["data"] = {k: v for k, v in req_args["data"].items() if v is not None}
        if req_args.get("params"):
            kwargs["params"] = {k: v for k, v in req_args["params"].items() if v is not None}
        # Straight to the ASGI transport: an httpx client around it (built per call, or kept)
        # adds cookie, auth and redirect handling that an in-process fake never needs, and
        # costs more than the fake's answer itself.
        response = await self._transport.handle_async_request(
            httpx.Request(http_verb, api_url, **kwargs)
        )
        await response.aread()
        return {
            "data": response.json(),
            "headers": dict(response.headers),
            "status_code": response.status_code,
        }
