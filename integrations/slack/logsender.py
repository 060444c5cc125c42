"""Slack messages written to the log as readable text, beside whatever else sends them."""

from __future__ import annotations

import logging
from typing import Any

from bot.ports import PostedMessage, SlackSender

log = logging.getLogger("releasebot.slack")


def blocks_to_text(blocks: list[dict[str, Any]] | None) -> str:
    """A readable rendering of Block Kit: headers, section text and fields, context lines."""
    lines: list[str] = []
    for block in blocks or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {block.get('text', {}).get('text', '')} ==")
        elif kind == "section":
            if block.get("text"):
                lines.append(block["text"].get("text", ""))
            for field in block.get("fields", []):
                lines.append(field.get("text", "").replace("\n", ": ", 1))
        elif kind == "context":
            lines.append(" · ".join(e.get("text", "") for e in block.get("elements", [])))
        elif kind == "actions":
            labels = [e.get("text", {}).get("text", "") for e in block.get("elements", [])]
            lines.append("[" + "] [".join(labels) + "]")
        elif kind == "divider":
            lines.append("----")
    return "\n".join(line for line in lines if line)


class LoggingSlackSender:
    """Logs every message as text, then hands it to `inner` (the local sandbox, usually)."""

    def __init__(self, inner: SlackSender) -> None:
        self._inner = inner

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage:
        posted = await self._inner.post_message(
            channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, metadata=metadata
        )
        where = f"{channel} thread {thread_ts}" if thread_ts else channel
        log.info(
            "slack message to %s (ts %s):\n%s", where, posted.ts, blocks_to_text(blocks) or text
        )
        return posted

    async def update_message(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        await self._inner.update_message(channel=channel, ts=ts, text=text, blocks=blocks)
        log.info("slack message %s in %s updated:\n%s", ts, channel, blocks_to_text(blocks) or text)

    async def find_message(
        self,
        *,
        channel: str,
        oldest: float,
        metadata: dict[str, Any],
        thread_ts: str | None = None,
    ) -> PostedMessage | None:
        return await self._inner.find_message(
            channel=channel, oldest=oldest, metadata=metadata, thread_ts=thread_ts
        )
