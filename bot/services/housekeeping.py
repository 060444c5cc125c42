"""Periodic clean-up that keeps the database small without losing what matters."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.store.tables import WebhookDelivery


def drop_old_webhook_bodies(session: Session, *, now: datetime, retention: timedelta) -> int:
    """Forget raw bodies older than `retention`; the delivery rows (dedup, outcome) stay."""
    result = session.execute(
        sa.update(WebhookDelivery)
        .where(col(WebhookDelivery.received_at) < now - retention)
        .where(col(WebhookDelivery.body).is_not(None))
        .values(body=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
