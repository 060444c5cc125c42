"""Gates that wait: repeated reminders, escalation with direct messages, and Re-request after
expiry, through the real app with signed GitHub deliveries and Slack clicks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.scheduling import checks_tick, gate_sweep
from bot.store.tables import AuditEvent, Deployment, Gate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import EXAMPLE_CONFIG, SHA_A, SHA_B, encode, fixture, github_headers
from tests.slackflow import CHANNEL, buttons, click, gated_env, gated_overrides, request_gate, told

MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]
HIGH = [  # late on a Friday, with migrations and infrastructure: RM + SRE
    {"filename": "migrations/1.py", "status": "added", "additions": 9000, "deletions": 0},
    {"filename": "Dockerfile", "status": "modified", "additions": 900, "deletions": 300},
    {"filename": "infra/main.tf", "status": "modified", "additions": 400, "deletions": 50},
]


ESCALATING = """          remind_every: "1h"
          escalate_after: "2h30m"
          escalate_to: ["S0ONCALL1"]
"""


def escalating_config(path: Path) -> Path:
    """The example config with checkout's production gate reminding every hour and
    escalating to on-call after 2h30m (the example itself reminds once)."""
    text = EXAMPLE_CONFIG.read_text()
    anchor = '          remind_after: "1h"'
    assert text.count(anchor) >= 1
    at = text.index("\n", text.index(anchor)) + 1
    path.write_text(text[:at] + ESCALATING + text[at:])
    return path


@pytest.fixture
async def bot(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    app_private_key: str,
    tmp_path: Path,
) -> AsyncIterator[Bot]:
    config = escalating_config(tmp_path / "releasebot.yaml")
    env = gated_env(app_private_key, RELEASEBOT_CONFIG=str(config))
    async with bot_factory(env=env, overrides=gated_overrides(clock, edge)) as running:
        yield running


def gates_of(bot: Bot) -> list[Gate]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Gate).order_by(Gate.id)).all())


def production(bot: Bot) -> list[Deployment]:
    with bot.runtime.db.read() as session:
        return list(
            session.exec(
                select(Deployment)
                .where(Deployment.environment == "production")
                .order_by(Deployment.id)
            ).all()
        )


def audited(bot: Bot, action: str) -> list[AuditEvent]:
    with bot.runtime.db.read() as session:
        return list(
            session.exec(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
            ).all()
        )


def thread_texts(slack: FakeSlackWebApi, index: int = 0) -> list[str]:
    message = slack.messages(CHANNEL)[index]
    return [str(line["text"]) for line in slack.thread(CHANNEL, message["ts"])]


def direct_messages(slack: FakeSlackWebApi) -> dict[str, str]:
    """chat.postMessage calls whose channel is a user id: Slack opens the DM with the bot."""
    return {
        str(call.params["channel"]): str(call.params["text"])
        for call in slack.calls_to("chat.postMessage")
        if str(call.params["channel"]).startswith("U")
    }


def message_of(slack: FakeSlackWebApi, deployment_id: int) -> dict[str, Any]:
    """The release message whose footer names the deployment."""
    for message in slack.messages(CHANNEL):
        if f"Deployment #{deployment_id}" in json.dumps(message["blocks"]):
            return message
    raise AssertionError(f"no message for deployment {deployment_id}")


async def deploy_staging(bot: Bot, sha: str) -> None:
    """deploy-staging.yml ran for `sha`; staging verifies, then promotes to production."""
    run = fixture("github", "workflow_run__completed-success.json")
    run["repository"]["full_name"] = "acme/checkout"
    run["workflow_run"].update(path=".github/workflows/deploy-staging.yml", head_sha=sha)
    body = encode(run)
    answer = await bot.post("/webhooks/github", body, github_headers("workflow_run", body))
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()


async def promote_through_staging(bot: Bot, clock: FrozenClock, sha: str) -> None:
    await deploy_staging(bot, sha)
    await checks_tick(bot.runtime)  # staging health at 0s
    clock.advance(seconds=30)
    await checks_tick(bot.runtime)  # and at 30s: verified, auto_promote_to production
    await bot.send_outbox()


async def expire_production_gate(bot: Bot, clock: FrozenClock) -> Gate:
    clock.advance(hours=4, seconds=1)
    await gate_sweep(bot.runtime)
    await bot.send_outbox()
    gate = gates_of(bot)[-1]
    assert gate.status == "expired"
    return gate


# --- reminders and escalation --------------------------------------------------------------


async def test_reminders_repeat_then_the_gate_escalates_with_direct_messages(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 11, 20, 16, 30, tzinfo=UTC))
    github.commit_author = "someone-else"
    github.compare_files = HIGH
    await request_gate(bot)
    await click(bot, "U0RM1", "release_approve", gates_of(bot)[0].id or 0)
    assert "recorded" in told(slack, "U0RM1")

    clock.advance(hours=1, minutes=1)
    assert await gate_sweep(bot.runtime) == 1  # first reminder (remind_after: 1h)
    assert await gate_sweep(bot.runtime) == 0
    clock.advance(minutes=59)
    assert await gate_sweep(bot.runtime) == 1  # 2h00m: the second, on the hour's schedule
    await bot.send_outbox()  # both waited, so they share one reply, a line each
    lines = [line for text in thread_texts(slack) for line in text.split("\n")]
    reminders = [line for line in lines if "still waiting for approval" in line]
    assert len(reminders) == 2  # at 1h01m and at 2h00m (remind_every: 1h)
    assert all("<!subteam^S0RELMGRS>" in t for t in reminders)
    assert direct_messages(slack) == {}
    assert len(audited(bot, "gate.reminded")) == 2

    clock.advance(minutes=30)  # 2h30m: escalate_after
    assert await gate_sweep(bot.runtime) == 1
    assert await gate_sweep(bot.runtime) == 0  # escalated once
    await bot.send_outbox()
    [escalation] = [t for t in thread_texts(slack) if ":rotating_light:" in t]
    assert "<!subteam^S0ONCALL1>" in escalation
    assert "2h30m" in escalation
    dms = direct_messages(slack)
    # every approver of both rules (release managers and SREs) except the one who voted
    assert sorted(dms) == ["U0BOTH", "U0OWNER01", "U0RM2", "U0SRE1"]
    assert all("checkout" in text and "waited 2h30m" in text for text in dms.values())
    [event] = audited(bot, "gate.escalated")
    assert json.loads(event.details)["asked"] == sorted(dms)

    clock.advance(minutes=30)  # 3h00m: reminders go on
    assert await gate_sweep(bot.runtime) == 1
    await bot.send_outbox()
    lines = [line for text in thread_texts(slack) for line in text.split("\n")]
    assert len([line for line in lines if "still waiting for approval" in line]) == 3
    assert gates_of(bot)[0].status == "pending"


async def test_without_remind_every_the_gate_is_reminded_once_and_never_escalates(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    app_private_key: str,
    tmp_path: Path,
) -> None:
    """A config written before remind_every and escalate_after (the example's) means what
    it meant."""
    older = tmp_path / "releasebot.yaml"
    older.write_text(EXAMPLE_CONFIG.read_text())
    env = gated_env(app_private_key, RELEASEBOT_CONFIG=str(older))
    async with bot_factory(env=env, overrides=gated_overrides(clock, edge)) as bot:
        gate_policy = bot.runtime.config.services["checkout"].environment("production")
        assert gate_policy is not None and gate_policy.gate is not None
        assert gate_policy.gate.remind_every is None and gate_policy.gate.escalate_after is None
        edge.github.commit_author = "someone-else"
        edge.github.compare_files = MEDIUM
        await request_gate(bot)
        clock.advance(hours=1, minutes=1)
        assert await gate_sweep(bot.runtime) == 1
        for _ in range(2):
            clock.advance(hours=1)
            assert await gate_sweep(bot.runtime) == 0
        assert len(audited(bot, "gate.reminded")) == 1
        assert audited(bot, "gate.escalated") == []


# --- Re-request ----------------------------------------------------------------------------


async def test_an_expired_promotion_gate_is_re_requested_as_a_fresh_gate(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await promote_through_staging(bot, clock, SHA_A)
    [first] = production(bot)
    expired = await expire_production_gate(bot, clock)
    assert production(bot)[0].state == "expired"
    assert "release_rerequest" in buttons(message_of(slack, first.id or 0))

    await click(bot, "U0STRANGER", "release_rerequest", expired.id or 0)
    assert "may re-request" in told(slack, "U0STRANGER")
    assert len(production(bot)) == 1

    await click(bot, "U0RM1", "release_rerequest", expired.id or 0)
    assert "asked again" in told(slack, "U0RM1")
    old, fresh = production(bot)
    assert (fresh.sha, fresh.attempt, fresh.state) == (SHA_A, 2, "awaiting_approval")
    fresh_gate = gates_of(bot)[-1]
    assert fresh_gate.id != expired.id and fresh_gate.status == "pending"
    assert fresh_gate.deployment_id == fresh.id
    assert fresh_gate.decide_via == "github_workflow"
    [event] = audited(bot, "gate.rerequested")
    assert event.actor == "U0RM1" and event.subject == f"gate:{expired.id}"
    assert json.loads(event.details)["gate"] == fresh_gate.id
    new_message = message_of(slack, fresh.id or 0)
    assert "release_approve" in buttons(new_message)

    await click(bot, "U0RM1", "release_rerequest", expired.id or 0)  # twice: refused
    assert "already asked for again" in told(slack, "U0RM1")
    assert len(production(bot)) == 2

    await click(bot, "U0RM2", "release_approve", fresh_gate.id or 0)
    [dispatch] = [json.loads(r.content) for r in github.calls("POST", "/dispatches")]
    assert (dispatch["inputs"]["sha"], dispatch["inputs"]["action"]) == (SHA_A, "promote")


async def test_a_re_request_after_a_newer_release_is_refused_with_the_reason(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await promote_through_staging(bot, clock, SHA_A)
    expired = await expire_production_gate(bot, clock)
    await promote_through_staging(bot, clock, SHA_B)  # a newer release waits in production
    assert [d.sha for d in production(bot)] == [SHA_A, SHA_B]

    await click(bot, "U0RM1", "release_rerequest", expired.id or 0)
    refusal = told(slack, "U0RM1")
    assert f"superseded by {SHA_B[:7]}" in refusal
    assert len(production(bot)) == 2
    [event] = audited(bot, "gate.rerequest_refused")
    assert event.actor == "U0RM1" and "superseded" in json.loads(event.details)["reason"]
    assert audited(bot, "gate.rerequested") == []


async def test_an_expired_protection_rule_gate_offers_no_re_request(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    expired = await expire_production_gate(bot, clock)
    assert [d["state"] for d in github.decisions()] == ["rejected"]
    [message] = slack.messages(CHANNEL)
    assert "Expired" in json.dumps(message["blocks"])
    assert "release_rerequest" not in buttons(message)

    await click(bot, "U0RM1", "release_rerequest", expired.id or 0)  # a forged click
    assert "re-run its deployment job" in told(slack, "U0RM1")
    assert len(gates_of(bot)) == 1
