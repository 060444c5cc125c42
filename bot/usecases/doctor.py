"""`releasebot doctor`: what stands between this configuration and a working bot.

    findings = await diagnose(Patient(settings=..., config=..., environ=os.environ,
                                      slack=web_client, apis={"github": github}, db=db,
                                      migrations_head=migrate.head()))

Each check is a small function returning findings (`bot.domain.findings`); nothing here
prints. The checks:

- Slack (`bot.usecases.doctor_slack`): the bot token, its scopes, membership of every
  configured channel (joining public ones when allowed) and the configured user groups.
  With no bot token the local sandbox stands in for Slack and these do not apply.
- Secrets: each provider the config uses has its webhook secret, each deploy target and
  pager its credentials, each feature flag of a `release:` block its platform's token (or
  its webhook's signing secret) and each dashboard under `markers:` its API key (and
  Grafana its URL), named by the settings or by the config's `*_env` keys. Only the names
  of variables are ever reported, never their values.
- APIs: each code host the config uses whose credentials are set answers
  (`check_access`: GitHub's `/rate_limit` or `/app`, GitLab's `/version`).
- The database answers and its migrations are at head (the readiness check of `/readyz`).

The same checks run once in the background when the app starts, and their findings are
logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bot.config import Config, Track
from bot.domain.findings import Finding, failed, not_applicable, passed
from bot.services import health
from bot.settings import Settings
from bot.store.db import Database
from bot.usecases.doctor_slack import SlackWebApi, slack_findings

__all__ = [
    "ApiProbe",
    "Patient",
    "api_findings",
    "database_findings",
    "diagnose",
    "log_findings",
    "secret_findings",
]

CHECK_TIMEOUT_SECONDS = 30.0
"""The longest one group of checks may take before it is reported as not answering."""

# Webhook secrets, by the `track:` key (or repository provider) whose events they sign.
_WEBHOOK_SECRETS = {
    "github": "GITHUB_WEBHOOK_SECRET",
    "gitlab": "GITLAB_WEBHOOK_TOKEN",
    "argocd_app": "ARGOCD_WEBHOOK_SECRET",
    "jenkins_job": "JENKINS_WEBHOOK_SECRET",
    "generic": "RELEASEBOT_GENERIC_WEBHOOK_SECRET",
}
_SOURCE = {
    "github": "GitHub",
    "gitlab": "GitLab",
    "argocd_app": "Argo CD",
    "jenkins_job": "Jenkins",
    "generic": "generic",
}
_SETTING_OF = {
    "GITHUB_WEBHOOK_SECRET": "github_webhook_secret",
    "GITLAB_WEBHOOK_TOKEN": "gitlab_webhook_token",
    "ARGOCD_WEBHOOK_SECRET": "argocd_webhook_secret",
    "JENKINS_WEBHOOK_SECRET": "jenkins_webhook_secret",
    "RELEASEBOT_GENERIC_WEBHOOK_SECRET": "generic_webhook_secret",
    "GITLAB_TOKEN": "gitlab_token",
    "ARGOCD_URL": "argocd_url",
    "ARGOCD_TOKEN": "argocd_token",
    "JENKINS_URL": "jenkins_url",
    "JENKINS_USER": "jenkins_user",
    "JENKINS_API_TOKEN": "jenkins_api_token",
    "GITHUB_TOKEN": "github_token",
    "GITHUB_APP_ID": "github_app_id",
    "GITHUB_APP_PRIVATE_KEY": "github_app_private_key",
}


class ApiProbe(Protocol):
    """A code host's client that can tell whether its API answers with our credentials."""

    async def check_access(self) -> str: ...


@dataclass(frozen=True)
class Patient:
    """What doctor examines: the settings, the config and the clients built for them.

    `slack` is the bot's Web API client, None when the sandbox stands in for Slack; `apis`
    the code hosts' clients by provider (only those whose credentials are set); `db` None
    when the database could not even be opened (`db_error` says why).
    """

    settings: Settings
    config: Config
    environ: Mapping[str, str]
    slack: SlackWebApi | None
    apis: Mapping[str, ApiProbe] = field(default_factory=dict)
    db: Database | None = None
    db_error: str | None = None
    migrations_head: str | None = None


async def diagnose(patient: Patient) -> list[Finding]:
    """Every check, in a fixed order: Slack, secrets, APIs, database."""
    findings: list[Finding] = []
    findings += await _bounded("slack", _slack_checks(patient))
    findings += secret_findings(patient.config, patient.settings, patient.environ)
    findings += await _bounded("apis", api_findings(patient.config, patient.apis))
    findings += await _bounded(
        "database", database_findings(patient.db, patient.migrations_head, patient.db_error)
    )
    return findings


async def log_findings(patient: Patient, log: logging.Logger) -> None:
    """Run every check and log each finding: problems as warnings with their fix."""
    try:
        findings = await diagnose(patient)
    except Exception:  # a fault in a check must never reach the running bot
        log.exception("start-up checks could not run")
        return
    for finding in findings:
        if finding.ok:
            log.info("check %s: ok%s", finding.check, f" ({finding.note})" if finding.note else "")
        else:
            log.warning("check %s: %s; fix: %s", finding.check, finding.problem, finding.fix)


async def _bounded(check: str, checks: Awaitable[list[Finding]]) -> list[Finding]:
    try:
        return await asyncio.wait_for(checks, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return [
            failed(
                check,
                f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s",
                "check that this host reaches the service, then run doctor again",
            )
        ]


async def _slack_checks(patient: Patient) -> list[Finding]:
    settings = patient.settings
    if settings.slack_app_token is not None and settings.slack_bot_token is None:
        return [
            failed(
                "slack.token",
                "SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not: Socket Mode needs both",
                "set SLACK_BOT_TOKEN to the bot's xoxb- token, or unset SLACK_APP_TOKEN to "
                "run with the local Slack sandbox",
            )
        ]
    if patient.slack is None or settings.slack_bot_token is None:
        return [
            not_applicable(
                "slack",
                "SLACK_BOT_TOKEN is not set, so the local Slack sandbox at "
                f"{settings.public_url.rstrip('/')}/sandbox will be used",
            )
        ]
    findings = [_signing_secret(settings)]
    findings += await slack_findings(patient.slack, patient.config)
    return findings


def _signing_secret(settings: Settings) -> Finding:
    check = "slack.signing_secret"
    if settings.slack_socket_mode:
        return passed(check, "Socket Mode: Slack's requests arrive over the bot's own socket")
    if settings.slack_signing_secret is None:
        return failed(
            check,
            "SLACK_SIGNING_SECRET is not set, so /slack/events refuses every request from Slack",
            "copy the Signing Secret from the app's Basic Information page into "
            "SLACK_SIGNING_SECRET",
        )
    return passed(check, "set")


# ---- secrets -----------------------------------------------------------------------------------


@dataclass
class _Need:
    """An environment variable some part of the config needs, and where."""

    variable: str
    what: str
    where: list[str] = field(default_factory=list)
    alternative: str | None = None  # another variable that does the job as well


def _needs(config: Config) -> dict[str, _Need]:
    needs: dict[str, _Need] = {}

    def need(variable: str, what: str, where: str, alternative: str | None = None) -> None:
        found = needs.setdefault(variable, _Need(variable, what, alternative=alternative))
        if where not in found.where:
            found.where.append(where)

    for name, service in config.services.items():
        if service.oncall is not None:
            at = f"services.{name}.oncall"
            if service.oncall.pagerduty is not None:
                need(service.oncall.pagerduty.routing_key_env, "the PagerDuty routing key", at)
                if service.oncall.pagerduty.escalation_policy is not None:
                    what = "the PagerDuty REST API key (who is on call now)"
                    need(service.oncall.pagerduty.api_token_env, what, at)
            if service.oncall.opsgenie is not None:
                need(service.oncall.opsgenie.api_key_env, "the Opsgenie API key", at)
        for index, env in enumerate(service.environments):
            at = f"services.{name}.environments[{index}]"
            for key in _webhook_keys(service.provider, env.track):
                secret = _WEBHOOK_SECRETS[key]
                need(secret, f"the secret of the {_SOURCE[key]} webhooks", f"{at}.track")
            if env.deploy is not None:
                _deploy_needs(env.deploy.kind, env.deploy.target, f"{at}.deploy", need)
        if service.release is not None:
            for index, flag in enumerate(service.release.flags):
                at = f"services.{name}.release.flags[{index}]"
                _platform_needs(flag, _FLAG_CREDENTIALS, at, need)
        if service.markers is not None:
            at = f"services.{name}.markers"
            _platform_needs(service.markers, _MARKER_CREDENTIALS, at, need)
    return needs


def _webhook_keys(provider: str, track: Track | None) -> list[str]:
    if track is None:
        return [provider]  # events arrive from the repository's host, matched by name
    keys = []
    if track.github_workflow or track.github_environment:
        keys.append("github")
    if track.gitlab_environment:
        keys.append("gitlab")
    keys += [key for key in ("argocd_app", "jenkins_job") if getattr(track, key)]
    if track.generic:
        keys.append("generic")
    return keys


def _deploy_needs(kind: str, target: object, at: str, need: Callable[..., None]) -> None:
    if kind == "github_workflow":
        what = "GitHub credentials to start workflows (a token, or the GitHub App)"
        need("GITHUB_TOKEN", what, at, alternative="GITHUB_APP_ID")
    elif kind == "gitlab_deployment_approval":
        need("GITLAB_TOKEN", "a GitLab token (api scope) to approve deployments", at)
    elif kind == "argocd":
        need("ARGOCD_URL", "the Argo CD server's URL", at)
        need("ARGOCD_TOKEN", "an Argo CD token to sync applications", at)
    elif kind == "jenkins":
        need("JENKINS_URL", "the Jenkins server's URL", at)
    named = {
        "token_env": "the deploy target's token",
        "user_env": "the deploy target's user",
        "secret_env": "the secret that signs the deploy target's requests",
    }
    for key, what in named.items():
        variable = getattr(target, key, None)
        if isinstance(variable, str) and variable:
            need(variable, what, f"{at}.{kind}.{key}")


# The variables a flag platform (`release.flags[]`) or a dashboard (`markers:`) is reached
# with: (its block, the key naming the variable, what the variable holds).
_FLAG_CREDENTIALS = (
    ("launchdarkly", "api_key_env", "the LaunchDarkly API access token that changes the flag"),
    (
        "unleash",
        "token_env",
        "the Unleash admin (or personal access) token that changes the toggle",
    ),
    ("webhook", "secret_env", "the secret that signs the flag webhook's requests"),
)
_MARKER_CREDENTIALS = (
    ("grafana", "url_env", "the Grafana server's URL"),
    ("grafana", "token_env", "the Grafana service account token that writes annotations"),
    ("datadog", "api_key_env", "the Datadog API key that posts events"),
    ("newrelic", "api_key_env", "the New Relic user API key that records deployments"),
)


def _platform_needs(
    block: object,
    credentials: tuple[tuple[str, str, str], ...],
    at: str,
    need: Callable[..., None],
) -> None:
    """The variables of each platform set in `block` (a flag, or a service's markers)."""
    for platform, key, what in credentials:
        settings = getattr(block, platform, None)
        if settings is not None:
            need(getattr(settings, key), what, f"{at}.{platform}.{key}")


def _is_set(variable: str, settings: Settings, environ: Mapping[str, str]) -> bool:
    setting = _SETTING_OF.get(variable)
    if setting is not None:
        value = getattr(settings, setting)
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        return bool(text and str(text).strip())
    return bool(environ.get(variable, "").strip())


def secret_findings(
    config: Config, settings: Settings, environ: Mapping[str, str]
) -> list[Finding]:
    """One finding per environment variable the config needs: set, or where it is needed."""
    findings: list[Finding] = []
    for need in _needs(config).values():
        check = f"env {need.variable}"
        places = ", ".join(need.where)
        if _is_set(need.variable, settings, environ):
            findings.append(passed(check, f"set (for {places})"))
        elif need.alternative and _is_set(need.alternative, settings, environ):
            findings.append(passed(check, f"{need.alternative} is set instead (for {places})"))
        else:
            name = need.variable + (f" (or {need.alternative})" if need.alternative else "")
            findings.append(
                failed(
                    check,
                    f"{name} is not set: it holds {need.what}, needed by {places}",
                    f"set {name} in the bot's environment (from a secret store, never in the YAML)",
                )
            )
    return findings + _half_credentials(settings)


def _half_credentials(settings: Settings) -> list[Finding]:
    pairs = (("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY"), ("JENKINS_USER", "JENKINS_API_TOKEN"))
    findings = []
    for first, second in pairs:
        one, other = _is_set(first, settings, {}), _is_set(second, settings, {})
        if one != other:
            missing = second if one else first
            findings.append(
                failed(
                    f"env {missing}",
                    f"{first} and {second} work only together, and {missing} is not set",
                    f"set {missing}, or unset {second if missing == first else first}",
                )
            )
    return findings


# ---- the code hosts' APIs ----------------------------------------------------------------------


async def api_findings(config: Config, apis: Mapping[str, ApiProbe]) -> list[Finding]:
    """Each code host the config's services use answers with the credentials set for it."""
    used = sorted({service.provider for service in config.services.values()})
    findings: list[Finding] = []
    for provider in used:
        check = f"api {provider}"
        probe = apis.get(provider)
        if probe is None:
            findings.append(
                passed(check, "no API credentials set: releases are shown without their commits")
            )
            continue
        try:
            note = await probe.check_access()
        except Exception as exc:  # any failure to get an answer is what this check reports
            findings.append(
                failed(
                    check,
                    f"the {provider} API did not answer as expected: {exc}",
                    _API_FIX[provider],
                )
            )
            continue
        findings.append(passed(check, note))
    return findings


_API_FIX = {
    "github": "check GITHUB_API_URL and the credentials (GITHUB_TOKEN, or GITHUB_APP_ID with "
    "GITHUB_APP_PRIVATE_KEY), and that this host reaches GitHub",
    "gitlab": "check GITLAB_API_URL and GITLAB_TOKEN (read_api scope), and that this host "
    "reaches GitLab",
}


# ---- the database ------------------------------------------------------------------------------


async def database_findings(
    db: Database | None, migrations_head: str | None, db_error: str | None = None
) -> list[Finding]:
    """The database answers and its schema is at the newest migration."""
    fix = "check RELEASEBOT_DATABASE_URL and that the database server is up and reachable"
    if db is None:
        return [failed("database", f"cannot open the database: {db_error or 'unknown'}", fix)]
    report = await asyncio.to_thread(health.readiness, db, expected_head=migrations_head)
    if report.get("ready"):
        outbox = report.get("outbox") or {}
        return [
            passed(
                "database",
                f"at migration {report.get('migration')}; outbox: {outbox.get('pending', 0)} "
                f"pending, {outbox.get('dead', 0)} dead",
            )
        ]
    reason = str(report.get("reason") or "not ready")
    if reason.startswith("database unreachable"):
        return [failed("database", reason, fix)]
    return [
        failed(
            "database.migrations",
            reason.split(": run ", 1)[0],
            "run `releasebot db upgrade` (serve also upgrades when it starts)",
        )
    ]
