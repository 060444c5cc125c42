"""Modals that ask for a reason: reject a release or a flag step, roll back, break glass."""

from __future__ import annotations

import json
from typing import Any, Final

REJECT_MODAL: Final = "release_reject_modal"
FLAG_REJECT_MODAL: Final = "release_flag_reject_modal"
ROLLBACK_MODAL: Final = "release_rollback_modal"
BREAK_GLASS_MODAL: Final = "release_break_glass_modal"
REASON_BLOCK: Final = "reason"
REASON_INPUT: Final = "reason_input"


def reason_modal(
    *, callback_id: str, title: str, prompt: str, submit: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    """A modal with one required multi-line reason; `metadata` comes back on submit."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title[:24]},
        "submit": {"type": "plain_text", "text": submit[:24]},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps(metadata),
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": prompt[:2000]},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": 3000,
                },
            }
        ],
    }


def reject_modal(metadata: dict[str, Any]) -> dict[str, Any]:
    return reason_modal(
        callback_id=REJECT_MODAL,
        title="Reject release",
        prompt="Why are you rejecting this release? The reason goes in the audit trail.",
        submit="Reject",
        metadata=metadata,
    )


def flag_reject_modal(metadata: dict[str, Any]) -> dict[str, Any]:
    """Behind a flag step's Reject: the flag stays as it is, the step is closed."""
    return reason_modal(
        callback_id=FLAG_REJECT_MODAL,
        title="Reject flag step",
        prompt="Why are you rejecting this flag step? The flag stays as it is; the reason "
        "goes in the thread and the audit trail.",
        submit="Reject",
        metadata=metadata,
    )


def rollback_modal(metadata: dict[str, Any]) -> dict[str, Any]:
    return reason_modal(
        callback_id=ROLLBACK_MODAL,
        title="Roll back",
        prompt="Why roll back? Automatic promotion stays locked until someone unlocks it.",
        submit="Roll back",
        metadata=metadata,
    )


def break_glass_modal(metadata: dict[str, Any]) -> dict[str, Any]:
    return reason_modal(
        callback_id=BREAK_GLASS_MODAL,
        title="Break glass",
        prompt="What is on fire? Break-glass passes the gate once a second person "
        "confirms; it is announced in the channel and audited.",
        submit="Ask",
        metadata=metadata,
    )
