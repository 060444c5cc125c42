"""Transaction-scoped advisory locks: one writer at a time for a decision that reads rows
other writers may be changing at the same moment (PostgreSQL runs writers side by side, at
READ COMMITTED). On SQLite `hold` does nothing: a write transaction holds the whole
database from its BEGIN.

Every lock id the app takes is listed here, so no two kinds of decision share one by
accident. (Migrations hold 7_200_311, a session-level lock of their own: `bot.migrate`.)
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

AUDIT_CHAIN: Final = 7_200_312  # writing audit records into the chain, at commit
DORA_DIGEST: Final = 7_200_313  # queueing the weekly DORA digest
LEAD_TIMES: Final = 7_200_314  # recounting a day's lead times; with a release id: its rows
AUDIT_FORWARD: Final = 7_200_315  # queueing the audit records to forward
ENVIRONMENT: Final = 7_200_316  # with "service/environment": which deployment is its newest

_ONE = sa.text("SELECT pg_advisory_xact_lock(:key)")
_OF_ID = sa.text("SELECT pg_advisory_xact_lock(:key, :within)")
_OF_NAME = sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(:within))")


def hold(conn: sa.Connection, key: int, within: int | str | None = None) -> None:
    """Hold lock `key` until this transaction ends; with `within` (an id or a name), only
    the lock of that one thing among `key`'s, so other things do not wait."""
    if conn.dialect.name != "postgresql":
        return
    if within is None:
        conn.execute(_ONE, {"key": key})
    else:
        conn.execute(
            _OF_ID if isinstance(within, int) else _OF_NAME, {"key": key, "within": within}
        )
