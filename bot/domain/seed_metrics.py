"""The release-health metrics shown beside the four DORA keys, and how they read.

    row = SeedMetrics(service="checkout", days=7, verified=6, verifications=7, ...)
    row.verification_pass_rate        # 6 / 7
    seed_cells(row)                   # display strings, one per SEED_LABELS entry

What each counts is written in docs/metrics.md and `bot.services.seed_metrics`, which
reads them from the stored history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.domain.dora import format_hours, format_rate

SEED_LABELS: Final = (
    "verification pass rate",
    "staging verified to production",
    "rollbacks per week",
    "rolled back",
    "pipeline success rate",
    "SLO compliance",
)


@dataclass(frozen=True)
class SeedMetrics:
    """The five release-health figures of one service (None: every service) over `days`.

    verified / verifications: production deployments whose verification ended (verified,
    verification_failed, or rolled back after verification began) and those that passed.
    promotion_median_seconds / promotions: the median time from a release's verification
    outside production to its first production deployment's start, and how many releases.
    rollbacks / deployments: production deployments rolled back, of all production ones.
    pipeline_succeeded / pipeline_failed: CI outcomes in every environment.
    slo_met / slo_measured: error-budget measurements with budget left, of all known ones.
    """

    service: str | None
    days: int
    verified: int = 0
    verifications: int = 0
    promotion_median_seconds: float | None = None
    promotions: int = 0
    rollbacks: int = 0
    deployments: int = 0
    pipeline_succeeded: int = 0
    pipeline_failed: int = 0
    slo_met: int = 0
    slo_measured: int = 0

    @property
    def verification_pass_rate(self) -> float | None:
        return self.verified / self.verifications if self.verifications else None

    @property
    def rollbacks_per_week(self) -> float:
        return self.rollbacks / (self.days / 7)

    @property
    def rollback_share(self) -> float | None:
        return self.rollbacks / self.deployments if self.deployments else None

    @property
    def pipeline_success_rate(self) -> float | None:
        runs = self.pipeline_succeeded + self.pipeline_failed
        return self.pipeline_succeeded / runs if runs else None

    @property
    def slo_compliance(self) -> float | None:
        return self.slo_met / self.slo_measured if self.slo_measured else None


def _ratio(rate: float | None, part: int, whole: int) -> str:
    return "-" if rate is None else f"{format_rate(rate)} ({part}/{whole})"


def seed_cells(row: SeedMetrics) -> tuple[str, ...]:
    """The row's figures as display strings, in SEED_LABELS order ("-": nothing to count,
    "n/a": no error budget measured)."""
    hours = None if row.promotion_median_seconds is None else row.promotion_median_seconds / 3600
    return (
        _ratio(row.verification_pass_rate, row.verified, row.verifications),
        format_hours(hours) + (f" ({row.promotions})" if row.promotions else ""),
        f"{row.rollbacks_per_week:.2f}",
        _ratio(row.rollback_share, row.rollbacks, row.deployments),
        _ratio(
            row.pipeline_success_rate,
            row.pipeline_succeeded,
            row.pipeline_succeeded + row.pipeline_failed,
        ),
        "n/a"
        if row.slo_compliance is None
        else _ratio(row.slo_compliance, row.slo_met, row.slo_measured),
    )


def seed_summary(row: SeedMetrics) -> str:
    """One sentence: `Overall: verification pass rate 85.7% (6/7), staging verified to ...`."""
    cells = seed_cells(row)
    who = "Overall" if row.service is None else row.service
    parts = [f"{label} {cell}" for label, cell in zip(SEED_LABELS, cells, strict=True)]
    return f"{who}: " + ", ".join(parts) + "."
