"""The schema of `releasebot.yaml`, and loading it with every problem reported by YAML path.

    config = load_config("releasebot.yaml")      # or parse_config(already_parsed_data)
    found = config.service_for_repo("github", "acme/checkout")   # (name, Service) | None
    config.channel_for("checkout")                               # "#checkout-deploys"

Every model is frozen and refuses unknown keys. Validation never stops at the first problem
when it can go on: `ConfigError.problems` lists them all, each as `"<yaml path>: <message>"`,
for example `services.checkout.environments[1].gate.approvals: must be >= 1`.

The schema, by section: `slack` (slack:, identities:), `risk`, `gates` (gate policies,
scheduled freezes, break-glass), `deploy`, `checks` (verify:), `services` (services, their
environments and on-call) and `document` (the whole file); field types live in `types`.
`loading` reads the YAML and renders the problems; `messages` words pydantic's errors.
"""

from __future__ import annotations

from bot.config.checks import HttpCheck, PrometheusCheck, VerifyCheck
from bot.config.deploy import (
    ArgoCDDeploy,
    Deploy,
    GithubWorkflowDeploy,
    GitlabDeploymentApproval,
    GitlabTrigger,
    JenkinsDeploy,
    WebhookDeploy,
)
from bot.config.document import Config
from bot.config.gates import BreakGlass, GatePolicy, QuorumRule, RiskGate, ScheduledFreeze
from bot.config.loading import config_json_schema, load_config, parse_config
from bot.config.risk import BusinessHours, RiskConfig, RiskLevelName, RiskLevels
from bot.config.services import Environment, Oncall, OpsgenieOncall, PagerDutyOncall, Service, Track
from bot.config.slack import Identity, SlackConfig
from bot.config.types import Duration, format_duration, parse_duration

__all__ = [
    "ArgoCDDeploy",
    "BreakGlass",
    "BusinessHours",
    "Config",
    "Deploy",
    "Duration",
    "Environment",
    "GatePolicy",
    "GithubWorkflowDeploy",
    "GitlabDeploymentApproval",
    "GitlabTrigger",
    "HttpCheck",
    "Identity",
    "JenkinsDeploy",
    "Oncall",
    "OpsgenieOncall",
    "PagerDutyOncall",
    "PrometheusCheck",
    "QuorumRule",
    "RiskConfig",
    "RiskGate",
    "RiskLevelName",
    "RiskLevels",
    "ScheduledFreeze",
    "Service",
    "SlackConfig",
    "Track",
    "VerifyCheck",
    "WebhookDeploy",
    "config_json_schema",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]
