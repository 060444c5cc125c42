"""DORA metrics as people read them: a fixed-width table, and the Slack message of one
window (for `/release metrics` and the weekly digest), with the release-health metrics
beside them (one line per metric, one column per service).

    print(table_text([r for r in rows if r.days == 30], year=2024))
    print(seed_table_text(seed_rows))
    reply = message(rows, now=now, seed=seed_rows)   # MetricsMessage(text=..., blocks=[...])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bot.domain.dora import (
    DEFAULT_YEAR,
    Classification,
    DoraMetrics,
    classify,
    format_hours,
    format_per_day,
    format_rate,
    table,
)
from bot.domain.seed_metrics import SEED_LABELS, SeedMetrics, seed_cells, seed_summary

COLUMNS: Final = ("service", "deploys", "per day", "lead time", "CFR", "recovery", "cluster")


def table_rows(rows: Sequence[DoraMetrics], *, year: int = DEFAULT_YEAR) -> list[tuple[str, ...]]:
    """One tuple of display strings per row, in COLUMNS order."""
    out: list[tuple[str, ...]] = []
    for row in rows:
        verdict = classify(row, year=year)
        out.append(
            (
                row.service or "overall",
                str(row.deployments),
                format_per_day(row.deploys_per_day),
                format_hours(row.lead_time_median_hours),
                format_rate(row.change_failure_rate)
                + (f" ({row.failures})" if row.deployments else ""),
                format_hours(row.recovery_median_hours)
                + (f" ({row.recoveries})" if row.recoveries else ""),
                verdict.cluster or "-",
            )
        )
    return out


def table_text(rows: Sequence[DoraMetrics], *, year: int = DEFAULT_YEAR) -> str:
    """A fixed-width table: a header, a rule and one line per row."""
    return _fixed_width([COLUMNS, *table_rows(rows, year=year)])


def seed_table_text(rows: Sequence[SeedMetrics]) -> str:
    """The release-health metrics as a fixed-width table: a header naming the services
    (overall first), a rule and one line per metric."""
    head = ("release health", *(row.service or "overall" for row in rows))
    columns = [seed_cells(row) for row in rows]
    lines = [head, *((label, *(c[i] for c in columns)) for i, label in enumerate(SEED_LABELS))]
    return _fixed_width(lines)


def seed_legend() -> str:
    return (
        "Release health: verification pass rate of production deployments that ran "
        "(passed/ended); staging verified to production: median wait of releases first "
        "deployed to production (count); rollbacks per week and share of production "
        "deployments rolled back; pipeline success rate of CI runs in every environment; "
        "SLO compliance: error-budget measurements with budget left (n/a: none measured)."
    )


def _fixed_width(lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def render(line: Sequence[str]) -> str:
        first = line[0].ljust(widths[0])
        rest = [cell.rjust(widths[i + 1]) for i, cell in enumerate(line[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def heading(rows: Sequence[DoraMetrics], *, now: datetime, year: int = DEFAULT_YEAR) -> str:
    days = rows[0].days if rows else 0
    scope = f" for {rows[0].service}" if len(rows) == 1 and rows[0].service else ""
    return (
        f"DORA metrics{scope}, last {days} days to {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
        f"(clusters: DORA {year} report)"
    )


def legend(year: int = DEFAULT_YEAR) -> str:
    return (
        "Production only. per day: deployments per day; lead time: median commit to "
        "production; CFR: failed, failed verification or rolled back (count); recovery: "
        f"median failed-deployment recovery time (count); cluster: the lowest of the four "
        f"by the DORA {year} table, unknown figures left out."
    )


@dataclass(frozen=True)
class MetricsMessage:
    """A Slack message: `text` (notifications, plain clients) and Block Kit `blocks`."""

    text: str
    blocks: list[dict[str, Any]]


def message(
    rows: Sequence[DoraMetrics],
    *,
    now: datetime,
    year: int = DEFAULT_YEAR,
    title: str | None = None,
    seed: Sequence[SeedMetrics] = (),
) -> MetricsMessage:
    """The rows of one window as a Slack message (for `/release metrics` and the digest),
    with the release-health metrics of the same window after them when `seed` is given."""
    head = title or heading(rows, now=now, year=year)
    body = table_text(rows, year=year)
    overall = next((r for r in rows if r.service is None), rows[0] if rows else None)
    summary = ""
    if overall is not None:
        verdict: Classification = classify(overall, year=year)
        who = "Overall" if overall.service is None else overall.service
        summary = (
            f"{who}: {overall.deployments} production deployments, lead time "
            f"{format_hours(overall.lead_time_median_hours)}, CFR "
            f"{format_rate(overall.change_failure_rate)}, recovery "
            f"{format_hours(overall.recovery_median_hours)}: "
            f"{verdict.cluster or 'not enough data'} ({year} clusters)."
        )
    seed_text = seed_table_text(seed) if seed else ""
    seed_line = seed_summary(seed[0]) if seed else ""
    text = "\n".join(
        part
        for part in (
            head,
            summary,
            "```\n" + body + "\n```",
            seed_line,
            "```\n" + seed_text + "\n```" if seed_text else "",
        )
        if part
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
    ]
    if summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": summary}})
    for chunk in _chunks(body.splitlines(), limit=2900):
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "```\n" + chunk + "\n```"}}
        )
    if seed:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": seed_line[:3000]}})
        for chunk in _chunks(seed_text.splitlines(), limit=2900):
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": "```\n" + chunk + "\n```"}}
            )
    source = table(year).source
    note = f"{legend(year)} Source: {source}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note[:2000]}]})
    if seed:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": seed_legend()[:2000]}]}
        )
    return MetricsMessage(text=text, blocks=blocks)


def _chunks(lines: Sequence[str], *, limit: int) -> Iterator[str]:
    """Lines joined into pieces of at most `limit` characters (Slack's section limit)."""
    piece: list[str] = []
    size = 0
    for line in lines:
        if piece and size + len(line) + 1 > limit:
            yield "\n".join(piece)
            piece, size = [], 0
        piece.append(line[:limit])
        size += len(line) + 1
    if piece:
        yield "\n".join(piece)
