"""Store, answer, then apply: a webhook is answered once its delivery is stored, and the
applier applies stored deliveries in arrival order per service and environment.

The app runs with `apply_before_response=False`, as `releasebot serve` does, and no
background loop: each test runs the applier itself (`runtime.applier.drain()`) and asserts
on what it applied, never on time passing. A delivery whose application fails (here: one
stored by a newer release, whose event this one cannot read) keeps its error, is retried
with backoff, holds back the deliveries of its service and environment, shows in /readyz,
/metrics, the dashboard and `releasebot webhooks list --failed`, and is applied once
replayed. Replaying an applied delivery changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.outside import Overrides
from bot.services import audit
from bot.store.tables import AuditEvent, Deployment, WebhookDelivery
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import (
    GENERIC_SECRET,
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    generic_body,
    github_headers,
    rows,
    signed_headers,
)

TABLE = WebhookDelivery.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def bot(bot_factory: BotFactory, clock: FrozenClock) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        apply_before_response=False,
    )
    env = {"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


async def deliver(bot: Bot, state: str, delivery: str, **kw: Any) -> dict[str, Any]:
    body = encode(deployment_status(state, **kw))
    answer = await bot.post(
        "/webhooks/github", body, github_headers("deployment_status", body, delivery=delivery)
    )
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def generic(bot: Bot, status: str, delivery: str) -> dict[str, Any]:
    body = encode(generic_body(status))
    answer = await bot.post(
        "/webhooks/generic", body, signed_headers(body, GENERIC_SECRET, delivery=delivery)
    )
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json()
    return result


def delivery(bot: Bot, delivery_id: str) -> WebhookDelivery:
    [row] = [d for d in rows(bot, WebhookDelivery) if d.delivery_id == delivery_id]
    return row


def from_a_newer_release(bot: Bot, delivery_id: str) -> None:
    """Its stored event carries a field this release does not know: applying it fails."""
    row = delivery(bot, delivery_id)
    assert row.work is not None
    work = {**row.work, "event": {**row.work["event"], "rollout_wave": 3}}
    with bot.runtime.db.engine.begin() as conn:
        conn.execute(sa.update(TABLE).where(TABLE.c.id == row.id).values(work=work))


def as_this_release_stores_it(bot: Bot, delivery_id: str) -> None:
    row = delivery(bot, delivery_id)
    assert row.work is not None
    event = {k: v for k, v in row.work["event"].items() if k != "rollout_wave"}
    with bot.runtime.db.engine.begin() as conn:
        conn.execute(
            sa.update(TABLE).where(TABLE.c.id == row.id).values(work={**row.work, "event": event})
        )


async def test_a_delivery_is_answered_once_stored_and_applied_by_the_applier(
    bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock
) -> None:
    answer = await deliver(bot, "in_progress", "d-1")

    assert answer == {"status": "accepted", "delivery": "d-1"}
    assert rows(bot, Deployment) == []
    stored = delivery(bot, "d-1")
    assert (stored.outcome, stored.applied_at, stored.attempts) == ("pending", None, 0)
    assert stored.apply_key == "checkout/production"

    assert await bot.runtime.applier.drain() == 1
    [deployment] = rows(bot, Deployment)
    assert deployment.state == "in_progress"
    applied = delivery(bot, "d-1")
    assert (applied.outcome, applied.attempts, applied.error) == ("accepted", 1, None)
    assert applied.applied_at == clock.now() and applied.deployment_id == deployment.id
    await bot.send_outbox()
    [message] = slack.messages("#checkout-deploys")
    assert "Deploying" in message["text"]


async def test_what_is_decided_before_applying_is_answered_and_the_rest_is_recorded_on_apply(
    bot: Bot,
) -> None:
    untracked = await deliver(bot, "success", "d-else", repo="someone/else")
    assert untracked["status"] == "ignored"
    assert "no configured service tracks github:someone/else" in untracked["detail"]
    ping = encode({"zen": "Keep it logically awesome.", "hook_id": 1})
    answer = await bot.post("/webhooks/github", ping, github_headers("ping", ping))
    assert answer.json()["status"] == "accepted"

    await deliver(bot, "success", "d-1")
    # The same status again, under another delivery id: accepted now, ignored once applied.
    again = await deliver(bot, "success", "d-2")
    assert again == {"status": "accepted", "delivery": "d-2"}
    copy = await deliver(bot, "success", "d-2")
    assert copy == {"status": "duplicate", "delivery": "d-2"}

    assert await bot.runtime.applier.drain() == 2
    assert delivery(bot, "d-1").outcome == "accepted"
    second = delivery(bot, "d-2")
    assert second.outcome == "ignored"
    assert second.detail is not None and second.detail.startswith("deployment already")
    assert delivery(bot, "d-else").applied_at is not None
    assert len(rows(bot, Deployment)) == 1


async def test_deliveries_are_applied_in_arrival_order_per_service_and_environment(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    await deliver(bot, "in_progress", "a-1")
    await generic(bot, "started", "b-1")
    await deliver(bot, "success", "a-2")
    await generic(bot, "failed", "b-2")
    await deliver(bot, "in_progress", "a-3", sha=SHA_B)

    assert await bot.runtime.applier.drain() == 5
    states = {(d.service, d.sha): d.state for d in rows(bot, Deployment)}
    assert states == {
        ("checkout", SHA_A): "verifying",
        ("checkout", SHA_B): "in_progress",
        ("payments-batch", SHA_A): "failed",
    }
    applied = sorted(rows(bot, WebhookDelivery), key=lambda d: d.id)
    assert [d.outcome for d in applied] == ["accepted"] * 5
    with bot.runtime.db.read() as session:
        assert audit.verify_chain(session)[1] is None
    moves = [
        json.loads(e.details)["to"]
        for e in sorted(rows(bot, AuditEvent), key=lambda e: e.seq)
        if e.action == "deployment.state_changed" and e.subject == "deployment:1"
    ]
    assert moves == ["in_progress", "succeeded", "verifying"]  # as they arrived
    await bot.send_outbox()
    assert len(slack.messages("#checkout-deploys")) == 2


async def test_a_delivery_that_fails_to_apply_retries_holds_its_key_and_shows_everywhere(
    bot: Bot, clock: FrozenClock, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    await deliver(bot, "in_progress", "d-1")
    from_a_newer_release(bot, "d-1")
    await deliver(bot, "success", "d-2")  # same service and environment: waits behind d-1
    await generic(bot, "started", "p-1")  # another service: goes ahead

    assert await bot.runtime.applier.drain() == 1
    failing = delivery(bot, "d-1")
    assert failing.outcome == "pending" and failing.attempts == 1
    assert failing.error is not None and "rollout_wave" in failing.error
    assert failing.next_attempt_at == clock.now() + timedelta(seconds=1)
    assert delivery(bot, "d-2").outcome == "pending"
    assert [d.service for d in rows(bot, Deployment)] == ["payments-batch"]

    ready = (await bot.http.get("/readyz")).json()
    assert ready["ready"] is True and "deliveries" in ready["down"]
    assert ready["dependencies"]["deliveries"]["retrying"] == 1
    metrics = (await bot.http.get("/metrics")).text
    assert 'releasebot_webhook_deliveries{state="retrying"} 1.0' in metrics
    assert 'releasebot_webhook_deliveries{state="pending"} 2.0' in metrics
    page = (await bot.http.get("/")).text
    assert "failed to apply" in page and "d-1" in page

    assert await bot.runtime.applier.drain() == 0  # not due yet
    clock.advance(seconds=1)
    assert await bot.runtime.applier.drain() == 0
    assert delivery(bot, "d-1").attempts == 2
    assert delivery(bot, "d-1").next_attempt_at == clock.now() + timedelta(seconds=2)

    # Given up after RELEASEBOT_APPLY_ATTEMPTS (10): failed, and d-2 goes ahead.
    for _ in range(8):
        clock.advance(minutes=5)
        await bot.runtime.applier.drain()
    given_up = delivery(bot, "d-1")
    assert (given_up.outcome, given_up.attempts, given_up.next_attempt_at) == ("failed", 10, None)
    assert delivery(bot, "d-2").outcome == "accepted"
    ready = (await bot.http.get("/readyz")).json()
    assert ready["dependencies"]["deliveries"]["failed"] == 1
    assert (
        'releasebot_webhook_deliveries{state="failed"} 1.0' in (await bot.http.get("/metrics")).text
    )

    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", str(bot.runtime.db.engine.url))
    assert main(["webhooks", "list", "--failed"]) == 0
    listed = capsys.readouterr().out
    assert "d-1" in listed and "failed" in listed and "rollout_wave" in listed
    assert "d-2" not in listed

    as_this_release_stores_it(bot, "d-1")  # the release that reads it is deployed
    assert main(["webhooks", "replay", "--failed"]) == 0
    assert "1 deliveries queued to apply again" in capsys.readouterr().out
    assert await bot.runtime.applier.drain() == 1
    replayed = delivery(bot, "d-1")
    assert (replayed.outcome, replayed.error, replayed.attempts) == ("ignored", None, 1)
    assert (await bot.http.get("/readyz")).json()["down"] == []


async def test_replaying_an_applied_delivery_changes_nothing(
    bot: Bot, slack: FakeSlackWebApi, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    await deliver(bot, "in_progress", "d-1")
    await deliver(bot, "success", "d-2")
    await bot.runtime.applier.drain()
    await bot.send_outbox()
    before = [(d.id, d.state, d.row_version) for d in rows(bot, Deployment)]
    audited = len(rows(bot, AuditEvent))
    calls = len(slack.calls)

    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", str(bot.runtime.db.engine.url))
    since = rows(bot, WebhookDelivery)[0].received_at.isoformat()
    assert main(["webhooks", "replay", "--since", since]) == 0
    assert "2 deliveries queued" in capsys.readouterr().out
    assert main(["webhooks", "replay", "999999"]) == 1
    assert "not replayed" in capsys.readouterr().err
    assert main(["webhooks", "replay"]) == 2

    assert await bot.runtime.applier.drain() == 2
    await bot.send_outbox()
    assert [(d.id, d.state, d.row_version) for d in rows(bot, Deployment)] == before
    assert len(rows(bot, AuditEvent)) == audited
    assert len(slack.calls) == calls
    assert {d.outcome for d in rows(bot, WebhookDelivery)} == {"ignored"}

    assert main(["webhooks", "list", "--since", since]) == 0
    listed = capsys.readouterr().out
    assert "d-1" in listed and "d-2" in listed and "ignored" in listed
