"""The `services:` section: each service's repository, on-call and environments.

An environment says how its deploys are tracked (which CI/CD events belong to it), gated,
started and verified; a service lists its environments in promotion order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from bot.config.base import ConfigModel, Loc, invalid, problems_error, quoted_list, suggest
from bot.config.checks import VerifyCheck
from bot.config.deploy import Deploy
from bot.config.flags import ReleaseFlags
from bot.config.gates import GatePolicy
from bot.config.markers import Markers
from bot.config.slo import Slo, burn_rate_with
from bot.config.types import (
    EnvVarName,
    Name,
    SlackChannel,
    SlackPrincipal,
    Text,
    matching,
    string_schema,
)

_ESCALATION_POLICY = r"P[A-Z0-9]{5,12}"
EscalationPolicyId = Annotated[
    str,
    matching(
        _ESCALATION_POLICY,
        "'{value}' is not a PagerDuty escalation policy id (like PABC123, from the policy's URL)",
    ),
    string_schema(_ESCALATION_POLICY),
]


class PagerDutyOncall(ConfigModel):
    """PagerDuty: the Events API integration key that pages, and optionally the escalation
    policy whose on-call people are mentioned (read with the REST API token)."""

    routing_key_env: EnvVarName
    escalation_policy: EscalationPolicyId | None = None
    api_token_env: EnvVarName = "PAGERDUTY_API_TOKEN"


class OpsgenieOncall(ConfigModel):
    """Opsgenie: the API integration key, and the region of the account (`us` is
    api.opsgenie.com, `eu` api.eu.opsgenie.com; `OPSGENIE_API_URL` overrides both)."""

    api_key_env: EnvVarName
    region: Literal["us", "eu"] = "us"


class Oncall(ConfigModel):
    """Who is paged when a deploy goes bad; secrets are named, never written here."""

    pagerduty: PagerDutyOncall | None = None
    opsgenie: OpsgenieOncall | None = None

    @model_validator(mode="after")
    def _check_any(self) -> Self:
        if self.pagerduty is None and self.opsgenie is None:
            raise invalid("set pagerduty or opsgenie")
        return self


# The `track:` keys naming an event source (`generic` is a flag beside them).
TRACK_KEYS = (
    "github_workflow",
    "github_environment",
    "gitlab_environment",
    "argocd_app",
    "jenkins_job",
)


class Track(ConfigModel):
    """Which CI/CD events belong to this environment."""

    github_workflow: Text | None = None
    github_environment: Text | None = None
    gitlab_environment: Text | None = None
    argocd_app: Text | None = None
    jenkins_job: Text | None = None
    generic: bool = False  # reported through POST /webhooks/generic

    @model_validator(mode="after")
    def _check_any(self) -> Self:
        if not self.generic and all(getattr(self, key) is None for key in TRACK_KEYS):
            raise invalid(f"set at least one of {', '.join(TRACK_KEYS)} or generic: true")
        return self


PRODUCTION_DESCRIPTION = (
    "Whether this environment is production: its deploys send change events to PagerDuty, "
    "a failed verification pages as critical, and DORA and the evidence pack count it. "
    "Default: true for the last environment of the service's list (where its promotion "
    "path ends), false for the others."
)


class Environment(ConfigModel):
    """One place a service runs: how deploys are tracked, gated, started and verified.

    `production` says whether it is production; unset, the service's last environment is.
    """

    name: Name
    production: Annotated[bool | None, Field(description=PRODUCTION_DESCRIPTION)] = None
    track: Track | None = None
    auto_promote_to: Name | None = None
    gate: GatePolicy | None = None
    deploy: Deploy | None = None
    verify: list[VerifyCheck] = []
    on_verification_failure: Literal["rollback", "notify"] = "notify"

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if self.name == "all":
            problems.append((("name",), "'all' is reserved (it means every environment)"))
        if self.on_verification_failure == "rollback" and self.deploy is None:
            problems.append(
                (
                    ("on_verification_failure",),
                    "rollback needs a deploy section to roll back through",
                )
            )
        seen: set[str] = set()
        for index, check in enumerate(self.verify):
            if check.name in seen:
                problems.append((("verify", index, "name"), f"'{check.name}' is used twice"))
            seen.add(check.name)
        if problems:
            raise problems_error(problems)
        return self


_GITHUB_REPO = re.compile(r"github:([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)")
_GITLAB_REPO = re.compile(r"gitlab:([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)")


def _check_repo(value: str) -> str:
    if not (_GITHUB_REPO.fullmatch(value) or _GITLAB_REPO.fullmatch(value)):
        raise invalid(f"'{value}' must look like 'github:owner/name' or 'gitlab:group/sub/name'")
    return value


Repo = Annotated[
    str,
    AfterValidator(_check_repo),
    WithJsonSchema({"type": "string", "pattern": r"^(github|gitlab):[^/\s]+(/[^/\s]+)+$"}),
]


class Service(ConfigModel):
    """A deployable thing, its repository and its environments in promotion order."""

    repo: Repo
    channel: SlackChannel | None = None
    owners: list[SlackPrincipal] = []
    oncall: Oncall | None = None
    markers: Markers | None = None  # deploy markers on dashboards (Grafana, Datadog, ...)
    slo: Slo | None = None  # the error budget gates and automatic promotion look at
    environments: Annotated[list[Environment], Field(min_length=1)]
    release: ReleaseFlags | None = None  # feature flags released behind their own gate

    @property
    def provider(self) -> Literal["github", "gitlab"]:
        return "gitlab" if self.repo.startswith("gitlab:") else "github"

    @property
    def repo_path(self) -> str:
        return self.repo.partition(":")[2]

    def environment(self, name: str) -> Environment | None:
        return next((env for env in self.environments if env.name == name), None)

    def is_production(self, env_name: str) -> bool:
        """Whether this environment is production: its `production` key when set, else
        whether it is the last of the list (where the promotion path ends)."""
        env = self.environment(env_name)
        if env is None:
            return False
        if env.production is not None:
            return env.production
        return env.name == self.environments[-1].name

    def release_environment(self) -> str | None:
        """Where the `release:` flags are released: its `environment`, else the service's
        first production environment (None without a `release:` block)."""
        if self.release is None:
            return None
        if self.release.environment is not None:
            return self.release.environment
        production = self.production_environments()
        return production[0] if production else self.environments[-1].name

    def production_environments(self) -> list[str]:
        """The names of its production environments, in list order."""
        return [env.name for env in self.environments if self.is_production(env.name)]

    @model_validator(mode="after")
    def _check_environments(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        names = [env.name for env in self.environments]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append((("environments", index, "name"), f"'{name}' is used twice"))
        for index, env in enumerate(self.environments):
            target = env.auto_promote_to
            at: Loc = ("environments", index, "auto_promote_to")
            if target == env.name:
                problems.append((at, "must name another environment, not itself"))
            elif target is not None and target not in names:
                problems.append(
                    (
                        at,
                        f"'{target}' is not an environment of this service"
                        f"{suggest(target, names)} (it has {quoted_list(names)})",
                    )
                )
        problems.extend(_slo_problems(self))
        released = self.release.environment if self.release is not None else None
        if released is not None and released not in names:
            problems.append(
                (
                    ("release", "environment"),
                    f"'{released}' is not an environment of this service"
                    f"{suggest(released, names)} (it has {quoted_list(names)})",
                )
            )
        loop = _promotion_loop(self.environments)
        if loop:
            index = names.index(loop[0])
            problems.append(
                (
                    ("environments", index, "auto_promote_to"),
                    f"promotions go round in a loop: {' -> '.join(loop)}",
                )
            )
        if problems:
            raise problems_error(problems)
        return self._with_slo_in_checks()

    def _with_slo_in_checks(self) -> Self:
        """The burn-rate checks carry the service's SLO, for their runner."""
        if self.slo is None:
            return self
        slo = self.slo
        environments = [
            env.model_copy(
                update={
                    "verify": [
                        check.model_copy(
                            update={
                                "burn_rate": type(check.burn_rate).model_validate(
                                    burn_rate_with(check.burn_rate, slo)
                                )
                            }
                        )
                        if check.burn_rate is not None
                        else check
                        for check in env.verify
                    ]
                }
            )
            for env in self.environments
        ]
        return self.model_copy(update={"environments": environments})


def _slo_problems(service: Service) -> list[tuple[Loc, str]]:
    """Burn-rate checks and error-budget gates need the service's slo."""
    if service.slo is not None:
        return []
    problems: list[tuple[Loc, str]] = []
    for index, env in enumerate(service.environments):
        if env.gate is not None and env.gate.by_error_budget is not None:
            at: Loc = ("environments", index, "gate", "by_error_budget")
            problems.append((at, "needs the service's slo (where the error budget comes from)"))
        for number, check in enumerate(env.verify):
            if check.burn_rate is not None:
                at = ("environments", index, "verify", number, "burn_rate")
                problems.append((at, "needs the service's slo (whose burn rate to check)"))
    return problems


def _promotion_loop(environments: Sequence[Environment]) -> list[str]:
    """The first auto_promote_to cycle longer than one step, as names, or []."""
    follows = {env.name: env.auto_promote_to for env in environments}
    for start in follows:
        path = [start]
        nxt = follows.get(start)
        while nxt is not None and nxt in follows and nxt not in path:
            path.append(nxt)
            nxt = follows.get(nxt)
        if nxt == start and len(path) > 1:
            return [*path, start]
    return []
