"""App Home: what the person opening the bot's Home tab should know.

On `app_home_opened` (the Home tab) it publishes, for that viewer:

- the approvals they can still decide, with Approve/Reject buttons that carry the release
  message's action ids (`release_approve`, `release_reject`) and the gate id as value, so a
  click runs through the same listeners, permission checks and audit as on the message;
- recent releases of the services they own (`owners` in the config: their user id, or a
  user group they are in);
- the freezes in force (releasebot.yaml and `/release freeze`).

A Home view holds at most 100 blocks; each list is capped and says "and N more".
"""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.render import clock_time, escape_mrkdwn, mention, state_label
from bot.usecases import UseCases, read
from handlers.slack.commands import approval_blocks

log = logging.getLogger("releasebot.slack")

MAX_BLOCKS: Final = 100
MAX_APPROVALS: Final = 20  # two blocks each
MAX_RELEASES: Final = 15
MAX_FREEZES: Final = 10
SECTION_CHARS: Final = 2900


def register_home(app: AsyncApp, usecases: UseCases, *, command_name: str = "/release") -> None:
    @app.event("app_home_opened")
    async def opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab
        user = str(event.get("user") or "")
        if not user:
            return
        view = await home_view(usecases, user, command_name=command_name)
        await client.views_publish(user_id=user, view=view)


async def home_view(
    usecases: UseCases, user_id: str, *, command_name: str = "/release"
) -> dict[str, Any]:
    """The Home tab of `user_id`, as a `views.publish` view."""
    approvals = await usecases.pending_approvals(user_id, only_actionable=True)
    owned = await usecases.owned_services(user_id)
    now = usecases.clock.now()
    releases = await usecases.recent_releases(owned, limit=MAX_RELEASES + 1)
    in_force = await usecases.freezes_in_force()

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Releases"}},
        _context(f"As of {clock_time(now)} · `{escape_mrkdwn(command_name)} help` lists commands"),
        {"type": "divider"},
        _section(f"*Waiting for your approval* ({len(approvals)})"),
    ]
    if not approvals:
        blocks.append(_context("Nothing is waiting for you."))
    for approval in approvals[:MAX_APPROVALS]:
        blocks.extend(approval_blocks(approval))
    if len(approvals) > MAX_APPROVALS:
        blocks.append(
            _context(
                f"and {len(approvals) - MAX_APPROVALS} more: "
                f"`{escape_mrkdwn(command_name)} pending` pages through them"
            )
        )

    blocks.append({"type": "divider"})
    if owned:
        names = ", ".join(escape_mrkdwn(name) for name in owned)
        blocks.append(_section(f"*Recent releases of your services* ({names})"))
        lines = [_release_line(row) for row in releases[:MAX_RELEASES]]
        blocks.extend(_section(chunk) for chunk in _chunks(lines or ["No deployments yet."]))
        if len(releases) > MAX_RELEASES:
            blocks.append(
                _context(
                    f"and more: `{escape_mrkdwn(command_name)} history <service>` shows them all"
                )
            )
    else:
        blocks.append(_section("*Recent releases of your services*"))
        blocks.append(_context("You own no service in releasebot.yaml (`owners`)."))

    blocks.append({"type": "divider"})
    blocks.append(_section(f"*Freezes in force* ({len(in_force)})"))
    if not in_force:
        blocks.append(_context("No freeze: deploys go ahead through their gates."))
    lines = [_freeze_line(freeze) for freeze in in_force[:MAX_FREEZES]]
    if len(in_force) > MAX_FREEZES:
        lines.append(f"and {len(in_force) - MAX_FREEZES} more")
    blocks.extend(_section(chunk) for chunk in _chunks(lines))
    return {"type": "home", "blocks": _fit(blocks)}


def _release_line(row: read.DeploymentRow) -> str:
    version = f"*{escape_mrkdwn(row.version)}* " if row.version else ""
    return (
        f"• *{escape_mrkdwn(row.service)}* `{escape_mrkdwn(row.environment)}` "
        f"{version}(`{row.short_sha}`) {state_label(row.state)} · {clock_time(row.created_at)}"
    )


def _freeze_line(freeze: read.ActiveFreeze) -> str:
    where = ", ".join(escape_mrkdwn(e) for e in freeze.environments)
    source = "releasebot.yaml" if freeze.source == "config" else mention(freeze.created_by or "?")
    return (
        f":snowflake: *{where}* until {clock_time(freeze.end)}: "
        f"{escape_mrkdwn(freeze.reason[:300])} ({source})"
    )


def _chunks(lines: list[str]) -> list[str]:
    chunks: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) > SECTION_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line[:SECTION_CHARS]
    if current:
        chunks.append(current)
    return chunks


def _fit(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    kept = blocks[: MAX_BLOCKS - 1]
    return [*kept, _context(f"and {len(blocks) - len(kept)} more not shown")]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}
