"""DORA software delivery metrics and the performance cluster they put a team in.

    metrics = DoraMetrics(service="checkout", days=30, deployments=42, deploys_per_day=1.4,
                          lead_time_median_hours=5.0, change_failure_rate=0.07,
                          recovery_median_hours=3.0, failures=3, recoveries=3)
    result = classify(metrics, year=2024)
    result.cluster                 # "high": the lowest of the four metrics' clusters
    result.per_metric              # {"deployment_frequency": "elite", "lead_time": "elite",
                                   #  "change_failure_rate": "elite", "recovery_time": "high"}

The four metrics (INTEGRATIONS.md section 8):

- deployment frequency: production deployments per day over the window;
- lead time for changes: median time from each commit's authoring to its first production
  deployment succeeding (DORA reports medians);
- change failure rate: failed production deployments / production deployments;
- failed deployment recovery time (time to restore service before 2023): median time from a
  deployment-caused failure to its recovery.

The cluster thresholds are data, not code: `dora_clusters.json` beside this module holds one
table per report year (2019, 2021, 2024), each with its source. The clusters are re-derived
every year, so a classification always says which year's table it used. Each known metric
gets the cluster of the first band (best first) whose bound its figure meets; the overall
cluster is the lowest of the per-metric clusters, unknown metrics (no deployments with
commit times, no failures recovered...) left out. No known metric at all: no cluster.

Pure: no I/O beyond reading the packaged table, no clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Final

CLUSTERS: Final = ("elite", "high", "medium", "low")  # best first
METRICS: Final = ("deployment_frequency", "lead_time", "change_failure_rate", "recovery_time")
METRIC_LABELS: Final = {
    "deployment_frequency": "deployment frequency",
    "lead_time": "lead time for changes",
    "change_failure_rate": "change failure rate",
    "recovery_time": "failed deployment recovery time",
}
DEFAULT_YEAR: Final = 2024
MAX_DAYS: Final = 3660  # the longest window asked for (ten years)
TABLE_FILE: Final = "dora_clusters.json"


@dataclass(frozen=True)
class DoraMetrics:
    """The four figures for one service (None: every service) over the last `days` days.

    A figure is None when there is nothing to measure it on: no commit with a known time
    (lead time), no production deployment (change failure rate), no failure recovered in
    the window (recovery time).
    """

    service: str | None
    days: int
    deployments: int
    deploys_per_day: float
    lead_time_median_hours: float | None
    change_failure_rate: float | None
    recovery_median_hours: float | None
    failures: int
    recoveries: int

    @property
    def deploy_interval_days(self) -> float:
        """Mean days between production deployments (infinite when there were none)."""
        return self.days / self.deployments if self.deployments else math.inf

    def figure(self, metric: str) -> float | None:
        """The figure `metric` is classified on, in the unit of the cluster table."""
        if metric == "deployment_frequency":
            return self.deploy_interval_days
        if metric == "lead_time":
            return self.lead_time_median_hours
        if metric == "change_failure_rate":
            return self.change_failure_rate
        if metric == "recovery_time":
            return self.recovery_median_hours
        raise KeyError(metric)


@dataclass(frozen=True)
class Band:
    """One cluster's range of a metric: its figure is `< below` or `<= at_most`, or any."""

    cluster: str
    below: float | None = None
    at_most: float | None = None
    label: str = ""

    def holds(self, value: float) -> bool:
        if self.below is not None:
            return value < self.below
        if self.at_most is not None:
            return value <= self.at_most
        return True


@dataclass(frozen=True)
class MetricRule:
    """How one report year places one metric: ranges tried best first, or typical values."""

    bands: tuple[Band, ...] = ()
    typical: Mapping[str, float] | None = None
    label: str = ""

    def cluster_for(self, value: float) -> str:
        typical = self.typical
        if typical is not None:
            # Nearest typical value; a tie goes to the better cluster (CLUSTERS order). The
            # distance is rounded so 0.15 sits halfway between 0.10 and 0.20, as on paper.
            return min(
                (c for c in CLUSTERS if c in typical),
                key=lambda c: (round(abs(value - typical[c]), 9), CLUSTERS.index(c)),
            )
        for band in self.bands:
            if band.holds(value):
                return band.cluster
        return CLUSTERS[-1]

    def describe(self, cluster: str) -> str:
        for band in self.bands:
            if band.cluster == cluster and band.label:
                return band.label
        if self.typical is not None and cluster in self.typical:
            return f"typically {self.typical[cluster]:.0%}"
        return ""


@dataclass(frozen=True)
class ClusterTable:
    year: int
    source: str
    shares: Mapping[str, float]
    rules: Mapping[str, MetricRule]


@dataclass(frozen=True)
class Classification:
    """The overall cluster (None when no metric is known), each metric's, and the year."""

    cluster: str | None
    per_metric: dict[str, str | None]
    year: int
    notes: tuple[str, ...] = field(default=())


def median(values: Iterable[float]) -> float | None:
    """The median (mean of the middle two for an even count); None for no values."""
    return median_of_sorted(sorted(values))


def median_of_sorted(ordered: Sequence[float]) -> float | None:
    """`median` of values already in ascending order (no sorting again)."""
    n = len(ordered)
    if n == 0:
        return None
    mid = n // 2
    if n % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def lowest(clusters: Iterable[str | None]) -> str | None:
    """The worst of the given clusters, None ignored; None when none is given."""
    known = [c for c in clusters if c is not None]
    if not known:
        return None
    return max(known, key=CLUSTERS.index)


# --- the table ---------------------------------------------------------------------------


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {value!r} is not a number")
    return float(value)


def _rule(raw: Any, where: str) -> MetricRule:
    if isinstance(raw, dict) and "typical" in raw:
        typical = raw["typical"]
        if not isinstance(typical, dict) or set(typical) != set(CLUSTERS):
            raise ValueError(f"{where}: 'typical' must give a value for each of {CLUSTERS}")
        return MetricRule(
            typical={c: _number(typical[c], f"{where}.{c}") for c in CLUSTERS},
            label=str(raw.get("label", "")),
        )
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: expected a list of bands or {{'typical': ...}}")
    bands: list[Band] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("cluster") not in CLUSTERS:
            raise ValueError(f"{where}[{i}]: each band needs a cluster among {CLUSTERS}")
        below, at_most = item.get("below"), item.get("at_most")
        if below is not None and at_most is not None:
            raise ValueError(f"{where}[{i}]: give 'below' or 'at_most', not both")
        bands.append(
            Band(
                cluster=item["cluster"],
                below=None if below is None else _number(below, f"{where}[{i}].below"),
                at_most=None if at_most is None else _number(at_most, f"{where}[{i}].at_most"),
                label=str(item.get("label", "")),
            )
        )
    if [b.cluster for b in bands] != list(CLUSTERS):
        raise ValueError(f"{where}: bands must be {CLUSTERS}, in that order")
    last = bands[-1]
    if last.below is not None or last.at_most is not None:
        raise ValueError(f"{where}: the last band ({last.cluster}) must take everything left")
    return MetricRule(bands=tuple(bands))


def parse_tables(data: Mapping[str, Any]) -> dict[int, ClusterTable]:
    """The cluster tables from the JSON document; ValueError naming what is malformed."""
    years = data.get("years")
    if not isinstance(years, dict) or not years:
        raise ValueError("dora clusters: 'years' must map report years to tables")
    tables: dict[int, ClusterTable] = {}
    for key, raw in years.items():
        if not str(key).isdigit() or not isinstance(raw, dict):
            raise ValueError(f"dora clusters: {key!r} is not a report year with a table")
        year = int(key)
        source = raw.get("source")
        if not isinstance(source, str) or not source:
            raise ValueError(f"dora clusters {year}: a 'source' note is required")
        missing = [m for m in METRICS if m not in raw]
        if missing:
            raise ValueError(f"dora clusters {year}: no thresholds for {', '.join(missing)}")
        tables[year] = ClusterTable(
            year=year,
            source=source,
            shares={
                str(k): _number(v, f"dora clusters {year}.shares.{k}")
                for k, v in (raw.get("shares") or {}).items()
            },
            rules={m: _rule(raw[m], f"dora clusters {year}.{m}") for m in METRICS},
        )
    return tables


@lru_cache(maxsize=1)
def cluster_tables() -> dict[int, ClusterTable]:
    """Every year's table from the packaged `dora_clusters.json`."""
    text = resources.files(__package__ or "bot.domain").joinpath(TABLE_FILE).read_text("utf-8")
    return parse_tables(json.loads(text))


def years() -> tuple[int, ...]:
    return tuple(sorted(cluster_tables()))


def table(year: int = DEFAULT_YEAR) -> ClusterTable:
    tables = cluster_tables()
    if year not in tables:
        known = ", ".join(str(y) for y in sorted(tables))
        raise ValueError(f"no DORA cluster table for {year}: known years are {known}")
    return tables[year]


def classify(metrics: DoraMetrics, *, year: int = DEFAULT_YEAR) -> Classification:
    """Each metric's cluster by the `year` table and the overall (lowest known) cluster."""
    chosen = table(year)
    per_metric: dict[str, str | None] = {}
    notes: list[str] = []
    for metric in METRICS:
        value = metrics.figure(metric)
        if value is None:
            per_metric[metric] = None
            notes.append(f"{METRIC_LABELS[metric]}: nothing to measure in the window")
            continue
        rule = chosen.rules[metric]
        per_metric[metric] = rule.cluster_for(value)
        if rule.typical is not None:
            notes.append(
                f"{METRIC_LABELS[metric]}: the {year} report gives one typical value per "
                f"cluster ({rule.label or 'see the table'}); the nearest is used"
            )
    if metrics.deployments == 0:
        notes.append("no production deployments in the window")
    cluster = lowest(per_metric.values())
    return Classification(cluster=cluster, per_metric=per_metric, year=year, notes=tuple(notes))


# --- formatting, shared by the terminal table, Slack and the digest -----------------------


def format_hours(hours: float | None) -> str:
    """`0.5` -> "30m", `5.25` -> "5.2h", `50` -> "2.1d"; None -> "-"."""
    if hours is None:
        return "-"
    if hours < 1:
        return f"{hours * 60:.0f}m"
    if hours < 48:
        return f"{hours:.1f}h"
    return f"{hours / 24:.1f}d"


def format_rate(rate: float | None) -> str:
    """`0.25` -> "25.0%"; None -> "-"."""
    return "-" if rate is None else f"{rate * 100:.1f}%"


def format_per_day(per_day: float) -> str:
    """Deploys per day with two decimals, or per week when fewer than one a day."""
    if per_day >= 1 or per_day == 0:
        return f"{per_day:.2f}/day"
    return f"{per_day * 7:.2f}/week"
