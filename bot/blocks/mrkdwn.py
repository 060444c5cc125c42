"""Slack mrkdwn: escaping, links, mentions and the labels of deployment states.

Every value shown in a message is escaped for mrkdwn (`&`, `<`, `>`), so text from commits
and CI payloads can neither ping `@channel` nor fake a link. Links and mentions we build
ourselves go through `link` and `mention`, which escape their parts and mark the result as
already safe (`Mrkdwn`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

STATE_LABELS: Final[dict[str, tuple[str, str]]] = {
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
    "rollback_failed": (":warning:", "Rollback failed"),
    "superseded": (":fast_forward:", "Superseded"),
}

RISK_EMOJI: Final = {
    "low": ":large_green_circle:",
    "medium": ":large_yellow_circle:",
    "high": ":large_orange_circle:",
    "critical": ":red_circle:",
}

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
# Slack ids always carry a digit; words such as UTC or SUCCESS never become mentions.
_PRINCIPAL = re.compile(r"\b[UWS](?=[A-Z]*[0-9])[A-Z0-9]{2,}\b")


class Mrkdwn(str):
    """Text that is already valid, safe mrkdwn (built by `link`/`mention`, never from input)."""


def escape_mrkdwn(value: object) -> str:
    """`&`, `<` and `>` as entities, so Slack shows them as typed; `Mrkdwn` as it is."""
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
    """A user or user group id as a mention; anything else as escaped text."""
    if _USER_ID.match(principal):
        return Mrkdwn(f"<@{principal}>")
    if _GROUP_ID.match(principal):
        return Mrkdwn(f"<!subteam^{principal}>")
    return Mrkdwn(escape_mrkdwn(principal))


_ESCAPED_MENTION = re.compile(r"&lt;(@[UW][A-Z0-9]{2,}|!subteam\^S[A-Z0-9]{2,})&gt;")


def keeping_mentions(value: object) -> Mrkdwn:
    """Escape text that carries the user and user-group mentions a refusal's remedy names
    (`<@U1>`, `<!subteam^S1>`), keeping those mentions (and nothing else) as Slack's."""
    return Mrkdwn(_ESCAPED_MENTION.sub(lambda m: f"<{m.group(1)}>", escape_mrkdwn(value)))


def with_mentions(value: object) -> Mrkdwn:
    """Escape text we composed ourselves from Slack ids, then turn those ids into mentions."""
    return Mrkdwn(_PRINCIPAL.sub(lambda m: mention(m.group(0)), escape_mrkdwn(value)))


def risk_label(level: str) -> Mrkdwn:
    """The emoji of a risk level."""
    return Mrkdwn(RISK_EMOJI.get(level, ":white_circle:"))


def state_label(state: str) -> Mrkdwn:
    """`:rocket: Deploying`: the emoji and words for a deployment state."""
    emoji, label = STATE_LABELS.get(state, (":grey_question:", state))
    return Mrkdwn(f"{emoji} {escape_mrkdwn(label)}")


def plain(value: object) -> Mrkdwn:
    """For plain_text fields, which Slack never formats: shown as given."""
    return Mrkdwn("" if value is None else str(value))


def truncate(value: object, length: int) -> str:
    """At most `length` characters, the last one an ellipsis when cut."""
    text = "" if value is None else str(value)
    return text if len(text) <= length else text[: max(length - 1, 0)] + "…"


def clock_time(value: datetime | str | None) -> str:
    """`2026-11-17 10:00 UTC`; empty for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
