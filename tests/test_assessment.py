"""What ships and how risky it is, as the release message shows it after assessment."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.app import Overrides
from bot.config import Config
from bot.domain.errors import DeliveryFailed
from bot.domain.risk import RiskInputs
from bot.services import assessment
from bot.store.db import Database
from bot.store.tables import AuditEvent, Deployment, Release
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeScm, FrozenClock, commits
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, github_headers
from tests.test_render import assert_valid_blocks

CHANNEL = "#checkout-deploys"


async def deploy(bot: Bot, state: str, **kw: Any) -> None:
    body = encode(deployment_status(state, **kw))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text


def section(message: dict[str, Any], title: str) -> str:
    for block in message["blocks"]:
        text = block.get("text", {}).get("text", "")
        if text.startswith(f"*{title}*"):
            return str(text)
    raise AssertionError(f"no {title} section in {json.dumps(message['blocks'])}")


def overrides(clock: FrozenClock, scm: FakeScm) -> Overrides:
    return Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, scm_clients={"github": scm}
    )


async def test_the_message_lists_the_commits_and_explains_the_risk(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    scm = FakeScm()
    scm.add(base=None, head=SHA_A, comparison=commits(3))
    async with bot_factory(overrides=overrides(clock, scm)) as bot:
        await deploy(bot, "in_progress")
        await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    listed = section(message, "Commits")
    assert "3 commits, +36 −9 in 1 files" in listed
    assert listed.count("• ") == 3 and "Change 0" in listed and "Dev One" in listed
    risk = section(message, "Risk")
    assert "/100)" in risk and "assessing" not in risk
    assert scm.calls == [("acme/checkout", None, SHA_A)]


async def test_the_next_release_is_compared_with_the_last_deployed_version(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    scm = FakeScm()
    scm.add(base=None, head=SHA_A, comparison=commits(1))
    scm.add(base=SHA_A, head=SHA_B, comparison=commits(14))
    async with bot_factory(overrides=overrides(clock, scm)) as bot:
        await deploy(bot, "success")
        await bot.send_outbox()
        clock.advance(hours=2)
        await deploy(bot, "in_progress", sha=SHA_B, deployment_id=2)
        await bot.send_outbox()
    newest = slack.messages(CHANNEL)[-1]
    assert scm.calls[-1] == ("acme/checkout", SHA_A, SHA_B)
    assert "and 4 more" in section(newest, "Commits")


async def test_commit_text_cannot_ping_the_channel(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    scm = FakeScm()
    evil = commits(1, message="<!channel> <http://evil.example|click>", author="<@U0ADMIN>")
    scm.add(base=None, head=SHA_A, comparison=evil)
    async with bot_factory(overrides=overrides(clock, scm)) as bot:
        await deploy(bot, "success")
        await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    text = json.dumps(message["blocks"])
    assert "<!channel>" not in text and "<http://evil" not in text and "<@U0ADMIN>" not in text
    assert "&lt;!channel&gt;" in section(message, "Commits")


async def test_a_release_of_250_long_commits_renders_a_valid_message(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    scm = FakeScm()
    big = commits(250, message="Refactor {i} " + "x" * 5000 + "\n\n" + "body " * 500)
    scm.add(base=None, head=SHA_A, comparison=replace(big, total_commits=412, truncated=True))
    async with bot_factory(overrides=overrides(clock, scm)) as bot:
        await deploy(bot, "success")
        await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert_valid_blocks(message["blocks"])
    listed = section(message, "Commits")
    assert "412 commits" in listed and "truncated by the code host" in listed
    assert "and 402 more" in listed


async def test_without_credentials_the_commit_list_says_why(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    async with bot_factory() as bot:
        await deploy(bot, "success")
        await bot.send_outbox()
    [message] = slack.messages(CHANNEL)
    assert "no github API credentials configured" in section(message, "Commits")
    assert "/100)" in section(message, "Risk")  # scored on what is known


async def test_a_failing_compare_api_is_retried_then_reported(
    bot_factory: BotFactory, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    scm = FakeScm()
    scm.failures = [DeliveryFailed("GET compare: 502", retryable=True) for _ in range(10)]
    async with bot_factory(overrides=overrides(clock, scm)) as bot:
        await deploy(bot, "success")
        for _ in range(6):
            await bot.send_outbox()
            clock.advance(minutes=10)
        with bot.runtime.db.read() as session:
            [deployment] = session.exec(select(Deployment)).all()
            actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert len(scm.calls) == 4
    assert deployment.assessment_note == "GET compare: 502"
    assert deployment.risk is not None
    assert "deployment.assessed" in actions
    assert "commit list unavailable: GET compare: 502" in section(
        slack.messages(CHANNEL)[0], "Commits"
    )


def test_the_service_record_counts_the_last_30_days_in_this_environment(
    db: Database, example_config: Config
) -> None:
    """Recent failure rate, last deploy failed and days since production come from history."""
    now = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
    history = [  # (days ago, environment, state)
        (40, "production", "verified"),  # older than 30 days: not counted, but production
        (20, "production", "failed"),
        (10, "production", "verified"),
        (5, "production", "rolled_back"),
        (4, "staging", "failed"),  # another environment
        (3, "production", "in_progress"),  # never finished: neither deployed nor failed
        (2, "production", "verification_failed"),
    ]

    def seed(session: Session) -> tuple[Deployment, Release]:
        release = Release(service="checkout", sha=SHA_A, created_at=now)
        session.add(release)
        session.flush()
        assert release.id is not None
        for n, (days, environment, state) in enumerate(history):
            at = now - timedelta(days=days)
            session.add(
                Deployment(
                    release_id=release.id,
                    service="checkout",
                    environment=environment,
                    sha=f"{n:040x}",
                    state=state,
                    source="test",
                    created_at=at,
                    updated_at=at,
                    # As the state machine leaves them: what ran has its time of running.
                    deployed_at=None if state in ("failed", "in_progress") else at,
                )
            )
        current = Deployment(
            release_id=release.id,
            service="checkout",
            environment="production",
            sha=SHA_A,
            state="in_progress",
            source="test",
            created_at=now,
            updated_at=now,
        )
        session.add(current)
        session.flush()
        return current, release

    def inputs(session: Session) -> RiskInputs:
        current, release = seed(session)
        return assessment._inputs(
            session, config=example_config, deployment=current, release=release
        )

    found = db.write(inputs)
    assert (found.recent_deploys, found.recent_failures) == (4, 3)
    assert found.last_deploy_failed is True  # verification failed 2 days ago
    assert found.days_since_last_production_deploy == pytest.approx(10)
