"""Block Kit constructors shared by every surface, and the limits they keep to."""

from __future__ import annotations

from typing import Any, Final

Block = dict[str, Any]

SECTION_LIMIT: Final = 3000  # characters in one section or context text
SECTION_CHARS: Final = 2900  # what lists pack into one section, leaving room


def cut(text: str, length: int) -> str:
    """At most `length` characters, the last one an ellipsis when cut."""
    return text if len(text) <= length else text[: length - 1] + "…"


def section(text: str) -> Block:
    """A mrkdwn section, cut to Slack's limit."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}}


def context(text: str) -> Block:
    """A context block of one mrkdwn element, cut to Slack's limit."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}]}


def header(text: str) -> Block:
    """A plain-text header (Slack never formats it)."""
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str, *, style: str | None = None) -> Block:
    """A button with a plain-text label; `style` is primary or danger."""
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def chunks(lines: list[str], limit: int = SECTION_CHARS, *, ellipsis: bool = True) -> list[str]:
    """Lines joined into section texts of at most `limit` characters each; a longer line is
    cut, with an ellipsis unless `ellipsis` is false."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = cut(line, limit) if ellipsis else line[:limit]
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def fit(blocks: list[Block], limit: int, *, what: str = "more blocks not shown") -> list[Block]:
    """At most `limit` blocks, the last saying how many were left out."""
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    return [*kept, context(f"and {len(blocks) - len(kept)} {what}")]
