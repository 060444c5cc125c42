"""Freezes that hold: every forward change into a frozen environment is held or refused,
whether or not the environment has a gate; rollbacks unless the freeze blocks them; and a
break-glass window that closes.

The example config freezes production from 2026-12-23 00:00 to 2027-01-04 00:00 (+01:00),
that is until 2027-01-03 23:00 UTC, and `break_glass.valid_for` is 2h.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.config import parse_config
from bot.scheduling import checks_tick, gate_sweep
from bot.store.tables import AuditEvent, Deployment, Gate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FakeGitHub, FrozenClock
from tests.helpers import (
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    example_config_data,
    fixture,
    github_headers,
)
from tests.slackflow import (
    CHANNEL,
    buttons,
    click,
    gated_env,
    gated_overrides,
    request_gate,
    submit_reason,
    told,
)

SHA_C = "1234567890abcdef1234567890abcdef12345678"
TOKEN = "api-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
IN_FREEZE = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
FREEZE_ENDS = datetime(2027, 1, 3, 23, 0, tzinfo=UTC)
MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]
STOREFRONT = {"service": "storefront", "environment": "production", "version": "v9.1.0"}


def _config(*, gated_production: bool = True, rollbacks: str | None = None) -> Any:
    data = example_config_data()
    checkout = data["services"]["checkout"]["environments"]
    if not gated_production:
        checkout[1].pop("gate")
    if rollbacks is not None:
        data["freezes"][0]["rollbacks"] = rollbacks
    return parse_config(data)


@pytest.fixture
def make_bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> Any:
    def make(**config: Any) -> Any:
        overrides = gated_overrides(clock, edge, config=_config(**config))
        env = gated_env(app_private_key, RELEASEBOT_API_TOKEN=TOKEN)
        return bot_factory(env=env, overrides=overrides)

    return make


@pytest.fixture
async def bot(make_bot: Any) -> AsyncIterator[Bot]:
    async with make_bot() as running:
        yield running


@pytest.fixture
async def ungated_bot(make_bot: Any) -> AsyncIterator[Bot]:
    """checkout's production has no gate: outside a freeze its pipeline is never held."""
    async with make_bot(gated_production=False) as running:
        yield running


def gates(bot: Bot) -> list[Gate]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Gate).order_by(Gate.id)).all())  # type: ignore[arg-type]


def deployments(bot: Bot) -> list[Deployment]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Deployment).order_by(Deployment.id)).all())  # type: ignore[arg-type]


def audit_of(bot: Bot, action: str) -> list[AuditEvent]:
    with bot.runtime.db.read() as session:
        return list(
            session.exec(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
            ).all()
        )


def callbacks(github: FakeGitHub) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in github.calls("POST", "deployment_protection_rule")]


def dispatches(github: FakeGitHub) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in github.calls("POST", "/dispatches")]


async def ask(bot: Bot, **fields: Any) -> httpx.Response:
    return await bot.http.post("/api/v1/gates", json={**STOREFRONT, **fields}, headers=AUTH)


async def break_glass(bot: Bot, slack: FakeSlackWebApi, gate_id: int) -> None:
    await click(bot, "U0RM1", "release_break_glass", gate_id)
    await submit_reason(bot, slack, "U0RM1", "checkout is down for every customer")
    await click(bot, "U0SRE1", "release_break_glass_confirm", gate_id)


# --- gate requests from CI -----------------------------------------------------------------


async def test_a_gate_request_for_an_environment_without_a_gate_is_held_by_a_freeze(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    clock.set(IN_FREEZE)
    answer = await ask(bot)
    assert answer.status_code == 201, answer.text
    held = answer.json()
    assert (held["status"], held["final"]) == ("pending", False)
    assert (
        "production is frozen until 2027-01-03 23:00 UTC: Year-end change freeze"
        in (held["progress"])
    )
    assert "goes ahead when the freeze ends, or now through break-glass" in held["progress"]
    assert held["expires_at"] is None  # held for as long as the freeze lasts

    await bot.send_outbox()
    message = slack.messages("#storefront-deploys")[-1]
    assert "frozen until" in json.dumps(message["blocks"])
    assert "release_break_glass" in buttons(message)
    await click(bot, "U0RM1", "release_approve", held["id"])
    assert "no gate is configured for production" in told(slack, "U0RM1")
    assert gates(bot)[0].status == "pending"

    again = await ask(bot)  # a retried CI step: the same held gate
    assert (again.status_code, again.json()["id"]) == (200, held["id"])

    clock.set(FREEZE_ENDS - timedelta(seconds=1))
    await gate_sweep(bot.runtime)
    assert gates(bot)[0].status == "pending"
    clock.set(FREEZE_ENDS)
    await gate_sweep(bot.runtime)
    status = (await bot.http.get(f"/api/v1/gates/{held['id']}", headers=AUTH)).json()
    assert (status["status"], status["decided_by"]) == ("approved", "releasebot")
    assert "the freeze on production is over" in status["reason"]
    [approved] = audit_of(bot, "gate.approved")
    assert approved.actor == "releasebot"


async def test_asking_again_after_approval_is_refused_once_the_break_glass_window_closes(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    clock.set(IN_FREEZE)
    held = (await ask(bot)).json()
    await bot.send_outbox()
    await break_glass(bot, slack, held["id"])
    assert gates(bot)[0].status == "approved"
    assert "until 2026-12-24 12:00 UTC" in told(slack, "U0SRE1")

    clock.advance(hours=1)  # inside the window: the approved gate answers
    inside = await ask(bot)
    assert (inside.status_code, inside.json()["status"]) == (200, "approved")

    clock.advance(hours=1)  # the window closed at 12:00
    after = await ask(bot)
    assert after.status_code == 409, after.text
    error = after.json()["error"]
    assert "production is frozen until 2027-01-03 23:00 UTC: Year-end change freeze" in error
    assert "the break-glass window closed at 2026-12-24 12:00 UTC" in error
    assert "ask again after the freeze ends, or break glass" in error


# --- protection rules ----------------------------------------------------------------------


async def test_a_protection_rule_for_an_environment_without_a_gate_waits_for_the_freeze(
    ungated_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    bot = ungated_bot
    clock.set(IN_FREEZE - timedelta(days=2))  # before the freeze: approved at once
    await request_gate(bot, sha=SHA_A, run=1)
    assert [c["state"] for c in callbacks(github)] == ["approved"]
    assert gates(bot) == []

    clock.set(IN_FREEZE)
    await request_gate(bot, sha=SHA_B, run=2)
    assert [c["state"] for c in callbacks(github)] == ["approved"]  # nothing more
    [gate] = gates(bot)
    assert gate.status == "pending" and gate.decide_via == "github_protection_rule"
    message = next(m for m in slack.messages(CHANNEL) if SHA_B[:7] in m["text"])
    assert "Year-end change freeze" in json.dumps(message["blocks"])
    assert "release_break_glass" in buttons(message)

    clock.set(FREEZE_ENDS)
    await gate_sweep(bot.runtime)
    await bot.send_outbox()
    assert gates(bot)[0].status == "approved"
    assert [c["state"] for c in callbacks(github)] == ["approved", "approved"]


async def test_break_glass_lets_a_held_protection_rule_through(
    ungated_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    clock.set(IN_FREEZE)
    await request_gate(ungated_bot)
    [gate] = gates(ungated_bot)
    await break_glass(ungated_bot, slack, gate.id or 0)
    await ungated_bot.send_outbox()
    assert gates(ungated_bot)[0].status == "approved"
    assert [c["state"] for c in callbacks(github)] == ["approved"]


# --- promotion -----------------------------------------------------------------------------


async def deploy_staging(bot: Bot, clock: FrozenClock, sha: str) -> Deployment:
    run = fixture("github", "workflow_run__completed-success.json")
    run["repository"]["full_name"] = "acme/checkout"
    run["workflow_run"].update(path=".github/workflows/deploy-staging.yml", head_sha=sha)
    body = encode(run)
    answer = await bot.post("/webhooks/github", body, github_headers("workflow_run", body))
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()
    await checks_tick(bot.runtime)
    clock.advance(seconds=30)
    await checks_tick(bot.runtime)
    await bot.send_outbox()
    [staging] = deployments(bot)
    assert staging.state == "verified"
    return staging


async def test_promotion_into_a_frozen_environment_without_a_gate_is_held(
    ungated_bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    bot = ungated_bot
    clock.set(IN_FREEZE)
    staging = await deploy_staging(bot, clock, SHA_A)
    assert len(deployments(bot)) == 1  # automatic promotion is refused by the freeze
    note = slack.thread(CHANNEL, slack.messages(CHANNEL)[0]["ts"])[-1]["text"]
    assert "Not promoted to production automatically" in note
    assert "Year-end change freeze" in note

    await click(bot, "U0RM1", "release_promote", staging.id or 0)
    answer = told(slack, "U0RM1")
    assert f"promoting {SHA_A[:7]} to production, held" in answer
    assert "frozen until 2027-01-03 23:00 UTC: Year-end change freeze" in answer
    assert dispatches(github) == []  # nothing starts during the freeze
    _, production = deployments(bot)
    assert production.state == "awaiting_approval"

    clock.set(FREEZE_ENDS)
    await gate_sweep(bot.runtime)
    await bot.send_outbox()
    [dispatch] = dispatches(github)
    assert dispatch["inputs"]["action"] == "promote"


# --- rollbacks -----------------------------------------------------------------------------


async def deploy(bot: Bot, **kw: Any) -> None:
    body = encode(deployment_status("success", **kw))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()


@pytest.mark.parametrize("rule", [None, "blocked"])
async def test_a_rollback_in_a_freeze_is_allowed_unless_the_freeze_blocks_rollbacks(
    make_bot: Any,
    slack: FakeSlackWebApi,
    github: FakeGitHub,
    clock: FrozenClock,
    rule: str | None,
) -> None:
    async with make_bot(rollbacks=rule) as bot:
        clock.set(IN_FREEZE - timedelta(days=3))
        await deploy(bot, sha=SHA_A, deployment_id=1)
        clock.advance(hours=1)
        await deploy(bot, sha=SHA_B, deployment_id=2)
        bad = deployments(bot)[-1]
        clock.set(IN_FREEZE)
        await click(bot, "U0RM1", "release_rollback", bad.id or 0)
        await submit_reason(bot, slack, "U0RM1", "error rate doubled after the deploy")
        bad = deployments(bot)[-1]
        if rule is None:
            assert bad.state == "rolling_back"
            [dispatch] = dispatches(github)
            assert dispatch["inputs"]["action"] == "rollback"
            return
        assert bad.state != "rolling_back" and dispatches(github) == []
        refusal = told(slack, "U0RM1")
        assert "production is frozen until 2027-01-03 23:00 UTC: Year-end change freeze" in (
            refusal
        )
        assert "roll back after the freeze ends, or break glass" in refusal


# --- the break-glass window ----------------------------------------------------------------


async def test_approvals_pass_the_freeze_only_while_the_break_glass_window_is_open(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    clock.set(IN_FREEZE)
    await request_gate(bot, sha=SHA_A, run=1)
    [first] = gates(bot)
    await break_glass(bot, slack, first.id or 0)
    message = next(m for m in slack.messages(CHANNEL) if SHA_A[:7] in m["text"])
    assert "break-glass window" in json.dumps(message["blocks"])
    assert "until 2026-12-24 12:00 UTC" in json.dumps(message["blocks"])

    clock.advance(minutes=30)  # inside the window: a person's approval passes the freeze
    await request_gate(bot, sha=SHA_B, run=2)
    second = gates(bot)[-1]
    await click(bot, "U0RM2", "release_approve", second.id or 0)
    assert gates(bot)[-1].status == "approved"

    clock.set(IN_FREEZE + timedelta(hours=2))  # the window closed at 12:00
    await request_gate(bot, sha=SHA_C, run=3)
    third = gates(bot)[-1]
    await click(bot, "U0RM2", "release_approve", third.id or 0)
    refusal = told(slack, "U0RM2")
    assert "production is frozen: Year-end change freeze; use break-glass" in refusal
    assert "the break-glass window closed at 2026-12-24 12:00 UTC" in refusal
    assert gates(bot)[-1].status == "pending"


# --- the rule ------------------------------------------------------------------------------


def test_the_freeze_rule_names_the_freeze_its_end_and_what_lets_a_change_through() -> None:
    from bot.config import ScheduledFreeze
    from bot.domain.gates import freeze_hold

    year_end = ScheduledFreeze(
        environments=["production"],
        start=datetime(2026, 12, 23, tzinfo=UTC),
        end=FREEZE_ENDS,
        reason="Year-end change freeze",
    )
    blocking = year_end.model_copy(update={"rollbacks": "blocked", "reason": "audit"})
    assert year_end.rollbacks == "allowed"
    assert freeze_hold([year_end], "staging", IN_FREEZE) is None
    assert freeze_hold([year_end], "production", FREEZE_ENDS) is None
    hold = freeze_hold([year_end], "production", IN_FREEZE)
    assert hold is not None and hold.refusal() == (
        "production is frozen until 2027-01-03 23:00 UTC: Year-end change freeze; ask again "
        "after the freeze ends, or break glass on the release message to pass it now"
    )
    assert freeze_hold([year_end], "production", IN_FREEZE, change="rollback") is None
    rollback = freeze_hold([year_end, blocking], "production", IN_FREEZE, change="rollback")
    assert rollback is not None and rollback.reason == "audit"
    window = IN_FREEZE + timedelta(hours=2)
    assert freeze_hold([year_end], "production", IN_FREEZE, window_until=window) is None
    closed = freeze_hold([year_end], "production", window, window_until=window)
    assert closed is not None and "break-glass window closed at 2026-12-24 12:00 UTC" in (
        closed.describe()
    )


def test_rollbacks_blocked_is_the_one_other_value_the_config_accepts() -> None:
    data = example_config_data()
    data["freezes"][0]["rollbacks"] = "sometimes"
    with pytest.raises(Exception, match="rollbacks"):
        parse_config(data)
    assert _config(rollbacks="blocked").freezes[0].rollbacks == "blocked"
    assert _config().freezes[0].rollbacks == "allowed"


# --- production_only: production as each service says, whatever the name ---------------------


def _prod_eu_config(*, gated: bool = True) -> Any:
    """checkout's last environment is `prod-eu` (`production: true`); storefront's only
    environment is named `production` but says `production: false`; the year-end freeze
    covers production environments only."""
    data = example_config_data()
    staging, prod = data["services"]["checkout"]["environments"]
    staging["auto_promote_to"] = "prod-eu"
    prod.update(name="prod-eu", production=True)
    if not gated:
        prod.pop("gate")
    data["services"]["storefront"]["environments"][0]["production"] = False
    year_end = data["freezes"][0]  # the example's second freeze is a later one
    year_end.pop("environments")
    year_end["production_only"] = True
    return parse_config(data)


@pytest.fixture
def make_prod_eu_bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> Any:
    def make(**config: Any) -> Any:
        overrides = gated_overrides(clock, edge, config=_prod_eu_config(**config))
        env = gated_env(app_private_key, RELEASEBOT_API_TOKEN=TOKEN)
        return bot_factory(env=env, overrides=overrides)

    return make


async def test_a_production_only_freeze_holds_a_production_environment_of_any_name(
    make_prod_eu_bot: Any, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    async with make_prod_eu_bot() as bot:
        clock.set(IN_FREEZE)
        await request_gate(bot)  # GitHub's `production` environment is checkout's prod-eu
        [gate] = gates(bot)
        assert deployments(bot)[0].environment == "prod-eu"
        await click(bot, "U0RM1", "release_approve", gate.id or 0)
        refusal = told(slack, "U0RM1")
        assert "prod-eu is frozen: Year-end change freeze" in refusal
        assert "wait until the freeze ends at 2027-01-03 23:00 UTC" in refusal
        assert gates(bot)[0].status == "pending"
        message = next(m for m in slack.messages(CHANNEL) if SHA_A[:7] in m["text"])
        assert "Year-end change freeze" in json.dumps(message["blocks"])

        # storefront's environment named production is not production: not frozen
        answer = await ask(bot)
        assert answer.status_code in (200, 201), answer.text
        assert answer.json()["status"] != "pending"


async def test_a_production_only_freeze_stops_promotion_into_prod_eu(
    make_prod_eu_bot: Any, slack: FakeSlackWebApi, github: FakeGitHub, clock: FrozenClock
) -> None:
    async with make_prod_eu_bot(gated=False) as bot:
        clock.set(IN_FREEZE)
        staging = await deploy_staging(bot, clock, SHA_A)  # staging is not frozen
        assert len(deployments(bot)) == 1  # automatic promotion into prod-eu is refused
        note = slack.thread(CHANNEL, slack.messages(CHANNEL)[0]["ts"])[-1]["text"]
        assert "Year-end change freeze" in note

        await click(bot, "U0RM1", "release_promote", staging.id or 0)
        answer = told(slack, "U0RM1")
        assert f"promoting {SHA_A[:7]} to prod-eu, held" in answer
        assert "prod-eu is frozen until 2027-01-03 23:00 UTC: Year-end change freeze" in answer
        assert dispatches(github) == []
        _, production = deployments(bot)
        assert (production.environment, production.state) == ("prod-eu", "awaiting_approval")


def test_a_freeze_names_its_environments_or_says_production_only() -> None:
    data = example_config_data()
    data["freezes"][0].pop("environments")
    with pytest.raises(Exception, match="production_only"):
        parse_config(data)
    frozen = _prod_eu_config().freezes[0]
    assert frozen.production_only and frozen.environments == []
    assert frozen.covers("prod-eu", production=True)
    assert not frozen.covers("production", production=False)
    assert frozen.covers("production")  # asked without a service: by the name
    assert not frozen.covers("staging")
