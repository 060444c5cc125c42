"""Outbox messages: every kind round-trips its payload, and rows in the stored shape are sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot.config import Config
from bot.domain import messages
from bot.domain.events import DeployEvent, DeployTarget, event_to_dict
from bot.metrics import Metrics
from bot.outbox_worker import OutboxWorker
from bot.ports import DeployRequest, DeployResult, PagerEvent, PostedMessage
from bot.render import Renderer
from bot.store.db import Database
from bot.store.tables import Deployment, OutboxMessage, Release
from tests.fakes import FrozenClock

SHA = "279484c09fbe69ededfced8c1bb6e6d24616b468"
LEDGER_SHA = "a" * 40


@dataclass
class RecordingSlack:
    posts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage:
        self.posts.append(
            {"channel": channel, "text": text, "blocks": blocks, "thread_ts": thread_ts}
        )
        return PostedMessage(channel=channel, ts=f"1700000000.{len(self.posts):06d}")

    async def update_message(
        self, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        self.updates.append({"channel": channel, "ts": ts, "text": text})

    async def find_message(
        self, *, channel: str, oldest: float, metadata: dict[str, Any], thread_ts: str | None = None
    ) -> PostedMessage | None:
        return None  # nothing here is ever in doubt


@dataclass
class RecordingDeployer:
    requests: list[DeployRequest] = field(default_factory=list)

    async def execute(self, request: DeployRequest) -> DeployResult:
        self.requests.append(request)
        return DeployResult(detail="synced")


@dataclass
class RecordingPager:
    events: list[PagerEvent] = field(default_factory=list)

    async def send(self, event: PagerEvent) -> str | None:
        self.events.append(event)
        return event.dedup_key


@dataclass(frozen=True)
class Found:
    sha: str
    ref: str = "main"


@dataclass
class RecordingLookup:
    calls: list[tuple[str | int, int]] = field(default_factory=list)

    async def deployment(self, project: str | int, deployment_id: int) -> Found:
        self.calls.append((project, deployment_id))
        return Found(LEDGER_SHA)


def ledger_event() -> DeployEvent:
    return DeployEvent(
        target=DeployTarget(provider="gitlab", repo="acme/ledger", environment="production"),
        sha=LEDGER_SHA[:8],
        status="succeeded",
        source_event="gitlab.deployment",
        external_id="15",
    )


def stored_rows(deployment_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, kind, payload) exactly as the services wrote them before the messages had
    types: one row of every kind, and both shapes of a thread line."""
    d = deployment_id
    return [
        (f"deployment:{d}", "slack.release_message", {"deployment_id": d}),
        (
            f"deployment:{d}",
            "slack.thread_reply",
            {
                "deployment_id": d,
                "from": None,
                "to": "succeeded",
                "at": "2026-03-02T12:00:00+00:00",
                "actor": "ci",
                "url": None,
                "note": None,
            },
        ),
        (
            f"deployment:{d}",
            "slack.thread_reply",
            {
                "deployment_id": d,
                "template": "check_result.txt.j2",
                "check": "health",
                "passed": True,
                "summary": "200 OK",
            },
        ),
        (
            f"deployment:{d}",
            "slack.announcement",
            {
                "deployment_id": d,
                "template": "break_glass.txt.j2",
                "stage": "requested",
                "by": "U0OWNER01",
                "reason": "hotfix",
                "approvers": ["S0RELMGRS"],
            },
        ),
        (f"assess:{d}", "deployment.assess", {"deployment_id": d}),
        (
            f"deploy:{d}",
            "deployer.execute",
            {
                "deployment_id": d,
                "kind": "argocd",
                "action": "rollback",
                "sha": SHA,
                "request_id": f"rb-{d}-rollback-1700000000",
                "context": {},
                "actor": "U0OWNER01",
                "reason": "broken",
            },
        ),
        (
            f"pager:{d}",
            "pager.alert",
            {
                "deployment_id": d,
                "action": "trigger",
                "dedup_key": f"releasebot-{d}",
                "summary": "checkout production: verification failed",
                "severity": "critical",
            },
        ),
        (
            f"pager:{d}",
            "pager.change",
            {"deployment_id": d, "what": "deploy", "summary": "Deployed checkout"},
        ),
        (
            "lookup:gitlab:15",
            "deployment.resolve_sha",
            {
                "provider": "gitlab",
                "project": "30",
                "deployment_id": 15,
                "event": event_to_dict(ledger_event()),
            },
        ),
        (
            "digest",
            "slack.digest",
            {"channel": "#releases", "text": "DORA this week", "blocks": [{"type": "divider"}]},
        ),
        (
            "dm:U0RM2",
            "slack.direct_message",
            {"user_id": "U0RM2", "text": "checkout has waited 2h30m for your approval"},
        ),
    ]


DECODERS: dict[str, Any] = {
    "slack.release_message": messages.ReleaseMessageUpdate.from_payload,
    "slack.thread_reply": messages.thread_reply_from_payload,
    "slack.announcement": messages.Announcement.from_payload,
    "deployment.assess": messages.Assess.from_payload,
    "deployer.execute": messages.DeployerCall.from_payload,
    "pager.alert": messages.PagerAlert.from_payload,
    "pager.change": messages.PagerChange.from_payload,
    "deployment.resolve_sha": messages.ResolveSha.from_payload,
    "slack.digest": messages.Digest.from_payload,
    "slack.direct_message": messages.DirectMessage.from_payload,
}


@pytest.mark.parametrize("key,kind,payload", stored_rows(7), ids=lambda v: str(v)[:30])
def test_a_stored_payload_reads_back_as_its_message_and_writes_the_same_payload(
    key: str, kind: str, payload: dict[str, Any]
) -> None:
    message = DECODERS[kind](payload)
    assert (message.KIND, message.key) == (kind, key)
    assert message.to_payload() == payload


def test_a_resolved_pager_alert_has_no_severity_key() -> None:
    resolved = messages.PagerAlert(7, "resolve", "releasebot-7", "recovered")
    assert resolved.to_payload() == {
        "deployment_id": 7,
        "action": "resolve",
        "dedup_key": "releasebot-7",
        "summary": "recovered",
    }


async def test_rows_written_in_the_stored_shape_are_all_sent_after_the_upgrade(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    now = clock.now()
    deployment_id = db.write(lambda s: _deployment(s, now))
    table = OutboxMessage.__table__  # type: ignore[attr-defined]

    def insert(session: Any) -> None:
        for key, kind, payload in stored_rows(deployment_id):
            session.connection().execute(
                sa.insert(table).values(
                    key=key,
                    kind=kind,
                    payload=payload,
                    status="pending",
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                )
            )

    db.write(insert)
    slack, deployer, pager, lookup = (
        RecordingSlack(),
        RecordingDeployer(),
        RecordingPager(),
        RecordingLookup(),
    )
    worker = OutboxWorker(
        db=db,
        clock=clock,
        config=example_config,
        slack=slack,
        renderer=Renderer(),
        metrics=Metrics(),
        lookups={"gitlab": lookup},
        deployers={"argocd": deployer},
        pagers={"pagerduty": pager},
        secrets={"PD_CHECKOUT_ROUTING_KEY": "routing-key"}.get,
        concurrency=len(stored_rows(0)),
    )
    await worker.drain_round()  # one claim of every stored row (follow-ups wait)

    with db.read() as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        statuses = {(r.kind, r.key): r.status for r in rows[: len(stored_rows(0))]}
    assert set(statuses.values()) == {"sent"}, statuses
    assert len(statuses) == len(stored_rows(0)) - 1  # the two thread lines share (kind, key)
    channels = [p["channel"] for p in slack.posts]
    assert channels.count("#checkout-deploys") == 4  # message, two thread lines, announcement
    assert sum(1 for p in slack.posts if p["thread_ts"]) == 2
    assert {
        "channel": "#releases",
        "text": "DORA this week",
        "blocks": [{"type": "divider"}],
        "thread_ts": None,
    } in slack.posts
    assert {
        "channel": "U0RM2",
        "text": "checkout has waited 2h30m for your approval",
        "blocks": None,
        "thread_ts": None,
    } in slack.posts
    [request] = deployer.requests
    assert (request.kind, request.action, request.sha) == ("argocd", "rollback", SHA)
    assert [(e.action, e.severity, e.dedup_key) for e in pager.events] == [
        ("trigger", "critical", f"releasebot-{deployment_id}"),
        ("change", "error", None),
    ]
    assert lookup.calls == [("30", 15)]
    with db.read() as session:
        ledger = session.exec(select(Deployment).where(Deployment.service == "ledger")).one()
    assert ledger.sha == LEDGER_SHA


def _deployment(session: Any, now: Any) -> int:
    release = Release(service="checkout", sha=SHA, created_at=now - timedelta(minutes=5))
    session.add(release)
    session.flush()
    deployment = Deployment(
        release_id=release.id,
        service="checkout",
        environment="production",
        sha=SHA,
        state="succeeded",
        source="github.deployment_status",
        created_at=now,
        updated_at=now,
    )
    session.add(deployment)
    session.flush()
    return int(deployment.id)  # type: ignore[arg-type]
