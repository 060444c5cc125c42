"""Buttons and modals on release messages: approve, reject (with a reason), and the rest.

Each listener acks at once (Slack allows 3 seconds), then makes one call into a use case
and tells the person who clicked what happened, ephemerally.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.modals import (
    BREAK_GLASS_MODAL,
    FLAG_REJECT_MODAL,
    REASON_BLOCK,
    REASON_INPUT,
    REJECT_MODAL,
    ROLLBACK_MODAL,
    break_glass_modal,
    flag_reject_modal,
    reject_modal,
    rollback_modal,
)
from bot.blocks.mrkdwn import keeping_mentions
from bot.blocks.release import (
    FLAG_REREQUEST,
    SKIP_VERIFICATION,
    SKIP_VERIFICATION_MODAL,
    skip_verification_modal,
)
from bot.blocks.rollouts import ABORT, ABORT_MODAL, PROMOTE, PROMOTE_FULL, abort_modal
from bot.domain.gates.refusal import REASON_MISSING
from bot.usecases import Outcome, UseCases
from handlers.slack.middleware import ACK_FIRST

log = logging.getLogger("releasebot.slack")


ICONS = {
    "approved": ":white_check_mark:",
    "recorded": ":ballot_box_with_check:",
    "rejected": ":no_entry:",
    "refused": ":no_entry_sign:",
    "rerequested": ":repeat:",
    "skipped": ":fast_forward:",
}


Act = Callable[[int, str], Awaitable[Outcome]]  # (id from the button, user) -> outcome
ActWithReason = Callable[[int, str, str], Awaitable[Outcome]]  # ... and the reason given
Submit = Callable[[dict[str, Any], str, str], Awaitable[Outcome]]  # (modal metadata, user, why)
FlagTarget = tuple[int, str, int | None]  # (deployment id, flag key, step id or None)


def register_actions(app: AsyncApp, usecases: UseCases) -> None:
    """Approve (one click) and reject (a modal asks why)."""

    async def approve(gate_id: int, user: str) -> Outcome:
        return await usecases.decide_gate(gate_id=gate_id, user_id=user, decision="approve")

    async def reject(gate_id: int, user: str, reason: str) -> Outcome:
        return await usecases.decide_gate(
            gate_id=gate_id, user_id=user, decision="reject", reason=reason
        )

    _on_click(app, "release_approve", approve)
    _on_reason(app, "release_reject", REJECT_MODAL, reject_modal, "gate_id", reject)
    _register_flags(app, usecases)
    _register_rollouts(app, usecases)


def _register_rollouts(app: AsyncApp, usecases: UseCases) -> None:
    """An Argo Rollout's Promote and Promote fully (one click, under the gate's rules) and
    Abort (a modal asks why); the buttons carry the deployment id."""

    async def promote(deployment_id: int, user: str) -> Outcome:
        return await usecases.promote_rollout(deployment_id=deployment_id, user_id=user)

    async def promote_fully(deployment_id: int, user: str) -> Outcome:
        return await usecases.promote_rollout(deployment_id=deployment_id, user_id=user, fully=True)

    async def abort(deployment_id: int, user: str, reason: str) -> Outcome:
        return await usecases.abort_rollout(
            deployment_id=deployment_id, user_id=user, reason=reason
        )

    _on_click(app, PROMOTE, promote)
    _on_click(app, PROMOTE_FULL, promote_fully)
    _on_reason(app, ABORT, ABORT_MODAL, abort_modal, "deployment_id", abort)


def _register_flags(app: AsyncApp, usecases: UseCases) -> None:
    """Release <flag> (an approval of its next step), Reject (close a step waiting for
    approvals, with a reason), Re-request (ask again for a step that was rejected or expired)
    and Kill switch (turn it off at once); each button carries `<deployment id>:<flag key>`,
    or `<deployment id>/<step id>:<flag key>` when it is about one step: Re-request, and
    Release on a step asked for again."""

    async def release(target: FlagTarget, user: str) -> Outcome:
        deployment_id, flag, step_id = target
        return await usecases.release_flag(
            deployment_id=deployment_id, flag=flag, user_id=user, step_id=step_id
        )

    async def kill(target: FlagTarget, user: str) -> Outcome:
        return await usecases.kill_flag(deployment_id=target[0], flag=target[1], user_id=user)

    async def rerequest(target: FlagTarget, user: str) -> Outcome | None:
        deployment_id, flag, step_id = target
        if step_id is None:
            log.warning("ignoring a flag re-request without a step")
            return None
        return await usecases.rerequest_flag(
            deployment_id=deployment_id, flag=flag, step_id=step_id, user_id=user
        )

    _on_flag_click(app, "release_flag", release)
    _on_flag_click(app, "release_kill_switch", kill)
    _on_flag_click(app, FLAG_REREQUEST, rerequest)
    _register_flag_reject(app, usecases)


def _on_flag_click(
    app: AsyncApp, action_id: str, act: Callable[[FlagTarget, str], Awaitable[Outcome | None]]
) -> None:
    """A flag button that acts at once on what it carries, and says what happened."""

    @app.action(action_id, middleware=ACK_FIRST)
    async def clicked(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        target = _flag_value(body)
        if target is None:
            return
        outcome = await act(target, body["user"]["id"])
        if outcome is not None:
            await _tell(client, body, outcome)


def _register_flag_reject(app: AsyncApp, usecases: UseCases) -> None:
    """Reject on a flag step waiting for approvals: a modal asks why, then the step is
    closed (the button carries `<deployment id>/<step id>:<flag key>`; one from before the
    step id was carried has `<deployment id>:<flag key>`)."""

    @app.action("release_flag_reject", middleware=ACK_FIRST)
    async def clicked(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        target = _flag_value(body)
        if target is None:
            return
        deployment_id, flag, step_id = target
        metadata = {"deployment_id": deployment_id, "flag": flag, "channel": _channel(body)}
        if step_id is not None:
            metadata["step_id"] = step_id
        await client.views_open(trigger_id=body["trigger_id"], view=flag_reject_modal(metadata))

    async def reject(metadata: dict[str, Any], user: str, reason: str) -> Outcome:
        step = metadata.get("step_id")
        return await usecases.reject_flag(
            deployment_id=int(metadata["deployment_id"]),
            flag=str(metadata["flag"])[:200],
            user_id=user,
            reason=reason,
            step_id=int(step) if step is not None and _small_id(str(step)) else None,
        )

    _on_submit(app, FLAG_REJECT_MODAL, reject)


def _flag_value(body: dict[str, Any]) -> FlagTarget | None:
    """`<deployment id>:<flag key>`, or `<deployment id>/<step id>:<flag key>`."""
    try:
        value = str(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError):
        value = ""
    ids, _, flag = value.partition(":")
    deployment, slash, step = ids.partition("/")
    if _small_id(deployment) and flag and (not slash or _small_id(step)):
        return int(deployment), flag[:200], int(step) if slash else None
    log.warning("ignoring a flag click without a deployment and a flag")
    return None


def _small_id(text: str) -> bool:
    return text.isdigit() and len(text) < 10 and int(text) < 2**31


def register_operations(app: AsyncApp, usecases: UseCases) -> None:
    """Promote and unlock (one click), roll back (with a reason), break-glass (one person
    asks with a reason, a second one confirms), Re-request an expired gate (one click), and
    skip verification in an emergency (with a reason)."""

    def operation(action: str) -> Act:
        async def act(deployment_id: int, user: str) -> Outcome:
            return await usecases.operate(action=action, deployment_id=deployment_id, user_id=user)

        return act

    async def rollback(deployment_id: int, user: str, reason: str) -> Outcome:
        return await usecases.operate(
            action="rollback", deployment_id=deployment_id, user_id=user, reason=reason
        )

    async def ask_break_glass(gate_id: int, user: str, reason: str) -> Outcome:
        return await usecases.break_glass(gate_id=gate_id, user_id=user, reason=reason)

    async def confirm_break_glass(gate_id: int, user: str) -> Outcome:
        return await usecases.break_glass(gate_id=gate_id, user_id=user, confirm=True)

    async def rerequest(gate_id: int, user: str) -> Outcome:
        return await usecases.rerequest_gate(gate_id=gate_id, user_id=user)

    _on_click(app, "release_promote", operation("promote"))
    _on_click(app, "release_unlock", operation("unlock"))
    _on_reason(app, "release_rollback", ROLLBACK_MODAL, rollback_modal, "deployment_id", rollback)
    _on_reason(
        app,
        "release_break_glass",
        BREAK_GLASS_MODAL,
        break_glass_modal,
        "gate_id",
        ask_break_glass,
    )
    _on_click(app, "release_break_glass_confirm", confirm_break_glass)
    _on_click(app, "release_rerequest", rerequest)
    _on_reason(
        app,
        SKIP_VERIFICATION,
        SKIP_VERIFICATION_MODAL,
        skip_verification_modal,
        "deployment_id",
        usecases_skip(usecases),
    )


def usecases_skip(usecases: UseCases) -> ActWithReason:
    """Skip verification (an approver, with the reason the modal asked for)."""

    async def skip(deployment_id: int, user: str, reason: str) -> Outcome:
        return await usecases.skip_verification(
            deployment_id=deployment_id, user_id=user, reason=reason
        )

    return skip


def _on_click(app: AsyncApp, action_id: str, act: Act) -> None:
    """A button that acts at once on the id it carries, and says what happened."""

    @app.action(action_id, middleware=ACK_FIRST)
    async def clicked(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        target = _value(body)
        if target is not None:
            await _tell(client, body, await act(target, body["user"]["id"]))


def _on_reason(
    app: AsyncApp,
    action_id: str,
    modal_id: str,
    modal: Callable[[dict[str, Any]], dict[str, Any]],
    key: str,
    act: ActWithReason,
) -> None:
    """A button that opens a modal asking why; submitting a reason acts (none: asked again)."""

    @app.action(action_id, middleware=ACK_FIRST)
    async def clicked(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        target = _value(body)
        if target is None:
            return
        await client.views_open(
            trigger_id=body["trigger_id"], view=modal({key: target, "channel": _channel(body)})
        )

    async def submit(metadata: dict[str, Any], user: str, reason: str) -> Outcome:
        return await act(int(metadata[key]), user, reason)

    _on_submit(app, modal_id, submit)


def _on_submit(app: AsyncApp, modal_id: str, act: Submit) -> None:
    """A modal asking why: submitting a reason acts on what its metadata carries (none: asked
    again), and says what happened in the channel the button was clicked in."""

    @app.view(modal_id)
    async def submitted(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        reason = _reason(body)
        if not reason:
            await ack(response_action="errors", errors={REASON_BLOCK: REASON_MISSING.text})
            return
        await ack()
        metadata = json.loads(body["view"].get("private_metadata") or "{}")
        outcome = await act(metadata, body["user"]["id"], reason)
        await _tell(client, {**body, "channel": {"id": metadata.get("channel")}}, outcome)


def _value(body: dict[str, Any]) -> int | None:
    try:
        return int(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        log.warning("ignoring a click without a numeric value")
        return None


def _channel(body: dict[str, Any]) -> str | None:
    channel = body.get("channel") or body.get("container") or {}
    value = channel.get("id") or channel.get("channel_id")
    return str(value) if value else None


def _reason(body: dict[str, Any]) -> str:
    values = body.get("view", {}).get("state", {}).get("values", {})
    value = values.get(REASON_BLOCK, {}).get(REASON_INPUT, {}).get("value") or ""
    return str(value).strip()


async def _tell(client: AsyncWebClient, body: dict[str, Any], outcome: Outcome) -> None:
    channel = _channel(body)
    user = body["user"]["id"]
    # The message may quote a lock or freeze reason someone typed: shown as text, with only
    # the mentions a refusal's remedy names kept as Slack's.
    text = f"{ICONS.get(outcome.result, '')} {keeping_mentions(outcome.message)}".strip()
    if channel is None:
        # A click on App Home has no channel: answer in a direct message instead.
        await client.chat_postMessage(channel=user, text=text)
        return
    await client.chat_postEphemeral(channel=channel, user=user, text=text)
