"""What a running app holds, built once by the lifespan and handed to the handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from sqlmodel import Session

from bot.checks import CheckScheduler
from bot.config import Config
from bot.domain.events import DeployEvent
from bot.domain.gates import Person
from bot.domain.ingest import Delivery, IngestResult, ShaLookup
from bot.metrics import Metrics
from bot.outbox import OutboxWorker
from bot.ports import Clock, Comparison, SlackDirectory
from bot.services import dora, freezes, gates, queries, releases
from bot.services.ingest import record_delivery
from bot.settings import Settings
from bot.store.db import Database

T = TypeVar("T")
GATE_SCOPES_KEPT = 256


@dataclass
class Runtime:
    checks: CheckScheduler
    directory: SlackDirectory
    settings: Settings
    config: Config
    db: Database
    clock: Clock
    metrics: Metrics
    worker: OutboxWorker
    migrations_head: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # (service, environment) of the gates clicked lately: it never changes for a gate (nor
    # are gates deleted), and a burst of clicks on one message would read it each time.
    _gate_scopes: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)

    async def record_delivery(
        self,
        delivery: Delivery,
        event: DeployEvent | None,
        note: str | None = None,
        *,
        commits: Comparison | None = None,
        lookup: ShaLookup | None = None,
    ) -> IngestResult:
        """Store and apply one verified webhook delivery, then let the outbox send.

        `lookup` is an event whose full sha the worker still has to fetch (GitLab's
        Deployment Hook); `commits` is a commit list the webhook carried itself.
        """
        now = self.clock.now()
        # Group commit: deliveries arriving together share one transaction (each in its
        # own savepoint); the future resolves once that transaction has committed.
        result = await asyncio.wrap_future(
            self.db.submit_write(
                lambda s: record_delivery(
                    s,
                    now=now,
                    config=self.config,
                    delivery=delivery,
                    event=event,
                    note=note,
                    commits=commits,
                    lookup=lookup,
                )
            )
        )
        self.metrics.webhooks.labels(delivery.provider, result.status).inc()
        if result.status == "accepted":
            self.worker.wake()
        return result

    async def decide_gate(
        self, *, gate_id: int, user_id: str, decision: str, reason: str | None = None
    ) -> gates.Outcome:
        """One person's approve or reject from Slack: who they are, then one transaction."""
        found = self._gate_scopes.get(gate_id)
        if found is None:
            found = await asyncio.to_thread(self._gate_scope, gate_id)
            if found is None:
                return gates.Outcome(gates.REFUSED, "this gate does not exist", gate_id)
            if len(self._gate_scopes) >= GATE_SCOPES_KEPT:
                del self._gate_scopes[next(iter(self._gate_scopes))]  # the oldest
            self._gate_scopes[gate_id] = found
        service, environment = found
        groups = gates.gate_principals(self.config, service, environment)
        group_members = {group: await self.directory.group_members(group) for group in groups}
        user = await self.directory.user(user_id)
        person = Person.from_config(user_id, user.email, self.config.identities)
        now = self.clock.now()
        outcome = await asyncio.to_thread(
            self.db.write,
            lambda s: gates.decide(
                s,
                now=now,
                config=self.config,
                gate_id=gate_id,
                person=person,
                group_members=group_members,
                decision=decision,
                reason=reason,
            ),
        )
        self.worker.wake()
        return outcome

    def _gate_scope(self, gate_id: int) -> tuple[str, str] | None:
        with self.db.read() as session:
            return gates.scope(session, gate_id)

    async def operate(
        self, *, action: str, deployment_id: int, user_id: str, reason: str | None = None
    ) -> gates.Outcome:
        """promote, rollback or unlock from Slack, after the same permission check for all."""
        scope = await asyncio.to_thread(self._deployment_scope, deployment_id)
        if scope is None:
            return gates.Outcome(gates.REFUSED, "this deployment does not exist")
        allowed = releases.operators(self.config, *scope, action=action)
        memberships = await self._groups_of(user_id, allowed)
        now = self.clock.now()

        def run(session: Session) -> gates.Outcome:
            refusal = releases.refusal_for(
                session,
                now=now,
                config=self.config,
                deployment_id=deployment_id,
                user_id=user_id,
                memberships=memberships,
                action=action,
            )
            if refusal is not None:
                return gates.Outcome(gates.REFUSED, refusal, deployment_id=deployment_id)
            if action == "promote":
                return releases.promote(
                    session, now=now, config=self.config, deployment_id=deployment_id, actor=user_id
                )
            if action == "rollback":
                return releases.rollback(
                    session,
                    now=now,
                    config=self.config,
                    deployment_id=deployment_id,
                    actor=user_id,
                    reason=reason or "",
                )
            if action == "unlock":
                unlocked = releases.unlock(
                    session, now=now, service=scope[0], environment=scope[1], actor=user_id
                )
                return gates.Outcome(
                    "unlocked" if unlocked else gates.REFUSED,
                    f"automatic promotion into {scope[1]} is unlocked"
                    if unlocked
                    else f"{scope[1]} of {scope[0]} is not locked",
                    deployment_id=deployment_id,
                )
            raise ValueError(f"unknown action {action!r}")

        outcome = await asyncio.to_thread(self.db.write, run)
        self.worker.wake()
        return outcome

    async def break_glass(
        self, *, gate_id: int, user_id: str, reason: str | None = None, confirm: bool = False
    ) -> gates.Outcome:
        """Ask for break-glass on a gate (with a reason), or confirm someone else's request."""
        now = self.clock.now()
        if not confirm:
            outcome = await asyncio.to_thread(
                self.db.write,
                lambda s: gates.request_break_glass(
                    s,
                    now=now,
                    config=self.config,
                    gate_id=gate_id,
                    user_id=user_id,
                    reason=reason or "",
                ),
            )
        else:
            groups = frozenset(
                p
                for p in (self.config.break_glass.approvers if self.config.break_glass else ())
                if p.startswith("S")
            )
            members = {group: await self.directory.group_members(group) for group in groups}
            outcome = await asyncio.to_thread(
                self.db.write,
                lambda s: gates.confirm_break_glass(
                    s,
                    now=now,
                    config=self.config,
                    gate_id=gate_id,
                    user_id=user_id,
                    group_members=members,
                ),
            )
        self.worker.wake()
        return outcome

    async def _groups_of(self, user_id: str, principals: frozenset[str]) -> frozenset[str]:
        found = set()
        for group in sorted(p for p in principals if p.startswith("S")):
            if user_id in await self.directory.group_members(group):
                found.add(group)
        return frozenset(found)

    def _deployment_scope(self, deployment_id: int) -> tuple[str, str] | None:
        with self.db.read() as session:
            return releases.scope(session, deployment_id)

    # --- slash command and App Home ------------------------------------------------------

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run a read-only query in a worker thread (the slash command's lists, App Home)."""

        def run() -> T:
            with self.db.read() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def groups_of(self, user_id: str, principals: Iterable[str]) -> frozenset[str]:
        """The user groups among `principals` this user is in (Slack, cached by the directory)."""
        return await self._groups_of(user_id, frozenset(principals))

    async def promote_version(
        self, *, user_id: str, service: str, version: str, environment: str
    ) -> gates.Outcome:
        """`/release promote <service> <version|latest> to <env>`: find the deployment in the
        environment before `environment`, then the same path as the Promote button."""
        found = await self.read(
            lambda s: queries.promote_source(
                s, config=self.config, service=service, version=version, target=environment
            )
        )
        if found.deployment_id is None:
            return gates.Outcome(gates.REFUSED, found.problem or "nothing to promote")
        return await self.operate(
            action="promote", deployment_id=found.deployment_id, user_id=user_id
        )

    async def rollback_environment(
        self,
        *,
        user_id: str,
        service: str,
        environment: str,
        to_version: str | None = None,
        reason: str,
    ) -> gates.Outcome:
        """`/release rollback <service> <env> [to <version>]`: the newest deployed deployment
        there is rolled back, as the Roll back button does (to the last good version, or to
        the one named, which must have run in that environment)."""
        found = await self.read(
            lambda s: queries.rollback_target(
                s,
                config=self.config,
                service=service,
                environment=environment,
                to_version=to_version,
            )
        )
        if found.deployment_id is None:
            return gates.Outcome(gates.REFUSED, found.problem or "nothing to roll back")
        if found.to_sha is None:
            return await self.operate(
                action="rollback",
                deployment_id=found.deployment_id,
                user_id=user_id,
                reason=reason,
            )
        deployment_id, to_sha = found.deployment_id, found.to_sha
        allowed = releases.operators(self.config, service, environment, action="rollback")
        memberships = await self._groups_of(user_id, allowed)
        now = self.clock.now()

        def run(session: Session) -> gates.Outcome:
            refusal = releases.refusal_for(
                session,
                now=now,
                config=self.config,
                deployment_id=deployment_id,
                user_id=user_id,
                memberships=memberships,
                action="rollback",
            )
            if refusal is not None:
                return gates.Outcome(gates.REFUSED, refusal, deployment_id=deployment_id)
            return releases.rollback(
                session,
                now=now,
                config=self.config,
                deployment_id=deployment_id,
                actor=user_id,
                reason=reason,
                to_sha=to_sha,
            )

        outcome = await asyncio.to_thread(self.db.write, run)
        self.worker.wake()
        return outcome

    async def freeze(
        self, *, user_id: str, environment: str, duration: timedelta, reason: str
    ) -> freezes.FreezeOutcome:
        """`/release freeze`: release managers only; stored and audited (refusals too)."""
        memberships = await self._groups_of(user_id, frozenset(self.config.slack.release_managers))
        now = self.clock.now()
        outcome = await asyncio.to_thread(
            self.db.write,
            lambda s: freezes.freeze(
                s,
                now=now,
                config=self.config,
                environment=environment,
                duration=duration,
                reason=reason,
                actor=user_id,
                memberships=memberships,
            ),
        )
        return outcome

    async def unfreeze(self, *, user_id: str, environment: str) -> freezes.FreezeOutcome:
        """`/release unfreeze`: lift the freezes started from Slack on that environment."""
        memberships = await self._groups_of(user_id, frozenset(self.config.slack.release_managers))
        now = self.clock.now()
        outcome = await asyncio.to_thread(
            self.db.write,
            lambda s: freezes.unfreeze(
                s,
                now=now,
                config=self.config,
                environment=environment,
                actor=user_id,
                memberships=memberships,
            ),
        )
        return outcome

    async def pending_approvals(
        self, user_id: str, *, only_actionable: bool = False
    ) -> list[queries.PendingApproval]:
        """Open gates, with `can_act` for this user (their groups resolved through Slack)."""
        memberships = await self._groups_of(user_id, queries.approver_groups(self.config))
        return await self.read(
            lambda s: queries.pending(
                s,
                config=self.config,
                user_id=user_id,
                memberships=memberships,
                only_actionable=only_actionable,
            )
        )

    async def owned_services(self, user_id: str) -> list[str]:
        """Services whose owners list this user or one of their user groups."""
        memberships = await self._groups_of(user_id, queries.owner_groups(self.config))
        return queries.owned_services(self.config, user_id, memberships)

    async def metrics_message(self, *, service: str | None, days: int) -> dora.MetricsMessage:
        """`/release metrics`: DORA metrics over the last `days`, overall and per configured
        service (or for one service), as a Slack message."""
        now = self.clock.now()
        services = list(self.config.services) if service is None else None
        return await self.read(
            lambda s: dora.message(
                dora.report(s, now=now, service=service, windows=(days,), services=services),
                now=now,
            )
        )
