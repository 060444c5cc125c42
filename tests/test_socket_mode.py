"""Socket Mode against a fake Slack on loopback: the Web API and the WebSocket Slack opens.

The fake answers `apps.connections.open` with a `ws://127.0.0.1` URL it serves itself,
says `hello` on every new socket, sends envelopes the way Slack does (a slash command, a
button click, a modal submission) and records the acks. Every other Web API call (and
every `response_url`) goes to the in-memory FakeSlackWebApi. Nothing sleeps: each wait is
on a condition the fake signals, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import WSMsgType, web
from asgi_lifespan import LifespanManager

from bot.app import Overrides, SocketModeConnection, create_app
from bot.settings import SettingsError, load_settings
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import (
    EXAMPLE_CONFIG,
    REPO_ROOT,
    SLACK_GROUPS,
    SLACK_TOKEN,
    SLACK_USERS,
)
from tests.slackflow import CHANNEL, request_gate, the_gate

APP_TOKEN = "xapp-1-A0RELBOT-test"
WAIT_SECONDS = 10.0
MEDIUM_RISK = [
    {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
]


class FakeSlack:
    """Slack's Web API and Socket Mode endpoint, served by aiohttp in the test's loop."""

    def __init__(self) -> None:
        self.web_api = FakeSlackWebApi(users=SLACK_USERS, usergroups=SLACK_GROUPS)
        self._asgi = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.web_api.app()), base_url="http://slack"
        )
        self.base_url = ""
        self.opened: list[str] = []  # the app tokens apps.connections.open was called with
        self.sockets: list[web.WebSocketResponse] = []  # every socket the bot opened
        self.acks: list[dict[str, Any]] = []
        self.refuse_connections = 0  # answer that many apps.connections.open with an error
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/apps.connections.open", self._connections_open)
        app.router.add_get("/link/{n}", self._socket)
        app.router.add_route("*", "/{path:.*}", self._web_api)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for socket in self.sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self._asgi.aclose()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, what: str, check: Callable[[], Any]) -> Any:
        """Wait (at most WAIT_SECONDS) until `check()` is truthy; return its value."""

        async def settled() -> Any:
            async with self._changed:
                await self._changed.wait_for(check)
                return check()

        try:
            return await asyncio.wait_for(settled(), WAIT_SECONDS)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def _connections_open(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.opened.append(token)
        await self._notify()
        if self.refuse_connections > 0:
            self.refuse_connections -= 1
            return web.json_response({"ok": False, "error": "internal_error"})
        if token != APP_TOKEN:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response(
            {"ok": True, "url": f"ws://127.0.0.1:{request.url.port}/link/{len(self.opened)}"}
        )

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A0RELBOT"},
            }
        )
        await self._notify()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                self.acks.append(json.loads(message.data))
                await self._notify()
        await self._notify()
        return socket

    async def _web_api(self, request: web.Request) -> web.Response:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type")
        }
        answer = await self._asgi.request(
            request.method, request.path_qs, content=await request.read(), headers=headers
        )
        await self._notify()
        return web.Response(
            body=answer.content,
            status=answer.status_code,
            content_type=answer.headers.get("content-type", "application/json").split(";")[0],
        )

    @property
    def socket(self) -> web.WebSocketResponse:
        return self.sockets[-1]

    def live(self) -> bool:
        return bool(self.sockets) and not self.socket.closed

    async def send(self, kind: str, payload: dict[str, Any], *, response: bool) -> dict[str, Any]:
        """Send one envelope on the newest socket; return the bot's ack for it."""
        envelope_id = f"env-{uuid.uuid4().hex[:12]}"
        await self.socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "accepts_response_payload": response,
                "payload": payload,
            }
        )
        return await self.until(
            f"the ack of {kind} {envelope_id}",
            lambda: next((a for a in self.acks if a.get("envelope_id") == envelope_id), None),
        )


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


def slash_payload(fake: FakeSlack, user: str, text: str, token: str) -> dict[str, Any]:
    return {
        "token": "verification-token",
        "team_id": "T0SANDBOX",
        "team_domain": "sandbox",
        "channel_id": CHANNEL,
        "channel_name": CHANNEL.lstrip("#"),
        "user_id": user,
        "user_name": user.lower(),
        "command": "/release",
        "text": text,
        "api_app_id": "A0RELBOT",
        "is_enterprise_install": "false",
        "response_url": f"{fake.base_url}/response/{token}",
        "trigger_id": f"trigger-{token}",
    }


def click_payload(user: str, action_id: str, gate_id: int) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": str(gate_id),
                "action_ts": "1700000000.000100",
            }
        ],
    }


def submission_payload(user: str, view: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {
                "values": {
                    "reason": {"reason_input": {"type": "plain_text_input", "value": reason}}
                }
            },
        },
    }


@pytest.fixture
def socket_bot(
    bot_factory: BotFactory,
    fake_slack: FakeSlack,
    clock: FrozenClock,
    edge: FakeEdge,
    app_private_key: str,
) -> Callable[..., Any]:
    """The real app with both Slack tokens, its Web API pointed at the fake."""

    def run(*, process_before_response: bool = True) -> Any:
        overrides = Overrides(
            clock=clock,
            start_scheduler=False,
            run_outbox_worker=False,
            # The ack leaves once the listener is done, so an ack means its effects are in.
            process_before_response=process_before_response,
            http_transport=edge.transport,
            environ={},
        )
        env = {
            "SLACK_APP_TOKEN": APP_TOKEN,
            "RELEASEBOT_SLACK_API_URL": f"{fake_slack.base_url}/api/",
            "GITHUB_APP_ID": "1234",
            "GITHUB_APP_PRIVATE_KEY": app_private_key,
        }
        return bot_factory(env=env, overrides=overrides)

    return run


async def test_slash_command_click_and_modal_arrive_over_socket_mode(
    socket_bot: Callable[..., Any], fake_slack: FakeSlack, github: FakeGitHub
) -> None:
    async with socket_bot() as bot:
        await fake_slack.until("the bot's socket", fake_slack.live)
        assert fake_slack.opened == [APP_TOKEN]

        token = uuid.uuid4().hex
        ack = await fake_slack.send(
            "slash_commands", slash_payload(fake_slack, "U0STRANGER", "help", token), response=True
        )
        assert set(ack) <= {"envelope_id", "payload"}
        reply = await fake_slack.until(
            "the /release help reply", lambda: fake_slack.web_api.responses(token)
        )
        assert reply[0]["response_type"] == "ephemeral"
        assert "/release status [service]" in reply[0]["text"] + json.dumps(reply[0]["blocks"])

        github.compare_files = MEDIUM_RISK
        await request_gate(bot)
        gate = the_gate(bot)
        assert gate.status == "pending"

        await fake_slack.send(
            "interactive", click_payload("U0RM2", "release_reject", gate.id or 0), response=False
        )
        [opened] = fake_slack.web_api.opened_views()
        assert opened["view"]["callback_id"] == "release_reject_modal"

        refused = await fake_slack.send(
            "interactive", submission_payload("U0RM2", opened["view"], "   "), response=True
        )
        assert refused["payload"] == {
            "response_action": "errors",
            "errors": {
                "reason": "A reason is required; type why in this box, then submit again "
                "(it is recorded)"
            },
        }
        assert the_gate(bot).status == "pending"

        await fake_slack.send(
            "interactive",
            submission_payload("U0RM2", opened["view"], "The migration locks the orders table"),
            response=True,
        )
        gate = the_gate(bot)
        assert (gate.status, gate.reason) == ("rejected", "The migration locks the orders table")
        await bot.send_outbox()
        assert [d["state"] for d in github.decisions()] == ["rejected"]


async def test_the_bot_reconnects_when_slack_drops_the_socket(
    socket_bot: Callable[..., Any], fake_slack: FakeSlack
) -> None:
    async with socket_bot(process_before_response=False):
        await fake_slack.until("the bot's socket", fake_slack.live)
        first = fake_slack.socket
        await first.close()  # Slack drops connections routinely (and on every deploy of its own)

        await fake_slack.until(
            "a new socket", lambda: fake_slack.live() and fake_slack.socket is not first
        )
        assert fake_slack.opened == [APP_TOKEN, APP_TOKEN]  # a fresh URL for the new socket

        token = uuid.uuid4().hex
        await fake_slack.send(
            "slash_commands", slash_payload(fake_slack, "U0STRANGER", "help", token), response=True
        )
        reply = await fake_slack.until(
            "the /release help reply", lambda: fake_slack.web_api.responses(token)
        )
        assert "/release pending" in reply[0]["text"] + json.dumps(reply[0]["blocks"])


async def test_start_up_never_waits_for_slack(
    socket_bot: Callable[..., Any], fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SocketModeConnection, "first_wait", 0.01)
    fake_slack.refuse_connections = 2
    async with socket_bot() as bot:
        health = await bot.http.get("/healthz")  # answers while Slack refuses
        assert health.status_code == 200
        await fake_slack.until("a third try", lambda: len(fake_slack.opened) >= 3)
        await fake_slack.until("the bot's socket", fake_slack.live)
        assert fake_slack.opened == [APP_TOKEN] * 3


async def test_readiness_names_slack_while_socket_mode_cannot_connect(
    socket_bot: Callable[..., Any], fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SocketModeConnection, "first_wait", 0.01)
    fake_slack.refuse_connections = 1_000_000
    async with socket_bot() as bot:
        await fake_slack.until("a refused try", lambda: len(fake_slack.opened) >= 1)
        ready = await bot.http.get("/readyz")
        assert ready.status_code == 200  # webhooks are still taken; Slack is named as down
        report = ready.json()
        assert report["down"] == ["slack"]
        assert report["dependencies"]["slack"]["ok"] is False
        assert report["dependencies"]["slack"]["attempts"] >= 1

        fake_slack.refuse_connections = 0
        link = bot.runtime.context.links["slack"].__self__  # type: ignore[attr-defined]
        await asyncio.wait_for(link.connected.wait(), timeout=10)
        report = (await bot.http.get("/readyz")).json()
        assert report["down"] == []
        assert report["dependencies"]["slack"] == {
            "ok": True,
            "mode": "socket",
            "attempts": report["dependencies"]["slack"]["attempts"],
        }


async def test_an_app_token_without_a_bot_token_is_refused_by_name(
    environ: dict[str, str],
) -> None:
    settings = load_settings({**environ, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_BOT_TOKEN": ""})
    assert settings.slack_socket_mode is False
    app = create_app(settings, overrides=Overrides(start_scheduler=False, run_outbox_worker=False))
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not"):
        async with LifespanManager(app):
            pass


def test_serve_exits_naming_the_missing_bot_token(tmp_path: Any) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
        "RELEASEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'releasebot.db'}",
        "SLACK_APP_TOKEN": APP_TOKEN,
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "releasebot cannot start: SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not" in (
        done.stderr
    )
    assert SLACK_TOKEN not in done.stderr
