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
from bot.blocks.release import SKIP_VERIFICATION, SKIP_VERIFICATION_MODAL, skip_verification_modal
from bot.blocks.rollouts import ABORT, ABORT_MODAL, PROMOTE, abort_modal
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
    """An Argo Rollout's Promote (one click, under the gate's rules) and Abort (a modal asks
    why); both buttons carry the deployment id."""

    async def promote(deployment_id: int, user: str) -> Outcome:
        return await usecases.promote_rollout(deployment_id=deployment_id, user_id=user)

    async def abort(deployment_id: int, user: str, reason: str) -> Outcome:
        return await usecases.abort_rollout(
            deployment_id=deployment_id, user_id=user, reason=reason
        )

    _on_click(app, PROMOTE, promote)
    _on_reason(app, ABORT, ABORT_MODAL, abort_modal, "deployment_id", abort)


def _register_flags(app: AsyncApp, usecases: UseCases) -> None:
    """Release <flag> (an approval of its next step), Reject (close a step waiting for
    approvals, with a reason) and Kill switch (turn it off at once); each button carries
    `<deployment id>:<flag key>`."""

    @app.action("release_flag", middleware=ACK_FIRST)
    async def release(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        target = _flag_value(body)
        if target is not None:
            user = body["user"]["id"]
            told = await usecases.release_flag(
                deployment_id=target[0], flag=target[1], user_id=user
            )
            await _tell(client, body, told)

    @app.action("release_kill_switch", middleware=ACK_FIRST)
    async def kill(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        target = _flag_value(body)
        if target is not None:
            user = body["user"]["id"]
            told = await usecases.kill_flag(deployment_id=target[0], flag=target[1], user_id=user)
            await _tell(client, body, told)

    _register_flag_reject(app, usecases)


def _register_flag_reject(app: AsyncApp, usecases: UseCases) -> None:
    """Reject on a flag step waiting for approvals: a modal asks why, then the step is
    closed (the button carries `<deployment id>:<flag key>`, as the flag's others do)."""

    @app.action("release_flag_reject", middleware=ACK_FIRST)
    async def clicked(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        target = _flag_value(body)
        if target is None:
            return
        metadata = {"deployment_id": target[0], "flag": target[1], "channel": _channel(body)}
        await client.views_open(trigger_id=body["trigger_id"], view=flag_reject_modal(metadata))

    @app.view(FLAG_REJECT_MODAL)
    async def submitted(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        reason = _reason(body)
        if not reason:
            await ack(response_action="errors", errors={REASON_BLOCK: REASON_MISSING.text})
            return
        await ack()
        metadata = json.loads(body["view"].get("private_metadata") or "{}")
        outcome = await usecases.reject_flag(
            deployment_id=int(metadata["deployment_id"]),
            flag=str(metadata["flag"])[:200],
            user_id=body["user"]["id"],
            reason=reason,
        )
        await _tell(client, {**body, "channel": {"id": metadata.get("channel")}}, outcome)


def _flag_value(body: dict[str, Any]) -> tuple[int, str] | None:
    try:
        value = str(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError):
        value = ""
    deployment, _, flag = value.partition(":")
    if deployment.isdigit() and len(deployment) < 10 and int(deployment) < 2**31 and flag:
        return int(deployment), flag[:200]
    log.warning("ignoring a flag click without a deployment and a flag")
    return None


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

    @app.view(modal_id)
    async def submitted(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        reason = _reason(body)
        if not reason:
            await ack(response_action="errors", errors={REASON_BLOCK: REASON_MISSING.text})
            return
        await ack()
        metadata = json.loads(body["view"].get("private_metadata") or "{}")
        outcome = await act(int(metadata[key]), body["user"]["id"], reason)
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
