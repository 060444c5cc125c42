"""App Home: the approvals the viewer can decide, recent releases of the services they own,
the freezes in force, and the locked environments (when there are any). A Home view holds
at most 100 blocks; each list is capped and says "and N more".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from bot.blocks.commands import approval_blocks
from bot.blocks.kit import Block, chunks, context, divider, fit, header, section
from bot.blocks.mrkdwn import clock_time, escape_mrkdwn, mention, state_label

if TYPE_CHECKING:
    from bot.services.freezes import ActiveFreeze
    from bot.services.locks import LockInForce
    from bot.services.queries import DeploymentRow, PendingApproval

MAX_BLOCKS: Final = 100
MAX_APPROVALS: Final = 20  # two blocks each
MAX_RELEASES: Final = 15  # the caller reads one more, to know there are more
MAX_FREEZES: Final = 10
MAX_LOCKS: Final = 10
SECTION_CHARS: Final = 2900


def home_view(
    *,
    now: datetime,
    approvals: Sequence[PendingApproval],
    owned: Sequence[str],
    releases: Sequence[DeploymentRow],
    in_force: Sequence[ActiveFreeze],
    locked: Sequence[LockInForce] = (),
    command_name: str = "/release",
) -> dict[str, Any]:
    """The Home tab, as a `views.publish` view."""
    command = escape_mrkdwn(command_name)
    blocks: list[Block] = [
        header("Releases"),
        _context(f"As of {clock_time(now)} · `{command} help` lists commands"),
        divider(),
        _section(f"*Waiting for your approval* ({len(approvals)})"),
    ]
    if not approvals:
        blocks.append(_context("Nothing is waiting for you."))
    for approval in approvals[:MAX_APPROVALS]:
        blocks.extend(approval_blocks(approval))
    if len(approvals) > MAX_APPROVALS:
        blocks.append(
            _context(
                f"and {len(approvals) - MAX_APPROVALS} more: `{command} pending` pages through them"
            )
        )
    blocks.append(divider())
    blocks.extend(_releases(owned, releases, command))
    blocks.append(divider())
    blocks.append(_section(f"*Freezes in force* ({len(in_force)})"))
    if not in_force:
        blocks.append(_context("No freeze: deploys go ahead through their gates."))
    lines = [freeze_line(freeze) for freeze in in_force[:MAX_FREEZES]]
    if len(in_force) > MAX_FREEZES:
        lines.append(f"and {len(in_force) - MAX_FREEZES} more")
    blocks.extend(_section(chunk) for chunk in _chunks(lines))
    if locked:
        blocks.append(divider())
        blocks.append(_section(f"*Locked environments* ({len(locked)})"))
        shown = [lock_line(lock) for lock in locked[:MAX_LOCKS]]
        if len(locked) > MAX_LOCKS:
            shown.append(f"and {len(locked) - MAX_LOCKS} more")
        blocks.extend(_section(chunk) for chunk in _chunks(shown))
    return {"type": "home", "blocks": fit(blocks, MAX_BLOCKS, what="more not shown")}


def _releases(owned: Sequence[str], releases: Sequence[DeploymentRow], command: str) -> list[Block]:
    if not owned:
        return [
            _section("*Recent releases of your services*"),
            _context("You own no service in releasebot.yaml (`owners`)."),
        ]
    names = ", ".join(escape_mrkdwn(name) for name in owned)
    blocks = [_section(f"*Recent releases of your services* ({names})")]
    lines = [release_line(row) for row in releases[:MAX_RELEASES]]
    blocks.extend(_section(chunk) for chunk in _chunks(lines or ["No deployments yet."]))
    if len(releases) > MAX_RELEASES:
        blocks.append(_context(f"and more: `{command} history <service>` shows them all"))
    return blocks


def release_line(row: DeploymentRow) -> str:
    """One release: service, environment, version and short sha (the version alone when the
    release was reported without a commit), state and when."""
    if not row.has_commit:
        named = f"*{escape_mrkdwn(row.short_sha)}*"
    elif row.version:
        named = f"*{escape_mrkdwn(row.version)}* (`{row.short_sha}`)"
    else:
        named = f"(`{row.short_sha}`)"
    return (
        f"• *{escape_mrkdwn(row.service)}* `{escape_mrkdwn(row.environment)}` "
        f"{named} {state_label(row.state)} · {clock_time(row.created_at)}"
    )


def freeze_line(freeze: ActiveFreeze) -> str:
    where = ", ".join(escape_mrkdwn(e) for e in freeze.environments)
    source = "releasebot.yaml" if freeze.source == "config" else mention(freeze.created_by or "?")
    return (
        f":snowflake: *{where}* until {clock_time(freeze.end)}: "
        f"{escape_mrkdwn(freeze.reason[:300])} ({source})"
    )


def lock_line(lock: LockInForce) -> str:
    what = "promotion and approvals refused" if lock.everything else "automatic promotion stopped"
    return (
        f":lock: *{escape_mrkdwn(lock.service)}* `{escape_mrkdwn(lock.environment)}`: {what} "
        f"since {clock_time(lock.locked_at)} by {mention(lock.locked_by)}: "
        f"{escape_mrkdwn(lock.reason[:300])}"
    )


def _chunks(lines: list[str]) -> list[str]:
    return chunks(lines, SECTION_CHARS, ellipsis=False)


def _section(text: str) -> Block:
    return section(text[:3000])


def _context(text: str) -> Block:
    return context(text[:3000])
