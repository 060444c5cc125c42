"""Everything the lifespan built: the composition root's handle on the running app.

Handlers never see it: they get `usecases`. The scheduler's jobs, the CLI's demo and tests
that look inside (the database, the outbox worker) use the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.config import Config
from bot.metrics import Metrics
from bot.outbox_worker import OutboxWorker
from bot.ports import CheckRunner, Clock, ScmClient, SlackDirectory
from bot.requests_first import Arrivals, RequestsFirst
from bot.settings import Settings
from bot.store import doorbell as bell
from bot.store.db import Database
from bot.store.spool import Spool
from bot.usecases import Context, UseCases, audit_trail
from bot.usecases.apply import Applier, watches_arrivals
from bot.usecases.spooled import SpoolDrainer
from bot.usecases.verify import Verifier


@dataclass
class Runtime:
    context: Context
    worker: OutboxWorker
    verifier: Verifier
    usecases: UseCases
    applier: Applier
    spool_drainer: SpoolDrainer
    # Tells the other processes on the database of work committed here, and wakes this
    # one's loops for theirs (`bot.store.doorbell`).
    doorbell: bell.Doorbell = field(default_factory=bell.Doorbell)

    @classmethod
    def assemble(
        cls,
        *,
        db: Database,
        config: Config,
        settings: Settings,
        clock: Clock,
        directory: SlackDirectory,
        metrics: Metrics,
        worker: OutboxWorker,
        runners: Mapping[str, CheckRunner],
        migrations_head: str | None = None,
        apply_inline: bool = False,
        scm: Mapping[str, ScmClient] | None = None,
        arrivals: Arrivals | None = None,
        doorbell: bell.Doorbell | None = None,
    ) -> Runtime:
        """The use cases over these parts, with a verifier running checks through `runners`
        and an applier applying stored deliveries (or each applied as it is stored), giving
        way to the requests `arrivals` counts. Whatever wakes a loop here rings `doorbell`
        too, for the other processes' loops."""
        doorbell = doorbell or bell.Doorbell()
        wake_outbox = _and_ring(worker.wake, doorbell, bell.OUTBOX)
        applier = Applier(
            db=db,
            clock=clock,
            config=config,
            metrics=metrics,
            wake_outbox=wake_outbox,
            max_attempts=settings.apply_attempts,
            watch_arrivals=watches_arrivals(settings.role, db.engine.dialect.name),
            requests=RequestsFirst(arrivals),
        )
        spool = Spool(settings.spool_path, limit=settings.spool_max)
        drainer = SpoolDrainer(
            # Stored from the spool, not by requests arriving now: the others only look.
            db, spool, wake_applier=_and_ring(applier.look, doorbell, bell.CHANGED)
        )
        context = Context(
            db=db,
            config=config,
            settings=settings,
            clock=clock,
            directory=directory,
            metrics=metrics,
            wake=wake_outbox,
            migrations_head=migrations_head,
            wake_applier=_and_ring(applier.wake, doorbell, bell.DELIVERIES),
            apply_inline=apply_inline,
            spool=spool,
            wake_spool=drainer.wake,
            scm=dict(scm or {}),
        )
        audit_trail.bind(context)
        verifier = Verifier(db=db, clock=clock, config=config, runners=runners, metrics=metrics)
        usecases = UseCases(context, verifier)
        return cls(context, worker, verifier, usecases, applier, drainer, doorbell)

    def wakes(self) -> bell.Wakes:
        """What another process's ring wakes here: a delivery stored elsewhere counts as a
        request arriving, as one stored here does (`Applier.wake`)."""
        return {
            bell.DELIVERIES: self.applier.wake,
            bell.OUTBOX: self.worker.wake,
            bell.CHANGED: self._look,
        }

    def _look(self) -> None:
        self.applier.look()
        self.worker.wake()

    @property
    def db(self) -> Database:
        return self.context.db

    @property
    def config(self) -> Config:
        return self.context.config

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def metrics(self) -> Metrics:
        return self.context.metrics

    @property
    def migrations_head(self) -> str | None:
        return self.context.migrations_head


def _and_ring(wake: Callable[[], None], doorbell: bell.Doorbell, topic: str) -> Callable[[], None]:
    def wake_and_ring() -> None:
        wake()
        doorbell.ring(topic)

    return wake_and_ring
