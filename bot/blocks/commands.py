"""The slash command's answers: help and usage errors, status, history, pending approvals,
and what promote, roll back, freeze, unfreeze, lock and unlock say to the person and to the
channels.

Long lists are paged: each page stays well inside Block Kit's limits (50 blocks, 3,000
characters per section) and carries a "Next page" button whose value is the command text
and the offset of the following page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bot.blocks.kit import Block, button, chunks, context, cut, fit, section
from bot.blocks.mrkdwn import (
    clock_time,
    escape_mrkdwn,
    keeping_mentions,
    link,
    mention,
    risk_label,
    state_label,
)

if TYPE_CHECKING:
    from bot.services.freezes import FreezeOutcome
    from bot.services.gates import Outcome
    from bot.services.locks import LockOutcome
    from bot.services.queries import DeploymentRow, HistoryPage, PendingApproval, StatusRow

PAGE_ACTION: Final = "release_list_page"
HISTORY_DEFAULT: Final = 10
HISTORY_MAX: Final = 50
STATUS_PAGE: Final = 30  # (service, environment) rows per page
PENDING_PAGE: Final = 10  # gates per page (two blocks each with their buttons)
METRICS_DEFAULT_DAYS: Final = 30
METRICS_MAX_DAYS: Final = 365
MAX_BLOCKS: Final = 50

SUBCOMMANDS: Final = (
    "help",
    "status",
    "history",
    "pending",
    "promote",
    "deploy",
    "rollback",
    "freeze",
    "unfreeze",
    "lock",
    "unlock",
    "metrics",
)
USAGE: Final[Mapping[str, str]] = {
    "help": "help",
    "status": "status [service]",
    "history": "history <service> [env] [n]",
    "pending": "pending",
    "promote": "promote <service> <version|latest> to <env>",
    "deploy": "deploy <service> <ref> to <env>",
    "rollback": "rollback <service> <env> [to <version>] [-- reason...]",
    "freeze": "freeze <env|all> <duration> <reason...>",
    "unfreeze": "unfreeze <env|all>",
    "lock": "lock <service> [env] -- <reason...>",
    "unlock": "unlock <service> [env]",
    "metrics": "metrics [service] [days]",
}
DESCRIPTIONS: Final[Mapping[str, str]] = {
    "help": "this list",
    "status": "what runs where, and what is on its way",
    "history": f"the last n deployments (default {HISTORY_DEFAULT}), newest first",
    "pending": "approvals waiting, with buttons on the ones you can decide",
    "promote": "send a release on to the next environment, through its gate",
    "deploy": "deploy a branch, tag or commit, through the environment's gate",
    "rollback": "redeploy the last good version (or the one named) and lock promotion",
    "freeze": "stop deploys for a while, e.g. `freeze production 2h incident 4711`",
    "unfreeze": "lift a freeze started from Slack",
    "lock": "refuse promotion and approvals until unlocked (no env: every environment)",
    "unlock": "lift a lock, a rollback's too (no env: every locked environment)",
    "metrics": f"DORA metrics over the last days (default {METRICS_DEFAULT_DAYS})",
}
ICONS: Final = {
    "promoted": ":rocket:",
    "rolling_back": ":leftwards_arrow_with_hook:",
    "refused": ":no_entry_sign:",
    "frozen": ":snowflake:",
    "lifted": ":sunny:",
    "locked": ":lock:",
    "unlocked": ":unlock:",
}
FAILED_TEXT: Final = ":warning: Something went wrong on my side; please try again."


@dataclass
class Reply:
    """An answer to the person who typed, and what to announce in channels."""

    text: str  # the notification fallback, and the whole answer when there are no blocks
    blocks: list[Block] = field(default_factory=list)
    announcements: list[tuple[str, str]] = field(default_factory=list)  # (channel, text)


# --- help and usage --------------------------------------------------------------------------


def usage_reply(
    problem: str,
    *,
    command_name: str,
    subcommand: str | None = None,
    suggestion: str | None = None,
    corrected: str | None = None,
) -> Reply:
    """What was wrong with the typed text, the closest valid word, and how to use it."""
    line = f":warning: {escape_mrkdwn(_sentence(problem))}."
    if suggestion is not None:
        line += f" Did you mean `{escape_mrkdwn(suggestion)}`?"
        if corrected:
            line += f" Try `{escape_mrkdwn(f'{command_name} {corrected}')}`."
    if subcommand is not None:
        text = f"{line}\nUsage: `{command_name} {USAGE[subcommand]}`"
        return Reply(text, [section(text)])
    help_text = help_reply(command_name)
    return Reply(f"{line}\n{help_text.text}", [section(line), *help_text.blocks])


def help_reply(command_name: str, topic: str | None = None) -> Reply:
    """Every subcommand with its usage, or one of them."""
    chosen = [topic] if topic else list(SUBCOMMANDS)
    lines = [f"`{command_name} {USAGE[sub]}`: {DESCRIPTIONS[sub]}" for sub in chosen]
    text = "\n".join(lines)
    if topic is None:
        text = f"*{command_name}* talks to releasebot:\n{text}"
    return Reply(text, [section(text)])


# --- status, history, pending ----------------------------------------------------------------


def status_reply(
    service: str | None, rows: Sequence[StatusRow], *, offset: int, shown: int, total: int
) -> Reply:
    """One page of what runs where: `shown` of `total` (service, environment) pairs."""
    title = f"*Status of {escape_mrkdwn(service)}*" if service else "*Status*"
    lines: list[str] = []
    current: str | None = None
    for row in rows:
        if row.service != current:
            current = row.service
            lines.append(f"*{escape_mrkdwn(row.service)}*")
            if row.budget:
                lines.append(
                    f"• :chart_with_downwards_trend: {escape_mrkdwn(cut(row.budget, 300))}"
                )
        lines.append(status_line(row))
    if not lines:
        lines.append("No services are configured.")
    more = offset + STATUS_PAGE < total
    text = f"status {service}" if service else "status"
    return list_reply(
        title=title,
        lines=lines,
        fallback=f"Status: {len(rows)} environments",
        page=page_info(offset, shown, total),
        next_value=next_value(text, offset + STATUS_PAGE) if more else None,
    )


def status_line(row: StatusRow) -> str:
    env = f"`{escape_mrkdwn(row.environment)}`"
    if row.latest is None:
        text = f"• {env} nothing deployed yet"
    else:
        text = f"• {env} {state_label(row.latest.state)} {deployment_label(row.latest)}"
        if row.running is not None and row.running.deployment_id != row.latest.deployment_id:
            text += f" · running {deployment_label(row.running)}"
        text += f" · {clock_time(row.latest.updated_at)}"
    if row.freeze:
        text += f" · :snowflake: frozen: {escape_mrkdwn(cut(row.freeze, 200))}"
    if row.lock:
        text += " · :lock: automatic promotion stopped"
    return text


def history_reply(
    page: HistoryPage, *, service: str, environment: str | None, n: int, offset: int
) -> Reply:
    """One page of a service's deployments, newest first."""
    where = f"{service} in {environment}" if environment else service
    lines = [history_line(row, with_env=environment is None) for row in page.rows]
    if not lines:
        lines.append("No deployments." if offset == 0 else "No older deployments.")
    text = " ".join(["history", service, *([environment] if environment else []), str(n)])
    shown = f"{offset + 1}-{offset + len(page.rows)}" if page.rows else "none"
    return list_reply(
        title=f"*History of {escape_mrkdwn(where)}*",
        lines=lines,
        fallback=f"History of {where}: {len(page.rows)} deployments",
        page=f"deployments {shown}, newest first",
        next_value=next_value(text, offset + n) if page.has_more else None,
    )


def history_line(row: DeploymentRow, *, with_env: bool) -> str:
    parts = [clock_time(row.created_at)]
    if with_env:
        parts.append(f"`{escape_mrkdwn(row.environment)}`")
    parts.append(f"{state_label(row.state)} {deployment_label(row)}")
    if row.risk_level:
        parts.append(f"{risk_label(row.risk_level)} {escape_mrkdwn(row.risk_level)} risk")
    if row.deployer:
        parts.append(f"by {escape_mrkdwn(cut(row.deployer, 60))}")
    links = [
        text
        for text in (message_link(row), str(link(row.ci_url, "CI")) if row.ci_url else None)
        if text
    ]
    return "• " + " · ".join([*parts, *links])


def pending_reply(gates: Sequence[PendingApproval], *, offset: int) -> Reply:
    """One page of the approvals waiting, the ones the viewer can decide first."""
    ordered = sorted(gates, key=lambda g: not g.can_act)
    chosen = ordered[offset : offset + PENDING_PAGE]
    blocks: list[Block] = [section(f"*Pending approvals* ({len(ordered)})")]
    if not ordered:
        blocks = [section("*Pending approvals*\nNothing is waiting for an approval.")]
    for gate in chosen:
        blocks.extend(approval_blocks(gate))
    info = page_info(offset, len(chosen), len(ordered))
    if info:
        blocks.append(context(info))
    if offset + PENDING_PAGE < len(ordered):
        blocks.append(next_button(next_value("pending", offset + PENDING_PAGE)))
    yours = sum(1 for g in ordered if g.can_act)
    noun = "approval" if len(ordered) == 1 else "approvals"
    return Reply(f"{len(ordered)} pending {noun}, {yours} for you", fit(blocks, MAX_BLOCKS))


def approval_blocks(gate: PendingApproval) -> list[Block]:
    """A gate as a section, with Approve/Reject (the release message's action ids and
    values, so the usual listeners decide it) when the viewer can act on it."""
    row = gate.deployment
    lines = [
        f"*{escape_mrkdwn(row.service)}* → *{escape_mrkdwn(row.environment)}* "
        f"{deployment_label(row)}"
        + (
            f" · {risk_label(row.risk_level)} {escape_mrkdwn(row.risk_level)} risk"
            if row.risk_level
            else ""
        )
    ]
    if gate.progress:
        lines.append(escape_mrkdwn(cut(gate.progress, 500)))
    elif gate.requirement:
        lines.append(f"needs {escape_mrkdwn(cut(gate.requirement, 500))}")
    when = f"waiting since {clock_time(gate.opened_at)}"
    if gate.expires_at is not None:
        when += f", expires {clock_time(gate.expires_at)}"
    message = message_link(row)
    lines.append(when + (f" · {message}" if message else ""))
    blocks: list[Block] = [section("\n".join(lines))]
    if gate.can_act:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"gate_{gate.gate_id}",
                "elements": [
                    button("Approve", "release_approve", str(gate.gate_id), style="primary"),
                    button("Reject", "release_reject", str(gate.gate_id), style="danger"),
                ],
            }
        )
    return blocks


# --- operations and freezes ------------------------------------------------------------------


def _told(result: str, message: str) -> str:
    """What the person who typed the command reads: the message escaped; a refusal keeps the
    mentions its remedy names (who could do it), which only that person sees."""
    shown = keeping_mentions(message) if result == "refused" else escape_mrkdwn(message)
    return f"{ICONS.get(result, '')} {shown}".strip()


def operation_reply(
    outcome: Outcome, *, service: str, user_id: str, reason: str | None = None
) -> tuple[str, str | None]:
    """(what the person is told, what the service's channel is told: None when refused)."""
    text = _told(outcome.result, outcome.message)
    if outcome.result == "refused":
        return text, None
    said = f"{ICONS.get(outcome.result, '')} {mention(user_id)} *{escape_mrkdwn(service)}*: "
    said += escape_mrkdwn(outcome.message)
    if reason:
        said += f" ({escape_mrkdwn(cut(reason, 500))})"
    return text, said


def freeze_reply(
    outcome: FreezeOutcome, *, user_id: str, everywhere: bool
) -> tuple[str, str | None]:
    """(what the person is told, what the channels are told: None when nothing changed).

    `everywhere`: the freeze is of every environment."""
    text = _told(outcome.result, outcome.message)
    if outcome.result == "refused" or outcome.environment is None:
        return text, None
    where = "every environment" if everywhere else outcome.environment
    if outcome.result == "frozen":
        said = (
            f":snowflake: {mention(user_id)} froze deploys to *{escape_mrkdwn(where)}* until "
            f"{clock_time(outcome.end)}: {escape_mrkdwn(outcome.reason or '')}"
        )
    else:
        said = f":sunny: {mention(user_id)} {escape_mrkdwn(outcome.message)}"
    return text, said


def lock_reply(outcome: LockOutcome, *, user_id: str) -> tuple[str, str | None]:
    """(what the person is told, what the service's channel is told: None when refused)."""
    text = _told(outcome.result, outcome.message)
    if outcome.result == "refused":
        return text, None
    service = escape_mrkdwn(outcome.service)
    where = escape_mrkdwn(", ".join(outcome.environments))
    if outcome.result == "locked":
        said = (
            f":lock: {mention(user_id)} locked *{service}* {where}: promotion and approvals "
            f"are refused until unlocked ({escape_mrkdwn(cut(outcome.reason or '', 500))})"
        )
    else:
        said = f":unlock: {mention(user_id)} unlocked *{service}* {where}"
    return text, said


def metrics_reply(text: str, blocks: Sequence[Block]) -> Reply:
    """The DORA message, kept within a message's block limit."""
    return Reply(text, fit(list(blocks), MAX_BLOCKS))


# --- shared pieces ---------------------------------------------------------------------------


def list_reply(
    *, title: str, lines: list[str], fallback: str, page: str | None, next_value: str | None
) -> Reply:
    """A title, the lines packed into sections, where the page is, and a "Next" button."""
    blocks: list[Block] = [section(title)]
    blocks.extend(section(chunk) for chunk in chunks(lines))
    if page:
        blocks.append(context(page))
    if next_value is not None:
        blocks.append(next_button(next_value))
    return Reply(fallback, fit(blocks, MAX_BLOCKS))


def page_info(offset: int, shown: int, total: int) -> str | None:
    if total <= shown and offset == 0:
        return None
    return f"{offset + 1}-{offset + shown} of {total}" if shown else f"none of {total}"


def next_value(text: str, offset: int) -> str:
    """The "Next page" button's value: the command text and the offset to show from."""
    return json.dumps({"t": text, "o": offset}, separators=(",", ":"))


def next_button(value: str) -> Block:
    return {
        "type": "actions",
        "block_id": "page",
        "elements": [button("Next page", PAGE_ACTION, value)],
    }


def deployment_label(row: DeploymentRow) -> str:
    """`*v1.4.0* (`f95f852`)`, the short sha alone, or `*1.4.2*` alone for a release
    reported by its version without a commit."""
    if not row.has_commit:
        return f"*{escape_mrkdwn(cut(row.short_sha, 80))}*"
    if row.version:
        return f"*{escape_mrkdwn(cut(row.version, 80))}* (`{row.short_sha}`)"
    return f"`{row.short_sha}`"


def message_link(row: DeploymentRow) -> str | None:
    """A link to the release message, when Slack gave us its channel id and ts."""
    if not row.channel or not row.ts or not row.channel.startswith(("C", "G")):
        return None
    return str(
        link(f"https://slack.com/archives/{row.channel}/p{row.ts.replace('.', '')}", "message")
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text
