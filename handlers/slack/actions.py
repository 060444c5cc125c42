"""Buttons and modals on release messages: approve, reject (with a reason), and the rest.

Each listener acks at once (Slack allows 3 seconds), then makes one call into a use case
and tells the person who clicked what happened, ephemerally.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.modals import (
    BREAK_GLASS_MODAL,
    REASON_BLOCK,
    REASON_INPUT,
    REJECT_MODAL,
    ROLLBACK_MODAL,
    break_glass_modal,
    reject_modal,
    rollback_modal,
)
from bot.usecases import Outcome, UseCases
from handlers.slack.middleware import ACK_FIRST

log = logging.getLogger("releasebot.slack")


ICONS = {
    "approved": ":white_check_mark:",
    "recorded": ":ballot_box_with_check:",
    "rejected": ":no_entry:",
    "refused": ":no_entry_sign:",
}


def register_actions(app: AsyncApp, usecases: UseCases) -> None:
    @app.action("release_approve", middleware=ACK_FIRST)
    async def approve(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        gate_id = _value(body)
        if gate_id is None:
            return
        outcome = await usecases.decide_gate(
            gate_id=gate_id, user_id=body["user"]["id"], decision="approve"
        )
        await _tell(client, body, outcome)

    @app.action("release_reject", middleware=ACK_FIRST)
    async def reject(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        gate_id = _value(body)
        if gate_id is None:
            return
        await client.views_open(
            trigger_id=body["trigger_id"],
            view=reject_modal({"gate_id": gate_id, "channel": _channel(body)}),
        )

    @app.view(REJECT_MODAL)
    async def reject_submitted(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        reason = _reason(body)
        if not reason:
            await ack(response_action="errors", errors={REASON_BLOCK: "A reason is required."})
            return
        await ack()
        metadata = json.loads(body["view"].get("private_metadata") or "{}")
        outcome = await usecases.decide_gate(
            gate_id=int(metadata["gate_id"]),
            user_id=body["user"]["id"],
            decision="reject",
            reason=reason,
        )
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
    text = f"{ICONS.get(outcome.result, '')} {outcome.message}".strip()
    if channel is None:
        # A click on App Home has no channel: answer in a direct message instead.
        await client.chat_postMessage(channel=user, text=text)
        return
    await client.chat_postEphemeral(channel=channel, user=user, text=text)


def register_operations(app: AsyncApp, usecases: UseCases) -> None:
    """Promote, roll back (with a reason), unlock, and break-glass (ask, then confirm)."""
    _register_deployment_buttons(app, usecases)
    _register_rollback(app, usecases)
    _register_break_glass(app, usecases)


def _register_deployment_buttons(app: AsyncApp, usecases: UseCases) -> None:
    """Promote and unlock: one click, no question asked."""

    @app.action("release_promote", middleware=ACK_FIRST)
    async def promote(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        deployment_id = _value(body)
        if deployment_id is not None:
            outcome = await usecases.operate(
                action="promote", deployment_id=deployment_id, user_id=body["user"]["id"]
            )
            await _tell(client, body, outcome)

    @app.action("release_unlock", middleware=ACK_FIRST)
    async def unlock(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        deployment_id = _value(body)
        if deployment_id is not None:
            outcome = await usecases.operate(
                action="unlock", deployment_id=deployment_id, user_id=body["user"]["id"]
            )
            await _tell(client, body, outcome)


def _register_rollback(app: AsyncApp, usecases: UseCases) -> None:
    """Roll back: the button opens a modal asking why; submitting it rolls back."""

    @app.action("release_rollback", middleware=ACK_FIRST)
    async def rollback(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        deployment_id = _value(body)
        if deployment_id is None:
            return
        await client.views_open(
            trigger_id=body["trigger_id"],
            view=rollback_modal({"deployment_id": deployment_id, "channel": _channel(body)}),
        )

    @app.view(ROLLBACK_MODAL)
    async def rollback_submitted(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        reason = _reason(body)
        if not reason:
            await ack(response_action="errors", errors={REASON_BLOCK: "A reason is required."})
            return
        await ack()
        metadata = json.loads(body["view"].get("private_metadata") or "{}")
        outcome = await usecases.operate(
            action="rollback",
            deployment_id=int(metadata["deployment_id"]),
            user_id=body["user"]["id"],
            reason=reason,
        )
        await _tell(client, {**body, "channel": {"id": metadata.get("channel")}}, outcome)


def _register_break_glass(app: AsyncApp, usecases: UseCases) -> None:
    """Break glass: one person asks (with a reason, in a modal), a second one confirms."""

    @app.action("release_break_glass", middleware=ACK_FIRST)
    async def break_glass(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        gate_id = _value(body)
        if gate_id is None:
            return
        await client.views_open(
            trigger_id=body["trigger_id"],
            view=break_glass_modal({"gate_id": gate_id, "channel": _channel(body)}),
        )

    @app.view(BREAK_GLASS_MODAL)
    async def break_glass_submitted(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        reason = _reason(body)
        if not reason:
            await ack(response_action="errors", errors={REASON_BLOCK: "A reason is required."})
            return
        await ack()
        metadata = json.loads(body["view"].get("private_metadata") or "{}")
        outcome = await usecases.break_glass(
            gate_id=int(metadata["gate_id"]), user_id=body["user"]["id"], reason=reason
        )
        await _tell(client, {**body, "channel": {"id": metadata.get("channel")}}, outcome)

    @app.action("release_break_glass_confirm", middleware=ACK_FIRST)
    async def confirm(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        gate_id = _value(body)
        if gate_id is not None:
            outcome = await usecases.break_glass(
                gate_id=gate_id, user_id=body["user"]["id"], confirm=True
            )
            await _tell(client, body, outcome)
