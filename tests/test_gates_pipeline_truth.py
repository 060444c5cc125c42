"""Slack and the pipeline never disagree: a decision taken outside Slack closes the gate,
and a decision taken in Slack that the pipeline refuses is shown as refused.

Everything goes through signed HTTP requests into the real app: GitHub's protection-rule
delivery opens the gate, GitHub's deployment statuses report the deployment moving, Slack
clicks decide, and a fake GitHub answers the protection-rule callback.
"""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from bot.services import audit
from bot.store.tables import AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub
from tests.helpers import deployment_status, encode, github_headers
from tests.slackflow import CHANNEL, buttons, click, request_gate, the_gate
from tests.test_app_home import open_home

MEDIUM_RISK = [
    {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
]


@pytest.fixture
def bot(gated_bot: Bot, github: FakeGitHub) -> Bot:
    """The app with a GitHub App configured; releases need one release manager's approval."""
    github.compare_files = list(MEDIUM_RISK)
    return gated_bot


async def github_reports(bot: Bot, state: str) -> None:
    body = encode(deployment_status(state, deployment_id=777, creator="ci-bot"))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text
    await bot.send_outbox()


def the_deployment(bot: Bot) -> Deployment:
    with bot.runtime.db.read() as session:
        [deployment] = session.exec(select(Deployment)).all()
    return deployment


def audit_actions(bot: Bot) -> list[tuple[str, str]]:
    with bot.runtime.db.read() as session:
        assert audit.verify_chain(session)[1] is None
        return [(e.action, e.actor) for e in session.exec(select(AuditEvent)).all()]


def message_text(slack: FakeSlackWebApi) -> str:
    [message] = slack.messages(CHANNEL)
    return json.dumps(message["blocks"])


async def test_github_going_ahead_closes_the_gate_and_its_statuses_are_applied(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    await request_gate(bot)
    assert the_gate(bot).status == "pending"
    assert the_deployment(bot).state == "awaiting_approval"

    await github_reports(bot, "in_progress")
    gate = the_gate(bot)
    assert gate.status == "approved"
    assert gate.decided_by == "github"
    assert gate.reason == "superseded by the pipeline: it reported the deployment in progress"
    assert the_deployment(bot).state == "in_progress"

    await github_reports(bot, "success")
    assert the_deployment(bot).state in ("succeeded", "verifying", "verified")
    assert github.decisions() == []  # GitHub decided; nothing is sent back

    actions = audit_actions(bot)
    assert ("gate.approved", "github") in actions
    assert actions.count(("deployment.state_changed", "github")) == 1  # to approved
    assert actions.count(("deployment.state_changed", "github:ci-bot")) >= 2  # in progress, done
    [message] = slack.messages(CHANNEL)
    assert "release_approve" not in buttons(message)
    assert "superseded by the pipeline" in message_text(slack)

    home = await open_home(bot, slack, "U0RM1")
    assert "release_approve" not in json.dumps(home)


async def test_a_failure_while_the_gate_waits_ends_gate_and_deployment_as_rejected(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    await request_gate(bot)
    await github_reports(bot, "failure")
    gate = the_gate(bot)
    assert (gate.status, gate.decided_by) == ("rejected", "github")
    assert gate.reason == "superseded by the pipeline: it reported the deployment failed"
    assert the_deployment(bot).state == "rejected"
    assert github.decisions() == []
    assert "release_approve" not in buttons(slack.messages(CHANNEL)[0])


async def test_a_pending_status_leaves_the_gate_waiting(bot: Bot, github: FakeGitHub) -> None:
    await request_gate(bot)
    await github_reports(bot, "queued")
    assert the_gate(bot).status == "pending"
    assert the_deployment(bot).state == "awaiting_approval"


async def test_after_a_slack_approval_the_statuses_move_the_deployment(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    await request_gate(bot)
    await click(bot, "U0RM1", "release_approve", the_gate(bot).id or 0)
    assert the_gate(bot).decided_by == "U0RM1"
    await github_reports(bot, "in_progress")
    gate = the_gate(bot)
    assert (gate.status, gate.decided_by) == ("approved", "U0RM1")
    assert the_deployment(bot).state == "in_progress"
    assert [d["state"] for d in github.decisions()] == ["approved"]


async def test_an_approval_github_refuses_is_shown_as_refused(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.callback_status = 422  # the run is gone, or the rule was decided elsewhere
    await request_gate(bot)
    await click(bot, "U0RM1", "release_approve", the_gate(bot).id or 0)
    assert [d["state"] for d in github.decisions()] == ["approved"]

    [message] = slack.messages(CHANNEL)
    [approval] = [
        b["text"]["text"]
        for b in message["blocks"]
        if b["type"] == "section" and b.get("text", {}).get("text", "").startswith("*Approval*")
    ]
    assert approval.startswith(
        "*Approval*\n:warning: The pipeline refused the approval by <@U0RM1>"
    )
    assert "422" in approval and "GitHub refused the decision" in approval
    assert ":white_check_mark:" not in approval
    replies = json.dumps(slack.thread(CHANNEL, message["ts"]))
    assert "Could not approve through github protection rule" in replies
    assert "GitHub refused the decision" in replies
    assert ("deployer.failed", "releasebot") in audit_actions(bot)
