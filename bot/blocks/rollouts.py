"""An Argo Rollout on its release message: where the canary stands ("canary 2/5, paused"),
the Promote, Promote fully and Abort buttons, and the modal asking why to abort."""

from __future__ import annotations

from typing import Any, Final

from bot.blocks.kit import Block
from bot.blocks.modals import reason_modal
from bot.blocks.mrkdwn import escape_mrkdwn, truncate

PROMOTE: Final = "release_rollout_promote"
PROMOTE_FULL: Final = "release_rollout_promote_full"
ABORT: Final = "release_rollout_abort"
ABORT_MODAL: Final = "release_rollout_abort_modal"


def rollout_blocks(deployment_id: int, rollout: dict[str, Any]) -> list[Block]:
    """The Rollout's line, then Promote (the next step), Promote fully (every remaining
    step at once) and Abort while it still progresses or waits."""
    name = escape_mrkdwn(truncate(str(rollout["name"]), 200))
    line = f"*Rollout* `{name}`: {escape_mrkdwn(rollout['where'])}"
    if rollout.get("asked"):
        line += f" · :hourglass: {escape_mrkdwn(rollout['asked'])} asked of Argo CD"
    if rollout.get("refused"):
        refused = escape_mrkdwn(truncate(str(rollout["refused"]), 500))
        line += f"\n:no_entry_sign: Argo CD refused: {refused}"
    blocks: list[Block] = [{"type": "section", "text": {"type": "mrkdwn", "text": line}}]
    if rollout.get("active"):
        value = str(deployment_id)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"rollout_actions_{value}",
                "elements": [
                    _button(PROMOTE, "Promote", value, "primary"),
                    _button(PROMOTE_FULL, "Promote fully", value, None),
                    _button(ABORT, "Abort", value, "danger"),
                ],
            }
        )
    return blocks


def _button(action_id: str, label: str, value: str, style: str | None) -> Block:
    button: Block = {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": label},
    }
    if style is not None:
        button["style"] = style
    return button


def abort_modal(metadata: dict[str, Any]) -> dict[str, Any]:
    """Abort asks why: Argo Rollouts sends traffic back to the stable version."""
    return reason_modal(
        callback_id=ABORT_MODAL,
        title="Abort the Rollout",
        prompt="Why abort? Argo Rollouts sends all traffic back to the stable version.",
        submit="Abort",
        metadata=metadata,
    )
