"""The whole `releasebot.yaml`, its lookups, and the checks that span several services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Self

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from bot.config.base import ConfigModel, Loc, problems_error, quoted_list, suggest
from bot.config.gates import BreakGlass, ScheduledFreeze
from bot.config.risk import RiskConfig
from bot.config.services import TRACK_KEYS, Environment, Service
from bot.config.slack import Identity, SlackConfig
from bot.config.types import Name, SlackUserId

# Production for a service the config does not list, when no configured one has any.
UNCONFIGURED_PRODUCTION = "production"


class Config(ConfigModel):
    """The whole `releasebot.yaml`."""

    model_config = ConfigDict(title="releasebot.yaml")

    slack: SlackConfig
    identities: dict[SlackUserId, Identity] = {}
    risk: RiskConfig = Field(default_factory=RiskConfig)
    freezes: list[ScheduledFreeze] = []
    break_glass: BreakGlass | None = None
    services: dict[Name, Service]
    _repo_index: tuple[object, dict[tuple[str, str], list[tuple[str, Service]]]] | None = (
        PrivateAttr(default=None)
    )

    # ---- lookups ----

    def iter_environments(self) -> Iterator[tuple[str, Service, Environment]]:
        for name, service in self.services.items():
            for env in service.environments:
                yield name, service, env

    def services_for_repo(self, provider: str, repo_path: str) -> list[tuple[str, Service]]:
        """Every service built from this repository (case-insensitive), in file order."""
        key = (provider.lower(), repo_path.strip("/").casefold())
        return list(self._services_by_repo().get(key, ()))

    def _services_by_repo(self) -> dict[tuple[str, str], list[tuple[str, Service]]]:
        """The services of each (provider, repository path casefolded), in file order: what
        every webhook is matched by. Built once for these services (a copy of the config
        with other services builds its own)."""
        built = self._repo_index
        if built is not None and built[0] is self.services:
            return built[1]
        found: dict[tuple[str, str], list[tuple[str, Service]]] = {}
        for name, service in self.services.items():
            key = (service.provider, service.repo_path.casefold())
            found.setdefault(key, []).append((name, service))
        self._repo_index = (self.services, found)
        return found

    def service_for_repo(self, provider: str, repo_path: str) -> tuple[str, Service] | None:
        """The first service built from this repository (case-insensitive), or None."""
        found = self.services_for_repo(provider, repo_path)
        return found[0] if found else None

    def service_for_argocd_app(self, app: str) -> tuple[str, Service, Environment] | None:
        """The environment tracking this Argo CD app, else the one deploying through it."""
        for name, service, env in self.iter_environments():
            if env.track is not None and env.track.argocd_app == app:
                return name, service, env
        for name, service, env in self.iter_environments():
            if env.deploy is not None and env.deploy.argocd is not None:
                if env.deploy.argocd.app == app:
                    return name, service, env
        return None

    def production_environments(self) -> frozenset[tuple[str, str]]:
        """Every (service, environment) that is production (see `Service.is_production`)."""
        return frozenset(
            (name, env_name)
            for name, service in self.services.items()
            for env_name in service.production_environments()
        )

    def is_production(self, service_name: str, environment: str) -> bool:
        """Whether deploys of this service to this environment are production's. A service
        not in the config (one removed, whose history remains): an environment of a name
        that is production for a configured service, or `production` when none is."""
        return environment in self.production_environments_of(service_name)

    def production_environments_of(self, service_name: str) -> list[str]:
        """The service's production environments (see `is_production`)."""
        service = self.services.get(service_name)
        if service is None:
            return self.unconfigured_production_environments()
        return service.production_environments()

    def unconfigured_production_environments(self) -> list[str]:
        """Production's names for a service the config does not list, sorted."""
        names = {environment for _, environment in self.production_environments()}
        return sorted(names) if names else [UNCONFIGURED_PRODUCTION]

    def channel_for(self, service_name: str) -> str:
        """The service's channel, else `slack.default_channel` (also for unknown services)."""
        service = self.services.get(service_name)
        if service is not None and service.channel is not None:
            return service.channel
        return self.slack.default_channel

    # ---- checks across services ----

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        problems = [*self._freeze_problems(), *self._routing_problems()]
        if problems:
            raise problems_error(problems)
        return self

    def _freeze_problems(self) -> Iterator[tuple[Loc, str]]:
        known = sorted({env.name for _, _, env in self.iter_environments()})
        for index, freeze in enumerate(self.freezes):
            for position, name in enumerate(freeze.environments):
                if name != "all" and name not in known:
                    yield (
                        ("freezes", index, "environments", position),
                        f"no service has an environment '{name}'{suggest(name, known)}"
                        f" (use 'all', {quoted_list(known, 'or')})",
                    )

    def _routing_problems(self) -> Iterator[tuple[Loc, str]]:
        """Two environments an incoming deploy event could not tell apart."""
        owners: dict[tuple[str, ...], str] = {}
        for name, service in self.services.items():
            for index, env in enumerate(service.environments):
                if env.track is None:
                    continue
                for key in TRACK_KEYS:
                    value = getattr(env.track, key)
                    if value is None:
                        continue
                    # Argo CD apps and Jenkins jobs are global names; the rest live in a repo.
                    scope = "" if key in ("argocd_app", "jenkins_job") else service.repo.casefold()
                    identity = (key, scope, value.casefold())
                    if identity in owners:
                        yield (
                            ("services", name, "environments", index, "track", key),
                            f"'{value}' is already tracked by {owners[identity]}; "
                            "deploy events could not tell the two apart",
                        )
                    else:
                        owners[identity] = f"services.{name}.environments[{index}]"
