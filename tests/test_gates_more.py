"""Promote, roll back, break-glass, freezes, expiry and racing clicks, end to end."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.domain.gates import Person
from bot.scheduling import checks_tick, gate_sweep
from bot.services import gates
from bot.store.tables import Approval, AuditEvent, Deployment, EnvironmentLock, Gate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub, FrozenClock
from tests.helpers import (
    SHA_A,
    SHA_B,
    SLACK_GROUPS,
    deployment_status,
    encode,
    fixture,
    github_headers,
)
from tests.slackflow import (
    CHANNEL,
    buttons,
    click,
    request_gate,
    submit_reason,
    the_gate,
    told,
)

SHA_C = "1234567890abcdef1234567890abcdef12345678"
MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]
GROUPS = {group: frozenset(users) for group, users in SLACK_GROUPS.items()}


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


def deployments(bot: Bot) -> list[Deployment]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Deployment).order_by(Deployment.id)).all())


def actions(bot: Bot) -> list[str]:
    with bot.runtime.db.read() as session:
        return [e.action for e in session.exec(select(AuditEvent)).all()]


async def deploy(bot: Bot, state: str, **kw: Any) -> None:
    body = encode(deployment_status(state, **kw))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()


async def deploy_staging(bot: Bot, sha: str) -> None:
    """GitHub Actions ran deploy-staging.yml for `sha`, which is how staging is tracked."""
    run = fixture("github", "workflow_run__completed-success.json")
    run["repository"]["full_name"] = "acme/checkout"
    run["workflow_run"].update(path=".github/workflows/deploy-staging.yml", head_sha=sha)
    body = encode(run)
    answer = await bot.post("/webhooks/github", body, github_headers("workflow_run", body))
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()


def dispatches(github: FakeGitHub) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in github.calls("POST", "/dispatches")]


# --- promote -------------------------------------------------------------------------------


async def test_a_verified_staging_release_promotes_itself_through_the_production_gate(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM  # production asks one release manager at medium risk
    await deploy_staging(bot, SHA_A)
    [staging] = deployments(bot)
    assert (staging.environment, staging.state) == ("staging", "verifying")
    assert "release_promote" not in buttons(slack.messages(CHANNEL)[0])  # not verified yet

    await checks_tick(bot.runtime)  # staging health at 0s
    clock.advance(seconds=30)
    await checks_tick(bot.runtime)  # and at 30s: verified, so auto_promote_to goes on
    await bot.send_outbox()
    staging, production = deployments(bot)
    assert staging.state == "verified"
    assert (production.environment, production.state) == ("production", "awaiting_approval")
    assert dispatches(github) == []  # nothing starts before the gate is passed

    await click(bot, "U0STRANGER", "release_promote", staging.id or 0)
    assert "may promote" in told(slack, "U0STRANGER")
    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    assert "already awaiting approval in production" in told(slack, "U0RM1")

    await click(bot, "U0RM2", "release_approve", the_gate(bot).id or 0)
    [dispatch] = dispatches(github)
    assert dispatch["ref"] == "main"
    assert dispatch["inputs"]["environment"] == "production"
    assert dispatch["inputs"]["action"] == "promote"
    assert dispatch["inputs"]["sha"] == SHA_A
    assert "release.promoted" in actions(bot)


# --- rollback ------------------------------------------------------------------------------


async def test_a_rollback_redeploys_the_last_good_version_and_locks_promotion(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    await deploy(bot, "success", sha=SHA_A, deployment_id=1)
    clock.advance(hours=1)
    await deploy(bot, "success", sha=SHA_B, deployment_id=2)
    bad = deployments(bot)[-1]
    assert bad.sha == SHA_B

    await click(bot, "U0RM1", "release_rollback", bad.id or 0)
    assert slack.opened_views()[-1]["view"]["callback_id"] == "release_rollback_modal"
    refused = await submit_reason(bot, slack, "U0RM1", "  ")
    assert refused["response_action"] == "errors"
    await submit_reason(bot, slack, "U0RM1", "error rate doubled after the deploy")

    bad = deployments(bot)[-1]
    assert (bad.state, bad.rollback_to) == ("rolling_back", SHA_A)
    [dispatch] = dispatches(github)
    assert dispatch["inputs"]["action"] == "rollback" and dispatch["inputs"]["sha"] == SHA_A
    with bot.runtime.db.read() as session:
        lock = session.get(EnvironmentLock, ("checkout", "production"))
    assert lock is not None and "error rate doubled" in lock.reason

    clock.advance(minutes=5)
    await deploy(bot, "success", sha=SHA_A, deployment_id=3)  # the pipeline redeploys A
    states = {(d.sha[:7], d.attempt): d.state for d in deployments(bot)}
    assert states[(SHA_B[:7], 1)] == "rolled_back"
    assert states[(SHA_A[:7], 2)] == "verifying"

    message = next(m for m in slack.messages(CHANNEL) if SHA_B[:7] in m["text"])
    assert "Automatic promotion stopped" in json.dumps(message["blocks"])
    assert "release_unlock" in buttons(message)

    # While production is locked, a verified staging release waits for a person.
    await deploy_staging(bot, SHA_C)
    await checks_tick(bot.runtime)
    clock.advance(seconds=30)
    await checks_tick(bot.runtime)
    await bot.send_outbox()
    staging = next(d for d in deployments(bot) if d.environment == "staging")
    assert staging.state == "verified"
    assert not [d for d in deployments(bot) if d.sha == SHA_C and d.environment == "production"]
    note = slack.thread(
        CHANNEL, next(m for m in slack.messages(CHANNEL) if "staging" in m["text"])["ts"]
    )[-1]["text"]
    assert "Not promoted to production automatically" in note and "locked" in note
    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    assert "promoting 1234567 to production" in told(slack, "U0RM1")
    await click(bot, "U0RM2", "release_unlock", bad.id or 0)
    with bot.runtime.db.read() as session:
        assert session.get(EnvironmentLock, ("checkout", "production")) is None
    assert "environment.unlocked" in actions(bot)


# --- break-glass and freezes ---------------------------------------------------------------


async def test_a_freeze_refuses_approval_until_break_glass_is_confirmed(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 12, 24, 10, 0, tzinfo=UTC))  # inside the year-end freeze
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)
    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert "production is frozen: Year-end change freeze" in told(slack, "U0RM1")

    await click(bot, "U0RM1", "release_break_glass", gate.id or 0)
    assert slack.opened_views()[-1]["view"]["callback_id"] == "release_break_glass_modal"
    await submit_reason(bot, slack, "U0RM1", "payments are down for every customer")
    assert "release_break_glass_confirm" in buttons(slack.messages(CHANNEL)[0])

    await click(bot, "U0RM1", "release_break_glass_confirm", gate.id or 0)
    assert "second person" in told(slack, "U0RM1")
    await click(bot, "U0STRANGER", "release_break_glass_confirm", gate.id or 0)
    assert "only S0RELMGRS or S0SREGRPS can confirm" in told(slack, "U0STRANGER")
    assert the_gate(bot).status == "pending"

    await click(bot, "U0SRE1", "release_break_glass_confirm", gate.id or 0)
    gate = the_gate(bot)
    assert gate.status == "approved"
    assert gate.break_glass is not None and gate.break_glass["confirmed_by"] == "U0SRE1"
    assert [d["state"] for d in github.decisions()] == ["approved"]
    announcements = [m["text"] for m in slack.messages(CHANNEL) if "Break-glass" in m["text"]]
    assert any("Break-glass requested" in t for t in announcements)
    assert any("Break-glass confirmed" in t and "<@U0SRE1>" in t for t in announcements)
    for expected in (
        "gate.break_glass_requested",
        "gate.break_glass_refused",
        "gate.break_glass_confirmed",
    ):
        assert expected in actions(bot)


# --- time ----------------------------------------------------------------------------------


async def test_approvers_are_reminded_then_the_gate_expires_visibly(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)

    clock.advance(minutes=59)
    assert await gate_sweep(bot.runtime) == 0
    clock.advance(minutes=2)
    assert await gate_sweep(bot.runtime) == 1
    await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    reminder = slack.thread(CHANNEL, message["ts"])[-1]["text"]
    assert "<!subteam^S0RELMGRS>" in reminder and "still waiting for approval" in reminder
    assert await gate_sweep(bot.runtime) == 0  # reminded once

    clock.advance(hours=3)
    assert await gate_sweep(bot.runtime) == 1
    await bot.send_outbox()
    assert the_gate(bot).status == "expired"
    assert deployments(bot)[0].state == "expired"
    assert [d["state"] for d in github.decisions()] == ["rejected"]
    assert "Expired" in json.dumps(slack.messages(CHANNEL)[0]["blocks"])


async def test_a_newer_release_supersedes_the_waiting_gate(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    older = the_gate(bot)
    await request_gate(bot, sha=SHA_B, run=4343)
    with bot.runtime.db.read() as session:
        statuses = [g.status for g in session.exec(select(Gate).order_by(Gate.id)).all()]
    assert statuses == ["superseded", "pending"]
    assert [d["state"] for d in github.decisions()] == ["rejected"]
    await click(bot, "U0RM1", "release_approve", older.id or 0)
    assert "superseded" in told(slack, "U0RM1")


# --- races ---------------------------------------------------------------------------------


def race(bot: Bot, calls: list[tuple[str, str, str | None]], gate_id: int) -> list[str]:
    """Fire decisions at one gate from several threads released together."""
    barrier = threading.Barrier(len(calls))
    now = bot.runtime.clock.now()

    def one(call: tuple[str, str, str | None]) -> str:
        user, decision, reason = call
        barrier.wait()
        outcome = bot.runtime.db.write(
            lambda s: gates.decide(
                s,
                now=now,
                config=bot.runtime.config,
                gate_id=gate_id,
                person=Person(user_id=user),
                group_members=GROUPS,
                decision=decision,
                reason=reason,
            )
        )
        return outcome.result

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


async def open_medium_gate(bot: Bot, github: FakeGitHub) -> Gate:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    return the_gate(bot)


async def test_a_double_click_counts_once(bot: Bot, github: FakeGitHub) -> None:
    gate = await open_medium_gate(bot, github)
    results = race(bot, [("U0RM1", "approve", None)] * 4, gate.id or 0)
    assert sorted(results) == ["approved", "refused", "refused", "refused"]
    with bot.runtime.db.read() as session:
        assert len(session.exec(select(Approval)).all()) == 1
    await bot.send_outbox()
    assert [d["state"] for d in github.decisions()] == ["approved"]


async def test_approve_racing_reject_has_one_outcome(bot: Bot, github: FakeGitHub) -> None:
    gate = await open_medium_gate(bot, github)
    results = race(
        bot, [("U0RM1", "approve", None), ("U0RM2", "reject", "not today")], gate.id or 0
    )
    final = the_gate(bot).status
    assert sorted(results) in (["approved", "refused"], ["refused", "rejected"])
    assert final == ("approved" if "approved" in results else "rejected")
    await bot.send_outbox()
    assert len(github.decisions()) == 1
    assert github.decisions()[0]["state"] == final


async def test_two_approvers_at_once_fill_a_two_seat_gate(
    bot: Bot, github: FakeGitHub, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 11, 20, 16, 30, tzinfo=UTC))  # high risk: RM + SRE
    github.commit_author = "someone-else"
    github.compare_files = [
        {"filename": "migrations/1.py", "status": "added", "additions": 9000, "deletions": 0},
        {"filename": "Dockerfile", "status": "modified", "additions": 900, "deletions": 300},
        {"filename": "infra/main.tf", "status": "modified", "additions": 400, "deletions": 50},
    ]
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.requirement["risk_level"] == "high"
    results = race(bot, [("U0RM1", "approve", None), ("U0SRE1", "approve", None)], gate.id or 0)
    assert sorted(results) == ["approved", "recorded"]
    assert the_gate(bot).status == "approved"


async def test_a_click_after_expiry_is_refused(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    gate = await open_medium_gate(bot, github)
    clock.advance(hours=4, seconds=1)
    await gate_sweep(bot.runtime)
    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert "expired" in told(slack, "U0RM1")
    assert the_gate(bot).status == "expired"
    assert timedelta(hours=4) == (the_gate(bot).expires_at - the_gate(bot).created_at)  # type: ignore[operator]


async def test_low_risk_is_not_approved_automatically_during_a_freeze(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 12, 24, 10, 0, tzinfo=UTC))  # inside the year-end freeze
    github.commit_author = "someone-else"
    github.compare_files = [
        {"filename": "README.md", "status": "modified", "additions": 2, "deletions": 1}
    ]
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.status == "pending"
    assert "frozen" in (gate.progress or "") and "break-glass" in (gate.progress or "")
    assert github.decisions() == []
