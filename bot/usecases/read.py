"""What people look at in Slack: status, history, pending approvals, App Home, DORA metrics.

Every function reads in one read-only session; the rows it answers with are plain frozen
dataclasses (re-exported here, so callers need nothing from the services below).
"""

from __future__ import annotations

from bot.services import dora, freezes, queries, seed_metrics
from bot.services.dora import MetricsMessage
from bot.services.freezes import ActiveFreeze, FreezeOutcome
from bot.services.queries import DeploymentRow, HistoryPage, PendingApproval, StatusRow
from bot.usecases.context import Context

__all__ = [
    "ActiveFreeze",
    "DeploymentRow",
    "FreezeOutcome",
    "HistoryPage",
    "MetricsMessage",
    "PendingApproval",
    "StatusRow",
    "environments_of",
    "freezes_in_force",
    "history",
    "metrics_message",
    "owned_services",
    "pending_approvals",
    "recent_releases",
    "status",
]


def environments_of(ctx: Context, service: str | None = None) -> list[tuple[str, str]]:
    """(service, environment) pairs in config order: every service's, or one service's."""
    return queries.status_pairs(ctx.config, service)


async def status(ctx: Context, pairs: list[tuple[str, str]]) -> list[StatusRow]:
    """What runs in each (service, environment), what is on its way, freezes and locks."""
    now = ctx.clock.now()
    return await ctx.read(lambda s: queries.status(s, config=ctx.config, now=now, pairs=pairs))


async def history(
    ctx: Context, *, service: str, environment: str | None, limit: int, offset: int
) -> HistoryPage:
    """A page of a service's deployments, newest first (one environment, or all of them)."""
    environments = [env for _, env in queries.status_pairs(ctx.config, service)]
    return await ctx.read(
        lambda s: queries.history(
            s,
            service=service,
            environment=environment,
            limit=limit,
            offset=offset,
            environments=environments,
        )
    )


async def pending_approvals(
    ctx: Context, user_id: str, *, only_actionable: bool = False
) -> list[PendingApproval]:
    """Open gates, with `can_act` for this user (their groups resolved through Slack)."""
    memberships = await ctx.groups_of(user_id, queries.approver_groups(ctx.config))
    return await ctx.read(
        lambda s: queries.pending(
            s,
            config=ctx.config,
            user_id=user_id,
            memberships=memberships,
            only_actionable=only_actionable,
        )
    )


async def owned_services(ctx: Context, user_id: str) -> list[str]:
    """Services whose owners list this user or one of their user groups."""
    memberships = await ctx.groups_of(user_id, queries.owner_groups(ctx.config))
    return queries.owned_services(ctx.config, user_id, memberships)


async def recent_releases(ctx: Context, services: list[str], *, limit: int) -> list[DeploymentRow]:
    """The latest deployments of these services, newest first."""
    return await ctx.read(lambda s: queries.recent(s, services=services, limit=limit))


async def freezes_in_force(ctx: Context) -> list[ActiveFreeze]:
    """Every freeze in force now: configured windows and freezes started from Slack."""
    now = ctx.clock.now()
    return await ctx.read(lambda s: freezes.listing(s, config=ctx.config, now=now))


async def metrics_message(ctx: Context, *, service: str | None, days: int) -> MetricsMessage:
    """DORA and release-health metrics over the last `days`, overall and per configured
    service (or for one service), as a Slack message."""
    now = ctx.clock.now()
    services = list(ctx.config.services) if service is None else None
    production = dora.Production.of(ctx.config)
    return await ctx.read(
        lambda s: dora.message(
            dora.report(
                s,
                now=now,
                service=service,
                windows=(days,),
                services=services,
                production=production,
            ),
            now=now,
            seed=seed_metrics.report(
                s, now=now, days=days, service=service, services=services, production=production
            ),
        )
    )
