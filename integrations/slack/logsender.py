"""A SlackSender for running without a Slack token: every message goes to the log as text."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from bot.ports import PostedMessage

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


class LogSlackSender:
    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._counter):06d}"

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> PostedMessage:
        ts = self._ts()
        where = f"{channel} thread {thread_ts}" if thread_ts else channel
        log.info("slack message to %s (ts %s):\n%s", where, ts, blocks_to_text(blocks) or text)
        return PostedMessage(channel=channel, ts=ts)

    async def update_message(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        log.info("slack message %s in %s updated:\n%s", ts, channel, blocks_to_text(blocks) or text)
