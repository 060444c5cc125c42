"""Service level objectives and error budgets.

An SLO says what share of a service's requests must be good over a window: objective 99.9
over 30d allows 0.1 % of them to fail, the **error budget**. Releasebot measures the error
ratio (1 - good/total) over the SLO's window and over the windows of the usual multi-window
burn-rate alerts, then:

    budget = Budget.from_ratios(objective=99.9, window="30d", ratios={"30d": 0.0004, ...})
    budget.remaining          # 0.6: 60 % of the budget is left (negative: overspent)
    budget.burn["1h"]         # error ratio over 1h / (1 - objective): 1.0 spends the budget
                              # exactly over the window, 14.4 spends 2 % of 30 days in 1 h
    budget.band(thresholds)   # "exhausted", "below_25_percent", ... or None

The burn-rate pairs are those of the usual alerting practice: 1h with 5m (fast burn, page
at 14.4) and 6h with 30m (slow burn, at 6); a pair fires only when both windows burn, so a
spike already over does not count. A budget that could not be measured (Prometheus did not
answer) is `unknown`, with the reason.

`MeasureBudget` is the outbox message asking for a measurement; the worker's handler asks
Prometheus through `bot.ports.BudgetSource`. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

__all__ = [
    "BURN_PAIRS",
    "Budget",
    "MeasureBudget",
    "band_threshold",
    "burn_rate",
    "budget_windows",
]

BURN_PAIRS: Final[tuple[tuple[str, str, float], ...]] = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
"""(long window, short window, burn rate at which the pair fires)."""

EXHAUSTED: Final = "exhausted"
UNKNOWN: Final = "unknown"
_BELOW = re.compile(r"below_(\d{1,2})_percent")


def budget_windows(window: str) -> tuple[str, ...]:
    """The windows to measure: the SLO's own, then each burn-rate window once."""
    found = [window]
    for long, short, _ in BURN_PAIRS:
        for w in (long, short):
            if w not in found:
                found.append(w)
    return tuple(found)


def burn_rate(error_ratio: float, objective: float) -> float:
    """How fast the budget burns: the error ratio over a window / (1 - objective/100)."""
    allowed = 1 - objective / 100
    return error_ratio / allowed if allowed > 0 else math.inf


def band_threshold(band: str) -> float | None:
    """`"below_25_percent"` -> 0.25, `"exhausted"` -> 0.0; None for another name."""
    if band == EXHAUSTED:
        return 0.0
    found = _BELOW.fullmatch(band)
    return int(found.group(1)) / 100 if found and 0 < int(found.group(1)) < 100 else None


@dataclass(frozen=True)
class Budget:
    """One measurement of a service's error budget, as stored and shown."""

    service: str
    objective: float  # percent, e.g. 99.9
    window: str  # e.g. "30d"
    known: bool
    remaining: float | None = None  # share of the budget left: 1.0 untouched, <= 0 exhausted
    error_ratio: float | None = None  # over the SLO's window
    burn: Mapping[str, float] = field(default_factory=dict)  # window -> burn rate
    reason: str | None = None  # why unknown
    measured_at: str | None = None  # ISO 8601

    @classmethod
    def from_ratios(
        cls,
        *,
        service: str,
        objective: float,
        window: str,
        ratios: Mapping[str, float | None],
        measured_at: str | None = None,
    ) -> Budget:
        """The budget from the error ratios measured per window (None: no traffic there,
        counted as no errors)."""
        burn = {w: burn_rate(r or 0.0, objective) for w, r in ratios.items() if w != window}
        ratio = ratios.get(window) or 0.0
        remaining = 1 - burn_rate(ratio, objective)
        return cls(
            service=service,
            objective=objective,
            window=window,
            known=True,
            remaining=remaining,
            error_ratio=ratio,
            burn=burn,
            measured_at=measured_at,
        )

    @classmethod
    def unknown(
        cls, *, service: str, objective: float, window: str, reason: str, measured_at: str | None
    ) -> Budget:
        return cls(service, objective, window, False, reason=reason, measured_at=measured_at)

    @property
    def exhausted(self) -> bool:
        return self.known and self.remaining is not None and self.remaining <= 0

    def band(self, bands: Iterable[str]) -> str | None:
        """The tightest of `bands` ("exhausted", "below_N_percent") this budget falls in."""
        if not self.known or self.remaining is None:
            return None
        matching = [
            (threshold, name)
            for name in bands
            if (threshold := band_threshold(name)) is not None
            and (self.remaining <= 0 if threshold == 0 else self.remaining < threshold)
        ]
        return min(matching)[1] if matching else None

    def firing(self) -> list[str]:
        """The burn-rate pairs over their limit, like "1h/5m above 14.4"."""
        fired = []
        for long, short, limit in BURN_PAIRS:
            if self.burn.get(long, 0) > limit and self.burn.get(short, 0) > limit:
                fired.append(f"{long}/{short} above {limit:g}")
        return fired

    def describe(self) -> str:
        """ "42% of the 30d error budget left (objective 99.9%) · burn 1h 2.1×, 5m 3×, ..."."""
        what = f"{self.window} error budget (objective {self.objective:g}%)"
        if not self.known:
            return f"{what} unknown: {self.reason or 'not measured'}"
        assert self.remaining is not None
        if self.exhausted:
            left = f"{what} exhausted ({self.remaining * 100:.1f}% left)"
        else:
            left = f"{self.remaining * 100:.1f}% of the {what} left"
        order = [w for pair in BURN_PAIRS for w in pair[:2]]
        shown = sorted(self.burn.items(), key=lambda i: order.index(i[0]) if i[0] in order else 99)
        rates = ", ".join(f"{w} {_rate(r)}" for w, r in shown)
        fired = self.firing()
        alarm = f" · burning fast: {', '.join(fired)}" if fired else ""
        return f"{left} · burn {rates}{alarm}" if rates else left

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "objective": self.objective,
            "window": self.window,
            "known": self.known,
            "remaining": _finite(self.remaining),
            "error_ratio": _finite(self.error_ratio),
            "burn": {w: _finite(r) for w, r in self.burn.items()},
            "reason": self.reason,
            "measured_at": self.measured_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        burn = data.get("burn") or {}
        return cls(
            service=str(data.get("service") or ""),
            objective=float(data.get("objective") or 0),
            window=str(data.get("window") or ""),
            known=bool(data.get("known")),
            remaining=_float(data.get("remaining")),
            error_ratio=_float(data.get("error_ratio")),
            burn={str(w): r for w, v in dict(burn).items() if (r := _float(v)) is not None},
            reason=str(data["reason"]) if data.get("reason") else None,
            measured_at=str(data["measured_at"]) if data.get("measured_at") else None,
        )


def _rate(value: float) -> str:
    return "∞×" if math.isinf(value) else f"{value:.3g}×"


def _finite(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _float(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class MeasureBudget:
    """Measure a service's error budget, then settle its waiting gates and promotions
    (`promote`: the deployment whose automatic promotion waits for the measurement)."""

    KIND: ClassVar[str] = "slo.measure"
    service: str
    promote: int | None = None

    @property
    def key(self) -> str:
        return f"slo:{self.service}"

    def to_payload(self) -> dict[str, Any]:
        return {"service": self.service, "promote": self.promote}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> MeasureBudget:
        promote = payload.get("promote")
        return cls(str(payload["service"]), int(promote) if promote is not None else None)
