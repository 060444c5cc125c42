"""The sandbox's Slack as the bot sees it: a real `AsyncWebClient` answered in process.

With no SLACK_BOT_TOKEN, the bot's Slack client is an `InProcessWebClient`: a real slack_sdk
`AsyncWebClient` whose HTTP requests are served in process by `FakeSlackWebApi`, so message
posting, editing, ephemeral answers, modals, users.info and usergroups.users.list all run
through the same code as with a real workspace.

    sandbox = make_sandbox(settings.sandbox_directory)
    client = InProcessWebClient(sandbox)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from slack_sdk.web.async_client import AsyncWebClient

from integrations.sandbox.directory import load_directory
from integrations.sandbox.webapi import FakeSlackWebApi

__all__ = ["SANDBOX_BASE_URL", "SANDBOX_TOKEN", "InProcessWebClient", "make_sandbox"]

SANDBOX_TOKEN = "xoxb-sandbox"
SANDBOX_BASE_URL = "http://slack.sandbox/api/"


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
