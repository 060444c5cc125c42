"""What ships and how risky it is, as the release message shows it after assessment."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from sqlmodel import select

from bot.app import Overrides
from bot.domain.errors import DeliveryFailed
from bot.store.tables import AuditEvent, Deployment
from integrations.slack.fakeapi import FakeSlackWebApi
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
