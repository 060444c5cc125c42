"""Concurrent webhook deliveries are settled by the database, never by timing.

Each test releases many threads at once (a `threading.Barrier`) into
`bot.services.ingest.record_delivery` through `Database.write`, the way the webhook
handlers call it, and then checks what a user would see: how many deployments and
releases exist, what each delivery was answered, the deployment's final state, and that
the audit trail explains that state and still verifies.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.domain.ingest import Delivery, IngestResult
from bot.domain.rollouts import RolloutAction, RolloutRef, RolloutStatus
from bot.domain.slo import Budget
from bot.services import audit, lead_times, reactions, rollouts
from bot.services.ingest import record_delivery
from bot.services.transitions import transition
from bot.store.db import Database
from bot.store.tables import (
    AuditEvent,
    CommitLeadTime,
    Deployment,
    OutboxMessage,
    Release,
    WebhookDelivery,
)
from integrations.github import payloads
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode
from tests.test_dora import NOW, History, commit
from tests.test_slo import slo_config

T = TypeVar("T")
THREADS = 8


# --- helpers -----------------------------------------------------------------------------


def all_at_once(tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run every task in its own thread, released together; results in task order."""
    barrier = threading.Barrier(len(tasks))

    def run(task: Callable[[], T]) -> T:
        barrier.wait()
        return task()

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(run, task) for task in tasks]
        return [future.result() for future in futures]


def github_delivery(
    db: Database,
    clock: FrozenClock,
    config: Config,
    delivery_id: str,
    status: str,
    *,
    sha: str = SHA_A,
) -> Callable[[], IngestResult]:
    """What the GitHub handler does with one verified deployment_status delivery."""
    body = deployment_status(status, sha=sha)
    parsed = payloads.parse("deployment_status", body)
    assert parsed.event is not None, parsed.note
    delivery = Delivery(
        provider="github", delivery_id=delivery_id, event="deployment_status", body=encode(body)
    )
    event = parsed.event

    def send() -> IngestResult:
        now = clock.now()
        return db.write(
            lambda s: record_delivery(s, now=now, config=config, delivery=delivery, event=event)
        )

    return send


def rows(db: Database, model: Any) -> list[Any]:
    with db.read() as session:
        return list(session.exec(select(model)).all())


def audited_moves(db: Database, deployment_id: int) -> list[tuple[str, str]]:
    """The (from, to) of every state change the audit trail records for one deployment."""
    with db.read() as session:
        events = session.exec(
            select(AuditEvent)
            .where(AuditEvent.subject == f"deployment:{deployment_id}")
            .where(AuditEvent.action == "deployment.state_changed")
            .order_by(col(AuditEvent.seq))
        ).all()
    moves = []
    for event in events:
        details = json.loads(event.details)
        moves.append((details["from"], details["to"]))
    return moves


def assert_audit_explains(db: Database, deployment: Deployment) -> None:
    """The audit trail walks legally from pending to the state the deployment is in."""
    assert deployment.id is not None
    state = states.PENDING
    for source, target in audited_moves(db, deployment.id):
        assert source == state, f"audit says {source}->{target} but the deployment was {state}"
        states.check_move(source, target)
        state = target
    assert state == deployment.state


def assert_chain_verifies(db: Database) -> None:
    with db.read() as session:
        checked, broken = audit.verify_chain(session)
    assert broken is None, broken
    assert checked == len(rows(db, AuditEvent))


# --- tests -------------------------------------------------------------------------------


def test_one_delivery_sent_eight_times_at_once_is_accepted_once(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    send = github_delivery(db, clock, example_config, "delivery-1", "in_progress")

    results = all_at_once([send] * THREADS)

    assert sorted(r.status for r in results) == ["accepted"] + ["duplicate"] * (THREADS - 1)
    assert {r.delivery for r in results} == {"delivery-1"}
    [stored] = rows(db, WebhookDelivery)
    assert (stored.delivery_id, stored.outcome) == ("delivery-1", "accepted")
    [deployment] = rows(db, Deployment)
    assert deployment.state == states.IN_PROGRESS
    assert len(rows(db, Release)) == 1
    [accepted] = [r for r in results if r.status == "accepted"]
    assert accepted.deployment_id == deployment.id
    assert audited_moves(db, deployment.id) == [(states.PENDING, states.IN_PROGRESS)]
    assert_chain_verifies(db)


@pytest.mark.parametrize(
    "statuses",
    [
        [
            "pending",
            "in_progress",
            "success",
            "pending",
            "in_progress",
            "success",
            "pending",
            "in_progress",
        ],
        [
            "success",
            "pending",
            "pending",
            "in_progress",
            "in_progress",
            "pending",
            "in_progress",
            "pending",
        ],
    ],
    ids=["mixed", "one-success"],
)
def test_different_deliveries_about_one_new_deployment_at_once_make_one_deployment(
    db: Database, clock: FrozenClock, example_config: Config, statuses: list[str]
) -> None:
    sends = [
        github_delivery(db, clock, example_config, f"delivery-{n}", status)
        for n, status in enumerate(statuses)
    ]

    results = all_at_once(sends)

    [release] = rows(db, Release)
    [deployment] = rows(db, Deployment)
    assert release.sha == deployment.sha == SHA_A
    assert (deployment.service, deployment.environment) == ("checkout", "production")
    # A success, whenever it is applied, is where CI's part ends (verification takes over):
    # nothing a CI system reports later (pending, in_progress) may take it back.
    assert deployment.state == states.VERIFYING
    assert deployment.deployed_at is not None
    assert_audit_explains(db, deployment)
    assert_chain_verifies(db)
    created = [e for e in rows(db, AuditEvent) if e.action == "deployment.created"]
    assert len(created) == 1

    assert len(rows(db, WebhookDelivery)) == THREADS
    assert "duplicate" not in {r.status for r in results}
    assert {r.deployment_id for r in results if r.status == "accepted"} == {deployment.id}
    success = [r for r, status in zip(results, statuses, strict=True) if status == "success"]
    assert success and all(r.status in ("accepted", "ignored") for r in success)


def test_a_success_and_a_failure_racing_end_in_one_of_them_and_the_audit_agrees(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    statuses = ["in_progress", "success", "failure", "pending"] * (THREADS // 4)
    sends = [
        github_delivery(db, clock, example_config, f"delivery-{n}", status)
        for n, status in enumerate(statuses)
    ]

    all_at_once(sends)

    [deployment] = rows(db, Deployment)
    assert deployment.state in (states.VERIFYING, states.FAILED)
    assert deployment.finished_at is not None
    assert_audit_explains(db, deployment)
    assert_chain_verifies(db)


def test_deliveries_for_two_versions_at_once_make_two_deployments(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """Whichever version starts second may supersede the other while it is still pending."""
    other = SHA_B
    sends = [
        github_delivery(db, clock, example_config, f"delivery-{sha[:4]}-{n}", status, sha=sha)
        for sha in (SHA_A, other)
        for n, status in enumerate(["pending", "in_progress", "success", "in_progress"])
    ]

    all_at_once(sends)

    deployments = rows(db, Deployment)
    assert sorted(d.sha for d in deployments) == sorted([SHA_A, other])
    assert len(rows(db, Release)) == 2
    # The version that deployed last is being verified; one that deployed before it was
    # replaced mid-verification, or never ran (superseded while pending): never both
    # verifying, each unaware of the other.
    assert sorted(d.state for d in deployments) == [states.SUPERSEDED, states.VERIFYING]
    for deployment in deployments:
        assert_audit_explains(db, deployment)
    assert_chain_verifies(db)


def test_a_burst_of_unrelated_deployments_from_many_workers_is_all_recorded(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """Webhook workers streaming deliveries about different versions never lose one.

    The only thing they share is the audit chain, which every state change appends to.
    """
    workers, each = THREADS, 5

    def worker(number: int) -> Callable[[], list[str]]:
        sends = [
            github_delivery(
                db,
                clock,
                example_config,
                f"delivery-{number}-{n}",
                "success",
                sha=hashlib.sha1(f"{number}-{n}".encode()).hexdigest(),
            )
            for n in range(each)
        ]

        def stream() -> list[str]:
            lost = []
            for send in sends:
                try:
                    assert send().status == "accepted"
                except Exception as exc:  # noqa: BLE001  (a lost delivery is what we report)
                    lost.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            return lost

        return stream

    lost = [
        failure
        for failures in all_at_once([worker(n) for n in range(workers)])
        for failure in failures
    ]

    assert lost == [], f"{len(lost)} of {workers * each} deliveries failed, e.g. {lost[0]}"
    deployments = rows(db, Deployment)
    assert len(deployments) == workers * each
    # Every delivery deployed its version; all but the newest were replaced while verifying.
    assert all(d.deployed_at is not None for d in deployments)
    assert {d.state for d in deployments} <= {states.VERIFYING, states.SUPERSEDED}
    assert len(rows(db, WebhookDelivery)) == workers * each
    assert_chain_verifies(db)


def until_a_writer_waits_for_a_lock(db: Database, writing: Future[Any]) -> None:
    """PostgreSQL: return once another connection waits for a lock held here (or the write
    ended without waiting). SQLite needs no wait: its other writer cannot begin before this
    transaction ends."""
    if db.is_sqlite:
        return
    with db.engine.connect() as conn:
        while not writing.done():
            waiting = conn.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar_one()
            if waiting:
                return
            conn.rollback()  # a fresh snapshot of pg_locks each round


def test_a_version_started_while_another_is_being_recorded_supersedes_it(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """Two versions of one service start in one environment at once (two replicas apply
    their deliveries): the second waits for the first to be stored and supersedes it, so
    the environment never has two current deployments each unaware of the other."""
    body = deployment_status("pending", sha=SHA_A)
    parsed = payloads.parse("deployment_status", body)
    assert parsed.event is not None
    delivery = Delivery(
        provider="github", delivery_id="delivery-a", event="deployment_status", body=encode(body)
    )
    with Session(db.engine) as session, ThreadPoolExecutor(max_workers=1) as other:
        record_delivery(
            session, now=clock.now(), config=example_config, delivery=delivery, event=parsed.event
        )
        second = other.submit(
            github_delivery(db, clock, example_config, "delivery-b", "pending", sha=SHA_B)
        )
        until_a_writer_waits_for_a_lock(db, second)
        session.commit()
        second.result(timeout=30)

    by_sha = {d.sha: d for d in rows(db, Deployment)}
    assert (by_sha[SHA_A].state, by_sha[SHA_B].state) == (states.SUPERSEDED, states.PENDING)
    for deployment in by_sha.values():
        assert_audit_explains(db, deployment)
    assert_chain_verifies(db)


def test_two_production_regions_finishing_one_release_at_once_time_it_from_the_first(
    db: Database,
) -> None:
    """Two production environments run the same release and finish at once, each applied
    by its own replica: the release's lead times are timed from the run that finished
    first, once, not from each region as if it were the only one."""
    history = History(db)
    ran = NOW - timedelta(days=1)
    history.release("A", "checkout", [commit("a1", ran - timedelta(hours=2))], NOW)
    regions = {
        name: history.deploy(
            name, release="A", service="checkout", state=states.SUCCEEDED, created=ran,
            deployed=None, environment=f"production-{name}",
        )
        for name in ("eu", "us")
    }  # fmt: skip

    def finish(session: Session, region: str, at: datetime) -> int:
        # As a state change records it: a Core UPDATE (the ORM's own hook is not involved).
        ran_at = sa.update(Deployment).where(col(Deployment.id) == regions[region])
        session.connection().execute(ran_at.values(deployed_at=at))
        deployment = session.get(Deployment, regions[region])
        assert deployment is not None and deployment.deployed_at == at
        return lead_times.deployed(
            session, deployment=deployment, is_production=lambda _s, e: e.startswith("production")
        )

    with Session(db.engine) as session, ThreadPoolExecutor(max_workers=1) as other:
        assert finish(session, "eu", ran) == 1
        second = other.submit(db.write, partial(finish, region="us", at=ran + timedelta(minutes=1)))
        until_a_writer_waits_for_a_lock(db, second)
        session.commit()
        assert second.result(timeout=30) == 0  # not the first production run: nothing to time

    with db.read() as session:
        stored = session.exec(select(CommitLeadTime)).all()
    assert [(row.deployment_id, row.environment) for row in stored] == [
        (regions["eu"], "production-eu")
    ]


def test_a_promotion_after_a_budget_measurement_waits_for_a_rollback_of_its_source(
    db: Database, clock: FrozenClock
) -> None:
    """Staging's version is being rolled back (a release manager's click) just as its
    error budget comes in healthy: the automatic promotion waits for the rollback to be
    stored, then sees it and does not ship that version to production."""
    config = slo_config()
    now = clock.now()
    history = History(db)

    def verified_in_staging(release: str, ago: timedelta) -> int:
        history.release(release, "checkout", [], now - ago)
        return history.deploy(
            f"{release}-staging", release=release, service="checkout", state=states.VERIFIED,
            created=now - ago, deployed=now - ago, environment="staging",
        )  # fmt: skip

    source = verified_in_staging("A", timedelta(hours=1))
    healthy = Budget(
        service="checkout", objective=99.9, window="30d", known=True, remaining=0.9,
        error_ratio=0.0001, measured_at=now.isoformat(),
    )  # fmt: skip

    def measured(session: Session, promote: int) -> None:
        reactions.budget_measured(session, now=now, config=config, budget=healthy, promote=promote)

    with Session(db.engine) as session, ThreadPoolExecutor(max_workers=1) as other:
        staging = session.get(Deployment, source)
        assert staging is not None
        transition(
            session, deployment=staging, target=states.ROLLING_BACK, now=now, actor="U0RELMGR",
            source="slack",
        )  # fmt: skip
        measuring = other.submit(db.write, partial(measured, promote=source))
        until_a_writer_waits_for_a_lock(db, measuring)
        session.commit()
        measuring.result(timeout=30)

    assert [(d.sha[0], d.environment) for d in rows(db, Deployment)] == [("a", "staging")]
    # The same measurement for a version that stayed verified: it is promoted.
    stayed = verified_in_staging("B", timedelta(minutes=30))
    db.write(partial(measured, promote=stayed))
    assert sorted((d.sha[0], d.environment) for d in rows(db, Deployment)) == [
        ("a", "staging"),
        ("b", "production"),
        ("b", "staging"),
    ]


def test_two_abort_clicks_at_once_ask_argo_cd_once(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    """Two on-call engineers click Abort on one paused canary at the same moment: one
    action goes to Argo CD, the other click is told it was already asked."""
    now = clock.now()
    history = History(db)
    history.release("A", "checkout", [], now - timedelta(minutes=10))
    canary = history.deploy(
        "canary", release="A", service="checkout", state=states.IN_PROGRESS,
        created=now - timedelta(minutes=10), deployed=None,
    )  # fmt: skip
    db.write(
        lambda s: rollouts.observed(
            s, now=now, deployment_id=canary, rollout=RolloutRef("checkout", "checkout"),
            status=RolloutStatus("canary", 2, 5, True, False, "Paused"),
        )
    )  # fmt: skip

    def abort(session: Session, user_id: str) -> str:
        outcome = rollouts.abort(
            session, now=now, config=example_config, deployment_id=canary, user_id=user_id,
            allowed=True, reason="errors climbing",
        )  # fmt: skip
        return outcome.result

    with Session(db.engine) as session, ThreadPoolExecutor(max_workers=1) as other:
        assert abort(session, "U0ONCALL1") == rollouts.APPROVED
        second = other.submit(db.write, partial(abort, user_id="U0ONCALL2"))
        until_a_writer_waits_for_a_lock(db, second)
        session.commit()
        assert second.result(timeout=30) == rollouts.REFUSED

    asked = [row for row in rows(db, OutboxMessage) if row.kind == RolloutAction.KIND]
    assert len(asked) == 1
