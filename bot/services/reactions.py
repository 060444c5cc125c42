"""What follows a state change, in one place.

The services below this module change state and say what changed; none of them imports
this one. Here the consequences are drawn:

- a deployment **succeeded**: write its commits' lead times when it is its release's first
  run in production (`lead_times`), finish the rollbacks it restores, send a change event when
  its environment is production (`Config.is_production`), then plan its verification, or
  promote it on when there is nothing to verify and its environment promotes automatically;
- its verification **passed**: promote it on when the environment promotes automatically
  (a held promotion is said in the thread and audited); for a service with an `slo:` the
  error budget is measured first, and the promotion follows the measurement
  (`budget_measured`), held while the budget is exhausted or unknown;
- its error budget was **measured**: settle the gates waiting for it, and go on with the
  automatic promotion that waited;
- its verification **failed**: roll it back when the environment's policy says so.

    reactions.apply_event(session, now=..., config=..., service=..., environment=..., event=...)
    reactions.record_check(session, now=..., config=..., run_id=..., result=...)
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.config import Config
from bot.domain import states
from bot.domain.events import DeployEvent
from bot.domain.ingest import revision_label
from bot.domain.messages import TemplateLine
from bot.domain.slo import Budget
from bot.ports import CheckResult, Comparison
from bot.services import (
    audit,
    deployments,
    flag_checks,
    gates,
    lead_times,
    markers,
    outbox,
    releases,
    rollouts,
    slo,
    verification,
)
from bot.services.gate_close import refresh_message
from bot.store.tables import Deployment

RELEASEBOT = "releasebot"


def apply_event(
    session: Session,
    *,
    now: datetime,
    config: Config,
    service: str,
    environment: str,
    event: DeployEvent,
    commits: Comparison | None = None,
) -> tuple[Deployment | None, bool]:
    """Apply one CI event, then what follows when it deployed. Returns (deployment, changed)."""
    applied = deployments.apply(
        session,
        now=now,
        service=service,
        environment=environment,
        event=event,
        commits=commits,
        config=config,
    )
    if applied.deployment is not None and states.SUCCEEDED in applied.moved_to:
        # Its release's first run in production: its commits' lead times are written now.
        lead_times.deployed(
            session, deployment=applied.deployment, is_production=config.is_production
        )
    if applied.deployment is not None:
        markers.deploy_progress(
            session,
            now=now,
            config=config,
            deployment=applied.deployment,
            moved_to=applied.moved_to,
        )
    # An Argo Rollout reported moving or settled is news even when the deployment is not.
    noticed = applied.deployment is not None and rollouts.observe(
        session, now=now, deployment=applied.deployment, event=event
    )
    if applied.deployed and applied.deployment is not None:
        deployed(session, now=now, config=config, deployment=applied.deployment)
    return applied.deployment, applied.changed or noticed


def record_check(
    session: Session, *, now: datetime, config: Config, run_id: int, result: CheckResult
) -> verification.Recorded:
    """Store one check result, then what follows when it ended verification."""
    recorded = verification.record(session, now=now, config=config, run_id=run_id, result=result)
    if recorded.deployment is None:
        return recorded
    flag_checks.check_recorded(session, now=now, config=config, run_id=run_id)
    if recorded.verdict == states.VERIFIED:
        verified(session, now=now, config=config, deployment=recorded.deployment)
    elif recorded.verdict == states.VERIFICATION_FAILED:
        verification_failed(
            session, now=now, config=config, deployment=recorded.deployment, check=recorded.check
        )
    return recorded


def deployed(session: Session, *, now: datetime, config: Config, deployment: Deployment) -> None:
    """A deployment succeeded: finish rollbacks it restores; verify it, or promote it on when
    nothing is left to verify and the environment promotes automatically."""
    releases.finish_rollbacks(session, now=now, deployed=deployment)
    if config.is_production(deployment.service, deployment.environment):
        releases.change_event(
            session,
            now=now,
            deployment=deployment,
            what="deploy",
            summary=f"Deployed {deployment.service} "
            f"{revision_label(deployment.sha, deployment.version)} "
            f"to {deployment.environment}",
        )
    env = config.services[deployment.service].environment(deployment.environment)
    if env is not None and env.verify:
        verification.plan(session, now=now, config=config, deployment=deployment)
    elif env is not None and env.auto_promote_to and deployment.id is not None:
        promote_on(session, now=now, config=config, deployment=deployment, say_held=False)


def verified(session: Session, *, now: datetime, config: Config, deployment: Deployment) -> None:
    """Every check passed: promote on when the environment promotes automatically."""
    env = config.services[deployment.service].environment(deployment.environment)
    if env is None or not env.auto_promote_to or deployment.id is None:
        return
    promote_on(session, now=now, config=config, deployment=deployment)


def promote_on(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment: Deployment,
    say_held: bool = True,
) -> None:
    """Promote automatically; for a service with an SLO, measure its budget first."""
    assert deployment.id is not None
    if not slo.has_slo(config, deployment.service):
        promote_automatically(
            session, now=now, config=config, deployment=deployment, say_held=say_held
        )
        return
    slo.request(session, now=now, service=deployment.service, promote=deployment.id)
    note = TemplateLine(
        deployment.id,
        "note.txt.j2",
        {"icon": ":hourglass:", "text": "Measuring the error budget before promoting on"},
    )
    outbox.enqueue(session, note, now=now)


def budget_measured(
    session: Session, *, now: datetime, config: Config, budget: Budget, promote: int | None
) -> None:
    """A measurement came in: keep it, settle the gates waiting for it, then the automatic
    promotion that waited (held, and said why, when the budget is exhausted or unknown)."""
    slo.record(session, now=now, budget=budget)
    for waiting in slo.waiting_for(session, budget.service):
        gates.reassess(session, now=now, config=config, deployment=waiting)
    # Locked and read afresh: a rollback of it committing meanwhile is seen, not promoted.
    source = (
        session.get(Deployment, promote, with_for_update=True, populate_existing=True)
        if promote is not None
        else None
    )
    if source is not None and source.state in (states.VERIFIED, states.SUCCEEDED):
        promote_automatically(session, now=now, config=config, deployment=source)
    if source is not None:
        refresh_message(session, now=now, deployment=source)  # it shows the budget now


def promote_automatically(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment: Deployment,
    say_held: bool = True,
) -> None:
    """Promote to `auto_promote_to`; a refusal is said in the thread and audited
    (`say_held`)."""
    assert deployment.id is not None
    env = config.services[deployment.service].environment(deployment.environment)
    if env is None or not env.auto_promote_to:
        return
    outcome = releases.promote(
        session,
        now=now,
        config=config,
        deployment_id=deployment.id,
        actor=RELEASEBOT,
        automatic=True,
    )
    if outcome.result != releases.REFUSED or not say_held:
        return
    audit.append(
        session,
        at=now,
        actor=RELEASEBOT,
        action="release.promotion_held",
        subject=f"deployment:{deployment.id}",
        details={"to": env.auto_promote_to, "reason": outcome.message},
    )
    note = TemplateLine(
        deployment.id,
        "note.txt.j2",
        {
            "icon": ":lock:",
            "text": f"Not promoted to {env.auto_promote_to} automatically: {outcome.message}",
        },
    )
    outbox.enqueue(session, note, now=now)


def verification_failed(
    session: Session, *, now: datetime, config: Config, deployment: Deployment, check: str
) -> None:
    """Verification failed (on-call is told already): roll back when the policy says so."""
    markers.verification_failed(session, now=now, config=config, deployment=deployment, check=check)
    env = config.services[deployment.service].environment(deployment.environment)
    if env is None or env.on_verification_failure != "rollback" or env.deploy is None:
        return
    assert deployment.id is not None
    releases.rollback(
        session,
        now=now,
        config=config,
        deployment_id=deployment.id,
        actor=RELEASEBOT,
        reason=f"verification failed: {check}",
    )
