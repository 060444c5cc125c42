"""The audit trail's keys, checkpoints and signatures, for the running app.

`bind` ties the database's chain to the configured audit key and tells it where its
checkpoints go; `publish_checkpoint` is the scheduler's verb; `sign` signs a document
leaving the system (an evidence pack) when a signing key is configured.
"""

from __future__ import annotations

from typing import Any

from bot.domain import signing
from bot.services import audit, checkpoints
from bot.services.checkpoints import Publishing
from bot.usecases.context import Context


def bind(ctx: Context) -> None:
    """Write the chain under RELEASEBOT_AUDIT_KEY and publish its checkpoints where the
    settings and `slack.audit_channel` say (raises SettingsError for an unusable key)."""
    settings = ctx.settings
    audit.use_keys(ctx.db.engine, settings.audit_keyring())
    checkpoints.publish_to(
        ctx.db.engine,
        Publishing(
            signer=settings.signer(),
            to_file=settings.audit_checkpoint_file is not None,
            slack_channel=ctx.config.slack.audit_channel,
            to_webhook=settings.audit_checkpoint_url is not None,
            is_production=ctx.config.is_production,
        ),
    )


async def publish_checkpoint(ctx: Context) -> int | None:
    """Queue a checkpoint of the head if it moved since the last one; its seq, or None."""
    now = ctx.clock.now()
    seq = await ctx.write(lambda s: checkpoints.publish(s, now=now, reason="interval"))
    if seq is not None:
        ctx.wake()
    return seq


def sign(ctx: Context, document: dict[str, Any]) -> dict[str, Any]:
    """The document with a detached signature, or as it is when no signing key is set."""
    signer = checkpoints.signer_of(ctx.db.engine)
    return signer.sign(document) if signer is not None else document


def signing_public_key(ctx: Context) -> dict[str, str] | None:
    """The public half of the signing key (PEM) and its fingerprint; None when unset."""
    signer = checkpoints.signer_of(ctx.db.engine)
    if signer is None:
        return None
    return {
        "algorithm": signing.ALGORITHM,
        "key_fingerprint": signer.fingerprint,
        "public_key": signing.public_pem(signer.public_key),
    }
