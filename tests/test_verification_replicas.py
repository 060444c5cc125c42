"""Replicas sharing one database never run the same check run twice, and a dead worker's
claim is taken over once its lease runs out.

Two `Verifier`s with their own worker ids and their own `Database` (engine, pool) on
the same database URL stand for two app instances: on PostgreSQL they claim with
`FOR UPDATE SKIP LOCKED`; on SQLite they share the file and its write lock.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget
from bot.ports import CheckResult, CheckRunner
from bot.services import verification
from bot.services.deployments import apply_event
from bot.store.db import Database, make_engine
from bot.store.tables import AuditEvent, Check, CheckRun, Deployment
from bot.usecases.verify import Verifier
from tests.fakes import FrozenClock
from tests.helpers import SHA_A

RUNS = 200  # more than one claim takes (claim_due's limit is 100), all due at once
MAX_ROUNDS = 50


class CountingRunner:
    """Answers every check at once (passed) and records the names it ran."""

    def __init__(self) -> None:
        self.ran: Counter[str] = Counter()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        self.ran[str(check["name"])] += 1
        await asyncio.sleep(0)  # let the other replica's tasks in between
        return CheckResult(True, "HTTP 200 in 1 ms", {"status_code": 200})


def runners(runner: CountingRunner) -> dict[str, CheckRunner]:
    return {"http": runner, "prometheus": runner}


def deployed(session: Session, *, now: datetime, config: Config) -> Deployment:
    """A successful deployment of checkout to production, as CI reports it (not verifying)."""
    deployment, _ = apply_event(
        session,
        now=now,
        service="checkout",
        environment="production",
        event=DeployEvent(
            target=DeployTarget(provider="github", repo="acme/checkout", environment="production"),
            sha=SHA_A,
            status="succeeded",
            source_event="github.deployment_status",
        ),
    )
    assert deployment is not None and deployment.state == states.SUCCEEDED
    return deployment


def add_run(
    session: Session,
    *,
    deployment: Deployment,
    name: str,
    due_at: datetime,
    status: str = verification.PENDING,
    claimed_by: str | None = None,
    claimed_until: datetime | None = None,
) -> int:
    """One check with one run, shaped as `verification.plan` stores them."""
    assert deployment.id is not None
    check = Check(
        deployment_id=deployment.id,
        name=name,
        kind="http",
        spec={
            "name": name,
            "http": {"url": "http://127.0.0.1:9310/healthz", "expect_status": 200},
            "prometheus": None,
            "at": ["0s"],
        },
    )
    session.add(check)
    session.flush()
    assert check.id is not None
    run = CheckRun(
        check_id=check.id,
        deployment_id=deployment.id,
        due_at=due_at,
        status=status,
        claimed_by=claimed_by,
        claimed_until=claimed_until,
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    return run.id


def all_runs(db: Database) -> list[tuple[CheckRun, str]]:
    with db.read() as session:
        rows = session.exec(
            select(CheckRun, Check.name).join(Check, col(Check.id) == col(CheckRun.check_id))
        ).all()
    return [(run, name) for run, name in rows]


def results_per_run(db: Database) -> Counter[int]:
    with db.read() as session:
        events = session.exec(
            select(AuditEvent).where(col(AuditEvent.action).in_(("check.passed", "check.failed")))
        ).all()
    return Counter(int(json.loads(event.details)["run"]) for event in events)


@pytest.fixture
def replica_db(database_url: str) -> Iterator[Database]:
    """A second app instance's own engine on the same database."""
    database = Database(make_engine(database_url))
    yield database
    database.dispose()


async def test_two_replicas_never_run_the_same_check_twice(
    db: Database, replica_db: Database, clock: FrozenClock, example_config: Config
) -> None:
    start = clock.now()

    def planned(session: Session) -> int:
        deployment = deployed(session, now=start, config=example_config)
        # The example's plan: health at 0s, 1m, 5m and error-rate at 1m, 5m, 15m ...
        count = verification.plan(session, now=start, config=example_config, deployment=deployment)
        # ... and many more runs of the same deployment, each its own check.
        for i in range(RUNS - count):
            add_run(session, deployment=deployment, name=f"probe-{i:03d}", due_at=start)
        assert deployment.id is not None
        return deployment.id

    deployment_id = db.write(planned)
    clock.advance(minutes=16)  # every run is due
    runner_a, runner_b = CountingRunner(), CountingRunner()
    a = Verifier(
        db=db, clock=clock, config=example_config, runners=runners(runner_a), worker="replica-a"
    )
    b = Verifier(
        db=replica_db,
        clock=clock,
        config=example_config,
        runners=runners(runner_b),
        worker="replica-b",
    )

    ran_a = ran_b = 0
    for _ in range(MAX_ROUNDS):
        took_a, took_b = await asyncio.gather(a.run_due(), b.run_due())
        ran_a, ran_b = ran_a + took_a, ran_b + took_b
        if took_a == took_b == 0:
            break
    else:
        pytest.fail(f"runs still claimable after {MAX_ROUNDS} rounds")

    rows = all_runs(db)
    assert len(rows) == RUNS
    expected = Counter(name for _, name in rows)  # e.g. health: 3, error-rate: 3, probe-000: 1
    assert runner_a.ran + runner_b.ran == expected
    assert ran_a + ran_b == RUNS
    assert sum(runner_a.ran.values()) == ran_a and sum(runner_b.ran.values()) == ran_b
    assert Counter(run.status for run, _ in rows) == Counter({verification.PASSED: RUNS})
    assert results_per_run(db) == Counter({run.id: 1 for run, _ in rows if run.id})
    claimed_by = Counter(run.claimed_by for run, _ in rows)
    assert claimed_by == Counter({"replica-a": ran_a, "replica-b": ran_b})
    if not db.is_sqlite:
        # SKIP LOCKED: neither replica waits for the other's claim, both take a share.
        assert ran_a > 0 and ran_b > 0
    with db.read() as session:
        deployment = session.get(Deployment, deployment_id)
    assert deployment is not None and deployment.state == states.VERIFIED


async def test_a_run_whose_lease_expired_is_claimed_again_and_a_leased_one_is_not(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    now = clock.now()
    lease = verification.LEASE

    def planned(session: Session) -> tuple[int, int]:
        deployment = deployed(session, now=now - timedelta(minutes=10), config=example_config)
        # A worker claimed this one and died mid-run: its lease ran out a second ago.
        orphaned = add_run(
            session,
            deployment=deployment,
            name="orphaned",
            due_at=now - lease - timedelta(seconds=5),
            status=verification.RUNNING,
            claimed_by="dead-worker",
            claimed_until=now - timedelta(seconds=1),
        )
        # Another worker is running this one right now, well within its lease.
        leased = add_run(
            session,
            deployment=deployment,
            name="leased",
            due_at=now - timedelta(seconds=30),
            status=verification.RUNNING,
            claimed_by="busy-worker",
            claimed_until=now - timedelta(seconds=30) + lease,
        )
        return orphaned, leased

    orphaned_id, leased_id = db.write(planned)
    runner = CountingRunner()
    scheduler = Verifier(
        db=db, clock=clock, config=example_config, runners=runners(runner), worker="survivor"
    )

    assert await scheduler.run_due() == 1
    assert runner.ran == Counter({"orphaned": 1})
    with db.read() as session:
        orphaned = session.get(CheckRun, orphaned_id)
        leased = session.get(CheckRun, leased_id)
    assert orphaned is not None and leased is not None
    assert (orphaned.status, orphaned.claimed_by) == (verification.PASSED, "survivor")
    assert (leased.status, leased.claimed_by) == (verification.RUNNING, "busy-worker")
    assert results_per_run(db) == Counter({orphaned_id: 1})

    assert await scheduler.run_due() == 0  # nothing is claimable until the lease runs out
    clock.advance(seconds=(lease - timedelta(seconds=30)).total_seconds())
    assert await scheduler.run_due() == 0  # claimed_until == now: still leased
    clock.advance(seconds=1)
    assert await scheduler.run_due() == 1
    assert runner.ran == Counter({"orphaned": 1, "leased": 1})
    with db.read() as session:
        leased = session.get(CheckRun, leased_id)
    assert leased is not None
    assert (leased.status, leased.claimed_by) == (verification.PASSED, "survivor")
    assert results_per_run(db) == Counter({orphaned_id: 1, leased_id: 1})
