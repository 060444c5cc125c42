"""The read-only dashboard's pages: releases, one deployment with its evidence, the audit
log and DORA charts. Each page is read in one read-only session."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from bot.logs import log_context, logged_ids
from bot.services import dashboard
from bot.services.dashboard import BUCKETS, AuditPage, DeploymentPage, DoraSeries, Overview
from bot.services.evidence import evidence_pack
from bot.services.production import Production
from bot.usecases import audit_trail
from bot.usecases.context import Context

__all__ = [
    "BUCKETS",
    "AuditPage",
    "DeploymentPage",
    "DoraSeries",
    "Overview",
    "audit_page",
    "deployment_page",
    "dora_series",
    "evidence_of_deployment",
    "evidence_of_release",
    "overview",
]


async def overview(ctx: Context) -> Overview:
    return await ctx.read(lambda s: dashboard.overview(s, ctx.config))


@logged_ids("deployment_id")
async def deployment_page(ctx: Context, deployment_id: int) -> DeploymentPage | None:
    return await ctx.read(lambda s: dashboard.deployment_page(s, deployment_id, config=ctx.config))


@logged_ids("deployment_id")
async def evidence_of_deployment(ctx: Context, deployment_id: int) -> dict[str, Any] | None:
    """The evidence pack of the release this deployment belongs to (None: no such one),
    signed when a signing key is configured."""
    now = ctx.clock.now()

    def build(session: Session) -> dict[str, Any] | None:
        release_id = dashboard.release_of(session, deployment_id)
        if release_id is None:
            return None
        with log_context(release_id=release_id):
            return evidence_pack(
                session, release_id=release_id, config=ctx.config, generated_at=now
            )

    pack = await ctx.read(build)
    return None if pack is None else audit_trail.sign(ctx, pack)


@logged_ids("release_id")
async def evidence_of_release(ctx: Context, release_id: int) -> dict[str, Any] | None:
    """The evidence pack of one release (None: no such one)."""
    now = ctx.clock.now()

    def build(session: Session) -> dict[str, Any] | None:
        try:
            return evidence_pack(
                session, release_id=release_id, config=ctx.config, generated_at=now
            )
        except LookupError:
            return None

    return await ctx.read(build)


async def audit_page(ctx: Context, *, limit: int, before_seq: int | None) -> AuditPage:
    return await ctx.read(lambda s: dashboard.audit_page(s, limit=limit, before_seq=before_seq))


async def dora_series(ctx: Context, *, days: int, bucket: str) -> DoraSeries:
    """Production's deploys and lead time per bucket (the config says what production is)."""
    now = ctx.clock.now()
    production = Production.of(ctx.config)
    return await ctx.read(
        lambda s: dashboard.dora_series(s, now=now, days=days, bucket=bucket, production=production)
    )
