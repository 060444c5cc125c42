"""The score: weighted, capped factor points summed to 0..100, and the level it falls in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, get_args

from bot.config import RiskConfig, RiskLevelName
from bot.domain.risk.factors import CAPS, FACTOR_NAMES, MAX_SCORE, round_half_up
from bot.domain.risk.inputs import RiskInputs
from bot.domain.risk.reasons import findings

_LEVELS: Final[tuple[str, ...]] = get_args(RiskLevelName)


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
    """The score (0..100), its level and the factors, most points first (then by name).

    `unknown`: why the release could not be read in full (`RiskInputs.unknown`), None when
    it was. Whatever the score, such a release is never approved automatically.
    """

    score: int
    level: RiskLevelName
    factors: tuple[RiskFactor, ...]
    unknown: str | None = None

    def top(self, n: int = 3) -> tuple[RiskFactor, ...]:
        """The n factors that add the most points."""
        return self.factors[: max(n, 0)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"score", "level", "factors": [{"name", "points", "reason"}]}`, and
        `"unknown"` when the release could not be read in full."""
        found: dict[str, Any] = {
            "score": self.score,
            "level": self.level,
            "factors": [
                {"name": f.name, "points": f.points, "reason": f.reason} for f in self.factors
            ],
        }
        if self.unknown:
            found["unknown"] = self.unknown
        return found

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
        unknown = data.get("unknown")
        if unknown is not None and not isinstance(unknown, str):
            raise ValueError(f"risk unknown must be a string or null, not {unknown!r}")
        return cls(
            score=score,
            level=_level_name(level),
            factors=tuple(sorted(factors, key=_factor_order)),
            unknown=unknown or None,
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


def assess(inputs: RiskInputs, *, config: RiskConfig) -> RiskAssessment:
    """Score a deployment. Same inputs and config, same assessment."""
    factors: list[RiskFactor] = []
    for found in findings(inputs, config):
        if found is None:
            continue
        name, base, reason = found
        weight = config.weights.get(name, 1.0)
        points = min(CAPS[name], round_half_up(base * weight))
        if points > 0:
            factors.append(RiskFactor(name=name, points=points, reason=reason))
    factors.sort(key=_factor_order)
    score = min(MAX_SCORE, sum(f.points for f in factors))
    return RiskAssessment(
        score=score,
        level=config.levels.level_for(score),
        factors=tuple(factors),
        unknown=inputs.unknown or None,
    )


def unknown_weights(config: RiskConfig) -> list[str]:
    """Names in `risk.weights` that are not factors (the score ignores them)."""
    return sorted(name for name in config.weights if name not in FACTOR_NAMES)
