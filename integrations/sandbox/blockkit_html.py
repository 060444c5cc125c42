"""Block Kit and Slack mrkdwn turned into safe HTML, for the local sandbox.

Everything that reaches the page is HTML-escaped first; only the few constructs Slack itself
formats (bold, italic, strike, code, links to http(s) URLs, user and group mentions) become
markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

EMOJI = {
    "rocket": "🚀",
    "large_green_circle": "🟢",
    "red_circle": "🔴",
    "white_check_mark": "✅",
    "x": "❌",
    "mag": "🔍",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "raised_hand": "✋",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "alarm_clock": "⏰",
    "leftwards_arrow_with_hook": "↩️",
    "rewind": "⏪",
    "fast_forward": "⏩",
    "large_yellow_circle": "🟡",
    "large_orange_circle": "🟠",
    "white_circle": "⚪",
    "snowflake": "❄️",
    "lock": "🔒",
    "unlock": "🔓",
    "rotating_light": "🚨",
    "bell": "🔔",
    "gear": "⚙️",
    "warning": "⚠️",
    "ballot_box_with_check": "☑️",
    "grey_question": "❔",
}
_CONTROL = re.compile(r"<([^<>]+)>")
_INLINE = [
    (re.compile(r"`([^`\n]+)`"), r"<code>\1</code>"),
    (re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])"), r"<em>\1</em>"),
    (re.compile(r"(?<![\w~])~([^~\n]+)~(?![\w~])"), r"<del>\1</del>"),
    (re.compile(r":([a-z0-9_+-]+):"), None),
]


def _plain(text: str) -> str:
    """Slack's escaped text (`&amp;`, `&lt;`, `&gt;`) as HTML-escaped text."""
    return html.escape(html.unescape(text), quote=False)


def _emoji(match: re.Match[str]) -> str:
    return EMOJI.get(match.group(1), match.group(0))


def _format(escaped: str) -> str:
    for pattern, replacement in _INLINE:
        escaped = pattern.sub(_emoji if replacement is None else replacement, escaped)
    return escaped


def mrkdwn(text: str, names: Mapping[str, str] | None = None) -> Markup:
    """Slack mrkdwn as safe HTML; `names` turns user and group ids into readable names."""
    names = names or {}
    out: list[str] = []
    position = 0
    for match in _CONTROL.finditer(text):
        out.append(_format(_plain(text[position : match.start()])))
        out.append(_control(match.group(1), names))
        position = match.end()
    out.append(_format(_plain(text[position:])))
    return Markup("".join(out).replace("\n", "<br>"))


def _control(inner: str, names: Mapping[str, str]) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        user = target[1:]
        return f'<span class="mention">@{html.escape(names.get(user, user))}</span>'
    if target.startswith("!subteam^"):
        group = target[len("!subteam^") :]
        return f'<span class="mention">@{html.escape(names.get(group, group))}</span>'
    if target.startswith("!"):
        return f'<span class="mention">@{html.escape(target[1:])}</span>'
    url = html.unescape(target)
    if re.match(r"^https?://", url):
        text = _plain(label) if label else html.escape(url)
        return f'<a href="{html.escape(url, quote=True)}" rel="noopener" target="_blank">{text}</a>'
    return _plain(f"<{inner}>")


def text_of(obj: Mapping[str, Any] | None, names: Mapping[str, str]) -> Markup:
    if not obj:
        return Markup("")
    if obj.get("type") == "plain_text":
        return Markup(html.escape(str(obj.get("text", ""))))
    return mrkdwn(str(obj.get("text", "")), names)
