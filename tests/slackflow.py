"""Driving releasebot the way GitHub and Slack do: protection-rule deliveries, signed clicks
and modal submissions, against the real app with fake GitHub and Slack at the edge."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import select

from bot.app import Overrides
from bot.store.tables import Gate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import SHA_A, encode, github_headers, slack_headers

CHANNEL = "#checkout-deploys"
CALLBACK = "https://api.github.com/repos/acme/checkout/actions/runs/4242/deployment_protection_rule"


@pytest.fixture(scope="session")
def app_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def edge() -> FakeEdge:
    """GitHub, the services' health endpoints, Prometheus and PagerDuty, all faked."""
    return FakeEdge()


@pytest.fixture
def github(edge: FakeEdge) -> FakeGitHub:
    return edge.github


@pytest.fixture
async def gated_bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    overrides = gated_overrides(clock, edge)
    async with bot_factory(env=gated_env(app_private_key), overrides=overrides) as running:
        yield running


def gated_overrides(clock: FrozenClock, edge: FakeEdge, **kw: Any) -> Overrides:
    """How the gate tests run the app: fixed clock, no scheduler or worker loop (tests
    sweep and send themselves), work done before a click is answered, the fake outside."""
    return Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=edge.transport,
        environ={},
        **kw,
    )


def gated_env(app_private_key: str, **extra: str) -> dict[str, str]:
    """The GitHub App the gate tests' protection rules answer through, and `extra`."""
    return {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key, **extra}


def protection_rule(sha: str = SHA_A, run: int = 4242) -> dict[str, Any]:
    """A `deployment_protection_rule` delivery shaped as GitHub documents it."""
    return {
        "action": "requested",
        "environment": "production",
        "event": "push",
        "deployment_callback_url": CALLBACK.replace("4242", str(run)),
        "deployment": {"id": 777, "sha": sha, "ref": "main", "creator": {"login": "ci-bot"}},
        "pull_requests": [],
        "installation": {"id": 42},
        "repository": {"full_name": "acme/checkout"},
        "sender": {"login": "ci-bot"},
    }


async def request_gate(bot: Bot, *, send: bool = True, **kw: Any) -> None:
    """GitHub asks for a decision; `send`: the test sends the outbox itself then."""
    body = encode(protection_rule(**kw))
    headers = github_headers("deployment_protection_rule", body)
    answer = await bot.post("/webhooks/github", body, headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    if send:
        await bot.send_outbox()


async def click(bot: Bot, user: str, action_id: str, value: int, *, send: bool = True) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"trigger-{user}-{time.monotonic_ns()}",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": str(value),
                "action_ts": str(time.time()),
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = await bot.post(
        "/slack/events",
        body,
        slack_headers(body, content_type="application/x-www-form-urlencoded"),
    )
    assert answer.status_code == 200, answer.text
    if send:
        await bot.send_outbox()


def the_gate(bot: Bot) -> Gate:
    with bot.runtime.db.read() as session:
        gate = session.exec(select(Gate)).one()
    return gate


def told(slack: FakeSlackWebApi, user: str) -> str:
    return str([m for m in slack.ephemeral_messages() if m["user"] == user][-1]["text"])


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        element["action_id"]
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


async def submit_reason(bot: Bot, slack: FakeSlackWebApi, user: str, reason: str) -> dict[str, Any]:
    """Submit the last modal the bot opened with `reason` typed in, as Slack does."""
    view = slack.opened_views()[-1]["view"]
    payload = {
        "type": "view_submission",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
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
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = await bot.post(
        "/slack/events", body, slack_headers(body, content_type="application/x-www-form-urlencoded")
    )
    await bot.send_outbox()
    return answer.json() if answer.content else {}
