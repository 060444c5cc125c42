"""The tamper-evident audit chain: pure hashing and verification.

Unkeyed record (no audit key configured when it was written; `key_id` is null):

    hash = sha256(prev_hash + canonical JSON of seq, at, actor, action, subject, details)

Keyed record (written under `RELEASEBOT_AUDIT_KEY`, its id stored in `key_id`):

    hash = HMAC-SHA256(secret of key_id,
                       prev_hash + canonical JSON of seq, at, actor, action, subject,
                       details, key_id)

Without the secret nobody can re-hash a keyed chain after an edit; a new key id continues
from the head the previous key wrote, so old records keep verifying with the old secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_SECRET_LENGTH = 16


class AuditKeyError(ValueError):
    """An audit key that cannot be used; the message says what is wrong, never the secret."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_at(at: datetime) -> str:
    """UTC ISO 8601 with microseconds and a Z, the form that is hashed and exported."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditKey:
    """One HMAC key of the chain: its public id and its secret (never printed)."""

    key_id: str
    secret: bytes = field(repr=False)


def parse_key(text: str, *, source: str) -> AuditKey:
    """`<key-id>:<secret>` as an AuditKey; `source` names the setting in the error."""
    key_id, sep, secret = text.strip().partition(":")
    if not sep or not KEY_ID.match(key_id):
        raise AuditKeyError(
            f"{source}: expected <key-id>:<secret>, the id made of letters, digits, '.', '_' "
            "or '-' (at most 64)"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise AuditKeyError(
            f"{source}: the secret of key id {key_id!r} is shorter than "
            f"{MIN_SECRET_LENGTH} characters"
        )
    return AuditKey(key_id, secret.encode("utf-8"))


def parse_keys(text: str, *, source: str) -> list[AuditKey]:
    """Keys separated by commas or new lines (blank lines and # comments skipped)."""
    items = [part.strip() for line in text.splitlines() for part in line.split(",")]
    return [parse_key(item, source=source) for item in items if item and not item.startswith("#")]


@dataclass(frozen=True)
class AuditKeys:
    """The key new records are written under (None: unkeyed), and every key that verifies."""

    current: AuditKey | None = None
    known: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, current: AuditKey | None, older: Iterable[AuditKey] = ()) -> AuditKeys:
        known = {key.key_id: key.secret for key in older}
        if current is not None:
            if known.get(current.key_id, current.secret) != current.secret:
                raise AuditKeyError(
                    f"key id {current.key_id!r} is given two different secrets "
                    "(RELEASEBOT_AUDIT_KEY and RELEASEBOT_AUDIT_KEYS)"
                )
            known[current.key_id] = current.secret
        return cls(current, known)


def record_hash(
    *,
    prev_hash: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    key: AuditKey | None = None,
) -> str:
    """The record's hash: sha256 without a key, HMAC-SHA256 (covering the key id) with one."""
    fields: dict[str, Any] = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": dict(details),
    }
    if key is None:
        return hashlib.sha256((prev_hash + canonical_json(fields)).encode("utf-8")).hexdigest()
    fields["key_id"] = key.key_id
    message = (prev_hash + canonical_json(fields)).encode("utf-8")
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str
    key_id: str | None = None


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


@dataclass
class ChainWalk:
    """What a walk of the chain saw: records checked, unkeyed ones, key ids, the head."""

    checked: int = 0
    unkeyed: int = 0
    key_ids: list[str] = field(default_factory=list)
    hashes: dict[int, str] = field(default_factory=dict)  # only the seqs asked for
    head_seq: int = 0


def find_break(
    records: Iterable[AuditRecord],
    keys: Mapping[str, bytes] | None = None,
    *,
    walk: ChainWalk | None = None,
    keep: frozenset[int] = frozenset(),
) -> ChainBreak | None:
    """The first record whose sequence, link, key or hash does not hold, or None.

    `keys` maps key ids to secrets; a keyed record whose key is not among them is a break
    naming the key id. Once a record is keyed, an unkeyed record after it is a break: the
    chain is never downgraded to a hash anyone can recompute. `walk` (when given) collects
    counts, and the hashes of the sequence numbers in `keep`.
    """
    keys = keys or {}
    walk = walk if walk is not None else ChainWalk()
    expected_prev = GENESIS_HASH
    expected_seq = 1
    keyed_since: int | None = None
    for record in records:
        walk.checked += 1
        if record.seq != expected_seq:
            return ChainBreak(record.seq, f"expected sequence {expected_seq}, found {record.seq}")
        if record.prev_hash != expected_prev:
            return ChainBreak(record.seq, "prev_hash does not match the previous record's hash")
        key: AuditKey | None = None
        if record.key_id is None:
            walk.unkeyed += 1
            if keyed_since is not None:
                return ChainBreak(
                    record.seq,
                    f"record has no key id after keyed records (since {keyed_since}): "
                    "an unkeyed hash can be recomputed by anyone",
                )
        else:
            keyed_since = keyed_since or record.seq
            secret = keys.get(record.key_id)
            if secret is None:
                return ChainBreak(
                    record.seq,
                    f"record is keyed with key id {record.key_id!r}, which is not available: "
                    "add it to RELEASEBOT_AUDIT_KEYS",
                )
            key = AuditKey(record.key_id, secret)
            if record.key_id not in walk.key_ids:
                walk.key_ids.append(record.key_id)
        computed = record_hash(
            prev_hash=record.prev_hash,
            seq=record.seq,
            at=record.at,
            actor=record.actor,
            action=record.action,
            subject=record.subject,
            details=record.details,
            key=key,
        )
        if not hmac.compare_digest(computed, record.hash):
            return ChainBreak(record.seq, "hash does not match the record's contents")
        if record.seq in keep:
            walk.hashes[record.seq] = record.hash
        walk.head_seq = record.seq
        expected_prev = record.hash
        expected_seq += 1
    return None
