"""What runs beside the HTTP server, by role: the applier, the outbox worker, the scheduler.

`RELEASEBOT_ROLE` (`releasebot serve --role`) says what this process runs: `web` serves
HTTP and stores deliveries; `worker` runs the applier, the outbox worker and the scheduler
(and still answers /healthz, /readyz and /metrics); `all`, the default, runs both.
Several web replicas and several workers may share one PostgreSQL: deliveries are claimed
by one applier, outbox rows by one worker, each job tick by one scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

from bot.outside import Overrides
from bot.runtime import Runtime
from bot.scheduling import build_scheduler, register_jobs

log = logging.getLogger("releasebot")

APPLIER_POLL_SECONDS = 1.0  # retries coming due, and deliveries other replicas stored


def start_background(
    runtime: Runtime, overrides: Overrides, stack: AsyncExitStack
) -> Callable[[], None]:
    """The scheduler's jobs, the applier's and the outbox worker's loops, drained when the
    app stops (a web process starts none of them).

    Returns `stop_claiming`, safe to call from a signal handler: from then on no delivery,
    outbox row or check run is claimed, and the work in flight has until
    `shutdown_grace_seconds` later to finish; when the app stops, what is still running then
    is cancelled and its claims are given back, so another replica takes them at once.
    """
    loop = asyncio.get_running_loop()
    deadline: list[float] = []  # when the work in flight is cut short, once draining
    works = runtime.settings.role != "web"
    log.info("releasebot role: %s", runtime.settings.role)

    def begin_drain() -> None:
        if not deadline:
            deadline.append(loop.time() + runtime.settings.shutdown_grace_seconds)
            runtime.applier.stop()
            runtime.worker.stop()
            runtime.verifier.stop()

    def stop_claiming() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            loop.call_soon_threadsafe(begin_drain)

    if works and overrides.start_scheduler:
        scheduler = build_scheduler()
        register_jobs(scheduler, runtime)
        scheduler.start()

        def stop_scheduler() -> None:
            if scheduler.running:
                scheduler.shutdown(wait=False)

        stack.callback(stop_scheduler)
    tasks: list[asyncio.Task[None]] = []
    if works and overrides.run_outbox_worker:
        tasks.append(
            asyncio.create_task(
                runtime.applier.run(poll_seconds=APPLIER_POLL_SECONDS), name="applier"
            )
        )
        tasks.append(
            asyncio.create_task(
                runtime.worker.run(poll_seconds=overrides.outbox_poll_seconds),
                name="outbox-worker",
            )
        )

    async def drain() -> None:
        begin_drain()
        remaining = deadline[0] - loop.time()
        waits = [runtime.verifier.finish(remaining)]
        waits.extend(finish_within(task, remaining) for task in tasks)
        await asyncio.gather(*waits)

    stack.push_async_callback(drain)
    return stop_claiming


async def finish_within(task: asyncio.Task[None], timeout: float) -> None:
    """Let `task` end by itself within `timeout` seconds, else cancel it; wait either way."""
    done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
    if not done:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
