"""Promotion and rollback rules: which releases may move on, and where they go next.

    next_environment(config.services["checkout"], "staging")    # "production"
    promotion_sources(config.services["checkout"], "production") # ("staging",)
    deployment.state in PROMOTABLE                                # may be promoted
    deployment.state in ROLLBACKABLE                              # may be rolled back

A service lists its environments in promotion order. A release goes from an environment to
its `auto_promote_to` when that is set, else to the environment listed after it; the last
one listed (without `auto_promote_to`) promotes nowhere.

Only a deployed release moves on (`succeeded`, or `verified` once its checks passed). A
rollback restores the environment from anything that ran there: a deploy that succeeded,
is being or was verified, failed verification, or failed outright; and it may be tried
again after the pipeline refused one (`rollback_failed`).

Pure: no I/O. The environments come from the config's `Service`.
"""

from __future__ import annotations

from typing import Final

from bot.config import Service
from bot.domain import states

__all__ = ["PROMOTABLE", "ROLLBACKABLE", "next_environment", "promotion_sources"]

PROMOTABLE: Final[frozenset[str]] = frozenset({states.SUCCEEDED, states.VERIFIED})
ROLLBACKABLE: Final[frozenset[str]] = frozenset(
    {
        states.SUCCEEDED,
        states.VERIFYING,
        states.VERIFIED,
        states.VERIFICATION_FAILED,
        states.FAILED,
        states.ROLLBACK_FAILED,
    }
)


def next_environment(service: Service | None, environment: str) -> str | None:
    """Where a release goes after `environment`: `auto_promote_to`, else the next listed.

    None for the last environment, for an environment the service does not have and for a
    service the config does not have (`config.services.get(name)` gives None).
    """
    if service is None:
        return None
    names = [env.name for env in service.environments]
    env = service.environment(environment)
    if env is not None and env.auto_promote_to:
        return env.auto_promote_to
    index = names.index(environment) if environment in names else -1
    return names[index + 1] if 0 <= index < len(names) - 1 else None


def promotion_sources(service: Service, target: str) -> tuple[str, ...]:
    """The environments whose next environment is `target`, in the service's order.

    Empty when nothing promotes into `target`: its releases arrive from CI.
    """
    return tuple(
        env.name
        for env in service.environments
        if env.name != target and next_environment(service, env.name) == target
    )
