"""A regulated gate end to end, through signed HTTP requests only: GitHub asks, Slack decides.

GitHub's `deployment_protection_rule` opens a gate for checkout production; clicks on the
release message are signed as Slack signs them and go through Bolt; the decision reaches a
fake GitHub as the protection-rule callback; the audit chain tells the whole story.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from bot.services import audit
from bot.store.tables import AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub, FrozenClock
from tests.helpers import slack_headers
from tests.slackflow import CHANNEL, buttons, click, request_gate, the_gate, told


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    """The app with a GitHub App configured, talking to the fake GitHub."""
    return gated_bot


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
    assert buttons(message) == ["release_approve", "release_reject", "release_break_glass"]
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
        "errors": {
            "reason": "A reason is required; type why in this box, then submit again "
            "(it is recorded)"
        },
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
