"""The outbox message that forwards a stretch of the audit chain to a SIEM's webhook.

One row names the records it carries by sequence, `(after_seq, upto_seq]`, not by copying
them: the worker reads them when it sends, as stored. Every row shares one key, so the
stretches reach the receiver in chain order, and a failed one holds back the later ones
until its retry succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

KEY = "audit-forward"


@dataclass(frozen=True)
class AuditForward:
    """Send the audit records after `after_seq` up to and including `upto_seq`."""

    KIND: ClassVar[str] = "audit.forward"
    after_seq: int
    upto_seq: int

    @property
    def key(self) -> str:
        return KEY

    def to_payload(self) -> dict[str, Any]:
        return {"after_seq": self.after_seq, "upto_seq": self.upto_seq}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AuditForward:
        return cls(after_seq=int(payload["after_seq"]), upto_seq=int(payload["upto_seq"]))
