"""The release message of one deployment: fallback text aside, its Block Kit blocks.

One message per deployment, edited in place as it moves: header, state and commit, a
rollback the pipeline refused, the freeze, risk, commits, approval, verification and
promotion lock, the buttons that apply, and a context line linking the details page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from bot.blocks.kit import Block
from bot.blocks.modals import reason_modal
from bot.blocks.mrkdwn import (
    clock_time,
    escape_mrkdwn,
    link,
    mention,
    risk_label,
    state_label,
    truncate,
    with_mentions,
)
from bot.blocks.rollouts import rollout_blocks
from bot.domain.ingest import revision_label

if TYPE_CHECKING:
    from bot.services.release_views import ReleaseView

COMMITS_SHOWN: Final = 10
SKIP_VERIFICATION: Final = "release_skip_verification"
SKIP_VERIFICATION_MODAL: Final = "release_skip_verification_modal"
FLAG_REREQUEST: Final = "release_flag_rerequest"


def release_blocks(view: ReleaseView, *, details_url: str) -> list[Block]:
    """The blocks of the release message of `view`."""
    r = view
    blocks: list[Block] = [_header(r), _fields(r)]
    if r.state == "rollback_failed":
        blocks.append(_text(_rollback_failed(r)))
    if r.freeze:
        blocks.append(_text(f":snowflake: *Change freeze:* {_esc(truncate(r.freeze, 500))}"))
    blocks.append(_text(f"*Risk*\n{_risk(r.risk)}"))
    if r.budget:
        blocks.append(_text(f"*Error budget*\n{_esc(truncate(r.budget, 500))}"))
    blocks.append(_text(_commits(r)))
    if r.gate_id:
        blocks.append(_text(f"*Approval*\n{_approval(r)}"))
    if r.verification:
        blocks.append(_text(f"*Verification*\n{_verification(r.verification)}"))
    if r.lock:
        blocks.append(_text(_lock(r)))
    if r.flags:
        blocks.extend(_flags(r))
    if r.rollout:
        blocks.extend(rollout_blocks(r.deployment_id, r.rollout))
    buttons = _buttons(r)
    if buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"release_actions_{_esc(r.deployment_id)}",
                "elements": buttons,
            }
        )
    attempt = f" · attempt {_esc(r.attempt)}" if r.attempt > 1 else ""
    footer = (
        f"Deployment #{_esc(r.deployment_id)}{attempt} · updated {_esc(clock_time(r.updated_at))}"
        f" · {link(details_url, 'details')}"
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return blocks


def commits_more(view: ReleaseView) -> int:
    """How many commits the message leaves out after the first ten."""
    total = (view.diff or {}).get("total_commits") or len(view.commits or [])
    return max(int(total) - COMMITS_SHOWN, 0)


def _esc(value: object) -> str:
    return escape_mrkdwn(value)


def _lock(r: ReleaseView) -> str:
    """The lock line: a rollback's stops automatic promotion; `/release lock` stops more."""
    reason = _esc(truncate(r.lock or "", 500))
    if not r.lock_everything:
        return f":lock: *Automatic promotion stopped:* {reason}"
    by = f" by {mention(r.lock_by)}" if r.lock_by else ""
    return (
        f":lock: *{_esc(r.environment)} is locked*{by}: {reason}\n"
        "Promotion and approvals are refused until it is unlocked."
    )


def _rollback_failed(r: ReleaseView) -> str:
    """Why the rollback did not happen, and what that leaves: the version still runs, the
    environment's lock stays, and Roll back may be tried again."""
    target = f" to `{_esc(revision_label(r.rollback_to))}`" if r.rollback_to else ""
    why = f": {_esc(truncate(r.rollback_error, 500))}" if r.rollback_error else ""
    running = f"*{_esc(truncate(r.version, 80))}*" if r.version else f"`{_esc(r.short_sha)}`"
    env = _esc(r.environment)
    text = f":warning: *Rollback{target} failed*{why}\n{running} still runs in {env}"
    if r.lock:
        text += f"; automatic promotion into {env} stays stopped until someone unlocks it"
    return text + ". Roll back again once the cause is fixed."


def _text(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _header(r: ReleaseView) -> Block:
    title = f"{r.service} → {r.environment}" + (f" · {r.version}" if r.version else "")
    return {
        "type": "header",
        "text": {"type": "plain_text", "emoji": True, "text": truncate(title, 150)},
    }


def _fields(r: ReleaseView) -> Block:
    ref = f" on {_esc(truncate(r.ref, 80))}" if r.ref else ""
    ci = link(r.ci_url, "open run") if r.ci_url else "not reported"
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": f"*State*\n{state_label(r.state)}"},
            {"type": "mrkdwn", "text": f"{_revision(r)}{ref}"},
            {
                "type": "mrkdwn",
                "text": f"*Deployed by*\n{_esc(truncate(r.deployer or 'unknown', 100))}",
            },
            {"type": "mrkdwn", "text": f"*CI run*\n{ci}"},
        ],
    }


def _revision(r: ReleaseView) -> str:
    """The commit field: the short sha, or for a release reported by its version alone
    (no commit) that version, named once."""
    if r.has_commit:
        return f"*Commit*\n`{_esc(r.short_sha)}`"
    return f"*Version*\n`{_esc(truncate(r.short_sha, 80))}`"


def _risk(risk: dict[str, Any] | None) -> str:
    if risk is None:
        return "_assessing..._"
    level = str(risk["level"])
    text = f"{risk_label(level)} *{_esc(level.title())}* ({_esc(risk['score'])}/100)"
    factors = risk["factors"]
    for factor in factors[:3]:
        text += f"\n• {_esc(truncate(factor['reason'], 300))}"
    if not factors:
        text += "\n• nothing stands out"
    return text


def _commits(r: ReleaseView) -> str:
    text = "*Commits*"
    if r.diff:
        d = r.diff
        label = (
            f"{d['total_commits']} commits, +{d['additions']} −{d['deletions']}"
            f" in {d['files']} files"
        )
        truncated = ", truncated by the code host" if d.get("truncated") else ""
        text += f" ({link(d.get('url'), label)}{truncated})"
    text += "\n"
    if r.commits is None and r.assessment_note:
        return text + f"_commit list unavailable: {_esc(truncate(r.assessment_note, 300))}_"
    if r.commits is None:
        return text + "_assessing..._"
    if not r.commits:
        return text + "no new commits"
    for c in r.commits[:COMMITS_SHOWN]:
        first_line = (c.get("message") or "").split("\n")[0]
        text += (
            f"• {link(c.get('url'), c['sha'][:7])} {_esc(truncate(first_line, 100))}"
            f" · {_esc(truncate(c.get('author') or 'unknown', 40))}\n"
        )
    more = commits_more(r)
    return text + (f"and {more} more" if more else "")


def _approval(r: ReleaseView) -> str:
    status = r.gate_status
    if r.gate_refused and status in ("approved", "rejected"):
        decision = "approval" if status == "approved" else "rejection"
        who = mention(r.gate_decided_by or "unknown")
        return (
            f":warning: The pipeline refused the {decision} by {who}: "
            f"{_esc(truncate(r.gate_refused, 500))}"
        )
    if status == "pending":
        text = f":hourglass: {with_mentions(r.gate_progress or 'waiting for approval')}"
        glass = r.gate_break_glass
        if glass:
            text += (
                f"\n:rotating_light: break-glass asked by {mention(glass['requested_by'])}: "
                f"{_esc(truncate(glass['reason'], 300))}"
            )
        if r.gate_expires_at:
            text += f" · expires {_esc(clock_time(r.gate_expires_at))}"
        return text
    if status == "approved":
        text = f":white_check_mark: {with_mentions(truncate(r.gate_reason or 'approved', 500))}"
        glass = r.gate_break_glass or {}
        if glass.get("confirmed_by") and glass.get("valid_until"):
            text += (
                "\n:rotating_light: break-glass window: the freeze lets this service through "
                f"until {_esc(clock_time(str(glass['valid_until'])))}"
            )
        return text
    if status == "rejected":
        return (
            f":no_entry: Rejected by {mention(r.gate_decided_by or 'unknown')}: "
            f"{_esc(truncate(r.gate_reason or '', 500))}"
        )
    if status == "expired":
        return ":alarm_clock: Expired: nobody decided in time"
    reason = f": {_esc(truncate(r.gate_reason, 300))}" if r.gate_reason else ""
    return f"{_esc(status)}{reason}"


def _verification(v: dict[str, Any]) -> str:
    if v["failed"]:
        text = f":x: {_esc(truncate(', '.join(v['failed']), 300))} failed · "
    elif not v["pending"] and v["passed"] == v["total"]:
        text = ":white_check_mark: "
    else:
        text = ":mag: "
    text += f"verification {_esc(v['passed'])}/{_esc(v['total'])} passed"
    if v["pending"]:
        text += f" · {_esc(v['pending'])} still to run"
    if v.get("cancelled"):
        text += f" · {_esc(v['cancelled'])} cancelled"
    skipped = v.get("skipped")
    if skipped:
        text = (
            f":fast_forward: *Verification skipped* by {mention(skipped['by'])}: "
            f"{_esc(truncate(skipped['reason'], 300))}\n{text}"
        )
    return text


_PLATFORMS: Final = {"launchdarkly": "LaunchDarkly", "unleash": "Unleash", "webhook": "webhook"}


def _flags(r: ReleaseView) -> list[Block]:
    """The `release:` flags: where each stands, then its Release, Reject, Re-request and Kill
    switch buttons (one actions block per flag, so each block's action ids stay unique)."""
    lines = ["*Release*"]
    blocks: list[Block] = []
    for index, flag in enumerate(r.flags):
        name = _esc(flag["flag"])
        where = f"{_esc(flag['serving'])}%" if flag["serving"] else "off"
        status = flag.get("status")
        if flag["busy"]:
            where += " · checks running" if status == "verifying" else " · changing now"
        elif status == "failed":
            where += " · :x: checks failed: use Kill switch"
        elif flag["pending"]:
            where += f" · :hourglass: {with_mentions(flag.get('progress') or 'waiting')}"
            if flag.get("expires_at"):
                where += f" · expires {_esc(clock_time(flag['expires_at']))}"
        elif status in ("rejected", "expired"):
            where += f" · {_closed_step(flag)}"
        platform = _PLATFORMS.get(str(flag["provider"]), _esc(flag["provider"]))
        lines.append(f"• `{name}` ({platform}): {where}")
        value = f"{r.deployment_id}:{flag['flag']}"
        # One step's buttons carry its id: Reject and Re-request, and Release on a step asked
        # for again (so a click from before the step was asked for again is refused).
        stepped = f"{r.deployment_id}/{flag.get('step_id')}:{flag['flag']}"
        elements: list[Block] = []
        if flag["next_percent"] is not None:
            label = f"Release {flag['flag']} {flag['next_percent']}%"
            released = stepped if flag.get("rerequested") else value
            elements.append(_button("release_flag", label, released, "primary"))
        if flag["pending"]:
            elements.append(_button("release_flag_reject", "Reject", stepped, "danger"))
        if flag.get("can_rerequest"):
            elements.append(_button(FLAG_REREQUEST, "Re-request", stepped, "primary"))
        if flag["can_kill"]:
            elements.append(_button("release_kill_switch", "Kill switch", value, "danger"))
        if elements:
            block_id = f"flag_actions_{_esc(r.deployment_id)}_{index}"
            blocks.append({"type": "actions", "block_id": block_id, "elements": elements})
    return [_text("\n".join(lines)), *blocks]


def _closed_step(flag: dict[str, Any]) -> str:
    """A flag step whose gate closed without the change: who rejected it and why, or that it
    expired."""
    step = f"step to {_esc(flag.get('step_percent'))}%"
    if flag.get("status") == "rejected":
        return (
            f":no_entry: {step} rejected by {mention(flag.get('decided_by') or 'unknown')}: "
            f"{_esc(truncate(flag.get('reason') or '', 300))}"
        )
    return f":alarm_clock: {step} expired: nobody decided in time"


def _button(action_id: str, label: str, value: str, style: str | None) -> Block:
    element: Block = {
        "type": "button",
        "action_id": action_id,
        "value": _esc(value),
        "text": {"type": "plain_text", "text": truncate(label, 75)},
    }
    if style:
        element["style"] = style
    return element


def _buttons(r: ReleaseView) -> list[Block]:
    wanted: list[tuple[str, str, object, str | None]] = []
    if r.gate_status == "pending":
        wanted.append(("release_approve", "Approve", r.gate_id, "primary"))
        wanted.append(("release_reject", "Reject", r.gate_id, "danger"))
        glass = r.gate_break_glass
        if r.break_glass_available and not glass:
            wanted.append(("release_break_glass", "Break glass", r.gate_id, None))
        elif glass and not glass.get("confirmed_by"):
            wanted.append(
                ("release_break_glass_confirm", "Confirm break-glass", r.gate_id, "danger")
            )
    if r.gate_status == "expired" and r.gate_can_rerequest:
        wanted.append(("release_rerequest", "Re-request", r.gate_id, "primary"))
    if r.promote_to:
        wanted.append(("release_promote", f"Promote to {r.promote_to}", r.deployment_id, "primary"))
    if r.state == "verifying":
        wanted.append((SKIP_VERIFICATION, "Skip verification", r.deployment_id, None))
    if r.can_roll_back:
        wanted.append(("release_rollback", "Roll back", r.deployment_id, "danger"))
    if r.lock:
        wanted.append(("release_unlock", "Unlock promotion", r.deployment_id, None))
    elements: list[Block] = []
    for action_id, label, value, style in wanted:
        element: Block = {
            "type": "button",
            "action_id": action_id,
            "value": _esc(value),
            "text": {"type": "plain_text", "text": truncate(label, 75)},
        }
        if style:
            element["style"] = style
        elements.append(element)
    return elements


def skip_verification_modal(metadata: dict[str, Any]) -> dict[str, Any]:
    """The modal behind *Skip verification*: why, in an emergency, the checks are skipped."""
    return reason_modal(
        callback_id=SKIP_VERIFICATION_MODAL,
        title="Skip verification",
        prompt="Why skip verification? The pending checks are cancelled, the deployment "
        "counts as verified and is not rolled back by policy. Your name and reason are shown "
        "in the thread and audited.",
        submit="Skip",
        metadata=metadata,
    )
