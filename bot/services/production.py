"""Which deployments are production's, as SQL conditions and in Python.

    scope = Production.of(config)      # as `Config.is_production` says; None: by the name
    select(...).where(*scope.where(col(Deployment.service), col(Deployment.environment)))
    scope.holds("checkout", "prod")

The conditions filter by the production environment names first (the leading column of
the DORA index `ix_deployment_env_deployed`), then, only where a name is production for
some configured services and not others, by service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.orm import Mapped

from bot.config import Config

PRODUCTION: Final = "production"


@dataclass(frozen=True)
class Production:
    """Which (service, environment) deployments are production's, as `Config.is_production`
    says: a service in `configured` in the environments `pairs` name for it; any other
    service in the environments named in `fallback`.
    """

    pairs: frozenset[tuple[str, str]] = frozenset()
    configured: frozenset[str] = frozenset()
    fallback: tuple[str, ...] = (PRODUCTION,)

    @classmethod
    def of(cls, config: Config | None) -> Production:
        """The config's production environments (None: every environment named production)."""
        if config is None:
            return cls()
        return cls(
            config.production_environments(),
            frozenset(config.services),
            tuple(config.unconfigured_production_environments()),
        )

    @classmethod
    def named(cls, environment: str) -> Production:
        """Every service's environment of this name."""
        return cls(fallback=(environment,))

    def holds(self, service: str, environment: str) -> bool:
        return environment in self.names_of(service)

    def names_of(self, service: str) -> list[str]:
        """The service's production environment names, sorted."""
        if service in self.configured:
            return sorted(env for name, env in self.pairs if name == service)
        return sorted(self.fallback)

    def names(self) -> list[str]:
        """Every environment name that is production for some service, sorted."""
        return sorted({environment for _, environment in self.pairs} | set(self.fallback))

    def where(self, service: Mapped[str], environment: Mapped[str]) -> list[sa.ColumnElement[bool]]:
        """SQL conditions on a deployment's service and environment columns: the names (the
        leading column of the DORA index), then, for a name some configured services use
        but not as production, all services but those."""
        names = self.names()
        where = [_one_of(environment, names)]
        excluded = {
            name: sorted(s for s in self.configured if (s, name) not in self.pairs)
            for name in names
        }
        if any(excluded.values()):
            where.append(
                sa.or_(
                    *(
                        sa.and_(environment == name, service.not_in(others))
                        if others
                        else environment == name
                        for name, others in excluded.items()
                    )
                )
            )
        return where

    def where_service(self, service: str, environment: Mapped[str]) -> list[sa.ColumnElement[bool]]:
        """The same for one service's deployments: its own production environment names."""
        return [_one_of(environment, self.names_of(service))]


def _one_of(column: Mapped[str], names: Sequence[str]) -> sa.ColumnElement[bool]:
    return column == names[0] if len(names) == 1 else column.in_(names)


# Without a config: every service's environment named production.
BY_NAME: Final = Production()
