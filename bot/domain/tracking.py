"""Which configured service and environment a CI event is about."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Config, Environment, Service
from bot.domain.events import DeployTarget


@dataclass(frozen=True)
class Tracked:
    service: str
    environment: str


def _workflow_file(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _matches(target: DeployTarget, env: Environment) -> bool:
    track = env.track
    if track is None:
        return False
    if target.provider == "github":
        if target.environment is not None and track.github_environment is not None:
            return target.environment == track.github_environment
        if target.workflow is not None and track.github_workflow is not None:
            return _workflow_file(target.workflow) == _workflow_file(track.github_workflow)
        return False
    if target.provider == "gitlab":
        return target.environment is not None and target.environment == track.gitlab_environment
    if target.provider == "argocd":
        return target.app is not None and target.app == track.argocd_app
    if target.provider == "jenkins":
        return target.job is not None and target.job == track.jenkins_job
    if target.provider == "generic":
        return track.generic and target.environment == env.name
    return False


def _by_name(target: DeployTarget, service: Service) -> Environment | None:
    """A CI environment named exactly like a configured one that has no explicit track."""
    if target.environment is None:
        return None
    env = service.environment(target.environment)
    if env is not None and env.track is None:
        return env
    return None


def resolve(config: Config, target: DeployTarget) -> Tracked | None:
    """The (service, environment) the event belongs to, or None when nothing tracks it."""
    candidates: list[tuple[str, Service]] = []
    if target.provider in ("github", "gitlab") and target.repo:
        found = config.service_for_repo(target.provider, target.repo)
        if found is not None:
            candidates.append(found)
    elif target.provider == "argocd" and target.app:
        hit = config.service_for_argocd_app(target.app)
        if hit is not None:
            return Tracked(hit[0], hit[2].name)
    elif target.service is not None and target.service in config.services:
        candidates.append((target.service, config.services[target.service]))
    elif target.provider == "jenkins":
        candidates.extend(config.services.items())

    for name, service in candidates:
        for env in service.environments:
            if _matches(target, env):
                return Tracked(name, env.name)
        fallback = _by_name(target, service)
        if fallback is not None:
            return Tracked(name, fallback.name)
    return None
