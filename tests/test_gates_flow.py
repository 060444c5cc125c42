"""A regulated gate end to end, through signed HTTP requests only: GitHub asks, Slack decides.

GitHub's `deployment_protection_rule` opens a gate for checkout production; clicks on the
release message are signed as Slack signs them and go through Bolt; the decision reaches a
fake GitHub as the protection-rule callback; the audit chain tells the whole story.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import select

from bot.app import Overrides
from bot.services import audit
from bot.store.tables import AuditEvent, Deployment, Gate
from integrations.slack.fakeapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeGitHub, FrozenClock
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
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, github: FakeGitHub, app_private_key: str
) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=github.transport,
        environ={},
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


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


async def request_gate(bot: Bot, **kw: Any) -> None:
    body = encode(protection_rule(**kw))
    headers = github_headers("deployment_protection_rule", body)
    answer = await bot.post("/webhooks/github", body, headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()


async def click(bot: Bot, user: str, action_id: str, value: int) -> None:
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


async def test_a_release_manager_approves_and_github_is_told(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = [  # medium risk: one release manager must approve
        {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
    ]
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.status == "pending"
    [message] = slack.messages(CHANNEL)
    assert buttons(message) == ["release_approve", "release_reject"]
    assert "0 of 1 approvals" in json.dumps(message["blocks"])
    assert github.decisions() == []  # GitHub keeps waiting

    await click(bot, "U0OWNER01", "release_approve", gate.id or 0)  # authored the commit
    assert "you authored 1 of the commits" in told(slack, "U0OWNER01")

    await click(bot, "U0STRANGER", "release_approve", gate.id or 0)
    assert "you are not in S0RELMGRS" in told(slack, "U0STRANGER")
    assert the_gate(bot).status == "pending"

    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"
    assert github.decisions() == [
        {
            "environment_name": "production",
            "state": "approved",
            "comment": github.decisions()[0]["comment"],
        }
    ]
    assert "U0RM1" in github.decisions()[0]["comment"]
    token_calls = github.calls("POST", "/access_tokens")
    callback = github.calls("POST", "/deployment_protection_rule")[0]
    assert token_calls and callback.headers["authorization"] == "Bearer ghs_installation"

    [message] = slack.messages(CHANNEL)
    assert "release_approve" not in buttons(message)
    assert ":white_check_mark:" in json.dumps(message["blocks"])

    with bot.runtime.db.read() as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
        assert audit.verify_chain(session)[1] is None
    assert actions.count("gate.decision_refused") == 2
    for expected in ("gate.opened", "gate.approve_recorded", "gate.approved", "deployer.called"):
        assert expected in actions


async def test_a_high_risk_release_needs_the_second_approver_from_sre(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 11, 20, 16, 30, tzinfo=UTC))  # Friday 17:30 in Berlin
    github.commit_author = "someone-else"
    github.compare_files = [
        {
            "filename": "migrations/0042_payments.py",
            "status": "added",
            "additions": 9000,
            "deletions": 0,
        },
        {"filename": "Dockerfile", "status": "modified", "additions": 900, "deletions": 300},
        {"filename": "infra/main.tf", "status": "modified", "additions": 400, "deletions": 50},
        {"filename": "requirements.txt", "status": "modified", "additions": 3, "deletions": 1},
    ]
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.requirement["risk_level"] == "high", gate.requirement

    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "pending"
    assert "1 of 2 approvals: waiting for 1 more from S0SREGRPS" in told(slack, "U0RM1")
    assert github.decisions() == []

    await click(bot, "U0SRE1", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"
    assert [d["state"] for d in github.decisions()] == ["approved"]


async def test_a_reject_asks_for_a_reason_and_github_is_told(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = [
        {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
    ]
    await request_gate(bot)
    gate = the_gate(bot)
    await click(bot, "U0RM2", "release_reject", gate.id or 0)
    [view] = slack.opened_views()
    assert view["view"]["callback_id"] == "release_reject_modal"

    async def submit(reason: str) -> dict[str, Any]:
        payload = {
            "type": "view_submission",
            "team": {"id": "T0SANDBOX"},
            "user": {"id": "U0RM2"},
            "view": {
                "id": "V1",
                "type": "modal",
                "callback_id": "release_reject_modal",
                "private_metadata": view["view"]["private_metadata"],
                "state": {
                    "values": {
                        "reason": {"reason_input": {"type": "plain_text_input", "value": reason}}
                    }
                },
            },
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        answer = await bot.post(
            "/slack/events",
            body,
            slack_headers(body, content_type="application/x-www-form-urlencoded"),
        )
        await bot.send_outbox()
        return answer.json() if answer.content else {}

    assert await submit("   ") == {
        "response_action": "errors",
        "errors": {"reason": "A reason is required."},
    }
    assert the_gate(bot).status == "pending"

    await submit("The migration locks the orders table")
    gate = the_gate(bot)
    assert (gate.status, gate.reason) == ("rejected", "The migration locks the orders table")
    assert [d["state"] for d in github.decisions()] == ["rejected"]
    with bot.runtime.db.read() as session:
        [deployment] = session.exec(select(Deployment)).all()
    assert deployment.state == "rejected"


async def test_low_risk_is_continuous_deployment(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = [
        {"filename": "README.md", "status": "modified", "additions": 2, "deletions": 1}
    ]
    await request_gate(bot)
    assert the_gate(bot).status == "approved"
    assert [d["state"] for d in github.decisions()] == ["approved"]
    assert "low risk: approved automatically" in the_gate(bot).reason  # type: ignore[operator]
