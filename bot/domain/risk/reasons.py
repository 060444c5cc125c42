"""Each factor's unweighted points and its one plain-English sentence for the release manager.

A factor that adds nothing is left out (None). Weights and caps are applied by `assess`.
"""

from __future__ import annotations

import math
from typing import Final

from bot.config import RiskConfig
from bot.domain.risk.factors import (
    BATCH,
    BATCH_COMMITS_SCALE,
    BATCH_DAYS_SCALE,
    CI,
    CI_FAILED_JOB,
    CI_RETRIED_JOB,
    FAILURE_RATE,
    FAILURE_RATE_MIN_DEPLOYS,
    FAILURE_RATE_SCALE,
    FREEZE,
    FREEZE_ACTIVE,
    FRIDAY,
    FRIDAY_AFTERNOON,
    FRIDAY_AFTERNOON_FROM,
    LAST_DEPLOY,
    LAST_DEPLOY_FAILED,
    OUTSIDE_BUSINESS_HOURS,
    SENSITIVE_EACH_MORE,
    SENSITIVE_FIRST,
    SENSITIVE_PATHS,
    SHOWN_PATHS,
    SIZE,
    SIZE_EXPONENT,
    SIZE_FILES_FACTOR,
    SIZE_SCALE,
    TIMING,
    TRUNCATED,
    TRUNCATED_LISTS,
    UNKNOWN_CHANGES,
    UNKNOWN_CHANGES_POINTS,
    round_half_up,
)
from bot.domain.risk.inputs import RiskInputs
from bot.domain.risk.paths import sensitive_paths
from bot.domain.wording import capitalize, count

_DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

Found = tuple[str, int, str] | None  # (factor name, unweighted points, reason)


def findings(inputs: RiskInputs, config: RiskConfig) -> tuple[Found, ...]:
    """Every factor's finding, in the order of `FACTOR_NAMES`."""
    return (
        _size(inputs),
        _batch(inputs),
        _sensitive(inputs, config),
        _ci(inputs),
        _timing(inputs, config),
        _freeze(inputs),
        _failure_rate(inputs),
        _last_deploy(inputs),
        _truncated(inputs),
        _unknown(inputs),
    )


def _size(inputs: RiskInputs) -> Found:
    lines = inputs.additions + inputs.deletions
    files = inputs.files_changed
    x = math.log10(1 + lines) + SIZE_FILES_FACTOR * math.log10(1 + files)
    base = round_half_up(SIZE_SCALE * x**SIZE_EXPONENT)
    if base <= 0:
        return None
    if base >= 20:
        kind = "Very large change"
    elif base >= 12:
        kind = "Large change"
    elif base >= 6:
        kind = "Medium-sized change"
    else:
        kind = "Small change"
    at_least = "at least " if inputs.truncated else ""
    where = "in" if files == 1 else "across"
    reason = f"{kind}: {at_least}{count(lines, 'line')} {where} {at_least}{count(files, 'file')}"
    return SIZE, base, reason


def _batch(inputs: RiskInputs) -> Found:
    commits = inputs.commit_count
    if commits <= 0:
        return None  # nothing new ships, however long ago the last deploy was
    days = inputs.days_since_last_production_deploy
    raw = BATCH_COMMITS_SCALE * math.log10(commits)
    if days is not None:
        raw += BATCH_DAYS_SCALE * math.log10(1 + max(days, 0.0))
    base = round_half_up(raw)
    if base <= 0:
        return None
    counted = ("at least " if inputs.truncated else "") + count(commits, "commit")
    if days is None:
        reason = f"{capitalize(counted)}, and nothing has been deployed to production yet"
    else:
        reason = f"{capitalize(counted)} and {_age(days)} since the last production deploy"
    return BATCH, base, reason


def _sensitive(inputs: RiskInputs, config: RiskConfig) -> Found:
    matched = sensitive_paths(inputs.paths, config.sensitive_paths)
    if not matched:
        return None
    base = SENSITIVE_FIRST + SENSITIVE_EACH_MORE * (len(matched) - 1)
    shown = ", ".join(matched[:SHOWN_PATHS])
    more = len(matched) - SHOWN_PATHS
    if more > 0:
        shown += f" (+{more} more)"
    if len(matched) == 1:
        return SENSITIVE_PATHS, base, f"Touches a sensitive path: {shown}"
    return SENSITIVE_PATHS, base, f"Touches sensitive paths: {shown}"


def _ci(inputs: RiskInputs) -> Found:
    failed, retried = inputs.ci_failed_jobs, inputs.ci_retried_jobs
    base = CI_FAILED_JOB * failed + CI_RETRIED_JOB * retried
    if base <= 0:
        return None
    if failed and retried:
        were = "was" if retried == 1 else "were"
        reason = (
            f"{count(failed, 'CI job')} failed and {retried:,} {were} retried "
            "before this run succeeded"
        )
    elif failed:
        reason = f"{count(failed, 'CI job')} failed before this run succeeded"
    else:
        reason = f"{count(retried, 'CI job')} {'was' if retried == 1 else 'were'} retried"
    return CI, base, reason


def _timing(inputs: RiskInputs, config: RiskConfig) -> Found:
    hours = config.business_hours
    local = inputs.deploy_at.astimezone(hours.zone)
    outside = not hours.contains(inputs.deploy_at)
    friday = local.weekday() == FRIDAY and local.time() >= FRIDAY_AFTERNOON_FROM
    base = (OUTSIDE_BUSINESS_HOURS if outside else 0) + (FRIDAY_AFTERNOON if friday else 0)
    if base <= 0:
        return None
    clock = f"{local:%H:%M} {hours.timezone}"
    if friday:
        part = "afternoon" if local.hour < 18 else "evening"
        also = ", outside business hours" if outside else ""
        return TIMING, base, f"Deployed on Friday {part}{also} ({clock})"
    if local.weekday() not in hours.days:
        clock = f"{_DAY_NAMES[local.weekday()]} {clock}"
    return TIMING, base, f"Outside business hours ({clock})"


def _freeze(inputs: RiskInputs) -> Found:
    if not inputs.freeze_active:
        return None
    target = f" for {inputs.environment}" if inputs.environment else ""
    return FREEZE, FREEZE_ACTIVE, f"A change freeze is active{target}"


def _failure_rate(inputs: RiskInputs) -> Found:
    deploys, failures = inputs.recent_deploys, inputs.recent_failures
    if deploys < FAILURE_RATE_MIN_DEPLOYS or failures <= 0:
        return None
    rate = failures / deploys
    base = round_half_up(FAILURE_RATE_SCALE * rate)
    reason = (
        f"{failures:,} of the last {deploys:,} deploys of this service failed "
        f"({round_half_up(100 * rate)}%)"
    )
    return FAILURE_RATE, base, reason


def _last_deploy(inputs: RiskInputs) -> Found:
    if not inputs.last_deploy_failed:
        return None
    return LAST_DEPLOY, LAST_DEPLOY_FAILED, "The previous deploy failed or was rolled back"


def _truncated(inputs: RiskInputs) -> Found:
    if not inputs.truncated:
        return None
    reason = "The code host truncated the list of changes: the counts shown are lower bounds"
    return TRUNCATED, TRUNCATED_LISTS, reason


def _unknown(inputs: RiskInputs) -> Found:
    if not inputs.unknown:
        return None
    reason = (
        f"The changes could not be read in full ({inputs.unknown}): the score counts only "
        "what is known"
    )
    return UNKNOWN_CHANGES, UNKNOWN_CHANGES_POINTS, reason


def _age(days: float) -> str:
    days = max(days, 0.0)
    if days < 1 / 24:
        return "less than an hour"
    if days < 1:
        return count(math.floor(days * 24), "hour")
    return count(round_half_up(days), "day")
