"""HTML for the web dashboard: a Jinja2 environment that autoescapes everything it prints,
the display helpers its templates use, and server-side SVG chart geometry (no JavaScript).

    env = html_environment()
    env.get_template("overview.html").render(page=..., now=...)

This is separate from `bot.render` (Slack mrkdwn); nothing here knows about HTTP.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import jinja2

from bot.domain.ingest import has_sha, is_version_key, revision_label

_HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*", re.IGNORECASE)
HTML_TEMPLATES = Path(__file__).parent / "templates" / "html"
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Badge:
    icon: str
    label: str
    tone: str  # a CSS modifier: good, bad, warn, wait, info, muted


STATES: dict[str, Badge] = {
    "pending": Badge("◌", "Pending", "wait"),
    "awaiting_approval": Badge("✋", "Awaiting approval", "warn"),
    "approved": Badge("✔", "Approved", "good"),
    "rejected": Badge("⛔", "Rejected", "bad"),
    "expired": Badge("⌛", "Expired", "muted"),
    "in_progress": Badge("▶", "Deploying", "info"),
    "succeeded": Badge("●", "Deployed", "good"),
    "failed": Badge("✖", "Deploy failed", "bad"),
    "verifying": Badge("⟳", "Verifying", "info"),
    "verified": Badge("✔", "Verified", "good"),
    "verification_failed": Badge("✖", "Verification failed", "bad"),
    "rolling_back": Badge("↩", "Rolling back", "warn"),
    "rolled_back": Badge("⏪", "Rolled back", "bad"),
    "rollback_failed": Badge("⚠", "Rollback failed", "bad"),
    "superseded": Badge("⏩", "Superseded", "muted"),
}
GATE_STATES: dict[str, Badge] = {
    "pending": Badge("✋", "Pending", "warn"),
    "approved": Badge("✔", "Approved", "good"),
    "rejected": Badge("⛔", "Rejected", "bad"),
    "expired": Badge("⌛", "Expired", "muted"),
    "superseded": Badge("⏩", "Superseded", "muted"),
}
RUN_STATES: dict[str, Badge] = {
    "pending": Badge("◌", "Pending", "wait"),
    "running": Badge("⟳", "Running", "info"),
    "passed": Badge("✔", "Passed", "good"),
    "failed": Badge("✖", "Failed", "bad"),
    "cancelled": Badge("–", "Cancelled", "muted"),
}
DECISIONS: dict[str, Badge] = {
    "approve": Badge("✔", "Approved", "good"),
    "reject": Badge("⛔", "Rejected", "bad"),
}
RISK_TONES = {"low": "good", "medium": "warn", "high": "high", "critical": "bad"}


def state_badge(state: str) -> Badge:
    return STATES.get(state, Badge("?", state.replace("_", " ").capitalize(), "muted"))


def gate_badge(status: str) -> Badge:
    return GATE_STATES.get(status, Badge("?", status.capitalize(), "muted"))


def run_badge(status: str) -> Badge:
    return RUN_STATES.get(status, Badge("?", status.capitalize(), "muted"))


def decision_badge(decision: str) -> Badge:
    return DECISIONS.get(decision, Badge("?", decision.capitalize(), "muted"))


def risk_tone(level: str | None) -> str:
    return RISK_TONES.get(level or "", "muted")


def when(value: datetime | str | None) -> str:
    """`2026-11-17 10:00 UTC`; an audit-chain string is parsed first; '' for nothing."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        at = value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float | None) -> str:
    """A short human duration: `45s`, `12m`, `5h 12m`, `3d 4h`; '—' for nothing."""
    if seconds is None or math.isnan(seconds):
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "in " + duration(-seconds)
    return duration(seconds) + " ago"


def http_url(value: object) -> str | None:
    """The value when it is an absolute http(s) URL, else None: no `javascript:` links."""
    if isinstance(value, str) and _HTTP_URL.fullmatch(value.strip()):
        return value.strip()
    return None


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


# --- charts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # the tooltip (an SVG <title>)
    highlight_y: float  # the part of the bar drawn in the highlight tone (failed deploys)
    highlight_height: float


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Tick:
    at: float  # y (value ticks) or x (labels)
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float  # the y of the baseline
    y_ticks: list[Tick]
    x_labels: list[Tick]
    bars: list[Bar]
    points: list[Point]
    path: str  # SVG polyline points "x,y x,y ..." through the points, in order
    empty: bool
    unit: str


WIDTH, HEIGHT = 720, 240
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 52.0, 12.0, 14.0, 30.0
MAX_X_LABELS = 8


def nice_ticks(maximum: float, count: int = 4, *, whole: bool = False) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k; whole numbers only if `whole`) up to at
    least `maximum`."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (1, 2, 2.5, 5, 10)]
    if whole:
        steps = [s for s in steps if s >= 1 and float(s).is_integer()]
    step = next((s for s in steps if s >= raw), max(1.0, math.ceil(raw)))
    ticks = [0.0]
    while ticks[-1] < maximum - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _frame(labels: Sequence[str]) -> tuple[float, float, float, list[Tick]]:
    plot_width = WIDTH - PAD_LEFT - PAD_RIGHT
    slot = plot_width / max(len(labels), 1)
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    x_labels = [
        Tick(round(PAD_LEFT + slot * (i + 0.5), 2), label)
        for i, label in enumerate(labels)
        if i % every == 0
    ]
    return plot_width, slot, HEIGHT - PAD_BOTTOM, x_labels


def _y_ticks(
    maximum: float, baseline: float, fmt: Callable[[float], str], *, whole: bool = False
) -> tuple[list[Tick], float]:
    ticks = nice_ticks(maximum, whole=whole)
    top = ticks[-1] or 1.0
    scale = (baseline - PAD_TOP) / top
    return [Tick(round(baseline - t * scale, 2), fmt(t)) for t in ticks], scale


def _number(value: float) -> str:
    return f"{value:g}"


def bar_chart(
    labels: Sequence[str],
    values: Sequence[int],
    highlights: Sequence[int] | None = None,
    *,
    unit: str = "deploys",
) -> Chart:
    """One bar per label; `highlights` (<= value) is drawn at the bottom of each bar."""
    _, slot, baseline, x_labels = _frame(labels)
    maximum = float(max(values, default=0))
    y_ticks, scale = _y_ticks(maximum, baseline, _number, whole=True)
    bar_width = max(slot * 0.7, 1.0)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        marked = highlights[i] if highlights is not None else 0
        height = value * scale
        marked_height = min(marked, value) * scale
        title = f"{label}: {value} {unit}" + (f", {marked} failed" if marked else "")
        bars.append(
            Bar(
                x=round(PAD_LEFT + slot * i + (slot - bar_width) / 2, 2),
                y=round(baseline - height, 2),
                width=round(bar_width, 2),
                height=round(height, 2),
                title=title,
                highlight_y=round(baseline - marked_height, 2),
                highlight_height=round(marked_height, 2),
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=PAD_LEFT,
        right=WIDTH - PAD_RIGHT,
        top=PAD_TOP,
        bottom=baseline,
        y_ticks=y_ticks,
        x_labels=x_labels,
        bars=bars,
        points=[],
        path="",
        empty=maximum == 0,
        unit=unit,
    )


def line_chart(labels: Sequence[str], seconds: Sequence[float | None]) -> Chart:
    """A line through the buckets that have a value (durations, shown in hours or days)."""
    _, slot, baseline, x_labels = _frame(labels)
    known = [s for s in seconds if s is not None]
    in_days = bool(known) and max(known) >= 3 * 86400
    divisor, unit = (86400.0, "days") if in_days else (3600.0, "hours")
    maximum = max(known, default=0.0) / divisor
    y_ticks, scale = _y_ticks(maximum, baseline, _number)
    points = [
        Point(
            x=round(PAD_LEFT + slot * (i + 0.5), 2),
            y=round(baseline - (value / divisor) * scale, 2),
            title=f"{label}: median {duration(value)}",
        )
        for i, (label, value) in enumerate(zip(labels, seconds, strict=True))
        if value is not None
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=PAD_LEFT,
        right=WIDTH - PAD_RIGHT,
        top=PAD_TOP,
        bottom=baseline,
        y_ticks=y_ticks,
        x_labels=x_labels,
        bars=[],
        points=points,
        path=" ".join(f"{p.x},{p.y}" for p in points),
        empty=not points,
        unit=unit,
    )


def key_text(key: str | None) -> str:
    """A release key in full: the whole sha, or the version of a release reported without
    a commit (never its `v:` key)."""
    text = key or ""
    return revision_label(text) if is_version_key(text) else text


# --- the environment -------------------------------------------------------------------------


@cache
def html_environment() -> jinja2.Environment:
    """Built once on first use; autoescape is on for every template, whatever its name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HTML_TEMPLATES)),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "svg", "xml"), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        state_badge=state_badge,
        gate_badge=gate_badge,
        run_badge=run_badge,
        decision_badge=decision_badge,
        risk_tone=risk_tone,
        ago=ago,
        http_url=http_url,
        revision=revision_label,
        key_text=key_text,
        has_sha=has_sha,
    )
    env.filters.update(when=when, iso=iso, duration=duration, percent=percent)
    return env


def render(name: str, **context: object) -> str:
    return html_environment().get_template(name).render(**context)
