"""Everything the lifespan built: the composition root's handle on the running app.

Handlers never see it: they get `usecases`. The scheduler's jobs, the CLI's demo and tests
that look inside (the database, the outbox worker) use the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import Config
from bot.metrics import Metrics
from bot.outbox_worker import OutboxWorker
from bot.ports import CheckRunner, Clock, ScmClient, SlackDirectory
from bot.requests_first import Arrivals, RequestsFirst
from bot.settings import Settings
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
    ) -> Runtime:
        """The use cases over these parts, with a verifier running checks through `runners`
        and an applier applying stored deliveries (or each applied as it is stored), giving
        way to the requests `arrivals` counts."""
        applier = Applier(
            db=db,
            clock=clock,
            config=config,
            metrics=metrics,
            wake_outbox=worker.wake,
            max_attempts=settings.apply_attempts,
            watch_arrivals=watches_arrivals(settings.role, db.engine.dialect.name),
            requests=RequestsFirst(arrivals),
        )
        spool = Spool(settings.spool_path, limit=settings.spool_max)
        drainer = SpoolDrainer(db, spool, wake_applier=applier.look)
        context = Context(
            db=db,
            config=config,
            settings=settings,
            clock=clock,
            directory=directory,
            metrics=metrics,
            wake=worker.wake,
            migrations_head=migrations_head,
            wake_applier=applier.wake,
            apply_inline=apply_inline,
            spool=spool,
            wake_spool=drainer.wake,
            scm=dict(scm or {}),
        )
        audit_trail.bind(context)
        verifier = Verifier(db=db, clock=clock, config=config, runners=runners, metrics=metrics)
        usecases = UseCases(context, verifier)
        return cls(context, worker, verifier, usecases, applier, drainer)

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
