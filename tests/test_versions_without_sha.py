"""A Helm chart version deployed without a commit sha, reported through the signed generic
webhook, from staging to production and back.

payments-batch reports chart versions only (`{"version": "1.4.1"}`, no `sha`): the
release is keyed by its version, so staging's and production's deployments of 1.4.1 are
one release (its gate lets approvals through, recorded as taken blind); a newer version
waiting at production's gate supersedes the older one; the risk says the commits are
unknown (no sha range: the code host is never asked); `/release rollback` restores the
previous version, the deploy webhook is told that version; and the evidence pack names it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from bot.config import Config, parse_config
from bot.store.tables import Deployment, Release
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_deployers import DeployEdge
from tests.fakes import FrozenClock
from tests.helpers import GENERIC_SECRET, encode, example_config_data, rows, signed_headers
from tests.slackflow import app_private_key, click, gated_overrides, told
from tests.test_deployers_from_clicks import (
    HOOK_SECRETS,
    deployers_env,
    deployment,
    gate_of,
    release_message,
    thread_lines,
)
from tests.test_slash_commands import Slash, shown

__all__ = ["app_private_key"]  # the fixture the bot below is built with

SERVICE = "payments-batch"


def chart_config_data() -> dict[str, Any]:
    """payments-batch: staging, then a gated production deployed through its webhook; both
    reported through POST /webhooks/generic (the YAML's data, to change further)."""
    data = example_config_data()
    payments = data["services"][SERVICE]
    payments["environments"].insert(0, {"name": "staging", "track": {"generic": True}})
    # Nobody can know who touched a release without commits: approvals go through, blind.
    payments["environments"][1]["gate"]["unknown_people"] = "allow"
    return data


def chart_config() -> Config:
    return parse_config(chart_config_data())


@pytest.fixture
def edge() -> DeployEdge:
    return DeployEdge()


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: DeployEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    overrides = replace(gated_overrides(clock, edge, config=chart_config()), environ=HOOK_SECRETS)
    async with bot_factory(env=deployers_env(app_private_key), overrides=overrides) as running:
        yield running


async def report(bot: Bot, environment: str, version: str, *, run: int = 1) -> None:
    """The chart's CI reports a deploy by its version alone, signed as documented."""
    body = encode(
        {
            "service": SERVICE,
            "environment": environment,
            "version": version,
            "status": "succeeded",
            "url": f"https://ci.example/charts/{version}/{environment}/{run}",
            "actor": "helm-ci",
        }
    )
    answer = await bot.post("/webhooks/generic", body, signed_headers(body, GENERIC_SECRET))
    assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
    await bot.send_outbox()


async def promote(bot: Bot, slack: FakeSlackWebApi, version: str) -> Deployment:
    """A release manager promotes staging's `version`; production waits at its gate."""
    staging = deployment(bot, SERVICE, "staging")
    assert (staging.version, staging.state) == (version, "succeeded")
    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    assert f"promoting {version} to production" in told(slack, "U0RM1")
    production = deployment(bot, SERVICE, "production")
    assert (production.version, production.state) == (version, "awaiting_approval")
    return production


def by_version(bot: Bot) -> dict[str, list[tuple[str, str]]]:
    """Each release's version, with its deployments' (environment, state)."""
    releases = {r.id: r for r in rows(bot, Release)}
    found: dict[str, list[tuple[str, str]]] = {}
    for d in sorted(rows(bot, Deployment), key=lambda d: d.id or 0):
        found.setdefault(str(releases[d.release_id].version), []).append((d.environment, d.state))
    return found


async def test_a_chart_version_goes_from_staging_to_production_and_back_without_a_sha(
    bot: Bot,
    slack: FakeSlackWebApi,
    slack_server: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
    edge: DeployEdge,
) -> None:
    # The chart's CI deploys 1.4.1 to staging, then to production.
    await report(bot, "staging", "1.4.1")
    await report(bot, "production", "1.4.1")
    clock.advance(hours=1)
    # One release per version: staging's and production's deployments of 1.4.1 share it.
    assert by_version(bot) == {"1.4.1": [("staging", "succeeded"), ("production", "succeeded")]}
    [release] = rows(bot, Release)
    assert (release.sha, release.version, release.commits) == ("v:1.4.1", "1.4.1", None)

    # No sha range, so the code host is never asked, and the risk says the commits are unknown.
    assert edge.github.calls("GET", "/compare/") == []
    production = deployment(bot, SERVICE, "production")
    assert production.risk is not None
    assert "named by its version only" in str(production.risk.get("unknown"))
    assert "unknown_changes" in json.dumps(production.risk["factors"])

    # 1.4.2 waits at production's gate; 1.4.3 arrives and supersedes it, by version.
    await report(bot, "staging", "1.4.2")
    waiting = await promote(bot, slack, "1.4.2")
    clock.advance(minutes=10)
    await report(bot, "staging", "1.4.3")
    await promote(bot, slack, "1.4.3")
    superseded = next(d for d in rows(bot, Deployment) if d.id == waiting.id)
    assert superseded.state == "superseded"
    assert any("superseded by 1.4.3" in line for line in thread_lines(bot, slack, superseded))
    latest = deployment(bot, SERVICE, "production")
    await click(bot, "U0RM2", "release_approve", gate_of(bot, latest.id).id or 0)
    assert gate_of(bot, latest.id).status == "approved"
    # The deploy webhook is told the version (it is the revision the pipeline knows).
    [promoted] = edge.receiver.bodies()
    assert (promoted["action"], promoted["sha"], promoted["version"]) == (
        "promote",
        "1.4.3",
        "1.4.3",
    )
    await report(bot, "production", "1.4.3")
    clock.advance(hours=1)
    assert by_version(bot)["1.4.3"] == [("staging", "succeeded"), ("production", "succeeded")]

    # /release rollback restores 1.4.1, the last good version before 1.4.3 (1.4.2 never ran).
    slash = Slash(bot, slack, slack_server[1])
    answer = shown(await slash("U0SRE1", "rollback payments-batch production -- error rate up"))
    assert "rolling production back to 1.4.1" in answer
    bad = deployment(bot, SERVICE, "production")
    assert (bad.version, bad.state, bad.rollback_to) == ("1.4.3", "rolling_back", "v:1.4.1")
    rollback = edge.receiver.bodies()[-1]
    assert (rollback["action"], rollback["sha"], rollback["version"]) == (
        "rollback",
        "1.4.1",
        "1.4.1",
    )
    # The pipeline redeploys 1.4.1 and says so: the rollback is done.
    await report(bot, "production", "1.4.1", run=2)
    rolled = next(d for d in rows(bot, Deployment) if d.id == bad.id)
    assert rolled.state == "rolled_back"
    assert any("1.4.1 is back in production" in line for line in thread_lines(bot, slack, rolled))

    # The evidence pack of 1.4.3 names the version it shipped.
    answer = await bot.http.get(f"/deployments/{bad.id}/evidence.json")
    assert answer.status_code == 200, answer.text
    pack: dict[str, Any] = answer.json()
    assert (pack["release"]["version"], pack["release"]["sha"]) == ("1.4.3", "v:1.4.3")
    assert pack["change"]["commits"] == []
    assert "1.4.3" in json.dumps(release_message(bot, slack, rolled)["blocks"])


async def test_a_sha_is_still_checked_when_present_and_one_of_sha_or_version_is_required(
    bot: Bot,
) -> None:
    for fields, error in (
        ({"version": "1.4.1", "sha": "f95f852"}, "sha must be a full commit sha"),
        ({}, "sha is required (or a version, for a deploy without a commit)"),
    ):
        body = encode({"service": SERVICE, "environment": "staging", "status": "started", **fields})
        answer = await bot.post("/webhooks/generic", body, signed_headers(body, GENERIC_SECRET))
        assert answer.status_code == 400 and error in answer.json()["error"], answer.text
    assert rows(bot, Deployment) == []
