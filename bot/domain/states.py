"""The deployment state machine: a table of legal moves and one pure transition check.

pending -> awaiting_approval -> approved | rejected | expired
approved | pending -> in_progress -> succeeded | failed
succeeded -> verifying -> verified | verification_failed
(deployed states) -> rolling_back -> rolled_back | rollback_failed
rollback_failed -> rolling_back   (tried again)   | rolled_back   (restored some other way)
pending | awaiting_approval | approved -> superseded   (a newer version wins)

`rollback_failed`: the pipeline refused the rollback (or it could not be sent), so the bad
version still runs and promotion into the environment stays locked; someone may roll back
again once the cause is fixed.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from bot.domain.errors import IllegalTransition

PENDING: Final = "pending"
AWAITING_APPROVAL: Final = "awaiting_approval"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
EXPIRED: Final = "expired"
IN_PROGRESS: Final = "in_progress"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
VERIFYING: Final = "verifying"
VERIFIED: Final = "verified"
VERIFICATION_FAILED: Final = "verification_failed"
ROLLING_BACK: Final = "rolling_back"
ROLLED_BACK: Final = "rolled_back"
ROLLBACK_FAILED: Final = "rollback_failed"
SUPERSEDED: Final = "superseded"

LEGAL_MOVES: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({AWAITING_APPROVAL, IN_PROGRESS, SUPERSEDED}),
    AWAITING_APPROVAL: frozenset({APPROVED, REJECTED, EXPIRED, SUPERSEDED}),
    APPROVED: frozenset({IN_PROGRESS, SUPERSEDED}),
    REJECTED: frozenset(),
    EXPIRED: frozenset(),
    IN_PROGRESS: frozenset({SUCCEEDED, FAILED, ROLLING_BACK}),
    SUCCEEDED: frozenset({VERIFYING, ROLLING_BACK}),
    FAILED: frozenset({ROLLING_BACK}),
    VERIFYING: frozenset({VERIFIED, VERIFICATION_FAILED, ROLLING_BACK, SUPERSEDED}),
    VERIFIED: frozenset({ROLLING_BACK}),
    VERIFICATION_FAILED: frozenset({ROLLING_BACK}),
    ROLLING_BACK: frozenset({ROLLED_BACK, ROLLBACK_FAILED}),
    ROLLBACK_FAILED: frozenset({ROLLING_BACK, ROLLED_BACK}),
    ROLLED_BACK: frozenset(),
    SUPERSEDED: frozenset(),
}

STATES: Final = frozenset(LEGAL_MOVES)

# States a CI system reports by itself; a CI event may walk through several of them at once
# (a "success" that arrives while we still think the deployment is pending).
CI_REPORTED: Final = frozenset({PENDING, IN_PROGRESS, SUCCEEDED, FAILED})

# Nothing more will happen to a deployment in these states; a new run of the same version
# starts a new deployment.
FINISHED: Final = frozenset(
    {REJECTED, EXPIRED, FAILED, VERIFICATION_FAILED, ROLLED_BACK, SUPERSEDED}
)
# The version runs in the environment (or did, until something newer replaced it).
DEPLOYED: Final = frozenset({SUCCEEDED, VERIFYING, VERIFIED})
# A newer version of the same service and environment supersedes these.
SUPERSEDABLE: Final = frozenset({PENDING, AWAITING_APPROVAL, APPROVED})


def is_state(value: str) -> bool:
    return value in STATES


def check_move(current: str, target: str) -> None:
    """Raise IllegalTransition unless `current -> target` is in the table."""
    if target not in LEGAL_MOVES.get(current, frozenset()):
        raise IllegalTransition(current, target)


def ci_path(current: str, target: str) -> list[str] | None:
    """The shortest walk of legal moves from `current` to a CI-reported `target`.

    Only CI-reported states may be passed through, so a CI event never pretends that a
    gate was approved or a verification ran. Returns [] when already there and None when
    the target cannot be reached (a late or stale event).
    """
    if current == target:
        return []
    if target not in CI_REPORTED:
        return None
    seen = {current}
    queue: deque[tuple[str, list[str]]] = deque([(current, [])])
    while queue:
        state, path = queue.popleft()
        for nxt in sorted(LEGAL_MOVES[state]):
            if nxt in seen or nxt not in CI_REPORTED:
                continue
            if nxt == target:
                return [*path, nxt]
            seen.add(nxt)
            queue.append((nxt, [*path, nxt]))
    return None
