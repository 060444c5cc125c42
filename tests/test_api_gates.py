"""The gates API end to end: a CI job asks over HTTP, a release manager decides in Slack.

payments-batch production (example config) is tracked by generic webhooks and gated by one
approval from S0RELMGRS; the gate decides only once the risk is assessed, which happens in
the outbox (no GitHub credentials: the commit list is unavailable, the risk still scored).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.config import parse_config
from bot.services import audit
from bot.store.tables import AuditEvent, Deployment, Gate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, SHA_B, example_config_data, slack_headers

TOKEN = "api-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CHANNEL = "#deploys"
ASK: dict[str, Any] = {
    "service": "payments-batch",
    "environment": "production",
    "version": "v2.3.0",
    "requested_by": "alice",
    "url": "https://ci.example/run/42",
}


def overrides(clock: FrozenClock) -> Overrides:
    return Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        environ={},
    )


@pytest.fixture
async def bot(bot_factory: BotFactory, clock: FrozenClock) -> AsyncIterator[Bot]:
    env = {"RELEASEBOT_API_TOKEN": TOKEN}
    async with bot_factory(env=env, overrides=overrides(clock)) as running:
        yield running


@pytest.fixture
async def blind_bot(bot_factory: BotFactory, clock: FrozenClock) -> AsyncIterator[Bot]:
    """The app with payments-batch production's gate set to `unknown_people: allow`: a
    release named by its version only has no commits, so nobody knows who touched it, and
    by default its gate refuses every approval (tests/test_people_unknown.py)."""
    data = example_config_data()
    data["services"]["payments-batch"]["environments"][-1]["gate"]["unknown_people"] = "allow"
    env = {"RELEASEBOT_API_TOKEN": TOKEN}
    blind = replace(overrides(clock), config=parse_config(data))
    async with bot_factory(env=env, overrides=blind) as running:
        yield running


async def ask(
    bot: Bot, body: Any = None, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await bot.http.post(
        "/api/v1/gates",
        json=ASK if body is None else body,
        headers=AUTH if headers is None else headers,
    )


async def status_of(bot: Bot, gate_id: int) -> dict[str, Any]:
    answer = await bot.http.get(f"/api/v1/gates/{gate_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def click(bot: Bot, user: str, action_id: str, value: int) -> None:
    """A button click on the release message, signed as Slack signs it."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"trigger-{user}-{time.monotonic_ns()}",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": str(value),
                "action_ts": str(time.time()),
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = await bot.post(
        "/slack/events",
        body,
        slack_headers(body, content_type="application/x-www-form-urlencoded"),
    )
    assert answer.status_code == 200, answer.text
    await bot.send_outbox()


# --- the flow --------------------------------------------------------------------------------


async def test_a_ci_job_asks_and_a_release_manager_approves(
    blind_bot: Bot, slack: FakeSlackWebApi
) -> None:
    bot = blind_bot
    created = await ask(bot)
    assert created.status_code == 201, created.text
    gate = created.json()
    assert gate["status"] == "pending"
    assert gate["final"] is False
    assert (gate["service"], gate["environment"], gate["version"]) == (
        "payments-batch",
        "production",
        "v2.3.0",
    )
    assert gate["sha"] is None  # named by its version only
    assert gate["approvals"] == []
    assert gate["expires_at"] is not None
    gate_id = gate["id"]

    again = await ask(bot)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == gate_id

    await bot.send_outbox()  # the risk assessment, then the release message
    waiting = await status_of(bot, gate_id)
    assert waiting["status"] == "pending"
    assert "0 of 1 approvals" in (waiting["progress"] or ""), waiting
    with bot.runtime.db.read() as session:
        deployment = session.exec(select(Deployment)).one()
    assert deployment.state == "awaiting_approval"
    assert deployment.risk is not None and deployment.risk.get("level")
    assert deployment.deployer == "alice"
    assert deployment.ci_url == "https://ci.example/run/42"
    assert slack.messages(CHANNEL), "the release message is posted"

    await click(bot, "U0RM1", "release_approve", gate_id)
    approved = await status_of(bot, gate_id)
    assert approved["status"] == "approved"
    assert approved["final"] is True
    assert approved["decided_by"] == "U0RM1"
    assert approved["decided_at"] is not None
    [approval] = approved["approvals"]
    assert (approval["user"], approval["decision"]) == ("U0RM1", "approve")

    # a retried CI step after the approval is told it is approved, no new gate opens
    retried = await ask(bot)
    assert retried.status_code == 200
    assert (retried.json()["id"], retried.json()["status"]) == (gate_id, "approved")

    with bot.runtime.db.read() as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
        assert audit.verify_chain(session)[1] is None
        assert len(session.exec(select(Gate)).all()) == 1
    for expected in ("gate.opened", "gate.approve_recorded", "gate.approved"):
        assert expected in actions
    with bot.runtime.db.read() as session:
        recorded = session.exec(
            select(AuditEvent).where(AuditEvent.action == "gate.approve_recorded")
        ).one()
    assert json.loads(recorded.details)["people_unknown"] is True  # approved blind


async def test_a_sha_names_the_release_and_a_newer_one_supersedes_it(bot: Bot) -> None:
    first = await ask(bot, {**ASK, "sha": SHA_A.upper()})
    assert first.status_code == 201, first.text
    assert first.json()["sha"] == SHA_A

    newer = await ask(bot, {**ASK, "version": "v2.4.0", "sha": SHA_B})
    assert newer.status_code == 201, newer.text
    assert newer.json()["id"] != first.json()["id"]

    old = await status_of(bot, first.json()["id"])
    assert old["status"] == "superseded"
    assert old["final"] is True


async def test_asking_again_after_a_rejection_opens_a_new_gate(bot: Bot) -> None:
    first = (await ask(bot)).json()
    await bot.send_outbox()
    outcome = await bot.runtime.usecases.decide_gate(
        gate_id=first["id"], user_id="U0RM2", decision="reject", reason="not this week"
    )
    assert outcome.result == "rejected"
    rejected = await status_of(bot, first["id"])
    assert (rejected["status"], rejected["reason"]) == ("rejected", "not this week")
    assert rejected["approvals"][0]["reason"] == "not this week"

    second = await ask(bot)
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first["id"]
    assert second.json()["status"] == "pending"
    with bot.runtime.db.read() as session:
        attempts = sorted(d.attempt for d in session.exec(select(Deployment)).all())
    assert attempts == [1, 2]


async def test_an_environment_without_a_gate_is_approved_at_once(bot: Bot) -> None:
    answer = await ask(bot, {**ASK, "service": "storefront"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"], body["final"]) == (None, "approved", True)
    assert "no gate configured" in body["reason"]
    with bot.runtime.db.read() as session:
        assert session.exec(select(Deployment)).all() == []
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert actions == ["gate.not_required"]


async def test_a_release_already_deploying_without_a_gate_conflicts(bot: Bot) -> None:
    from bot.domain.events import DeployEvent, DeployTarget
    from bot.services.deployments import apply_event

    event = DeployEvent(
        target=DeployTarget(provider="generic", service="payments-batch"),
        sha=SHA_A,
        status="in_progress",
        source_event="generic.deploy",
    )
    now = bot.runtime.clock.now()
    bot.runtime.db.write(
        lambda s: apply_event(
            s,
            now=now,
            service="payments-batch",
            environment="production",
            event=event,
            config=bot.runtime.config,
        )
    )
    answer = await ask(bot, {**ASK, "sha": SHA_A})
    assert answer.status_code == 409, answer.text
    assert "already in_progress" in answer.json()["error"]
    assert "ask again once it has finished" in answer.json()["error"]  # and what would pass


# --- refusals --------------------------------------------------------------------------------


async def test_get_an_unknown_gate_is_404(bot: Bot) -> None:
    answer = await bot.http.get("/api/v1/gates/7", headers=AUTH)
    assert answer.status_code == 404
    assert answer.json() == {"error": "gate 7 not found"}
    answer = await bot.http.get("/api/v1/gates/seven", headers=AUTH)
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing Authorization: Bearer <token> header"),
        ({"authorization": "Basic abc"}, "missing Authorization: Bearer <token> header"),
        ({"authorization": "Bearer wrong"}, "invalid API token"),
        ({"authorization": f"Bearer {TOKEN}x"}, "invalid API token"),
    ],
)
async def test_a_missing_or_wrong_token_is_401(
    bot: Bot, headers: dict[str, str], error: str
) -> None:
    for answer in (
        await ask(bot, headers=headers),
        await bot.http.get("/api/v1/gates/1", headers=headers),
    ):
        assert answer.status_code == 401
        assert answer.json() == {"error": error}
        assert answer.headers["www-authenticate"] == "Bearer"
    with bot.runtime.db.read() as session:
        assert session.exec(select(Deployment)).all() == []


async def test_with_no_token_configured_the_api_is_disabled(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    async with bot_factory(overrides=overrides(clock)) as running:
        for answer in (
            await ask(running),
            await ask(running, headers={"authorization": "Bearer "}),
            await running.http.get("/api/v1/gates/1", headers=AUTH),
        ):
            assert answer.status_code == 401
            assert answer.json() == {"error": "the API is disabled: set RELEASEBOT_API_TOKEN"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({k: v for k, v in ASK.items() if k != "service"}, "service is required"),
        ({**ASK, "environment": ""}, "environment is required"),
        ({**ASK, "version": None}, "version is required"),
        ({**ASK, "version": 230}, "version must be a string"),
        ({**ASK, "sha": "abc123"}, "sha must be a full commit sha (40 hex characters)"),
        ({**ASK, "url": "ftp://ci.example/run"}, "url must be an http or https URL"),
        ({**ASK, "requested_by": "x" * 201}, "requested_by must be at most 200 characters"),
        (["service"], "body must be a JSON object"),
        (
            {**ASK, "service": "nope"},
            "unknown service 'nope'; configured: checkout, ledger, payments-batch, search, "
            "storefront",
        ),
        (
            {**ASK, "environment": "staging"},
            "unknown environment 'staging' of service 'payments-batch'; configured: production",
        ),
    ],
)
async def test_a_bad_body_is_400_naming_the_field(bot: Bot, body: Any, error: str) -> None:
    answer = await ask(bot, body)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": error}
    with bot.runtime.db.read() as session:
        assert session.exec(select(Deployment)).all() == []


async def test_malformed_json_wrong_type_and_oversized_bodies(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    env = {"RELEASEBOT_API_TOKEN": TOKEN, "RELEASEBOT_MAX_BODY_BYTES": "512"}
    async with bot_factory(env=env, overrides=overrides(clock)) as running:
        json_headers = {**AUTH, "content-type": "application/json"}
        answer = await running.http.post("/api/v1/gates", content=b"{nope", headers=json_headers)
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("malformed JSON")

        form = {**AUTH, "content-type": "application/x-www-form-urlencoded"}
        answer = await running.http.post("/api/v1/gates", content=b"service=x", headers=form)
        assert answer.status_code == 415

        big = json.dumps({**ASK, "padding": "x" * 1000}).encode()
        answer = await running.http.post("/api/v1/gates", content=big, headers=json_headers)
        assert answer.status_code == 413
