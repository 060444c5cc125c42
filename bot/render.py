"""Jinja2 templates -> Slack Block Kit.

Every value a template prints is escaped for Slack mrkdwn (`&`, `<`, `>`) and, in JSON
templates, for JSON as well, so text from commits and CI payloads can neither ping
`@channel` nor fake a link nor break the message. Links and mentions we build ourselves go
through the `link` and `mention` helpers, which escape their parts and mark the result as
already safe. Operators may override any template from a directory of their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from bot.services.views import ReleaseView

TEMPLATES = Path(__file__).parent / "templates"
_VIEW_FIELDS = tuple(f.name for f in fields(ReleaseView))

STATE_LABELS: dict[str, tuple[str, str]] = {
    "pending": (":hourglass_flowing_sand:", "Pending"),
    "awaiting_approval": (":raised_hand:", "Awaiting approval"),
    "approved": (":white_check_mark:", "Approved"),
    "rejected": (":no_entry:", "Rejected"),
    "expired": (":alarm_clock:", "Expired"),
    "in_progress": (":rocket:", "Deploying"),
    "succeeded": (":large_green_circle:", "Deployed"),
    "failed": (":red_circle:", "Deploy failed"),
    "verifying": (":mag:", "Verifying"),
    "verified": (":white_check_mark:", "Verified"),
    "verification_failed": (":x:", "Verification failed"),
    "rolling_back": (":leftwards_arrow_with_hook:", "Rolling back"),
    "rolled_back": (":rewind:", "Rolled back"),
    "superseded": (":fast_forward:", "Superseded"),
}

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


class Mrkdwn(str):
    """Text that is already valid, safe mrkdwn (built by `link`/`mention`, never from input)."""


def escape_mrkdwn(value: object) -> str:
    if isinstance(value, Mrkdwn):
        return str(value)
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: object) -> Mrkdwn:
    """`<url|label>` with both parts escaped; just the label when there is no usable URL."""
    if not url or not re.match(r"^https?://", url):
        return Mrkdwn(escape_mrkdwn(label))
    safe_url = escape_mrkdwn(url).replace("|", "%7C")
    safe_label = escape_mrkdwn(label).replace("|", "¦")
    return Mrkdwn(f"<{safe_url}|{safe_label}>")


def mention(principal: str) -> Mrkdwn:
    if _USER_ID.match(principal):
        return Mrkdwn(f"<@{principal}>")
    if _GROUP_ID.match(principal):
        return Mrkdwn(f"<!subteam^{principal}>")
    return Mrkdwn(escape_mrkdwn(principal))


RISK_EMOJI = {
    "low": ":large_green_circle:",
    "medium": ":large_yellow_circle:",
    "high": ":large_orange_circle:",
    "critical": ":red_circle:",
}


def risk_label(level: str) -> Mrkdwn:
    return Mrkdwn(RISK_EMOJI.get(level, ":white_circle:"))


_PRINCIPAL = re.compile(r"\b(?:[UW][A-Z0-9]{2,}|S[A-Z0-9]{2,})\b")


def with_mentions(value: object) -> Mrkdwn:
    """Escape text we composed ourselves from Slack ids, then turn those ids into mentions."""
    return Mrkdwn(_PRINCIPAL.sub(lambda m: mention(m.group(0)), escape_mrkdwn(value)))


def state_label(state: str) -> Mrkdwn:
    emoji, label = STATE_LABELS.get(state, (":grey_question:", state))
    return Mrkdwn(f"{emoji} {escape_mrkdwn(label)}")


def plain(value: object) -> Mrkdwn:
    """For plain_text fields, which Slack never formats: shown as given, still JSON-escaped."""
    return Mrkdwn("" if value is None else str(value))


def truncate(value: object, length: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= length else text[: max(length - 1, 0)] + "…"


def clock_time(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _finalize_json(value: object) -> str:
    return json.dumps(escape_mrkdwn(value), ensure_ascii=False)[1:-1]


def _finalize_text(value: object) -> str:
    return escape_mrkdwn(value)


def _environment(directory: Path | None, finalize: Callable[[object], str]) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if directory is not None:
        loaders.append(jinja2.FileSystemLoader(str(directory)))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # escaping is done by `finalize`, for mrkdwn rather than HTML
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.globals.update(link=link, mention=mention, state_label=state_label, risk_label=risk_label)
    env.filters.update(
        truncate_to=truncate, clock=clock_time, plain=plain, with_mentions=with_mentions
    )
    return env


class Renderer:
    """Renders release messages and thread lines from templates (optionally overridden)."""

    def __init__(self, *, template_dir: Path | None = None, public_url: str = "") -> None:
        self._json = _environment(template_dir, _finalize_json)
        self._text = _environment(template_dir, _finalize_text)
        self._public_url = public_url.rstrip("/")

    def release_message(self, view: ReleaseView) -> tuple[str, list[dict[str, Any]]]:
        """(fallback text, blocks) for the release message of one deployment."""
        context = {
            "r": view,
            # The view's fields as a dict, shallow: templates only read them (asdict would
            # deep-copy every commit on every render).
            "release": {name: getattr(view, name) for name in _VIEW_FIELDS},
            "details_url": f"{self._public_url}/deployments/{view.deployment_id}",
            "commits_shown": (view.commits or [])[:10],
            "commits_more": max(
                int((view.diff or {}).get("total_commits") or len(view.commits or [])) - 10, 0
            ),
        }
        blocks = self._blocks("release_message.json.j2", context)
        text = self._text.get_template("release_message.txt.j2").render(context).strip()
        return text, blocks

    def thread_reply(self, view: ReleaseView, change: dict[str, Any]) -> str:
        template = str(change.get("template") or "thread_reply.txt.j2")
        return self._text.get_template(template).render({"r": view, "change": change}).strip()

    def _blocks(self, name: str, context: dict[str, Any]) -> list[dict[str, Any]]:
        rendered = self._json.get_template(name).render(context)
        try:
            blocks = json.loads(rendered)
        except json.JSONDecodeError as exc:
            raise ValueError(f"template {name} did not render valid JSON: {exc}") from exc
        if not isinstance(blocks, list):
            raise ValueError(f"template {name} must render a JSON list of blocks")
        return blocks
