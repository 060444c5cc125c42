"""What the risk score looks at, gathered by the caller from the code host, CI and history."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from bot.ports import Comparison


@dataclass(frozen=True)
class RiskInputs:
    """Everything the score looks at, gathered by the caller (no I/O happens here).

    `truncated`: the code host capped the lists, so the counts are lower bounds.
    `days_since_last_production_deploy`: None for the service's first production deploy.
    `ci_retried_jobs`: jobs of the run with run_attempt > 1.
    `recent_deploys` / `recent_failures`: the service's deploys in the last 30 days, and how
    many of them failed, failed verification or were rolled back.
    `unknown`: why what ships could not be read in full (the code host did not list the
    commits, or who merged and approved them), None when it was; the counts then cover only
    what is known.
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
    unknown: str | None = None

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
            unknown=comparison.people_unknown,
        )
