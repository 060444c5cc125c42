"""SQLModel tables. Statuses are plain strings validated in bot.domain; times are UTC-aware."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.store.types import UTCDateTime


def _at(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


def _json(**kw: Any) -> Any:
    return Field(sa_type=sa.JSON, **kw)


class Release(SQLModel, table=True):
    """One version (sha) of one service, with what ships in it and how risky it looks."""

    __tablename__ = "release"
    __table_args__ = (sa.UniqueConstraint("service", "sha", name="uq_release_service_sha"),)

    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(max_length=100, index=True)
    sha: str = Field(max_length=64)
    version: str | None = Field(default=None, max_length=200)
    ref: str | None = Field(default=None, max_length=255)
    created_at: datetime = _at()
    # What ships, once assessed: the commits since `base_sha` and the size of the diff.
    base_sha: str | None = Field(default=None, max_length=64)
    commits: list[dict[str, Any]] | None = _json(default=None)
    diff: dict[str, Any] | None = _json(default=None)
    commits_source: str | None = Field(default=None, max_length=32)  # scm | webhook


class ReleaseCommit(SQLModel, table=True):
    """One of `Release.commits` as a row: what lead time for changes is measured from.

    Written with the commit list, in the same transaction, and replaced with it
    (`assessment.store_comparison`). The JSON on the release stays what messages and
    evidence show; these rows let the DORA read join a release's commit times in SQL.

    `authored_us` is the authored time in microseconds since 1970-01-01 UTC (None: the code
    host gave no time), not a DateTime: the lead time is a subtraction per commit over
    hundreds of thousands of rows, and on SQLite a DateTime is text that must be parsed
    first (unixepoch() and substr() per row cost ~5x the integer read; julianday() keeps
    milliseconds only). Integers are exact and cheap on both backends.
    """

    __tablename__ = "release_commit"
    __table_args__ = (
        # The lead-time join reads a release's commit times from this index alone.
        sa.Index("ix_release_commit_release_authored", "release_id", "authored_us"),
    )

    release_id: int = Field(foreign_key="release.id", primary_key=True)
    sha: str = Field(max_length=64, primary_key=True)
    authored_us: int | None = Field(default=None, sa_type=sa.BigInteger)


_SERVICE_ENV = ("service", "environment")
_RAN: dict[str, Any] = {
    f"{dialect}_where": sa.text("deployed_at IS NOT NULL") for dialect in ("sqlite", "postgresql")
}


class Deployment(SQLModel, table=True):
    """A release into one environment; `state` follows bot.domain.states."""

    __tablename__ = "deployment"
    __table_args__ = (
        sa.UniqueConstraint(
            "service", "environment", "sha", "attempt", name="uq_deployment_attempt"
        ),
        sa.Index("ix_deployment_service_env_created", "service", "environment", "created_at"),
        # Deployments of a service and environment in given states (superseding, cancelling,
        # rollbacks), and the risk assessment's counts per state over a window, index-only.
        sa.Index("ix_deployment_service_env_state_created", *_SERVICE_ENV, "state", "created_at"),
        # The newest deployment that ran (a release's comparison base, the last production
        # deployment), without walking a burst of superseded ones that never ran.
        sa.Index("ix_deployment_service_env_ran", *_SERVICE_ENV, "created_at", **_RAN),
        # DORA reads the deployments of one environment that ran in a time range, for all
        # services or one, from this index alone: counts (service, state) and the first
        # production deployment of each release (release_id). Time before service: the
        # overall figures range-scan the window instead of every service's history.
        sa.Index(
            "ix_deployment_env_deployed",
            "environment",
            "deployed_at",
            "service",
            "state",
            "release_id",
        ),
        # A release's deployments (the foreign key); DORA's "no earlier production
        # deployment of this release" is answered from it alone.
        sa.Index("ix_deployment_release_env_deployed", "release_id", "environment", "deployed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id")
    service: str = Field(max_length=100)
    environment: str = Field(max_length=100)
    sha: str = Field(max_length=64)
    # What this deployment shipped as: one sha may go to staging from `main` and to
    # production from tag `v1.2.0`. None: its CI named neither (the release's are shown).
    version: str | None = Field(default=None, max_length=200)
    ref: str | None = Field(default=None, max_length=255)
    attempt: int = 1
    state: str = Field(max_length=32, index=True)
    row_version: int = 1
    source: str = Field(max_length=64)
    external_id: str | None = Field(default=None, max_length=100)
    ci_url: str | None = Field(default=None, max_length=2000)
    deployer: str | None = Field(default=None, max_length=200)
    # The deployer's code-host login and e-mail, when the CI names them beside `deployer`
    # (the generic webhook's actor_login and actor_email): the self-approval ban matches them.
    deployer_ids: list[str] | None = _json(default=None)
    description: str | None = Field(default=None, max_length=2000)
    ci_retries: int = 0
    rollback_to: str | None = Field(default=None, max_length=64)  # sha being restored
    risk: dict[str, Any] | None = _json(default=None)  # RiskAssessment.to_dict()
    assessment_note: str | None = Field(default=None, max_length=500)
    created_at: datetime = _at()
    updated_at: datetime = _at()
    deployed_at: datetime | None = _at(default=None)  # when it first ran in the environment
    finished_at: datetime | None = _at(default=None)


class CommitLeadTime(SQLModel, table=True):
    """One commit's lead time for changes: from its authored time to the moment its release
    first ran in a production environment. Written then (`bot.services.lead_times`), and
    again when the release's commit list is replaced; DORA reads these rows, never joins
    commits to deployments at report time.

    `lead_us` is microseconds (a commit authored after the deployment counts 0), exact and
    cheap to compare; `lead_bin` is a coarse, order-keeping class of it (8 per doubling,
    `lead_times.lead_bin`), so the median is found by counting bins (`CommitLeadCount`) and
    sorting only the rows of the bin it falls in.
    """

    __tablename__ = "commit_lead_time"
    __table_args__ = (
        # A service's rows of a time range (partial days at a window's edges).
        sa.Index(
            "ix_commit_lead_time_service_deployed",
            "service",
            "deployed_at",
            "environment",
            "lead_bin",
        ),
        # Every service's rows of a time range.
        sa.Index(
            "ix_commit_lead_time_deployed", "deployed_at", "service", "environment", "lead_bin"
        ),
        # The median: the rows of one bin in a window, from the index alone (overall, then
        # one service), in lead order.
        # Walked in lead order within a bin (no sort), skipping rows outside the window.
        sa.Index(
            "ix_commit_lead_time_bin",
            "lead_bin",
            "lead_us",
            "deployed_at",
            "service",
            "environment",
        ),
        sa.Index(
            "ix_commit_lead_time_service_bin",
            "service",
            "lead_bin",
            "lead_us",
            "deployed_at",
            "environment",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    deployment_id: int  # the release's first production deployment
    service: str = Field(max_length=100)
    environment: str = Field(max_length=100)
    sha: str = Field(max_length=64)
    committed_at: datetime = _at()  # authored
    deployed_at: datetime = _at()
    lead_us: int = Field(sa_type=sa.BigInteger)
    lead_bin: int


class CommitLeadCount(SQLModel, table=True):
    """How many `CommitLeadTime` rows each (service, environment, UTC day, lead bin) holds:
    recounted from those rows whenever they change, so a window's whole days are summed
    here instead of counted row by row. `day` is days since 1970-01-01."""

    __tablename__ = "commit_lead_count"
    __table_args__ = (
        # A window's days summed per service and bin, from the index alone.
        sa.Index(
            "ix_commit_lead_count_day", "day", "environment", "service", "lead_bin", "commits"
        ),
    )

    service: str = Field(max_length=100, primary_key=True)
    environment: str = Field(max_length=100, primary_key=True)
    day: int = Field(primary_key=True)
    lead_bin: int = Field(primary_key=True)
    commits: int


class ReleaseMessage(SQLModel, table=True):
    """Where the living Slack message of a deployment is: its channel and ts."""

    __tablename__ = "release_message"

    deployment_id: int = Field(foreign_key="deployment.id", primary_key=True)
    channel: str = Field(max_length=100)
    ts: str = Field(max_length=32)
    posted_at: datetime = _at()


class Gate(SQLModel, table=True):
    """What a deployment into a gated environment needs before it may go ahead."""

    __tablename__ = "gate"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    sha: str = Field(max_length=64)
    status: str = Field(max_length=32, index=True)  # pending | approved | rejected | ...
    requirement: dict[str, Any] = _json(default_factory=dict)  # what was required at decision
    row_version: int = 1
    decide_via: str | None = Field(default=None, max_length=64)  # deployer kind, or polled
    context: dict[str, Any] = _json(default_factory=dict)  # what that deployer needs
    requested_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = _at()
    expires_at: datetime | None = _at(default=None)
    remind_at: datetime | None = _at(default=None)
    reminded_at: datetime | None = _at(default=None)
    decided_at: datetime | None = _at(default=None)
    decided_by: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=3000)
    break_glass: dict[str, Any] | None = _json(default=None)  # requester, reason, confirmer
    progress: str | None = Field(default=None, max_length=1000)  # "1 of 2 approvals: ..."


LOCK_AUTOMATIC = "automatic"  # EnvironmentLock.holds after a rollback
LOCK_ALL = "all"  # EnvironmentLock.holds from `/release lock`


class EnvironmentLock(SQLModel, table=True):
    """A service's environment is locked: after a rollback, automatic promotion into it is
    stopped (`holds` "automatic"); locked with `/release lock`, every promotion and every
    gate approval there is refused (`holds` "all") until someone unlocks it."""

    __tablename__ = "environment_lock"

    service: str = Field(max_length=100, primary_key=True)
    environment: str = Field(max_length=100, primary_key=True)
    reason: str = Field(max_length=1000)
    locked_by: str = Field(max_length=200)
    locked_at: datetime = _at()
    holds: str = Field(default=LOCK_AUTOMATIC, max_length=20)


class Approval(SQLModel, table=True):
    """One person's decision on a gate; one per person per gate."""

    __tablename__ = "approval"
    __table_args__ = (sa.UniqueConstraint("gate_id", "user_id", name="uq_approval_gate_user"),)

    id: int | None = Field(default=None, primary_key=True)
    gate_id: int = Field(foreign_key="gate.id", index=True)
    user_id: str = Field(max_length=32)
    decision: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=3000)
    created_at: datetime = _at()


class Check(SQLModel, table=True):
    """A verification planned for a deployment from the environment's `verify` list."""

    __tablename__ = "deploy_check"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    name: str = Field(max_length=100)
    kind: str = Field(max_length=32)
    spec: dict[str, Any] = _json(default_factory=dict)


class CheckRun(SQLModel, table=True):
    """One run of a check at one `at` offset; claimed atomically when due."""

    __tablename__ = "check_run"
    __table_args__ = (sa.Index("ix_check_run_status_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    check_id: int = Field(foreign_key="deploy_check.id", index=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    due_at: datetime = _at()
    status: str = Field(max_length=32)
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_until: datetime | None = _at(default=None)
    finished_at: datetime | None = _at(default=None)
    result: dict[str, Any] | None = _json(default=None)


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained record of every state change and human action."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: str = Field(max_length=32)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100, index=True)
    subject: str = Field(max_length=200, index=True)
    details: str = Field(sa_type=sa.Text)  # canonical JSON, exactly as hashed
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=64)  # HMAC key id; None: unkeyed


class WebhookDelivery(SQLModel, table=True):
    """Every accepted inbound delivery, de-duplicated by provider + delivery id.

    A delivery is stored before it is answered and applied after (`bot.services.applier`):
    `outcome` is "pending" until then, and "accepted" or "ignored" once applied (or decided
    without applying), "failed" once its application was given up on. `work` is what the
    request parsed (the event to apply), `apply_key` the service and environment it is
    applied in order with, and `error`, `attempts` and `next_attempt_at` its retries.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("provider", "delivery_id", name="uq_webhook_delivery"),
        # The applier's claim walks the pending deliveries in arrival order ...
        sa.Index("ix_webhook_delivery_outcome_id", "outcome", "id"),
        # ... and finds the first pending delivery of a key.
        sa.Index("ix_webhook_delivery_outcome_key", "outcome", "apply_key", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    delivery_id: str = Field(max_length=200)
    event: str = Field(max_length=100)
    received_at: datetime = _at(index=True)
    outcome: str = Field(max_length=32)
    detail: str | None = Field(default=None, max_length=500)
    deployment_id: int | None = Field(default=None, index=True)
    body: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    apply_key: str | None = Field(default=None, max_length=201)  # service/environment
    work: dict[str, Any] | None = _json(default=None)
    applied_at: datetime | None = _at(default=None)
    error: str | None = Field(default=None, max_length=1000)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime | None = _at(default=None)


class JobRun(SQLModel, table=True):
    """One run of a scheduled job at one tick, claimed by the replica that runs it.

    The primary key makes the claim: of the replicas whose schedulers fire at the same tick,
    one inserts the row and runs the job. A holder that crashed leaves `finished_at` empty;
    once `expires_at` has passed, another replica may take the tick over.
    """

    __tablename__ = "job_run"

    job_id: str = Field(max_length=100, primary_key=True)
    tick_at: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    holder: str = Field(max_length=100)
    claimed_at: datetime = _at()
    expires_at: datetime = _at()
    finished_at: datetime | None = _at(default=None)


class OutboxMessage(SQLModel, table=True):
    """A side effect on the outside world, written with the state change that caused it.

    Rows with the same `key` are sent in id order; `claimed_until` is the worker's lease and
    `lease_token` names the claim holding it. `attempted_at` is when a call whose outcome is
    still unknown first went out (cleared when Slack said for sure it did nothing).
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),
        # The worker walks the pending rows in id order (claim_due); sent rows are skipped.
        sa.Index("ix_outbox_status_id", "status", "id"),
        # A message's pending rows (what a new row may join, what is sent before an edit):
        # by key first, so a long backlog of other messages' rows is never walked.
        sa.Index("ix_outbox_key_status_id", "key", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=100)
    kind: str = Field(max_length=64)
    payload: dict[str, Any] = _json(default_factory=dict)
    status: str = Field(max_length=16)
    attempts: int = 0
    created_at: datetime = _at()
    next_attempt_at: datetime = _at()
    claimed_until: datetime | None = _at(default=None)
    sent_at: datetime | None = _at(default=None)
    last_error: str | None = Field(default=None, max_length=1000)
    attempted_at: datetime | None = _at(default=None)
    lease_token: str | None = Field(default=None, max_length=32)


class FreezeWindow(SQLModel, table=True):
    """A change freeze started from Slack (`/release freeze`); config freezes live in the YAML.

    `environment` is an environment name or "all". A lifted window ends at `lifted_at`.
    """

    __tablename__ = "freeze_window"

    id: int | None = Field(default=None, primary_key=True)
    environment: str = Field(max_length=100)
    starts_at: datetime = _at()
    ends_at: datetime = _at(index=True)
    reason: str = Field(max_length=1000)
    created_by: str = Field(max_length=200)
    created_at: datetime = _at()
    lifted_at: datetime | None = _at(default=None)
    lifted_by: str | None = Field(default=None, max_length=200)


class FlagStep(SQLModel, table=True):
    """One step of a feature flag's release (a rollout to a percentage, or the kill switch):
    a gate of its own while `pending`, then a change sent to the flag platform, then the
    service's verify checks again. `seq` numbers the steps of one flag in one environment,
    so two clicks racing to open the same step collide on the unique constraint."""

    __tablename__ = "flag_step"
    __table_args__ = (
        sa.UniqueConstraint("service", "environment", "flag", "seq", name="uq_flag_step_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    service: str = Field(max_length=100)
    environment: str = Field(max_length=100)
    flag: str = Field(max_length=200)
    seq: int
    kind: str = Field(max_length=16)  # rollout | kill
    percent: int
    provider: str = Field(max_length=32)
    status: str = Field(max_length=32)  # bot.domain.flags STATUSES
    requirement: dict[str, Any] = _json(default_factory=dict)
    progress: str | None = Field(default=None, max_length=1000)
    row_version: int = 1
    requested_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = _at()
    decided_at: datetime | None = _at(default=None)
    decided_by: str | None = Field(default=None, max_length=200)
    delivered_at: datetime | None = _at(default=None)
    receipt: dict[str, Any] | None = _json(default=None)  # what the platform answered
    # While pending: when it expires, when approvers are reminded next, when they last were.
    expires_at: datetime | None = _at(default=None)
    remind_at: datetime | None = _at(default=None)
    reminded_at: datetime | None = _at(default=None)
    reason: str | None = Field(default=None, max_length=3000)  # why it was rejected or expired


class FlagApproval(SQLModel, table=True):
    """One person's approval of a flag step; one per person per step."""

    __tablename__ = "flag_approval"
    __table_args__ = (sa.UniqueConstraint("step_id", "user_id", name="uq_flag_approval_step_user"),)

    id: int | None = Field(default=None, primary_key=True)
    step_id: int = Field(foreign_key="flag_step.id", index=True)
    user_id: str = Field(max_length=32)
    created_at: datetime = _at()


class FlagStepCheck(SQLModel, table=True):
    """A verify check planned again after a flag step (its runs are ordinary check runs of
    the deployment, claimed by the same scheduler)."""

    __tablename__ = "flag_step_check"

    check_id: int = Field(foreign_key="deploy_check.id", primary_key=True)
    step_id: int = Field(foreign_key="flag_step.id", index=True)


class _Saved(Protocol):
    id: int | None


def row_id(row: _Saved) -> int:
    """The primary key of a row that is in the database (added and flushed)."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id: it is not in the database yet")
    return row.id
