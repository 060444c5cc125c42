"""Use cases: one module per verb a person or the system performs; handlers call nothing else.

    usecases = UseCases(ctx, verifier)        # built once by the lifespan (bot.app)
    await usecases.record_delivery(delivery, event)          # a CI webhook
    await usecases.decide_gate(gate_id=7, user_id="U1", decision="approve")
    await usecases.operate(action="rollback", deployment_id=3, user_id="U1", reason="...")

Each use case checks permission, owns its transaction and wakes the outbox worker when it
queued something. `UseCases` binds them to the running app's `Context` and exposes only
what a handler may read besides: settings, config, clock and metrics (never the database).

| module        | verbs                                                          |
|---------------|----------------------------------------------------------------|
| ingest        | record a delivery                                              |
| decide        | decide a gate, ask for and confirm break-glass                 |
| flags         | release a flag a step, reject or re-request it, pull the kill switch |
| operate       | promote, roll back, unlock (buttons and `/release`)            |
| freeze        | freeze and unfreeze an environment                             |
| lock          | lock and unlock a service's environments, the locks in force   |
| rerequest     | ask again for an expired gate (the Re-request button)          |
| rollouts      | promote or abort an Argo Rollouts canary                       |
| request_gate  | request a gate from CI over the API, read its status           |
| read          | status, history, pending approvals, App Home lists, metrics    |
| dashboard     | the dashboard's pages and a deployment's evidence pack         |
| verify        | run the due checks                                             |
| sweep         | sweep gates, drop old webhook bodies                           |
| audit_forward | queue new audit records for the SIEM's webhook                 |
| digest        | post the weekly DORA digest                                    |
| health        | readiness and the Prometheus exposition                        |
| slack_events  | answer each Slack event once, across retries and replicas      |
| audit_trail   | audit keys, checkpoints, the signing key and signatures        |
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.config import Config
from bot.domain.events import DeployEvent
from bot.domain.ingest import Delivery, IngestResult, ShaLookup
from bot.metrics import Metrics
from bot.ports import Clock, Comparison
from bot.services.gates import Outcome
from bot.settings import Settings
from bot.usecases import (
    audit_forward,
    audit_trail,
    dashboard,
    decide,
    deploy,
    digest,
    flags,
    freeze,
    health,
    ingest,
    jobs,
    lock,
    operate,
    read,
    request_gate,
    rerequest,
    rollouts,
    skip,
    slack_events,
    sweep,
)
from bot.usecases.context import Context
from bot.usecases.lock import LockInForce, LockOutcome
from bot.usecases.verify import Verifier

__all__ = ["Context", "Outcome", "UseCases"]


class UseCases:
    """Every use case, bound to one running app."""

    def __init__(self, ctx: Context, verifier: Verifier) -> None:
        self._ctx = ctx
        self._verifier = verifier
        self._gate_scopes = decide.GateScopes()

    @property
    def settings(self) -> Settings:
        return self._ctx.settings

    @property
    def config(self) -> Config:
        return self._ctx.config

    @property
    def clock(self) -> Clock:
        return self._ctx.clock

    @property
    def metrics(self) -> Metrics:
        return self._ctx.metrics

    # --- CI and the API -----------------------------------------------------------------

    async def record_delivery(
        self,
        delivery: Delivery,
        event: DeployEvent | None,
        note: str | None = None,
        *,
        commits: Comparison | None = None,
        lookup: ShaLookup | None = None,
    ) -> IngestResult:
        return await ingest.record_delivery(
            self._ctx, delivery, event, note, commits=commits, lookup=lookup
        )

    async def request_gate(
        self,
        *,
        service: str,
        environment: str,
        version: str,
        sha: str | None = None,
        requested_by: str | None = None,
        url: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        return await request_gate.request_gate(
            self._ctx,
            service=service,
            environment=environment,
            version=version,
            sha=sha,
            requested_by=requested_by,
            url=url,
        )

    async def gate_status(self, gate_id: int) -> dict[str, Any] | None:
        return await request_gate.gate_status(self._ctx, gate_id)

    async def claim_job_tick(self, *, job_id: str, tick_at: datetime, holder: str) -> bool:
        """Whether this scheduler runs a job's tick (one replica does)."""
        return await jobs.claim(self._ctx, job_id=job_id, tick_at=tick_at, holder=holder)

    async def finish_job_tick(self, *, job_id: str, tick_at: datetime, holder: str) -> None:
        await jobs.finish(self._ctx, job_id=job_id, tick_at=tick_at, holder=holder)

    async def prune_job_runs(self) -> int:
        return await jobs.prune(self._ctx)

    # --- buttons and commands -------------------------------------------------------------

    async def decide_gate(
        self, *, gate_id: int, user_id: str, decision: str, reason: str | None = None
    ) -> Outcome:
        return await decide.decide_gate(
            self._ctx,
            self._gate_scopes,
            gate_id=gate_id,
            user_id=user_id,
            decision=decision,
            reason=reason,
        )

    async def break_glass(
        self, *, gate_id: int, user_id: str, reason: str | None = None, confirm: bool = False
    ) -> Outcome:
        if confirm:
            return await decide.confirm_break_glass(self._ctx, gate_id=gate_id, user_id=user_id)
        return await decide.request_break_glass(
            self._ctx, gate_id=gate_id, user_id=user_id, reason=reason
        )

    async def release_flag(
        self, *, deployment_id: int, flag: str, user_id: str, step_id: int | None = None
    ) -> Outcome:
        return await flags.release_flag(
            self._ctx, deployment_id=deployment_id, flag=flag, user_id=user_id, step_id=step_id
        )

    async def rerequest_flag(
        self, *, deployment_id: int, flag: str, step_id: int, user_id: str
    ) -> Outcome:
        return await flags.rerequest_flag(
            self._ctx, deployment_id=deployment_id, flag=flag, step_id=step_id, user_id=user_id
        )

    async def reject_flag(
        self,
        *,
        deployment_id: int,
        flag: str,
        user_id: str,
        reason: str,
        step_id: int | None = None,
    ) -> Outcome:
        return await flags.reject_flag(
            self._ctx,
            deployment_id=deployment_id,
            flag=flag,
            user_id=user_id,
            reason=reason,
            step_id=step_id,
        )

    async def kill_flag(self, *, deployment_id: int, flag: str, user_id: str) -> Outcome:
        return await flags.kill_switch(
            self._ctx, deployment_id=deployment_id, flag=flag, user_id=user_id
        )

    async def promote_rollout(
        self, *, deployment_id: int, user_id: str, fully: bool = False
    ) -> Outcome:
        return await rollouts.promote_rollout(
            self._ctx, deployment_id=deployment_id, user_id=user_id, fully=fully
        )

    async def abort_rollout(self, *, deployment_id: int, user_id: str, reason: str) -> Outcome:
        return await rollouts.abort_rollout(
            self._ctx, deployment_id=deployment_id, user_id=user_id, reason=reason
        )

    async def rerequest_gate(self, *, gate_id: int, user_id: str) -> Outcome:
        return await rerequest.rerequest_gate(self._ctx, gate_id=gate_id, user_id=user_id)

    async def operate(
        self, *, action: str, deployment_id: int, user_id: str, reason: str | None = None
    ) -> Outcome:
        return await operate.operate(
            self._ctx, action=action, deployment_id=deployment_id, user_id=user_id, reason=reason
        )

    async def skip_verification(self, *, deployment_id: int, user_id: str, reason: str) -> Outcome:
        return await skip.skip_verification(
            self._ctx, deployment_id=deployment_id, user_id=user_id, reason=reason
        )

    async def promote_version(
        self, *, user_id: str, service: str, version: str, environment: str
    ) -> Outcome:
        return await operate.promote_version(
            self._ctx, user_id=user_id, service=service, version=version, environment=environment
        )

    async def deploy_ref(
        self, *, user_id: str, service: str, ref: str, environment: str
    ) -> Outcome:
        return await deploy.deploy_ref(
            self._ctx, user_id=user_id, service=service, ref=ref, environment=environment
        )

    async def rollback_environment(
        self,
        *,
        user_id: str,
        service: str,
        environment: str,
        to_version: str | None = None,
        reason: str,
    ) -> Outcome:
        return await operate.rollback_environment(
            self._ctx,
            user_id=user_id,
            service=service,
            environment=environment,
            to_version=to_version,
            reason=reason,
        )

    async def freeze(
        self, *, user_id: str, environment: str, duration: timedelta, reason: str
    ) -> read.FreezeOutcome:
        return await freeze.freeze(
            self._ctx, user_id=user_id, environment=environment, duration=duration, reason=reason
        )

    async def unfreeze(self, *, user_id: str, environment: str) -> read.FreezeOutcome:
        return await freeze.unfreeze(self._ctx, user_id=user_id, environment=environment)

    async def lock(
        self, *, user_id: str, service: str, environment: str | None, reason: str
    ) -> LockOutcome:
        return await lock.lock(
            self._ctx, user_id=user_id, service=service, environment=environment, reason=reason
        )

    async def unlock(self, *, user_id: str, service: str, environment: str | None) -> LockOutcome:
        return await lock.unlock(
            self._ctx, user_id=user_id, service=service, environment=environment
        )

    async def locks_in_force(self) -> list[LockInForce]:
        return await lock.locks_in_force(self._ctx)

    async def first_slack_delivery(self, *, event_id: str, event_type: str) -> bool:
        return await slack_events.first_delivery(
            self._ctx, event_id=event_id, event_type=event_type
        )

    # --- what people look at --------------------------------------------------------------

    def environments_of(self, service: str | None = None) -> list[tuple[str, str]]:
        return read.environments_of(self._ctx, service)

    async def status(self, pairs: list[tuple[str, str]]) -> list[read.StatusRow]:
        return await read.status(self._ctx, pairs)

    async def history(
        self, *, service: str, environment: str | None, limit: int, offset: int
    ) -> read.HistoryPage:
        return await read.history(
            self._ctx, service=service, environment=environment, limit=limit, offset=offset
        )

    async def pending_approvals(
        self, user_id: str, *, only_actionable: bool = False
    ) -> list[read.PendingApproval]:
        return await read.pending_approvals(self._ctx, user_id, only_actionable=only_actionable)

    async def owned_services(self, user_id: str) -> list[str]:
        return await read.owned_services(self._ctx, user_id)

    async def recent_releases(self, services: list[str], *, limit: int) -> list[read.DeploymentRow]:
        return await read.recent_releases(self._ctx, services, limit=limit)

    async def freezes_in_force(self) -> list[read.ActiveFreeze]:
        return await read.freezes_in_force(self._ctx)

    async def metrics_message(self, *, service: str | None, days: int) -> read.MetricsMessage:
        return await read.metrics_message(self._ctx, service=service, days=days)

    # --- the dashboard --------------------------------------------------------------------

    async def overview(self) -> dashboard.Overview:
        return await dashboard.overview(self._ctx)

    async def deployment_page(self, deployment_id: int) -> dashboard.DeploymentPage | None:
        return await dashboard.deployment_page(self._ctx, deployment_id)

    async def evidence_of_deployment(self, deployment_id: int) -> dict[str, Any] | None:
        return await dashboard.evidence_of_deployment(self._ctx, deployment_id)

    async def evidence_of_release(self, release_id: int) -> dict[str, Any] | None:
        return await dashboard.evidence_of_release(self._ctx, release_id)

    async def audit_page(self, *, limit: int, before_seq: int | None) -> dashboard.AuditPage:
        return await dashboard.audit_page(self._ctx, limit=limit, before_seq=before_seq)

    async def dora_series(self, *, days: int, bucket: str) -> dashboard.DoraSeries:
        return await dashboard.dora_series(self._ctx, days=days, bucket=bucket)

    # --- the system's own verbs -----------------------------------------------------------

    async def readiness(self) -> dict[str, Any]:
        return await health.readiness(self._ctx)

    async def metrics_exposition(self) -> bytes:
        return await health.metrics_exposition(self._ctx)

    async def run_due_checks(self) -> int:
        ran = await self._verifier.run_due()
        if ran:
            self._ctx.wake()
        return ran

    async def sweep_gates(self) -> int:
        return await sweep.sweep_gates(self._ctx)

    async def forward_audit(self) -> int:
        return await audit_forward.forward_audit(self._ctx)

    async def drop_old_webhook_bodies(self) -> int:
        return await sweep.drop_old_webhook_bodies_now(self._ctx)

    async def post_weekly_digest(self) -> bool:
        return await digest.post_weekly_digest(self._ctx)

    async def publish_audit_checkpoint(self) -> int | None:
        return await audit_trail.publish_checkpoint(self._ctx)

    def signing_public_key(self) -> dict[str, str] | None:
        return audit_trail.signing_public_key(self._ctx)

    def wake_outbox(self) -> None:
        """Retries come due while nothing new is committed: wake the worker to look."""
        self._ctx.wake()
