"""The one way a deployment changes state.

`transition` checks the table of legal moves, updates the row only if nobody else did first
(row_version), and writes the audit record and the outbox rows (the message edit and a line
in its thread) in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from bot.domain import states
from bot.domain.errors import ConcurrentUpdate
from bot.domain.messages import ReleaseMessageUpdate, StateChangeLine
from bot.services import audit, outbox
from bot.store import advisory
from bot.store import statements as sql
from bot.store.tables import Deployment, row_id


def lock_environment(session: Session, *, service: str, environment: str) -> None:
    """Until this transaction ends, be the only writer deciding which deployment of the
    service's environment is the newest (a new one, the older ones it supersedes, the older
    checks it cancels, the older gate it closes). Two such writers at once would each miss
    the other's deployment. PostgreSQL only: SQLite's write transaction holds the whole
    database already."""
    advisory.hold(session.connection(), advisory.ENVIRONMENT, f"{service}/{environment}")


def transition(
    session: Session,
    *,
    deployment: Deployment,
    target: str,
    now: datetime,
    actor: str,
    source: str,
    url: str | None = None,
    note: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """The one way a deployment changes state (raises IllegalTransition / ConcurrentUpdate)."""
    states.check_move(deployment.state, target)
    previous = deployment.state
    values: dict[str, Any] = {
        "state": target,
        "row_version": deployment.row_version + 1,
        "updated_at": now,
    }
    if target in states.FINISHED or target in (states.VERIFIED, states.SUCCEEDED):
        values["finished_at"] = now
    if target == states.SUCCEEDED and deployment.deployed_at is None:
        values["deployed_at"] = now
    # A Core UPDATE on the session's connection (the ORM's bulk-update path costs more, and
    # the loaded object is brought up to date below without a reload).
    updated = session.connection().execute(
        sql.MOVE_DEPLOYMENT,
        {"where_id": deployment.id, "where_row_version": deployment.row_version, **values},
    )
    if updated.rowcount != 1:
        raise ConcurrentUpdate(f"deployment {deployment.id} changed underneath")
    for name, value in values.items():
        set_committed_value(deployment, name, value)
    details: dict[str, Any] = {"from": previous, "to": target, "source": source}
    if note:
        details["note"] = note[:500]
    if extra:
        details.update(extra)
    audit.append(
        session,
        at=now,
        actor=actor,
        action="deployment.state_changed",
        subject=f"deployment:{deployment.id}",
        details=details,
    )
    line = StateChangeLine(
        deployment_id=row_id(deployment),
        from_state=previous,
        to_state=target,
        at=now.isoformat(),
        actor=actor,
        url=url,
        note=note[:500] if note else None,
    )
    outbox.enqueue_many(session, [ReleaseMessageUpdate(row_id(deployment)), line], now=now)
