"""Publishing the audit chain's head outside the database (checkpoints).

A checkpoint is queued, in the transaction that reads the head, as one outbox row per
place it goes (the JSON Lines file, the Slack audit channel, the webhook sink), so it is
published only once that transaction commits, and retried until it is. The scheduler asks
for one every RELEASEBOT_AUDIT_CHECKPOINT_EVERY when the head moved; a gate decided in a
production environment asks for one at once (`after_decision`).

Where checkpoints go is bound to the database's engine when the app starts (`publish_to`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.domain import checkpoints
from bot.domain.audit import GENESIS_HASH, format_at
from bot.domain.checkpoints import CheckpointToFile, CheckpointToSlack, CheckpointToWebhook
from bot.domain.messages import Message
from bot.domain.signing import Signer
from bot.services import audit, outbox
from bot.store import statements as sql
from bot.store.tables import Deployment


@dataclass(frozen=True)
class Publishing:
    """Where this database's checkpoints go, and who signs them."""

    signer: Signer | None = None
    to_file: bool = False
    slack_channel: str | None = None
    to_webhook: bool = False
    is_production: Callable[[str, str], bool] = lambda _service, env: env == "production"

    @property
    def anywhere(self) -> bool:
        return self.to_file or self.to_webhook or self.slack_channel is not None


_PUBLISHING: weakref.WeakKeyDictionary[Engine, Publishing] = weakref.WeakKeyDictionary()
_NOWHERE = Publishing()


def publish_to(engine: Engine, publishing: Publishing) -> None:
    _PUBLISHING[engine] = publishing


def publishing_of(session: Session) -> Publishing:
    return _PUBLISHING.get(audit.engine_of(session), _NOWHERE)


def signer_of(engine: Engine) -> Signer | None:
    """The key that signs what leaves this database's app (None: nothing is signed)."""
    return _PUBLISHING.get(engine, _NOWHERE).signer


def last_published(session: Session) -> int:
    """The sequence number of the newest checkpoint queued (0: none yet)."""
    row = (
        session.connection()
        .execute(
            sa.select(sql.OUTBOX.c.payload)
            .where(sql.OUTBOX.c.kind.in_(checkpoints.KINDS))
            .order_by(sql.OUTBOX.c.id.desc())
            .limit(1)
        )
        .first()
    )
    if row is None or not isinstance(row.payload, dict):
        return 0
    return int(row.payload.get("seq") or 0)


def covering(session: Session, seq: int) -> dict[str, Any] | None:
    """The first checkpoint queued for a file or webhook that covers record `seq` (its own
    sequence at or after it), as published (signed when a signing key was set), with where
    it went and whether it was delivered; None when no checkpoint covers it yet."""
    rows = session.connection().execute(
        sa.select(sql.OUTBOX.c.kind, sql.OUTBOX.c.status, sql.OUTBOX.c.payload)
        .where(sql.OUTBOX.c.kind.in_((CheckpointToFile.KIND, CheckpointToWebhook.KIND)))
        .order_by(sql.OUTBOX.c.id)
        .execution_options(yield_per=500)
    )
    found: dict[str, Any] | None = None
    for row in rows:
        payload = row.payload if isinstance(row.payload, dict) else {}
        doc = payload.get("checkpoint")
        if not isinstance(doc, dict) or int(payload.get("seq") or 0) < seq:
            continue
        if found is None:
            found = {"checkpoint": doc, "published_to": {}}
        elif doc != found["checkpoint"]:
            break  # a later checkpoint: the first one's places are all listed
        place = "file" if row.kind == CheckpointToFile.KIND else "webhook"
        found["published_to"][place] = row.status
    return found


def publish(session: Session, *, now: datetime, reason: str, force: bool = False) -> int | None:
    """Queue a checkpoint of the head; returns its sequence number, or None when nothing
    was queued (nowhere to publish, an empty chain, or, unless `force`, a head that has not
    moved since the last checkpoint)."""
    publishing = publishing_of(session)
    if not publishing.anywhere:
        return None
    seq, digest = audit.head_of(session)
    if digest == GENESIS_HASH or (not force and seq <= last_published(session)):
        return None
    key_id = (
        session.connection()
        .execute(sa.select(sql.AUDIT_EVENT.c.key_id).where(sql.AUDIT_EVENT.c.seq == seq))
        .scalar()
    )
    doc = checkpoints.document(
        seq=seq,
        hash=digest,
        at=format_at(now),
        key_id=key_id,
        reason=reason,
        signer=publishing.signer,
    )
    messages: list[Message] = []
    if publishing.to_file:
        messages.append(CheckpointToFile(doc))
    if publishing.slack_channel is not None:
        messages.append(
            CheckpointToSlack(publishing.slack_channel, checkpoints.slack_text(doc), seq)
        )
    if publishing.to_webhook:
        messages.append(CheckpointToWebhook(doc))
    outbox.enqueue_many(session, messages, now=now)
    return seq


def after_decision(session: Session, *, now: datetime, deployment: Deployment) -> None:
    """A gate of this deployment was just decided: checkpoint at once if it is production's."""
    publishing = publishing_of(session)
    if publishing.anywhere and publishing.is_production(deployment.service, deployment.environment):
        reason = f"production decision, deployment {deployment.id}"
        publish(session, now=now, reason=reason, force=True)
