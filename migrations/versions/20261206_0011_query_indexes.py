"""Indexes for a busy service: per-state deployment counts, deployments that ran, outbox keys

- `deployment (service, environment, state, created_at)` replaces `(service, environment,
  state)`: the risk assessment counts a service's deployments per state over a window from
  the index alone, instead of reading every deployment of the window.
- `deployment (service, environment, created_at) WHERE deployed_at IS NOT NULL`: the newest
  deployment that ran (a release's comparison base, the last production deployment) is
  found without walking the deployments that never ran (a burst of superseded ones).
- `outbox_message (key, status, id)` replaces `(key)`: a message's pending rows are found by
  key, where the database used to walk every pending row of the outbox in a backlog.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RAN = sa.text("deployed_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_deployment_service_env_state_created",
        "deployment",
        ["service", "environment", "state", "created_at"],
    )
    op.drop_index("ix_deployment_service_env_state", table_name="deployment")
    op.create_index(
        "ix_deployment_service_env_ran",
        "deployment",
        ["service", "environment", "created_at"],
        sqlite_where=_RAN,
        postgresql_where=_RAN,
    )
    op.create_index("ix_outbox_key_status_id", "outbox_message", ["key", "status", "id"])
    op.drop_index("ix_outbox_message_key", table_name="outbox_message")


def downgrade() -> None:
    op.create_index("ix_outbox_message_key", "outbox_message", ["key"])
    op.drop_index("ix_outbox_key_status_id", table_name="outbox_message")
    op.drop_index("ix_deployment_service_env_ran", table_name="deployment")
    op.create_index(
        "ix_deployment_service_env_state", "deployment", ["service", "environment", "state"]
    )
    op.drop_index("ix_deployment_service_env_state_created", table_name="deployment")
