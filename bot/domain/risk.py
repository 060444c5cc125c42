"""The risk score of a deployment: deterministic, explainable, configurable.

    inputs = RiskInputs.from_comparison(comparison, deploy_at=now, environment="production",
                                        is_production=True, days_since_last_production_deploy=3.5)
    assessment = assess(inputs, config=config.risk)
    assessment.score, assessment.level       # 42, "medium"
    [f.reason for f in assessment.top(3)]    # one plain-English sentence per factor

The model is additive. Each factor below looks at one thing a release manager worries
about and adds points with a one-sentence reason; a factor that adds nothing is left out.
Each factor has a cap, so no single worry drowns the others, and the score is the sum,
capped at 100. The level comes from `risk.levels` (`RiskLevels.level_for`).

| factor (`risk.weights` key) | points                                                   | cap |
|-----------------------------|----------------------------------------------------------|-----|
| `size`                      | 2.8 * (log10(1 + lines) + 0.5 * log10(1 + files)) ** 1.5 | 25  |
|                             | (10 lines/1 file: 4, 100/3: 10, 1,000/15: 19, 10k: cap)  |     |
| `batch`                     | 5 * log10(commits) + 4 * log10(1 + days since the last   | 15  |
|                             | production deploy); 0 when there are no commits          |     |
| `sensitive_paths`           | 15 for the first matching path, 5 for each further one   | 25  |
| `ci`                        | 4 per failed job, 2 per retried job                      | 10  |
| `timing`                    | 5 outside business hours, 7 on Friday from 14:00 local   | 10  |
| `freeze`                    | 15 while a change freeze is active                       | 30  |
| `failure_rate`              | 30 * failed / recent deploys (needs >= 3 recent deploys) | 15  |
| `last_deploy`               | 10 when the previous deploy failed or was rolled back    | 20  |
| `truncated`                 | 2 when the code host capped the lists (counts are lower  | 4   |
|                             | bounds); it is there so the reason is shown              |     |

`risk.weights` multiplies a factor's points before its cap applies: weight 0 removes the
factor, weight 2 doubles it up to the cap (the flat factors' caps leave room for that).
Weight names not in `FACTOR_NAMES` are ignored here; `unknown_weights(config)` lists them.
Points are rounded half up (never banker's rounding), so equal inputs give equal output.

Sensitive paths (`risk.sensitive_paths`) follow .gitignore semantics, matched case-sensitively
against repository-relative paths:

- a pattern without a slash matches that name in any directory (`Dockerfile` matches
  `Dockerfile` and `svc/Dockerfile`); one with a slash is anchored at the repository root
  (`migrations/**`, `/Dockerfile` for the root one only);
- `*` matches within one path segment, `?` one character other than `/`, `[a-z]` and `[!a-z]`
  a character class; `**/` matches zero or more directories, a trailing `/**` everything
  inside; `\\` escapes the next character;
- a pattern that matches a directory matches every file in it, and a trailing `/` matches
  directories only (`migrations/` matches `migrations/0001.py` and `app/migrations/x.py`);
- a pattern starting with `!` un-marks paths an earlier pattern marked (the last match wins).

Non-production environments get the same factors and points: the score describes the change
and the moment, not the target. Freezes are an input (whoever builds `RiskInputs` decides
whether one covers this environment), and gates decide what each level demands per
environment. `environment` only appears in the freeze reason.

Pure: no I/O and no clock. The deploy time is an input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from typing import Any, Final, get_args

from bot.config import RiskConfig, RiskLevelName
from bot.ports import Comparison

__all__ = [
    "BATCH",
    "CAPS",
    "CI",
    "FACTOR_NAMES",
    "FAILURE_RATE",
    "FREEZE",
    "LAST_DEPLOY",
    "SENSITIVE_PATHS",
    "SIZE",
    "TIMING",
    "TRUNCATED",
    "RiskAssessment",
    "RiskFactor",
    "RiskInputs",
    "assess",
    "glob_to_regex",
    "path_matches",
    "sensitive_paths",
    "unknown_weights",
]

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
}

MAX_SCORE: Final = 100
SHOWN_PATHS: Final = 3  # sensitive paths named in the reason, then "(+N more)"

_LEVELS: Final[tuple[str, ...]] = get_args(RiskLevelName)
_DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# ---- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskInputs:
    """Everything the score looks at, gathered by the caller (no I/O happens here).

    `truncated`: the code host capped the lists, so the counts are lower bounds.
    `days_since_last_production_deploy`: None for the service's first production deploy.
    `ci_retried_jobs`: jobs of the run with run_attempt > 1.
    `recent_deploys` / `recent_failures`: the service's deploys in the last 30 days, and how
    many of them failed, failed verification or were rolled back.
    """

    additions: int
    deletions: int
    files_changed: int
    paths: tuple[str, ...]
    commit_count: int
    truncated: bool
    days_since_last_production_deploy: float | None
    deploy_at: datetime
    environment: str
    is_production: bool
    ci_failed_jobs: int = 0
    ci_retried_jobs: int = 0
    freeze_active: bool = False
    recent_deploys: int = 0
    recent_failures: int = 0
    last_deploy_failed: bool = False

    def __post_init__(self) -> None:
        for name in (
            "additions",
            "deletions",
            "files_changed",
            "commit_count",
            "ci_failed_jobs",
            "ci_retried_jobs",
            "recent_deploys",
            "recent_failures",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"RiskInputs.{name} must not be negative")
        if self.recent_failures > self.recent_deploys:
            raise ValueError("RiskInputs.recent_failures must not exceed recent_deploys")
        days = self.days_since_last_production_deploy
        if days is not None and not math.isfinite(days):
            raise ValueError("RiskInputs.days_since_last_production_deploy must be finite")
        if self.deploy_at.tzinfo is None or self.deploy_at.utcoffset() is None:
            raise ValueError("RiskInputs.deploy_at must be timezone-aware")

    @classmethod
    def from_comparison(
        cls,
        comparison: Comparison,
        *,
        days_since_last_production_deploy: float | None,
        deploy_at: datetime,
        environment: str,
        is_production: bool,
        ci_failed_jobs: int = 0,
        ci_retried_jobs: int = 0,
        freeze_active: bool = False,
        recent_deploys: int = 0,
        recent_failures: int = 0,
        last_deploy_failed: bool = False,
    ) -> RiskInputs:
        """Sizes, paths and counts from the code host's comparison; the rest as given.

        A renamed file counts both its old and its new path (moving a migration away from
        `migrations/` touches `migrations/`).
        """
        paths: dict[str, None] = {}
        for change in comparison.files:
            paths[change.path] = None
            if change.previous_path:
                paths[change.previous_path] = None
        return cls(
            additions=comparison.additions,
            deletions=comparison.deletions,
            files_changed=len(comparison.files),
            paths=tuple(paths),
            commit_count=max(comparison.total_commits, len(comparison.commits)),
            truncated=comparison.truncated,
            days_since_last_production_deploy=days_since_last_production_deploy,
            deploy_at=deploy_at,
            environment=environment,
            is_production=is_production,
            ci_failed_jobs=ci_failed_jobs,
            ci_retried_jobs=ci_retried_jobs,
            freeze_active=freeze_active,
            recent_deploys=recent_deploys,
            recent_failures=recent_failures,
            last_deploy_failed=last_deploy_failed,
        )


@dataclass(frozen=True)
class RiskFactor:
    """One reason the change is risky: its name (a key of `risk.weights`), its points and one
    plain-English sentence for the release manager."""

    name: str
    points: int
    reason: str


def _factor_order(factor: RiskFactor) -> tuple[int, str]:
    return (-factor.points, factor.name)


@dataclass(frozen=True)
class RiskAssessment:
    """The score (0..100), its level and the factors, most points first (then by name)."""

    score: int
    level: RiskLevelName
    factors: tuple[RiskFactor, ...]

    def top(self, n: int = 3) -> tuple[RiskFactor, ...]:
        """The n factors that add the most points."""
        return self.factors[: max(n, 0)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"score", "level", "factors": [{"name", "points", "reason"}]}`."""
        return {
            "score": self.score,
            "level": self.level,
            "factors": [
                {"name": f.name, "points": f.points, "reason": f.reason} for f in self.factors
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskAssessment:
        """The inverse of `to_dict`; raises ValueError on anything it would not have written."""
        score = _whole(data.get("score"))
        if score is None or not 0 <= score <= MAX_SCORE:
            raise ValueError(f"risk score must be a whole number 0..{MAX_SCORE}: {data!r}")
        level = data.get("level")
        if level not in _LEVELS:
            raise ValueError(f"risk level must be one of {', '.join(_LEVELS)}, not {level!r}")
        raw_factors = data.get("factors")
        if not isinstance(raw_factors, list | tuple):
            raise ValueError("risk factors must be a list")
        factors: list[RiskFactor] = []
        for raw in raw_factors:
            if not isinstance(raw, Mapping):
                raise ValueError(f"a risk factor must be a mapping, not {raw!r}")
            name, points, reason = raw.get("name"), _whole(raw.get("points")), raw.get("reason")
            if not isinstance(name, str) or not isinstance(reason, str):
                raise ValueError(f"a risk factor needs a name and a reason: {dict(raw)!r}")
            if points is None or points < 0:
                raise ValueError(f"risk factor points must be a whole number >= 0: {dict(raw)!r}")
            factors.append(RiskFactor(name=name, points=points, reason=reason))
        return cls(
            score=score,
            level=_level_name(level),
            factors=tuple(sorted(factors, key=_factor_order)),
        )


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _level_name(value: object) -> RiskLevelName:
    if value == "low":
        return "low"
    if value == "medium":
        return "medium"
    if value == "high":
        return "high"
    return "critical"


# ---- scoring --------------------------------------------------------------------------------


def assess(inputs: RiskInputs, *, config: RiskConfig) -> RiskAssessment:
    """Score a deployment. Same inputs and config, same assessment."""
    candidates = (
        _size(inputs),
        _batch(inputs),
        _sensitive(inputs, config),
        _ci(inputs),
        _timing(inputs, config),
        _freeze(inputs),
        _failure_rate(inputs),
        _last_deploy(inputs),
        _truncated(inputs),
    )
    factors: list[RiskFactor] = []
    for found in candidates:
        if found is None:
            continue
        name, base, reason = found
        weight = config.weights.get(name, 1.0)
        points = min(CAPS[name], _round(base * weight))
        if points > 0:
            factors.append(RiskFactor(name=name, points=points, reason=reason))
    factors.sort(key=_factor_order)
    score = min(MAX_SCORE, sum(f.points for f in factors))
    return RiskAssessment(score=score, level=config.levels.level_for(score), factors=tuple(factors))


def unknown_weights(config: RiskConfig) -> list[str]:
    """Names in `risk.weights` that are not factors (the score ignores them)."""
    return sorted(name for name in config.weights if name not in FACTOR_NAMES)


_Found = tuple[str, int, str] | None  # (factor name, unweighted points, reason)


def _size(inputs: RiskInputs) -> _Found:
    lines = inputs.additions + inputs.deletions
    files = inputs.files_changed
    x = math.log10(1 + lines) + SIZE_FILES_FACTOR * math.log10(1 + files)
    base = _round(SIZE_SCALE * x**SIZE_EXPONENT)
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
    reason = f"{kind}: {at_least}{_count(lines, 'line')} {where} {at_least}{_count(files, 'file')}"
    return SIZE, base, reason


def _batch(inputs: RiskInputs) -> _Found:
    commits = inputs.commit_count
    if commits <= 0:
        return None  # nothing new ships, however long ago the last deploy was
    days = inputs.days_since_last_production_deploy
    raw = BATCH_COMMITS_SCALE * math.log10(commits)
    if days is not None:
        raw += BATCH_DAYS_SCALE * math.log10(1 + max(days, 0.0))
    base = _round(raw)
    if base <= 0:
        return None
    counted = ("at least " if inputs.truncated else "") + _count(commits, "commit")
    if days is None:
        reason = f"{_capitalize(counted)}, and nothing has been deployed to production yet"
    else:
        reason = f"{_capitalize(counted)} and {_age(days)} since the last production deploy"
    return BATCH, base, reason


def _sensitive(inputs: RiskInputs, config: RiskConfig) -> _Found:
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


def _ci(inputs: RiskInputs) -> _Found:
    failed, retried = inputs.ci_failed_jobs, inputs.ci_retried_jobs
    base = CI_FAILED_JOB * failed + CI_RETRIED_JOB * retried
    if base <= 0:
        return None
    if failed and retried:
        were = "was" if retried == 1 else "were"
        reason = (
            f"{_count(failed, 'CI job')} failed and {retried:,} {were} retried "
            "before this run succeeded"
        )
    elif failed:
        reason = f"{_count(failed, 'CI job')} failed before this run succeeded"
    else:
        reason = f"{_count(retried, 'CI job')} {'was' if retried == 1 else 'were'} retried"
    return CI, base, reason


def _timing(inputs: RiskInputs, config: RiskConfig) -> _Found:
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


def _freeze(inputs: RiskInputs) -> _Found:
    if not inputs.freeze_active:
        return None
    target = f" for {inputs.environment}" if inputs.environment else ""
    return FREEZE, FREEZE_ACTIVE, f"A change freeze is active{target}"


def _failure_rate(inputs: RiskInputs) -> _Found:
    deploys, failures = inputs.recent_deploys, inputs.recent_failures
    if deploys < FAILURE_RATE_MIN_DEPLOYS or failures <= 0:
        return None
    rate = failures / deploys
    base = _round(FAILURE_RATE_SCALE * rate)
    reason = (
        f"{failures:,} of the last {deploys:,} deploys of this service failed "
        f"({_round(100 * rate)}%)"
    )
    return FAILURE_RATE, base, reason


def _last_deploy(inputs: RiskInputs) -> _Found:
    if not inputs.last_deploy_failed:
        return None
    return LAST_DEPLOY, LAST_DEPLOY_FAILED, "The previous deploy failed or was rolled back"


def _truncated(inputs: RiskInputs) -> _Found:
    if not inputs.truncated:
        return None
    reason = "The code host truncated the list of changes: the counts shown are lower bounds"
    return TRUNCATED, TRUNCATED_LISTS, reason


# ---- sensitive paths: .gitignore-style globs ------------------------------------------------


def sensitive_paths(paths: Iterable[str], patterns: Sequence[str]) -> tuple[str, ...]:
    """The distinct paths the patterns mark as sensitive, in their first order of appearance."""
    compiled = [_compile(pattern) for pattern in patterns]
    found: dict[str, None] = {}
    for path in paths:
        if path not in found and _marked(_normalize(path), compiled):
            found[path] = None
    return tuple(found)


def path_matches(pattern: str, path: str) -> bool:
    """Does this one pattern (a leading `!` is taken literally here) match this path?"""
    return _regex(pattern).fullmatch(_normalize(path)) is not None


def glob_to_regex(pattern: str) -> str:
    """The regular expression (for `re.fullmatch`) of a .gitignore-style pattern."""
    body = pattern.strip()
    directory_only = body.endswith("/")
    body = body.rstrip("/")
    anchored = "/" in body  # before the leading slash goes: "/Dockerfile" is anchored
    segments = [segment for segment in body.split("/") if segment]
    if not segments:
        return r"(?!)"  # matches nothing
    if not anchored:
        segments.insert(0, "**")
    out = ""
    slash = ""  # the separator to put before the next segment
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**" and last:
            out += slash + ".+"  # everything inside
        elif segment == "**":
            out += slash + "(?:.+/)?"  # zero or more directories
            slash = ""
            continue
        else:
            out += slash + _translate_segment(segment)
        slash = "/"
    # A match on a directory covers the files in it; `dir/` matches directories only.
    return out + ("/.+" if directory_only else "(?:/.+)?")


def _normalize(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


_Compiled = tuple[bool, re.Pattern[str]]  # (negated, regex)


def _compile(pattern: str) -> _Compiled:
    stripped = pattern.strip()
    if stripped.startswith("!"):
        return True, _regex(stripped[1:])
    return False, _regex(stripped)


def _marked(path: str, compiled: Sequence[_Compiled]) -> bool:
    marked = False
    for negated, regex in compiled:
        if marked == negated and regex.fullmatch(path):
            marked = not negated
    return marked


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(pattern), re.DOTALL)


def _translate_segment(segment: str) -> str:
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(segment[i]))
        elif char == "[":
            found = _character_class(segment, i)
            if found is None:
                out.append(re.escape(char))
            else:
                regex, i = found
                out.append(regex)
                continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _character_class(segment: str, start: int) -> tuple[str, int] | None:
    """`[...]` at `start` as a regex that never matches `/`, and the index after it."""
    i = start + 1
    negated = i < len(segment) and segment[i] in "!^"
    if negated:
        i += 1
    first = i
    while i < len(segment) and (segment[i] != "]" or i == first):
        i += 1
    if i >= len(segment):
        return None  # no closing bracket: a literal "["
    content, end = segment[first:i], i + 1
    items: list[str] = []
    j = 0
    while j < len(content):
        if j + 2 < len(content) and content[j + 1] == "-":
            low, high = content[j], content[j + 2]
            if low <= high:
                items.append(f"{re.escape(low)}-{re.escape(high)}")
            j += 3
        else:
            items.append(re.escape(content[j]))
            j += 1
    inner = "".join(items)
    if negated:
        return f"[^/{inner}]", end
    if not inner:
        return r"(?!)", end
    return f"(?:(?!/)[{inner}])", end


# ---- wording --------------------------------------------------------------------------------


def _round(value: float) -> int:
    """Half up, so 2.5 -> 3 (round() would give 2)."""
    return math.floor(value + 0.5)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _age(days: float) -> str:
    days = max(days, 0.0)
    if days < 1 / 24:
        return "less than an hour"
    if days < 1:
        return _count(math.floor(days * 24), "hour")
    return _count(_round(days), "day")
