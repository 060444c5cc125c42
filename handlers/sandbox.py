"""GET /sandbox: the local Slack, for trying releasebot with no workspace.

It shows the sandbox's channels with their messages rendered from Block Kit, threads,
ephemeral answers and open modals for the person you act as, and a slash-command box.
Every click, modal submission and command is signed with the app's signing secret and
handed to the same handler as POST /slack/events, so the real path runs.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from handlers.blockkit_html import mrkdwn, text_of
from integrations.slack.fakeapi import TEAM_ID, FakeSlackWebApi

TEMPLATES = Path(__file__).resolve().parent.parent / "bot" / "templates" / "sandbox"


@dataclass
class Sandbox:
    """What the sandbox pages need: the in-app Slack, the secret to sign with, who's who."""

    slack: FakeSlackWebApi
    signing_secret: str
    slash_command: str
    people: dict[str, str]  # user id -> display name
    groups: dict[str, str]  # group id -> name
    default_channel: str
    triggers: dict[str, str] = field(default_factory=dict)  # trigger id -> who clicked
    closed_views: set[str] = field(default_factory=set)
    responses: list[dict[str, Any]] = field(default_factory=list)  # response_url answers
    _api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self.slack.app()
        return self._api

    def names(self) -> dict[str, str]:
        return {**self.people, **self.groups}

    def open_view(self, user: str) -> dict[str, Any] | None:
        """The modal the bot opened last for `user` and nobody has submitted or closed."""
        for opened in reversed(self.slack.opened_views()):
            view = opened.get("view") or {}
            if (
                self.triggers.get(str(opened.get("trigger_id"))) == user
                and str(view.get("id")) not in self.closed_views
            ):
                return dict(view)
        return None

    def view(self, view_id: str) -> dict[str, Any] | None:
        for opened in self.slack.opened_views():
            view = opened.get("view") or {}
            if str(view.get("id")) == view_id:
                return dict(view)
        return None


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=jinja2.select_autoescape(["html"]),
    # Block Kit is loose (optional keys everywhere): a missing key renders as nothing.
    undefined=jinja2.ChainableUndefined,
)


def _slack_time(ts: str) -> str:
    """A message ts (epoch seconds) as Slack shows it: the time of day, UTC."""
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return str(ts)


_env.filters["slack_time"] = _slack_time


def _sandbox(request: Request) -> Sandbox | None:
    sandbox: Sandbox | None = getattr(request.state, "sandbox", None)
    return sandbox


async def page(request: Request) -> Response:
    sandbox = _sandbox(request)
    if sandbox is None:
        return HTMLResponse(
            "<h1>No sandbox</h1><p>SLACK_BOT_TOKEN is set: releasebot talks to your real "
            "Slack workspace.</p>",
            status_code=404,
        )
    people = sandbox.people
    if request.query_params.get("close"):
        sandbox.closed_views.add(request.query_params["close"])
    acting = request.query_params.get("as") or next(iter(people), "")
    if acting not in people:
        acting = next(iter(people), "")
    channels = sorted(set(sandbox.slack.channels()) | {sandbox.default_channel})
    channel = request.query_params.get("channel") or (channels[0] if channels else "")
    names = sandbox.names()
    messages = []
    for message in sandbox.slack.messages(channel):
        thread = sandbox.slack.thread(channel, message["ts"])[1:]
        messages.append({"message": message, "thread": thread})
    ephemeral = [
        m
        for m in [*sandbox.slack.ephemeral_messages(channel), *sandbox.responses]
        if m["user"] == acting and m.get("channel") == channel
    ][-6:]
    modal = sandbox.open_view(acting)
    template = _env.get_template("sandbox.html")
    return HTMLResponse(
        template.render(
            people=people,
            acting=acting,
            channels=channels,
            channel=channel,
            messages=messages,
            ephemeral=ephemeral,
            modal=modal,
            names=names,
            slash_command=sandbox.slash_command,
            mrkdwn=lambda text: mrkdwn(str(text or ""), names),
            text_of=lambda obj: text_of(obj, names),
        )
    )


async def act(request: Request) -> Response:
    """A button click, sent to the bot as Slack sends `block_actions`."""
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response(status_code=404)
    form = await _form(request)
    user, channel = str(form.get("as", "")), str(form.get("channel", ""))
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "sandbox"},
        "user": {"id": user, "name": sandbox.people.get(user, user)},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"sandbox-{uuid.uuid4().hex}",
        "channel": {"id": channel, "name": channel.lstrip("#")},
        "container": {
            "type": "message",
            "channel_id": channel,
            "message_ts": str(form.get("ts", "")),
        },
        "message": {"ts": str(form.get("ts", ""))},
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
    sandbox.triggers[str(payload["trigger_id"])] = user
    await _send(request, sandbox, {"payload": json.dumps(payload)})
    return _back(user, channel)


async def submit(request: Request) -> Response:
    """A modal submitted, sent as Slack sends `view_submission`."""
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response(status_code=404)
    form = await _form(request)
    user, channel = str(form.get("as", "")), str(form.get("channel", ""))
    view = sandbox.view(str(form.get("view_id", "")))
    if view is None:
        return _back(user, channel)
    values: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") == "input" and element.get("action_id"):
            key = f"{block.get('block_id')}:{element['action_id']}"
            values.setdefault(block["block_id"], {})[element["action_id"]] = {
                "type": element.get("type", "plain_text_input"),
                "value": str(form.get(key, "")),
            }
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "sandbox"},
        "user": {"id": user, "name": sandbox.people.get(user, user)},
        "api_app_id": "A0RELBOT",
        "view": {**view, "type": view.get("type", "modal"), "state": {"values": values}},
    }
    response = await _send(request, sandbox, {"payload": json.dumps(payload)})
    if not _has_errors(response):
        sandbox.closed_views.add(str(view.get("id")))
    return _back(user, channel)


async def command(request: Request) -> Response:
    """The slash-command box, sent as Slack sends a command."""
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response(status_code=404)
    form = await _form(request)
    user, channel = str(form.get("as", "")), str(form.get("channel", ""))
    text = str(form.get("text", "")).strip()
    response_id = uuid.uuid4().hex
    fields = {
        "token": "sandbox",
        "team_id": TEAM_ID,
        "team_domain": "sandbox",
        "channel_id": channel,
        "channel_name": channel.lstrip("#"),
        "user_id": user,
        "user_name": sandbox.people.get(user, user),
        "command": sandbox.slash_command,
        "text": text,
        "api_app_id": "A0RELBOT",
        "response_url": f"{str(request.base_url).rstrip('/')}/sandbox/respond/"
        f"{response_id}?" + urlencode({"channel": channel, "user": user}),
        "trigger_id": f"sandbox-{uuid.uuid4().hex}",
    }
    await _send(request, sandbox, fields)
    return _back(user, channel)


async def respond(request: Request) -> Response:
    """A command's `response_url`: the answer shows to the person who typed it."""
    sandbox = _sandbox(request)
    if sandbox is None:
        return Response(status_code=404)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return Response("invalid JSON", status_code=400)
    sandbox.responses.append(
        {
            "channel": request.query_params.get("channel", ""),
            "user": request.query_params.get("user", ""),
            "text": str(body.get("text", "")),
            "blocks": body.get("blocks") or [],
            "ts": f"{time.time():.6f}",
        }
    )
    return Response("ok")


async def _send(request: Request, sandbox: Sandbox, fields: dict[str, str]) -> Response:
    """Sign a form body as Slack does and hand it to the /slack/events handler."""
    from handlers.routes import slack_events  # the same endpoint Slack's requests reach

    body = urlencode(fields).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(sandbox.signing_secret).generate_signature(
        timestamp=timestamp, body=body
    )
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

    return await slack_events(Request(scope, receive))


async def _form(request: Request) -> dict[str, str]:
    """The page's forms are URL-encoded; the first value of each field."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def _has_errors(response: Response) -> bool:
    try:
        return "errors" in json.loads(bytes(response.body or b"{}"))
    except (ValueError, TypeError):
        return False


def _back(user: str, channel: str) -> Response:
    return RedirectResponse(
        "/sandbox?" + urlencode({"as": user, "channel": channel}), status_code=303
    )


class SandboxApi:
    """The sandbox's Slack Web API over HTTP, for tools that want to look (ASGI app)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        sandbox = (scope.get("state") or {}).get("sandbox")
        if sandbox is None:
            await Response("no sandbox: SLACK_BOT_TOKEN is set", status_code=404)(
                scope, receive, send
            )
            return
        await sandbox.api(scope, receive, send)


def routes() -> list[BaseRoute]:
    return [
        Route("/sandbox", page, methods=["GET"]),
        Route("/sandbox/act", act, methods=["POST"]),
        Route("/sandbox/submit", submit, methods=["POST"]),
        Route("/sandbox/command", command, methods=["POST"]),
        Route("/sandbox/respond/{response_id}", respond, methods=["POST"]),
        Mount("/sandbox/api", app=SandboxApi()),
    ]
