"""Detached Ed25519 signatures over JSON documents (checkpoints, evidence packs).

A signed document carries two more fields:

    "signature": {"algorithm": "ed25519", "key_fingerprint": "sha256:<hex>", "value": "<base64>"}

`value` signs the canonical JSON (sorted keys, no spaces, UTF-8) of the document without
its `signature` field, with `signature.key_fingerprint` and `signature.algorithm` inside
the signed text as well (they are placed under `signature` only after signing). Anyone with
the public key checks it offline; the fingerprint is sha256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.domain.audit import canonical_json

if TYPE_CHECKING:  # cryptography is imported where a key is used: not at start-up without one
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

ALGORITHM = "ed25519"
SIGNATURE = "signature"


class SigningKeyError(ValueError):
    """A key that cannot be read as an Ed25519 PEM key; the message says which."""


def fingerprint(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_private_key(pem: bytes, *, source: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{source}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{source}: the private key is not an Ed25519 key")
    return key


def load_public_key(pem: bytes, *, source: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{source}: not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source}: the public key is not an Ed25519 key")
    return key


def generate() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    """A new key pair as (private PEM, public PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_pem(private.public_key()).encode("ascii")


def _signed_text(document: Mapping[str, Any], key_fingerprint: str) -> bytes:
    body = {k: v for k, v in document.items() if k != SIGNATURE}
    body[SIGNATURE] = {"algorithm": ALGORITHM, "key_fingerprint": key_fingerprint}
    return canonical_json(body).encode("utf-8")


@dataclass(frozen=True)
class Signer:
    """Signs documents with the configured private key."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """The document with its detached signature (any earlier signature replaced)."""
        fp = self.fingerprint
        value = self.private_key.sign(_signed_text(document, fp))
        signed = {k: v for k, v in document.items() if k != SIGNATURE}
        signed[SIGNATURE] = {
            "algorithm": ALGORITHM,
            "key_fingerprint": fp,
            "value": base64.b64encode(value).decode("ascii"),
        }
        return signed


def check(document: Mapping[str, Any], public_key: Ed25519PublicKey) -> str | None:
    from cryptography.exceptions import InvalidSignature

    """Why the document's signature does not hold under this key, or None when it does."""
    signature = document.get(SIGNATURE)
    if not isinstance(signature, Mapping):
        return "the document carries no signature"
    if signature.get("algorithm") != ALGORITHM:
        return f"unknown signature algorithm {signature.get('algorithm')!r}"
    expected = fingerprint(public_key)
    if signature.get("key_fingerprint") != expected:
        return (
            f"signed by key {signature.get('key_fingerprint')!r}, not by the given key {expected}"
        )
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        return "the signature value is not base64"
    try:
        public_key.verify(value, _signed_text(document, expected))
    except InvalidSignature:
        return "the signature does not match the document: it was changed after signing"
    return None
