"""GET /sandbox: the local Slack, for trying releasebot with no workspace.

It shows the sandbox's channels with their messages rendered from Block Kit, threads,
ephemeral answers and open modals for the person you act as, and a slash-command box.
Every click, modal submission and command is signed with the app's signing secret and
handed to the same handler as POST /slack/events, so the real path runs.

    routes(slack_events, door)   # GET /sandbox, POST /sandbox/act|submit|command,
                                 # POST /sandbox/respond/{id}, /sandbox/api/<method>

Every route but `respond` is behind `door` (integrations/sandbox/door.py): in the sandbox
anyone can act as anyone. `/sandbox/api` also lets in the bot's own calls, which carry its
`bot_token`; `respond` takes only the response ids the sandbox handed out itself.

The pages find their `Sandbox` in `request.state.sandbox` (None: a real Slack is in use,
and they answer 404). The template is `templates/sandbox.html` beside this module.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from integrations.sandbox import interactions
from integrations.sandbox.blockkit_html import mrkdwn, text_of
from integrations.sandbox.door import Door, guarded
from integrations.sandbox.interactions import Endpoint
from integrations.sandbox.webapi import FakeSlackWebApi

__all__ = ["TEMPLATES", "Sandbox", "SandboxApi", "routes"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


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
    response_ids: set[str] = field(default_factory=set)  # the response_urls handed out
    bot_token: str | None = None  # what the bot's own calls to /sandbox/api carry
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


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        # Block Kit is loose (optional keys everywhere): a missing key renders as nothing.
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["slack_time"] = _slack_time
    return env


def _slack_time(ts: str) -> str:
    """A message ts (epoch seconds) as Slack shows it: the time of day, UTC."""
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return str(ts)


def _sandbox(request: Request) -> Sandbox | None:
    sandbox: Sandbox | None = getattr(request.state, "sandbox", None)
    return sandbox


async def page(request: Request) -> Response:
    """The sandbox page for the person in `?as=`, showing the channel in `?channel=`."""
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
    template = _environment().get_template("sandbox.html")
    return HTMLResponse(
        template.render(
            people=people,
            acting=acting,
            channels=channels,
            channel=channel,
            messages=messages,
            ephemeral=ephemeral,
            modal=sandbox.open_view(acting),
            names=names,
            slash_command=sandbox.slash_command,
            mrkdwn=lambda text: mrkdwn(str(text or ""), names),
            text_of=lambda obj: text_of(obj, names),
        )
    )


class _Interactions:
    """The page's forms, each sent to the bot through `slack_events` as Slack would."""

    def __init__(self, slack_events: Endpoint) -> None:
        self._slack_events = slack_events

    async def act(self, request: Request) -> Response:
        """A button click, sent to the bot as Slack sends `block_actions`."""
        sandbox = _sandbox(request)
        if sandbox is None:
            return Response(status_code=404)
        form = await _form(request)
        user, channel = str(form.get("as", "")), str(form.get("channel", ""))
        trigger_id = f"sandbox-{uuid.uuid4().hex}"
        payload = interactions.block_actions(
            user=user,
            user_name=sandbox.people.get(user, user),
            channel=channel,
            ts=str(form.get("ts", "")),
            trigger_id=trigger_id,
            form=form,
        )
        sandbox.triggers[trigger_id] = user
        await self._send(request, sandbox, {"payload": json.dumps(payload)})
        return _back(user, channel)

    async def submit(self, request: Request) -> Response:
        """A modal submitted, sent as Slack sends `view_submission`."""
        sandbox = _sandbox(request)
        if sandbox is None:
            return Response(status_code=404)
        form = await _form(request)
        user, channel = str(form.get("as", "")), str(form.get("channel", ""))
        view = sandbox.view(str(form.get("view_id", "")))
        if view is None:
            return _back(user, channel)
        payload = interactions.view_submission(
            user=user, user_name=sandbox.people.get(user, user), view=view, form=form
        )
        response = await self._send(request, sandbox, {"payload": json.dumps(payload)})
        if not _has_errors(response):
            sandbox.closed_views.add(str(view.get("id")))
        return _back(user, channel)

    async def command(self, request: Request) -> Response:
        """The slash-command box, sent as Slack sends a command."""
        sandbox = _sandbox(request)
        if sandbox is None:
            return Response(status_code=404)
        form = await _form(request)
        user, channel = str(form.get("as", "")), str(form.get("channel", ""))
        response_id = uuid.uuid4().hex
        sandbox.response_ids.add(response_id)
        fields = interactions.slash_command(
            user=user,
            user_name=sandbox.people.get(user, user),
            channel=channel,
            command=sandbox.slash_command,
            text=str(form.get("text", "")).strip(),
            response_url=f"{str(request.base_url).rstrip('/')}/sandbox/respond/"
            f"{response_id}?" + urlencode({"channel": channel, "user": user}),
            trigger_id=f"sandbox-{uuid.uuid4().hex}",
        )
        await self._send(request, sandbox, fields)
        return _back(user, channel)

    async def _send(self, request: Request, sandbox: Sandbox, fields: dict[str, str]) -> Response:
        return await interactions.deliver(
            request, self._slack_events, sandbox.signing_secret, fields
        )


async def respond(request: Request) -> Response:
    """A command's `response_url`: the answer shows to the person who typed it."""
    sandbox = _sandbox(request)
    if sandbox is None or request.path_params["response_id"] not in sandbox.response_ids:
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
    """The sandbox's Slack Web API over HTTP, for tools that want to look (ASGI app): behind
    `door`, except for the bot's own calls (Bolt's modals and ephemeral answers)."""

    def __init__(self, door: Door | None = None) -> None:
        self._door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sandbox: Sandbox | None = (scope.get("state") or {}).get("sandbox")
        if sandbox is None:
            await Response("no sandbox: SLACK_BOT_TOKEN is set", status_code=404)(
                scope, receive, send
            )
            return
        request = Request(scope, receive)
        if self._door is not None and not _from_the_bot(request, sandbox):
            refusal = await self._door(request)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await sandbox.api(scope, receive, send)


def _from_the_bot(request: Request, sandbox: Sandbox) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = sandbox.bot_token
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode("utf-8"), str(expected).encode("utf-8"))
    )


def routes(slack_events: Endpoint, door: Door | None = None) -> list[BaseRoute]:
    """The sandbox's routes behind `door`; clicks, submissions and commands go to
    `slack_events`."""
    forms = _Interactions(slack_events)
    return [
        Route("/sandbox", guarded(page, door), methods=["GET"]),
        Route("/sandbox/act", guarded(forms.act, door), methods=["POST"]),
        Route("/sandbox/submit", guarded(forms.submit, door), methods=["POST"]),
        Route("/sandbox/command", guarded(forms.command, door), methods=["POST"]),
        Route("/sandbox/respond/{response_id}", respond, methods=["POST"]),
        Mount("/sandbox/api", app=SandboxApi(door)),
    ]
