"""The factors of the risk score: their names (the keys of `risk.weights`), the points each
adds and the cap on each.

Points are rounded half up (never banker's rounding), so equal inputs give equal output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import time
from typing import Final

# ---- factor names (the keys of `risk.weights`) ----------------------------------------------

SIZE: Final = "size"
BATCH: Final = "batch"
SENSITIVE_PATHS: Final = "sensitive_paths"
CI: Final = "ci"
TIMING: Final = "timing"
FREEZE: Final = "freeze"
FAILURE_RATE: Final = "failure_rate"
LAST_DEPLOY: Final = "last_deploy"
TRUNCATED: Final = "truncated"
UNKNOWN_CHANGES: Final = "unknown_changes"

FACTOR_NAMES: Final[tuple[str, ...]] = (
    SIZE,
    BATCH,
    SENSITIVE_PATHS,
    CI,
    TIMING,
    FREEZE,
    FAILURE_RATE,
    LAST_DEPLOY,
    TRUNCATED,
    UNKNOWN_CHANGES,
)

# ---- points ----------------------------------------------------------------------------------

SIZE_SCALE: Final = 2.8
SIZE_FILES_FACTOR: Final = 0.5  # a file counts as much as sqrt(lines) would
SIZE_EXPONENT: Final = 1.5  # a little faster than log, so huge changes reach the cap

BATCH_COMMITS_SCALE: Final = 5.0  # points per tenfold commits (1 commit: 0)
BATCH_DAYS_SCALE: Final = 4.0  # points per tenfold (1 + days)

SENSITIVE_FIRST: Final = 15
SENSITIVE_EACH_MORE: Final = 5

CI_FAILED_JOB: Final = 4
CI_RETRIED_JOB: Final = 2

OUTSIDE_BUSINESS_HOURS: Final = 5
FRIDAY_AFTERNOON: Final = 7
FRIDAY_AFTERNOON_FROM: Final = time(14, 0)  # local time in `risk.business_hours.timezone`
FRIDAY: Final = 4  # datetime.weekday()

FREEZE_ACTIVE: Final = 15

FAILURE_RATE_SCALE: Final = 30.0  # points at a 100% failure rate, before the cap
FAILURE_RATE_MIN_DEPLOYS: Final = 3

LAST_DEPLOY_FAILED: Final = 10

TRUNCATED_LISTS: Final = 2

# A release that could not be read in full starts at the default `medium` threshold: what is
# not known is not low risk.
UNKNOWN_CHANGES_POINTS: Final = 30

CAPS: Final[Mapping[str, int]] = {
    SIZE: 25,
    BATCH: 15,
    SENSITIVE_PATHS: 25,
    CI: 10,
    TIMING: 10,
    FREEZE: 2 * FREEZE_ACTIVE,
    FAILURE_RATE: 15,
    LAST_DEPLOY: 2 * LAST_DEPLOY_FAILED,
    TRUNCATED: 2 * TRUNCATED_LISTS,
    UNKNOWN_CHANGES: 2 * UNKNOWN_CHANGES_POINTS,
}

MAX_SCORE: Final = 100
SHOWN_PATHS: Final = 3  # sensitive paths named in the reason, then "(+N more)"


def round_half_up(value: float) -> int:
    """Half up, so 2.5 -> 3 (round() would give 2)."""
    return math.floor(value + 0.5)
