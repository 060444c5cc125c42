"""The audit forwarder: every record reaches the SIEM's webhook once, in chain order, signed,
retried through the outbox when the receiver fails, and forwarding never feeds itself."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pydantic
import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.domain.audit import record_hash
from bot.scheduling import audit_forward, build_scheduler, register_jobs
from bot.settings import load_settings
from bot.store.tables import AuditEvent, OutboxMessage
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, github_headers

URL = "https://siem.example/ingest"
SECRET = "siem-shared-secret"


@dataclass
class FakeSiem:
    """A SIEM's HTTP collector: answers the queued statuses first, then 202."""

    queued: list[int] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    accepted: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.queued.pop(0) if self.queued else 202
        if status == 202:
            self.accepted.append(request)
        return httpx.Response(status)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for r in self.accepted for line in r.content.splitlines()]


@pytest.fixture
def siem() -> FakeSiem:
    return FakeSiem()


@pytest.fixture
async def bot(bot_factory: BotFactory, clock: FrozenClock, siem: FakeSiem) -> AsyncIterator[Bot]:
    edge = FakeEdge()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "siem.example":
            return siem.handle(request)
        return edge.transport.handle_request(request)  # type: ignore[return-value]

    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=httpx.MockTransport(route),
    )
    env = {"RELEASEBOT_AUDIT_FORWARD_URL": URL, "RELEASEBOT_AUDIT_FORWARD_SECRET": SECRET}
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


async def deployed(bot: Bot, sha: str, deployment_id: int) -> None:
    body = encode(deployment_status("success", sha=sha, deployment_id=deployment_id))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()


def stored(bot: Bot) -> list[AuditEvent]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all())  # type: ignore[arg-type]


async def test_records_are_forwarded_signed_in_order_after_a_failed_attempt(
    bot: Bot, siem: FakeSiem, clock: FrozenClock
) -> None:
    await deployed(bot, SHA_A, 1)
    siem.queued = [503]  # the collector is down for the first attempt

    assert await audit_forward(bot.runtime) == 1
    await bot.send_outbox()
    assert [r.url for r in siem.requests] == [httpx.URL(URL)] and siem.accepted == []
    with bot.runtime.db.read() as session:
        [row] = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "audit.forward"))
    assert (row.status, row.attempts) == ("pending", 1)
    assert "HTTP 503" in (row.last_error or "")

    clock.advance(minutes=10)
    await bot.send_outbox()  # the retry goes through
    [request] = siem.accepted
    expected = "sha256=" + hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["X-Releasebot-Signature-256"] == expected
    assert request.headers["Content-Type"] == "application/x-ndjson"
    events = stored(bot)
    assert request.headers["X-Releasebot-Audit-Seq"] == f"1-{events[-1].seq}"
    received = siem.records()
    assert [r["seq"] for r in received] == [e.seq for e in events]
    for record in received:
        assert record["hash"] == record_hash(
            **{k: record[k] for k in ("prev_hash", "seq", "at", "actor", "action", "subject")},
            details=record["details"],
        )
    assert any(r["action"] == "slack.release_message.delivered" for r in received)
    assert SECRET not in request.content.decode()

    # Forwarding appends nothing, so there is nothing more to forward: no loop.
    assert not [e for e in stored(bot) if e.action.startswith("audit.forward")]
    assert await audit_forward(bot.runtime) == 0

    # New records go out on the next run, and only they do.
    before = len(received)
    await deployed(bot, SHA_B, 2)
    assert await audit_forward(bot.runtime) == 1
    await bot.send_outbox()
    seqs = [r["seq"] for r in siem.records()]
    assert seqs == list(range(1, len(stored(bot)) + 1))
    assert len(seqs) > before
    assert await audit_forward(bot.runtime) == 0


async def test_the_forward_job_is_scheduled_only_when_a_url_is_set(
    bot: Bot, bot_factory: BotFactory
) -> None:
    scheduler = build_scheduler()
    register_jobs(scheduler, bot.runtime)
    assert "audit.forward" in {job.id for job in scheduler.get_jobs()}
    async with bot_factory() as plain:
        scheduler = build_scheduler()
        register_jobs(scheduler, plain.runtime)
        assert "audit.forward" not in {job.id for job in scheduler.get_jobs()}
        assert await audit_forward(plain.runtime) == 0


def test_a_forward_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="RELEASEBOT_AUDIT_FORWARD_URL"):
        load_settings({"RELEASEBOT_AUDIT_FORWARD_URL": "siem.example/ingest"})
    settings = load_settings({"RELEASEBOT_AUDIT_FORWARD_URL": URL})
    assert settings.audit_forward_url == URL and settings.audit_forward_secret is None
