"""Draining, piece by piece: the verifier gives back what it will not finish, and /readyz
names the dependency that is down.

The whole process under SIGTERM is `tests/test_shutdown_drain.py`; these are the parts with
a fixed clock and the test database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bot import migrate
from bot.config import Config
from bot.domain.messages import Digest
from bot.ports import CheckResult, CheckRunner
from bot.services import health, outbox, verification
from bot.store.db import Database, make_engine
from bot.store.tables import CheckRun
from bot.usecases.verify import Verifier
from tests.conftest import Bot
from tests.fakes import FrozenClock
from tests.test_verification_replicas import add_run, deployed


class HeldRunner:
    """A check that starts and then waits until released (or cancelled)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.ran: list[str] = []

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        self.ran.append(str(check["name"]))
        self.started.set()
        await self.release.wait()
        return CheckResult(True, "HTTP 200 in 1 ms", {"status_code": 200})


def _runs(db: Database, ids: list[int]) -> list[tuple[str, str | None]]:
    with db.read() as session:
        found = [session.get(CheckRun, run_id) for run_id in ids]
    return [(run.status, run.claimed_by) for run in found if run is not None]


def _two_due_runs(db: Database, clock: FrozenClock, config: Config) -> list[int]:
    now = clock.now()

    def planned(session: Session) -> list[int]:
        deployment = deployed(session, now=now - timedelta(minutes=5), config=config)
        return [
            add_run(session, deployment=deployment, name=name, due_at=now - timedelta(seconds=1))
            for name in ("first", "second")
        ]

    return db.write(planned)


async def test_a_stopped_verifier_claims_nothing(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    ids = _two_due_runs(db, clock, example_config)
    runner = HeldRunner()
    verifier = Verifier(db=db, clock=clock, config=example_config, runners={"http": runner})
    verifier.stop()
    assert await verifier.run_due() == 0
    assert _runs(db, ids) == [(verification.PENDING, None)] * 2


async def test_finish_cuts_a_check_short_and_gives_back_the_runs_not_started(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    ids = _two_due_runs(db, clock, example_config)
    runner = HeldRunner()
    runners: dict[str, CheckRunner] = {"http": runner}
    # One check at a time: the second run is claimed but waits for the first.
    verifier = Verifier(db=db, clock=clock, config=example_config, runners=runners, concurrency=1)
    tick = asyncio.create_task(verifier.run_due())
    await asyncio.wait_for(runner.started.wait(), timeout=10)
    assert [status for status, _ in _runs(db, ids)] == [verification.RUNNING] * 2

    await asyncio.wait_for(verifier.finish(0.05), timeout=10)

    assert tick.cancelled()
    assert runner.ran == ["first"]
    assert _runs(db, ids) == [(verification.PENDING, None)] * 2  # another replica runs both


async def test_finish_waits_for_a_check_that_ends_within_the_grace(
    db: Database, clock: FrozenClock, example_config: Config
) -> None:
    ids = _two_due_runs(db, clock, example_config)
    runner = HeldRunner()
    verifier = Verifier(
        db=db, clock=clock, config=example_config, runners={"http": runner}, concurrency=1
    )
    tick = asyncio.create_task(verifier.run_due())
    await asyncio.wait_for(runner.started.wait(), timeout=10)
    finishing = asyncio.create_task(verifier.finish(30))
    runner.release.set()
    await asyncio.wait_for(finishing, timeout=10)

    assert await tick == 2
    assert runner.ran == ["first"]  # the second was claimed, never started: given back
    statuses = [status for status, _ in _runs(db, ids)]
    assert statuses == [verification.PASSED, verification.PENDING]


async def test_readyz_names_dead_outbox_rows_without_turning_unready(bot: Bot) -> None:
    now = bot.runtime.clock.now()
    queued = Digest(channel="#releases", text="never delivered")
    bot.runtime.db.write(lambda s: outbox.enqueue(s, queued, now=now))

    def give_up(session: Session) -> None:
        [row] = outbox.claim_due(session, now=now + timedelta(days=1), limit=1)
        outbox.mark_dead(session, row_id=row.id, error="channel_not_found")

    bot.runtime.db.write(give_up)
    answer = await bot.http.get("/readyz")
    body = answer.json()
    assert answer.status_code == 200 and body["ready"] is True
    assert body["down"] == ["outbox"]
    assert body["dependencies"]["outbox"] == {"ok": False, "dead": 1}
    assert body["dependencies"]["database"] == {"ok": True}
    assert body["dependencies"]["migrations"]["ok"] is True
    assert body["outbox"]["dead"] == 1  # the fields /readyz always had are still there


async def test_readyz_names_the_migrations_when_the_schema_is_behind(bot: Bot) -> None:
    migrate.downgrade(bot.runtime.db.engine, "base")
    body = (await bot.http.get("/readyz")).json()
    assert body["ready"] is False
    assert body["down"] == ["migrations"]
    assert body["dependencies"]["migrations"] == {
        "ok": False,
        "current": None,
        "expected": migrate.head(),
    }


def test_readiness_names_the_database_when_it_is_unreachable(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'missing' / 'releasebot.db'}"))
    report = health.readiness(db, expected_head=migrate.head())
    assert report["ready"] is False
    assert report["reason"].startswith("database unreachable")
    assert report["down"] == ["database"]
    assert report["dependencies"]["database"]["ok"] is False
