"""Whether an error means the database cannot be reached right now (a restart, a network
cut, a file that cannot be opened), as opposed to a fault in releasebot: the first is
answered 503 with Retry-After, so the sender tries again, the second 500."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

RETRY_AFTER_SECONDS = 5
_SQLITE_UNAVAILABLE = frozenset({5, 6, 14})  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN


def database_unavailable(error: BaseException) -> bool:
    """True for a lost or refused database connection; False for anything else."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", "")
    if sqlstate is None:  # psycopg raised it client-side: the server was not reached
        return isinstance(error, sa_exc.OperationalError)
    if isinstance(sqlstate, str) and sqlstate.startswith(("08", "57P")):
        return True  # connection exception, or the server shutting down
    return getattr(original, "sqlite_errorcode", None) in _SQLITE_UNAVAILABLE
