"""Audit checkpoints: the chain's head published outside the database, and their checks.

A checkpoint is one JSON document (one line of the checkpoint file):

    {"type": "releasebot.audit_checkpoint", "seq": 1234, "hash": "<hex>",
     "at": "2026-12-06T10:00:00.000000Z", "key_id": "k2", "reason": "interval",
     "signature": {...}}

`key_id` is present when the head record is keyed; `signature` when a signing key is
configured (see bot.domain.signing). The outbox messages below carry one checkpoint to each
place it is published: the JSON Lines file, the Slack audit channel, the webhook sink.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bot.domain import signing
from bot.domain.signing import Signer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TYPE = "releasebot.audit_checkpoint"


def document(
    *,
    seq: int,
    hash: str,
    at: str,
    key_id: str | None,
    reason: str,
    signer: Signer | None,
) -> dict[str, Any]:
    """The checkpoint of the head `seq`/`hash`, signed when there is a signer."""
    doc: dict[str, Any] = {"type": TYPE, "seq": seq, "hash": hash, "at": at, "reason": reason}
    if key_id is not None:
        doc["key_id"] = key_id
    return signer.sign(doc) if signer is not None else doc


def slack_text(doc: Mapping[str, Any]) -> str:
    """The short line posted to the audit channel."""
    signed = " (signed)" if signing.SIGNATURE in doc else ""
    keyed = f", key {doc['key_id']}" if doc.get("key_id") else ""
    return (
        f"Audit checkpoint{signed}: record {doc['seq']}, hash `{doc['hash']}`{keyed}, "
        f"at {doc['at']} ({doc.get('reason', '')})"
    )


@dataclass(frozen=True)
class CheckpointToFile:
    """Append the checkpoint as one line to RELEASEBOT_AUDIT_CHECKPOINT_FILE."""

    KIND: ClassVar[str] = "audit.checkpoint_file"
    checkpoint: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "audit-checkpoint:file"

    def to_payload(self) -> dict[str, Any]:
        return {"seq": self.checkpoint.get("seq"), "checkpoint": dict(self.checkpoint)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CheckpointToFile:
        return cls(dict(payload["checkpoint"]))


@dataclass(frozen=True)
class CheckpointToWebhook(CheckpointToFile):
    """POST the checkpoint, HMAC-signed, to RELEASEBOT_AUDIT_CHECKPOINT_URL."""

    KIND: ClassVar[str] = "audit.checkpoint_webhook"

    @property
    def key(self) -> str:
        return "audit-checkpoint:webhook"


@dataclass(frozen=True)
class CheckpointToSlack:
    """Post the checkpoint's short line to the Slack audit channel."""

    KIND: ClassVar[str] = "slack.audit_checkpoint"
    channel: str
    text: str
    seq: int

    @property
    def key(self) -> str:
        return "audit-checkpoint:slack"

    def to_payload(self) -> dict[str, Any]:
        return {"channel": self.channel, "text": self.text, "seq": self.seq}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CheckpointToSlack:
        return cls(str(payload["channel"]), str(payload["text"]), int(payload.get("seq") or 0))


KINDS = (CheckpointToFile.KIND, CheckpointToWebhook.KIND, CheckpointToSlack.KIND)


@dataclass(frozen=True)
class Problem:
    """Something a checkpoint says that the chain does not hold (seq: first bad record)."""

    seq: int
    reason: str


@dataclass(frozen=True)
class Entry:
    """One line of a checkpoint file, read."""

    line: int
    doc: Mapping[str, Any]


def read_lines(text: str) -> tuple[list[Entry], list[Problem]]:
    """The checkpoints of a JSON Lines file, and the lines that are not checkpoints."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            problems.append(Problem(0, f"line {number} is not JSON"))
            continue
        if (
            not isinstance(doc, dict)
            or doc.get("type") != TYPE
            or not isinstance(doc.get("seq"), int)
            or not isinstance(doc.get("hash"), str)
        ):
            problems.append(Problem(0, f"line {number} is not an audit checkpoint"))
            continue
        entries.append(Entry(number, doc))
    return entries, problems


def check_signatures(entries: list[Entry], public_key: Ed25519PublicKey) -> list[Problem]:
    """A problem for every line not signed by this key, or changed after signing."""
    problems = []
    for entry in entries:
        why = signing.check(entry.doc, public_key)
        if why is not None:
            seq = int(entry.doc["seq"])
            problems.append(Problem(seq, f"checkpoint on line {entry.line} (record {seq}): {why}"))
    return problems


def check_against_chain(
    entries: list[Entry], *, last_seq: int, hashes: Mapping[int, str], verified_to: int
) -> list[Problem]:
    """Compare each checkpoint with the chain: `last_seq` is the newest record stored,
    `hashes` the stored hashes of the checkpointed records that verified, `verified_to` the
    last record of the chain that verified (checkpoints past it are judged by the break)."""
    problems = []
    for entry in entries:
        seq, at = int(entry.doc["seq"]), entry.doc.get("at", "?")
        if seq > last_seq:
            problems.append(
                Problem(
                    last_seq + 1,
                    f"the chain ends at record {last_seq}, but the checkpoint of {at} "
                    f"(line {entry.line}) vouches for record {seq}: records were deleted",
                )
            )
        elif seq <= verified_to and hashes.get(seq) != entry.doc["hash"]:
            problems.append(
                Problem(
                    seq,
                    f"record {seq}'s hash differs from the checkpoint of {at} "
                    f"(line {entry.line}): the chain was rewritten at or before record {seq}",
                )
            )
    return problems
