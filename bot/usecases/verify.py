"""Run the due checks: claim them from the database, run each at the edge, record the results.

`Verifier.run_due` is what the scheduler's `checks.tick` job calls twice a second; tests
call it directly with a fixed clock. Claims are per process (`worker`), so replicas never
run the same check run twice. A result that ends verification is followed up by
`bot.services.reactions` (promote on, or roll back by policy) in the same transaction.

On shutdown `stop` claims nothing more, and `finish` lets the checks in flight end within the
grace; a run claimed but not started, or cut short, is given back (pending again at once) so
another replica runs it without waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

from bot.config import Config
from bot.logs import log_context
from bot.metrics import Metrics
from bot.ports import CheckResult, CheckRunner, Clock
from bot.services import reactions, verification
from bot.store.db import Database

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class Verifier:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: Config,
        runners: Mapping[str, CheckRunner],
        worker: str = WORKER_ID,
        concurrency: int = 50,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._config = config
        self._runners = runners
        self._worker = worker
        self._limit = asyncio.Semaphore(concurrency)
        self._metrics = metrics
        self._stopping = False
        self._in_flight: set[asyncio.Task[int]] = set()
        self._unfinished: set[int] = set()  # claimed here, neither recorded nor given back

    def stop(self) -> None:
        """Claim no more check runs (the process is shutting down)."""
        self._stopping = True

    async def finish(self, timeout: float) -> None:
        """Stop, wait up to `timeout` seconds for the checks in flight, then cancel the rest
        (their runs are given back)."""
        self.stop()
        if not self._in_flight:
            return
        _, late = await asyncio.wait(set(self._in_flight), timeout=max(timeout, 0.0))
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        if self._unfinished:  # cut short, or cancelled before they started
            await self._give_back(sorted(self._unfinished))

    async def run_due(self) -> int:
        """Run every check that is due now; returns how many ran."""
        if self._stopping:
            return 0
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            return await self._run_due()
        finally:
            self._in_flight.discard(task)

    async def _run_due(self) -> int:
        now = self._clock.now()
        if self._metrics is not None:
            self._metrics.checks_last_tick.set(now.timestamp())
        claimed = await asyncio.to_thread(
            self._db.write,
            lambda s: verification.claim_due(s, now=now, worker=self._worker),
        )
        self._unfinished.update(run.id for run in claimed)
        if claimed:
            await asyncio.gather(*(self._run(run) for run in claimed))
        return len(claimed)

    async def _run(self, run: verification.ClaimedRun) -> None:
        with log_context(check_run_id=run.id, deployment_id=run.deployment_id):
            async with self._limit:
                if self._stopping:  # claimed, not started: another replica takes it now
                    await self._give_back([run.id])
                    return
                if self._metrics is not None:
                    lag = (self._clock.now() - run.due_at).total_seconds()
                    self._metrics.check_lag.observe(max(lag, 0.0))
                result = await self._check(run)
            now = self._clock.now()
            self._unfinished.discard(run.id)  # from here the result is stored, even if cancelled
            await asyncio.to_thread(
                self._db.write,
                lambda s: reactions.record_check(
                    s, now=now, config=self._config, run_id=run.id, result=result
                ),
            )
            if self._metrics is not None:
                outcome = "passed" if result.passed else "failed"
                self._metrics.check_runs.labels(run.kind, outcome).inc()

    async def _give_back(self, run_ids: list[int]) -> None:
        self._unfinished.difference_update(run_ids)
        await asyncio.to_thread(
            self._db.write,
            lambda s: verification.release(s, run_ids=run_ids, worker=self._worker),
        )

    async def _check(self, run: verification.ClaimedRun) -> CheckResult:
        runner = self._runners.get(run.kind)
        if runner is None:
            return CheckResult(False, f"no runner for {run.kind} checks")
        try:
            return await runner.run(run.spec)
        except Exception as exc:  # a runner bug must not leave the run claimed forever
            log.exception("check %s (%s) crashed", run.name, run.kind)
            return CheckResult(False, f"the check could not run: {type(exc).__name__}")
