"""A release whose changes could not be read is never approved by itself, and passing it
blind says so.

When GitHub cannot list the commits (503), the risk cannot be scored on what ships: it is not
low, and even a gate whose `by_risk` approves low risk automatically waits for people. With
`unknown_people: refuse` (the default) only break-glass passes, and its confirmation is
recorded as taken blind.

Through the real app: GitHub's protection-rule deliveries signed as GitHub signs them, signed
Slack clicks, and a fake GitHub at the edge answering 503 as GitHub does. The compare client
retries a 5xx without waiting (an injected sleep), so nothing here sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlmodel import select

from bot.config import Config, parse_config
from bot.store.tables import AuditEvent, Deployment
from integrations.github.client import GitHubClient
from integrations.http import RetryPolicy, make_client
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import example_config_data
from tests.slackflow import (
    CHANNEL,
    click,
    gated_env,
    gated_overrides,
    request_gate,
    submit_reason,
    the_gate,
    told,
)

NOT_AUTOMATIC = "not approved automatically: the changes could not be read"
UNKNOWN = "the people behind this change are unknown"


async def _no_sleep(seconds: float) -> None:
    return None


def example(**gate: Any) -> Config:
    """The example config (checkout production: low risk approved automatically), with
    `risk.weights` zeroing the unknown-changes factor when asked and the gate's keys set."""
    data = example_config_data()
    weights = gate.pop("weights", None)
    if weights is not None:
        data["risk"]["weights"] = weights
    data["services"]["checkout"]["environments"][1]["gate"].update(gate)
    return parse_config(data)


Start = Callable[..., Any]


@pytest.fixture
def start(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> Start:
    def run(config: Config) -> Any:
        scm = GitHubClient(
            make_client("https://api.github.com", transport=edge.transport),
            token="ghp_compare",
            retry=RetryPolicy(sleep=_no_sleep),
        )
        overrides = gated_overrides(clock, edge, config=config, scm_clients={"github": scm})
        return bot_factory(env=gated_env(app_private_key), overrides=overrides)

    return run


@pytest.fixture
async def bot(start: Start) -> AsyncIterator[Bot]:
    async with start(example()) as running:
        yield running


async def gate_unread(bot: Bot, github: FakeGitHub, clock: FrozenClock) -> int:
    """GitHub asks for checkout production's gate while its compare API answers 503: the
    assessment tries again later, then records the commit list as unavailable."""
    github.compare_status = 503
    github.commit_author = "dana-dev"  # nobody in Slack
    await request_gate(bot)
    for _ in range(4):
        clock.advance(minutes=10)
        await bot.send_outbox()
    with bot.runtime.db.read() as session:
        [deployment] = session.exec(select(Deployment)).all()
    assert deployment.risk is not None, "the assessment gave up and scored what it knows"
    assert "503" in (deployment.assessment_note or "")
    return the_gate(bot).id or 0


def audited(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    return [json.loads(e.details) for e in events]


def section(slack: FakeSlackWebApi, title: str) -> str:
    message = slack.messages(CHANNEL)[-1]
    for block in message["blocks"]:
        text = str(block.get("text", {}).get("text", ""))
        if text.startswith(f"*{title}*"):
            return text
    raise AssertionError(f"no {title} section in {json.dumps(message['blocks'])}")


# --- a release nobody could read does not approve itself --------------------------------------


async def test_an_unread_release_is_not_low_risk_and_waits_for_people(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    gate_id = await gate_unread(bot, github, clock)

    gate = the_gate(bot)
    assert gate.status == "pending"
    assert github.decisions() == []  # nothing told GitHub to go ahead
    assert (gate.progress or "").startswith(f"{NOT_AUTOMATIC}: its commits could not be listed")
    assert "503" in (gate.progress or "")
    with bot.runtime.db.read() as session:
        [deployment] = session.exec(select(Deployment)).all()
    assert deployment.risk is not None and deployment.risk["level"] == "medium"
    assert "unknown_changes" in [f["name"] for f in deployment.risk["factors"]]
    assert "The changes could not be read in full" in section(slack, "Risk")
    assert NOT_AUTOMATIC in section(slack, "Approval")
    [assessed] = audited(bot, "deployment.assessed")
    assert "its commits could not be listed" in assessed["unknown"]

    # unknown_people: refuse (the default): approvals are refused, break-glass remains
    await click(bot, "U0RM1", "release_approve", gate_id)
    assert f"{UNKNOWN}: its commits could not be listed" in told(slack, "U0RM1")
    assert the_gate(bot).status == "pending"


async def test_even_weighted_down_to_low_risk_it_is_not_approved_automatically(
    start: Start, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    async with start(example(weights={"unknown_changes": 0})) as bot:
        await gate_unread(bot, github, clock)
        with bot.runtime.db.read() as session:
            [deployment] = session.exec(select(Deployment)).all()
        assert deployment.risk is not None and deployment.risk["level"] == "low"

        gate = the_gate(bot)
        assert gate.status == "pending"
        assert github.decisions() == []
        assert (gate.progress or "").startswith(NOT_AUTOMATIC)
        assert "1 from S0RELMGRS" in (gate.progress or "")  # the gate's own rule


async def test_with_unknown_people_allowed_a_person_approves_it_blind(
    start: Start, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    config = example(weights={"unknown_changes": 0}, unknown_people="allow")
    async with start(config) as bot:
        gate_id = await gate_unread(bot, github, clock)
        assert the_gate(bot).status == "pending"

        await click(bot, "U0RM1", "release_approve", gate_id)
        answer = told(slack, "U0RM1")
        assert "approved: the release goes ahead" in answer
        assert f"taken blind, as {UNKNOWN}: its commits could not be listed" in answer
        assert the_gate(bot).status == "approved"
        assert the_gate(bot).decided_by == "U0RM1"
        assert [d["state"] for d in github.decisions()] == ["approved"]


async def test_a_release_read_in_full_still_approves_itself_at_low_risk(
    bot: Bot, github: FakeGitHub
) -> None:
    github.commit_author = "dana-dev"
    github.compare_files = [
        {"filename": "README.md", "status": "modified", "additions": 2, "deletions": 1}
    ]
    await request_gate(bot)

    gate = the_gate(bot)
    assert gate.status == "approved"
    assert "low risk: approved automatically" in (gate.reason or "")


# --- break-glass through an unread release is recorded as blind -------------------------------


async def test_break_glass_confirmed_while_the_people_are_unknown_is_recorded_as_blind(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    gate_id = await gate_unread(bot, github, clock)
    await click(bot, "U0RM1", "release_break_glass", gate_id)
    await submit_reason(bot, slack, "U0RM1", "payments are down for every customer")

    await click(bot, "U0BOTH", "release_break_glass_confirm", gate_id)
    assert the_gate(bot).status == "approved"
    answer = told(slack, "U0BOTH")
    assert "break-glass confirmed: the release goes ahead" in answer
    assert f"; taken blind, as {UNKNOWN}: its commits could not be listed" in answer
    [confirmed] = audited(bot, "gate.break_glass_confirmed")
    assert confirmed["people_unknown"] is True
    assert f"{UNKNOWN}: its commits could not be listed" in confirmed["blind"]
    assert confirmed["confirmed_by"] == "U0BOTH"


async def test_break_glass_on_a_release_read_in_full_is_not_blind(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "dana-dev"
    github.compare_files = [
        {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
    ]
    await request_gate(bot)
    gate_id = the_gate(bot).id or 0
    await click(bot, "U0RM1", "release_break_glass", gate_id)
    await submit_reason(bot, slack, "U0RM1", "payments are down for every customer")

    await click(bot, "U0BOTH", "release_break_glass_confirm", gate_id)
    assert the_gate(bot).status == "approved"
    assert "blind" not in told(slack, "U0BOTH")
    [confirmed] = audited(bot, "gate.break_glass_confirmed")
    assert "people_unknown" not in confirmed and "blind" not in confirmed
