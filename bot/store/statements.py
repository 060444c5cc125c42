"""Core statements built once, and the tables they run on.

The hot paths (a webhook delivery, a click on a gate's button, an outbox batch) run these
many times; building a statement costs more than running it, and none of them needs ORM
objects back. They run on the session's connection (`session.connection().execute`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from bot.domain import gates as rules
from bot.domain import states
from bot.store.tables import (
    Approval,
    AuditEvent,
    Check,
    CheckRun,
    Deployment,
    FreezeWindow,
    Gate,
    OutboxMessage,
    Release,
    ReleaseCommit,
    WebhookDelivery,
)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a SQLModel table class (SQLModel sets `__table__`, untyped)."""
    table: Any = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)
    return table


RELEASE = table_of(Release)
RELEASE_COMMIT = table_of(ReleaseCommit)
DEPLOYMENT = table_of(Deployment)
GATE = table_of(Gate)
APPROVAL = table_of(Approval)
CHECK = table_of(Check)
CHECK_RUN = table_of(CheckRun)
FREEZE_WINDOW = table_of(FreezeWindow)
AUDIT_EVENT = table_of(AuditEvent)
OUTBOX = table_of(OutboxMessage)
WEBHOOK_DELIVERY = table_of(WebhookDelivery)


# --- releases and deployments (the ingest path) ----------------------------------------------

FIND_RELEASE = (
    sa.select(RELEASE.c.id, RELEASE.c.version)
    .where(RELEASE.c.service == sa.bindparam("service"))
    .where(RELEASE.c.sha == sa.bindparam("sha"))
)
INSERT_RELEASE = sa.insert(RELEASE)
SET_RELEASE_VERSION = (
    sa.update(RELEASE).where(RELEASE.c.id == sa.bindparam("id")).values(version=sa.bindparam("v"))
)
RELEASE_COMMITS = sa.select(RELEASE.c.commits).where(RELEASE.c.id == sa.bindparam("release_id"))
RELEASE_PEOPLE = sa.select(RELEASE.c.commits, RELEASE.c.diff).where(
    RELEASE.c.id == sa.bindparam("release_id")
)
INSERT_DEPLOYMENT = sa.insert(DEPLOYMENT)
# The deployments a new one supersedes: same service and environment, another sha, in a
# supersedable state, created no later than it. Found by (service, environment, state)
# (ix_deployment_service_env_state_created), the created_at test made in Python: with it
# in the SQL, SQLite picks the created_at index instead and walks the environment's whole
# history.
# There rarely is one, so only the ones found are loaded as objects, oldest first (the
# order the created_at index gave them in).
SUPERSEDABLE = (
    sa.select(DEPLOYMENT.c.id, DEPLOYMENT.c.created_at)
    .where(DEPLOYMENT.c.service == sa.bindparam("service"))
    .where(DEPLOYMENT.c.environment == sa.bindparam("environment"))
    .where(DEPLOYMENT.c.sha != sa.bindparam("sha"))
    .where(DEPLOYMENT.c.state.in_(sorted(states.SUPERSEDABLE)))
)
# A state change: the SET clause comes from the parameters each call passes (column names);
# the row is updated only if its version is still the one read.
MOVE_DEPLOYMENT = (
    sa.update(DEPLOYMENT)
    .where(DEPLOYMENT.c.id == sa.bindparam("where_id"))
    .where(DEPLOYMENT.c.row_version == sa.bindparam("where_row_version"))
)
# Every successful deploy looks for the rollbacks it finishes, first with this Core query
# (there rarely are any), then loads them as objects only when there are. A rollback the
# pipeline refused is finished too when its version comes back some other way.
ROLLING_BACK_TO_WHERE = (
    DEPLOYMENT.c.service == sa.bindparam("service"),
    DEPLOYMENT.c.environment == sa.bindparam("environment"),
    DEPLOYMENT.c.state.in_((states.ROLLING_BACK, states.ROLLBACK_FAILED)),
    DEPLOYMENT.c.rollback_to == sa.bindparam("sha"),
)
ANY_ROLLING_BACK_TO = sa.select(DEPLOYMENT.c.id).where(*ROLLING_BACK_TO_WHERE).limit(1)


# --- webhook deliveries ----------------------------------------------------------------------

SEEN_DELIVERY = (
    sa.select(WEBHOOK_DELIVERY.c.id)
    .where(WEBHOOK_DELIVERY.c.provider == sa.bindparam("provider"))
    .where(WEBHOOK_DELIVERY.c.delivery_id == sa.bindparam("delivery_id"))
)
# The ids among `ids` already stored for one provider (a group of deliveries at once).
SEEN_DELIVERIES = sa.select(WEBHOOK_DELIVERY.c.delivery_id).where(
    WEBHOOK_DELIVERY.c.provider == sa.bindparam("provider"),
    WEBHOOK_DELIVERY.c.delivery_id.in_(sa.bindparam("ids", expanding=True)),
)
INSERT_DELIVERY = sa.insert(WEBHOOK_DELIVERY)


# --- gates (a click on a gate's button runs these; a burst of clicks, many times) -------------

GATE_SCOPE = (
    sa.select(DEPLOYMENT.c.service, DEPLOYMENT.c.environment)
    .select_from(GATE.join(DEPLOYMENT, DEPLOYMENT.c.id == GATE.c.deployment_id))
    .where(GATE.c.id == sa.bindparam("gate_id"))
)
# What a decision looks at first: the gate's status and version, and where it gates.
GATE_TO_DECIDE = (
    sa.select(
        GATE.c.status,
        GATE.c.row_version,
        GATE.c.deployment_id,
        DEPLOYMENT.c.id.label("found_deployment"),
        DEPLOYMENT.c.service,
        DEPLOYMENT.c.environment,
    )
    .select_from(GATE.outerjoin(DEPLOYMENT, DEPLOYMENT.c.id == GATE.c.deployment_id))
    .where(GATE.c.id == sa.bindparam("gate_id"))
)
# A gate's lock as one statement: bump the version only if it is still the one read.
BUMP_GATE_VERSION = (
    sa.update(GATE)
    .where(GATE.c.id == sa.bindparam("gate_id"))
    .where(GATE.c.row_version == sa.bindparam("seen_version"))
    .values(row_version=sa.bindparam("new_version"))
)
GATE_VOTES = (
    sa.select(APPROVAL.c.user_id, APPROVAL.c.decision)
    .where(APPROVAL.c.gate_id == sa.bindparam("gate_id"))
    .order_by(APPROVAL.c.id)
)
GATE_APPROVERS = (
    sa.select(APPROVAL.c.user_id)
    .where(APPROVAL.c.gate_id == sa.bindparam("gate_id"))
    .where(APPROVAL.c.decision == "approve")
    .order_by(APPROVAL.c.id)
)
# Every assessed deployment asks for its pending gate, and most have none, so this says
# whether there is one before the ORM loads it.
ANY_PENDING_GATE = (
    sa.select(GATE.c.id)
    .where(GATE.c.deployment_id == sa.bindparam("deployment_id"))
    .where(GATE.c.status == rules.PENDING)
    .limit(1)
)


# --- verification (planned on every successful deploy, inside the webhook's transaction) ------

# The checks' ids come back in the order of the rows given (one statement for all of them).
INSERT_CHECKS = sa.insert(CHECK).returning(CHECK.c.id, sort_by_parameter_order=True)
INSERT_CHECK_RUN = sa.insert(CHECK_RUN)


# --- audit (the append path runs several times per webhook delivery) -------------------------

AUDIT_CHAIN_HEAD = (
    sa.select(AUDIT_EVENT.c.seq, AUDIT_EVENT.c.hash).order_by(AUDIT_EVENT.c.seq.desc()).limit(1)
)
INSERT_AUDIT_EVENT = sa.insert(AUDIT_EVENT)


# --- outbox ----------------------------------------------------------------------------------

OUTBOX_PENDING = "pending"

# A Core INSERT on the session's connection runs at once, so rows get their ids (and so
# their send order) in call order.
INSERT_OUTBOX = sa.insert(OUTBOX)
# The claim walks the pending rows in id order, a page at a time (ix_outbox_status_id).
OUTBOX_PAGE = 500
PENDING_OUTBOX_PAGE = (
    sa.select(OUTBOX.c.id, OUTBOX.c.key, OUTBOX.c.next_attempt_at, OUTBOX.c.claimed_until)
    .where(OUTBOX.c.status == OUTBOX_PENDING)
    .where(OUTBOX.c.id > sa.bindparam("after"))
    .order_by(OUTBOX.c.id)
    .limit(OUTBOX_PAGE)
)
