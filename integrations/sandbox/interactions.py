"""What the sandbox page sends the bot: Slack's interaction payloads, signed as Slack signs.

A click becomes `block_actions`, a modal submission `view_submission`, the command box a
slash command's form fields. `deliver` signs the form body with the app's signing secret
(`X-Slack-Signature` v0, `X-Slack-Request-Timestamp`) and hands it to the endpoint that
serves POST /slack/events, so Bolt's signature check and dispatch run as for real Slack.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import Response

from integrations.sandbox.store import APP_ID, TEAM_ID, Json

__all__ = [
    "Endpoint",
    "block_actions",
    "deliver",
    "slash_command",
    "view_submission",
    "view_values",
]

Endpoint = Callable[[Request], Awaitable[Response]]
"""A Starlette request/response endpoint: here, the one serving POST /slack/events."""

_TEAM = {"id": TEAM_ID, "domain": "sandbox"}


def block_actions(
    *, user: str, user_name: str, channel: str, ts: str, trigger_id: str, form: Mapping[str, str]
) -> Json:
    """A button click on the message at `ts`, as Slack sends `block_actions`."""
    return {
        "type": "block_actions",
        "team": dict(_TEAM),
        "user": {"id": user, "name": user_name},
        "api_app_id": APP_ID,
        "trigger_id": trigger_id,
        "channel": {"id": channel, "name": channel.lstrip("#")},
        "container": {"type": "message", "channel_id": channel, "message_ts": ts},
        "message": {"ts": ts},
        "actions": [
            {
                "type": "button",
                "action_id": str(form.get("action_id", "")),
                "block_id": str(form.get("block_id", "")),
                "value": str(form.get("value", "")),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_values(view: Mapping[str, Any], form: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`view.state.values` of a modal from the page's form (fields named block_id:action_id)."""
    values: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") == "input" and element.get("action_id"):
            key = f"{block.get('block_id')}:{element['action_id']}"
            values.setdefault(block["block_id"], {})[element["action_id"]] = {
                "type": element.get("type", "plain_text_input"),
                "value": str(form.get(key, "")),
            }
    return values


def view_submission(
    *, user: str, user_name: str, view: Mapping[str, Any], form: Mapping[str, str]
) -> Json:
    """The modal `view` submitted with the page's form values, as Slack sends it."""
    return {
        "type": "view_submission",
        "team": dict(_TEAM),
        "user": {"id": user, "name": user_name},
        "api_app_id": APP_ID,
        "view": {
            **view,
            "type": view.get("type", "modal"),
            "state": {"values": view_values(view, form)},
        },
    }


def slash_command(
    *,
    user: str,
    user_name: str,
    channel: str,
    command: str,
    text: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, str]:
    """The form fields of a slash command typed in `channel`."""
    return {
        "token": "sandbox",
        "team_id": TEAM_ID,
        "team_domain": "sandbox",
        "channel_id": channel,
        "channel_name": channel.lstrip("#"),
        "user_id": user,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


async def deliver(
    request: Request, endpoint: Endpoint, signing_secret: str, fields: Mapping[str, str]
) -> Response:
    """Sign a form body as Slack does and hand it to `endpoint` as a POST /slack/events.

    The new request shares `request`'s app and state, so the endpoint finds what it needs.
    """
    body = urlencode(fields).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=timestamp, body=body)
    headers = [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"x-slack-request-timestamp", timestamp.encode()),
        (b"x-slack-signature", (signature or "").encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/slack/events",
        "raw_path": b"/slack/events",
        "query_string": b"",
        "headers": headers,
        "state": request.scope.get("state", {}),
        "app": request.scope.get("app"),
        "scheme": "http",
        "server": ("sandbox", 80),
        "client": ("127.0.0.1", 0),
        "http_version": "1.1",
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return await endpoint(Request(scope, receive))
