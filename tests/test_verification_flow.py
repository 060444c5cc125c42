"""After a deploy lands: checks run on schedule, results go in the thread, a failure pages
on-call and rolls back by policy, and the rollback's verification resolves the alert."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.scheduling import checks_tick
from bot.store.tables import AuditEvent, CheckRun, Deployment, OutboxMessage
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, github_headers

CHANNEL = "#checkout-deploys"
ROUTING_KEY = "pd-checkout-routing-key"


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge()


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=edge.transport,
        environ={"PD_CHECKOUT_ROUTING_KEY": ROUTING_KEY},
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


async def deploy(bot: Bot, sha: str, deployment_id: int) -> None:
    body = encode(deployment_status("success", sha=sha, deployment_id=deployment_id))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()


async def checks_due(bot: Bot) -> int:
    ran = await checks_tick(bot.runtime)
    await bot.send_outbox()
    return ran


async def verify_fully(bot: Bot, clock: FrozenClock) -> None:
    """Walk the clock through the example's check offsets (0s, 1m, 5m, 15m)."""
    for minutes in (0, 1, 4, 10):
        clock.advance(minutes=minutes)
        await checks_due(bot)


def deployment(bot: Bot, sha: str, attempt: int = 1) -> Deployment:
    with bot.runtime.db.read() as session:
        return session.exec(
            select(Deployment).where(Deployment.sha == sha).where(Deployment.attempt == attempt)
        ).one()


def thread_of(slack: FakeSlackWebApi, sha: str) -> list[str]:
    message = next(m for m in slack.messages(CHANNEL) if sha[:7] in m["text"])
    return [m["text"] for m in slack.thread(CHANNEL, message["ts"])[1:]]


def audit_details(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    return [json.loads(r.details) for r in rows]


async def test_a_deploy_is_verified_on_schedule(
    bot: Bot, slack: FakeSlackWebApi, edge: FakeEdge, clock: FrozenClock
) -> None:
    await deploy(bot, SHA_A, 1)
    assert deployment(bot, SHA_A).state == "verifying"
    with bot.runtime.db.read() as session:
        runs = session.exec(select(CheckRun)).all()
    assert len(runs) == 6  # health at 0s, 1m, 5m; error-rate at 1m, 5m, 15m

    assert await checks_due(bot) == 1  # only the health check is due at once
    assert await checks_due(bot) == 0  # and it never runs twice
    clock.advance(minutes=1)
    assert await checks_due(bot) == 2
    message = slack.messages(CHANNEL)[0]
    assert "verification 3/6 passed · 3 still to run" in json.dumps(
        message["blocks"], ensure_ascii=False
    )

    clock.advance(minutes=14)
    assert await checks_due(bot) == 3
    assert deployment(bot, SHA_A).state == "verified"
    assert len(edge.health.requests) == 3 and len(edge.prometheus.queries) == 3
    replies = thread_of(slack, SHA_A)
    assert sum("*health*: HTTP 200" in r for r in replies) == 3
    assert any("Verified" in r for r in replies)
    assert [c["payload"]["summary"] for c in edge.pagerduty.changes] == [
        f"Deployed checkout {SHA_A[:7]} to production"
    ]
    assert edge.pagerduty.changes[0]["routing_key"] == ROUTING_KEY


async def test_a_failed_check_pages_rolls_back_and_recovery_resolves_the_alert(
    bot: Bot, slack: FakeSlackWebApi, edge: FakeEdge, clock: FrozenClock
) -> None:
    await deploy(bot, SHA_A, 1)
    await verify_fully(bot, clock)
    assert deployment(bot, SHA_A).state == "verified"

    clock.advance(hours=1)
    await deploy(bot, SHA_B, 2)
    await checks_due(bot)  # health at 0s passes
    edge.health.queued = [500]  # the second health check finds the service down
    clock.advance(minutes=1)
    await checks_due(bot)

    bad = deployment(bot, SHA_B)
    assert (bad.state, bad.rollback_to) == ("rolling_back", SHA_A)
    replies = thread_of(slack, SHA_B)
    failure = next(r for r in replies if "verification failed" in r)
    assert "<!subteam^S0ONCALL1>" in failure and "*health*" in failure
    assert any(":x: *health*: expected HTTP 200, got 500" in r for r in replies)
    [trigger] = [e for e in edge.pagerduty.events if e["event_action"] == "trigger"]
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["dedup_key"] == f"releasebot/checkout/production/{bad.id}"
    assert trigger["payload"]["severity"] == "critical"
    dispatched = [json.loads(r.content) for r in edge.github.calls("POST", "/dispatches")]
    assert [(d["inputs"]["action"], d["inputs"]["sha"]) for d in dispatched] == [
        ("rollback", SHA_A)
    ]
    with bot.runtime.db.read() as session:
        left = session.exec(
            select(CheckRun)
            .where(CheckRun.deployment_id == bad.id)
            .where(CheckRun.status == "pending")
        ).all()
    assert left == []  # the rest of the bad version's checks were cancelled

    clock.advance(minutes=3)
    await deploy(bot, SHA_A, 3)  # the pipeline redeploys the good version
    assert deployment(bot, SHA_B).state == "rolled_back"
    await verify_fully(bot, clock)
    assert deployment(bot, SHA_A, attempt=2).state == "verified"

    [resolve] = [e for e in edge.pagerduty.events if e["event_action"] == "resolve"]
    assert resolve["dedup_key"] == trigger["dedup_key"]
    [resolved] = audit_details(bot, "incident.resolved")
    assert resolved["recovery_seconds"] == (3 + 15) * 60
    summaries = [c["payload"]["summary"] for c in edge.pagerduty.changes]
    assert any(s.startswith("Rolling checkout production back to") for s in summaries)


async def test_notify_policy_shows_the_rollback_button_instead(
    bot_factory: BotFactory, slack: FakeSlackWebApi, edge: FakeEdge, clock: FrozenClock
) -> None:
    from bot.config import load_config
    from tests.helpers import EXAMPLE_CONFIG

    config = load_config(EXAMPLE_CONFIG)
    production = config.services["checkout"].environment("production")
    assert production is not None
    notify = production.model_copy(update={"on_verification_failure": "notify"})
    checkout = config.services["checkout"].model_copy(
        update={"environments": [config.services["checkout"].environments[0], notify]}
    )
    config = config.model_copy(update={"services": {**config.services, "checkout": checkout}})
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=edge.transport,
        config=config,
        environ={},
    )
    async with bot_factory(overrides=overrides) as bot:
        await deploy(bot, SHA_A, 1)
        edge.health.queued = [503]
        await checks_due(bot)
        assert deployment(bot, SHA_A).state == "verification_failed"
    message = slack.messages(CHANNEL)[0]
    actions = [
        e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert "release_rollback" in actions
    assert edge.github.calls("POST", "/dispatches") == []
    assert "Use *Roll back*" in "\n".join(thread_of(slack, SHA_A))


async def test_without_a_routing_key_change_events_are_skipped_but_a_page_fails_loudly(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    app_private_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=edge.transport,
        environ={},  # PD_CHECKOUT_ROUTING_KEY, named by the config, is not set
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=overrides) as bot:
        await deploy(bot, SHA_A, 1)
        await deploy(bot, SHA_B, 2)
        with bot.runtime.db.read() as session:
            dead = session.exec(select(OutboxMessage).where(OutboxMessage.status == "dead")).all()
        assert dead == []  # two production deploys, no change event, nothing dead
        warned = [r.getMessage() for r in caplog.records if "PD_CHECKOUT_ROUTING_KEY" in r.message]
        assert warned == ["PD_CHECKOUT_ROUTING_KEY is not set: pagerduty change events are skipped"]

        edge.health.queued = [500]  # SHA_B's first health check fails: on-call must be paged
        await checks_due(bot)
        with bot.runtime.db.read() as session:
            dead = session.exec(select(OutboxMessage).where(OutboxMessage.status == "dead")).all()
        assert [row.last_error for row in dead] == [
            "PD_CHECKOUT_ROUTING_KEY is not set: cannot reach pagerduty"
        ]
        assert edge.pagerduty.events == [] and edge.pagerduty.changes == []
