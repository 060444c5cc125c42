"""When nobody can tell who touched a release, its gate refuses approvals (fails closed) and
says why; `gate.unknown_people: allow` lets them through, recorded as taken blind.

Through the real app: GitHub's protection-rule deliveries and the gates API in, signed Slack
clicks, a fake GitHub at the edge that fails the way the real one does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import select

from bot.config import parse_config
from bot.store.tables import AuditEvent
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import SHA_A, encode, example_config_data, github_headers
from tests.slackflow import (
    click,
    gated_env,
    gated_overrides,
    protection_rule,
    request_gate,
    submit_reason,
    the_gate,
    told,
)

DOCKERFILE = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]
UNKNOWN = "the people behind this change are unknown"
API_TOKEN = "api-token-for-tests"
AUTH = {"authorization": f"Bearer {API_TOKEN}"}


def details(bot: Bot, action: str) -> list[dict[str, Any]]:
    """The details of every audit record of this action, oldest first."""
    with bot.runtime.db.read() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    return [json.loads(e.details) for e in events]


def allowing(service: str, environment: int) -> Any:
    """The example config with this environment's gate set to `unknown_people: allow`."""
    data = example_config_data()
    data["services"][service]["environments"][environment]["gate"]["unknown_people"] = "allow"
    return parse_config(data)


@pytest.fixture
async def blind_bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    """The gate tests' app, with checkout production's gate approving blind."""
    overrides = gated_overrides(clock, edge, config=allowing("checkout", 1))
    async with bot_factory(env=gated_env(app_private_key), overrides=overrides) as running:
        yield running


@pytest.fixture
async def api_bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge
) -> AsyncIterator[Bot]:
    """The app with the gates API and a GitHub token; payments-batch production is gated
    by one approval from S0RELMGRS, whatever the risk."""
    overrides = gated_overrides(clock, edge)
    env = {"RELEASEBOT_API_TOKEN": API_TOKEN, "GITHUB_TOKEN": "ghp_test"}
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


async def ask_gate(bot: Bot, **fields: str) -> int:
    body = {"service": "payments-batch", "environment": "production", "version": "v2.3.0"}
    answer = await bot.http.post("/api/v1/gates", json={**body, **fields}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    await bot.send_outbox()
    gate_id: int = answer.json()["id"]
    return gate_id


# --- fails closed ----------------------------------------------------------------------------


async def test_when_github_cannot_list_the_commits_nobody_may_approve(
    api_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_status = 404
    gate_id = await ask_gate(api_bot, sha=SHA_A)

    await click(api_bot, "U0RM1", "release_approve", gate_id)
    refusal = told(slack, "U0RM1")
    assert f"{UNKNOWN}: its commits could not be listed" in refusal
    assert "404" in refusal
    assert "approvals are refused; use break-glass" in refusal
    assert the_gate(api_bot).status == "pending"
    [refused] = details(api_bot, "gate.decision_refused")
    assert UNKNOWN in refused["reason"]

    # rejecting stays possible: stopping a release is always safe
    await click(api_bot, "U0RM2", "release_reject", gate_id)
    await submit_reason(api_bot, slack, "U0RM2", "nobody can say who wrote this")
    assert the_gate(api_bot).status == "rejected"


async def test_when_the_app_may_not_read_pull_requests_nobody_may_approve(
    gated_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = "dana-dev"
    github.pulls_status = 403  # the App was installed before it asked for pull_requests: read
    await request_gate(gated_bot)
    gate = the_gate(gated_bot)

    await click(gated_bot, "U0RM1", "release_approve", gate.id or 0)
    refusal = told(slack, "U0RM1")
    assert f"{UNKNOWN}: GitHub did not list the pull requests of the commits" in refusal
    assert "the GitHub App needs the pull_requests: read permission" in refusal
    assert the_gate(gated_bot).status == "pending"


async def test_a_release_named_by_its_version_only_has_unknown_people(
    api_bot: Bot, slack: FakeSlackWebApi
) -> None:
    gate_id = await ask_gate(api_bot)  # no sha: there are no commits to look up

    await click(api_bot, "U0RM1", "release_approve", gate_id)
    refusal = told(slack, "U0RM1")
    assert f"{UNKNOWN}: it is named by its version only, so there are no commits" in refusal
    assert the_gate(api_bot).status == "pending"


async def test_a_click_before_the_commits_are_fetched_is_refused_until_they_are(
    gated_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = "dana-dev"
    body = encode(protection_rule())
    answer = await gated_bot.post(
        "/webhooks/github", body, github_headers("deployment_protection_rule", body)
    )
    assert answer.status_code == 202, answer.text  # the outbox has not assessed it yet
    gate = the_gate(gated_bot)

    await click(gated_bot, "U0RM1", "release_approve", gate.id or 0)  # then the outbox runs
    assert f"{UNKNOWN}: its commits are still being fetched" in told(slack, "U0RM1")
    assert the_gate(gated_bot).status == "pending"

    await click(gated_bot, "U0RM1", "release_approve", gate.id or 0)
    assert the_gate(gated_bot).status == "approved"


async def test_break_glass_stays_open_when_the_people_are_unknown(
    api_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_status = 404
    gate_id = await ask_gate(api_bot, sha=SHA_A)
    await click(api_bot, "U0RM1", "release_break_glass", gate_id)
    await submit_reason(api_bot, slack, "U0RM1", "payouts are stuck for every customer")

    await click(api_bot, "U0BOTH", "release_break_glass_confirm", gate_id)
    assert the_gate(api_bot).status == "approved"


# --- unknown_people: allow -------------------------------------------------------------------


async def test_allow_lets_an_approval_through_recorded_as_blind(
    blind_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    # a small change: not low risk all the same, as it could not be read in full (medium:
    # one approval from S0RELMGRS)
    github.commit_author = "dana-dev"
    github.pulls_status = 403
    await request_gate(blind_bot)
    gate = the_gate(blind_bot)

    await click(blind_bot, "U0RM1", "release_approve", gate.id or 0)
    answer = told(slack, "U0RM1")
    assert "approved: the release goes ahead" in answer
    assert f"; taken blind, as {UNKNOWN}: GitHub did not list the pull requests" in answer
    assert the_gate(blind_bot).status == "approved"
    [recorded] = details(blind_bot, "gate.approve_recorded")
    assert recorded["people_unknown"] is True
    assert UNKNOWN in recorded["blind"]


async def test_allow_still_refuses_the_people_who_are_known(
    blind_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE  # octo-owner (U0OWNER01) wrote the one commit listed
    github.pulls_status = 403
    await request_gate(blind_bot)
    gate = the_gate(blind_bot)

    await click(blind_bot, "U0OWNER01", "release_approve", gate.id or 0)
    assert "you authored 1 of the commits" in told(slack, "U0OWNER01")
    assert the_gate(blind_bot).status == "pending"


async def test_a_known_release_is_not_recorded_as_blind(
    blind_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = "dana-dev"
    await request_gate(blind_bot)
    gate = the_gate(blind_bot)

    await click(blind_bot, "U0RM1", "release_approve", gate.id or 0)
    assert the_gate(blind_bot).status == "approved"
    assert "blind" not in told(slack, "U0RM1")
    [recorded] = details(blind_bot, "gate.approve_recorded")
    assert "people_unknown" not in recorded
