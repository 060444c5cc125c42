"""The deployers the process can use, by kind, built from `Settings`.

    deployers = build_deployers(settings, secret_lookup=os.environ.get)
    ...
    await close_all(deployers)

A kind is present only when its credentials are configured:

| kind                       | needs                                                      |
|----------------------------|------------------------------------------------------------|
| github_protection_rule     | GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY                     |
| github_workflow            | the GitHub App, else GITHUB_TOKEN                          |
| gitlab_deployment_approval | GITLAB_TOKEN                                               |
| gitlab_trigger             | nothing here (each target's `token_env`, read per call)    |
| argocd                     | ARGOCD_URL + ARGOCD_TOKEN                                  |
| jenkins                    | `jenkins_url`, and `jenkins_user` + `jenkins_api_token`    |
|                            | unless every target names its own (`user_env`/`token_env`) |
| webhook                    | nothing here (each target's `secret_env`, read per call)   |

Settings has no Jenkins fields yet: until it does, the caller passes `jenkins_url`,
`jenkins_user` and `jenkins_api_token` (JENKINS_URL, JENKINS_USER, JENKINS_API_TOKEN).
Half a GitHub App (an ID without a key, or the reverse) or a Jenkins user without a token
raises `ValueError`, like the other `*_from_settings` builders. Each deployer gets its own
`httpx.AsyncClient` (`transport` is the test seam) and closes it in `aclose`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import httpx
from pydantic import SecretStr

from bot.ports import Deployer
from bot.settings import Settings
from integrations.deployers import SecretLookup
from integrations.deployers.argocd import ArgoCDDeployer
from integrations.deployers.github_protection import GitHubProtectionRuleDeployer
from integrations.deployers.github_workflow import GitHubWorkflowDeployer
from integrations.deployers.gitlab_approval import GitLabApprovalDeployer, GitLabTriggerDeployer
from integrations.deployers.jenkins import JenkinsDeployer
from integrations.deployers.webhook import WebhookDeployer
from integrations.errors import CredentialsError
from integrations.github.client import GITHUB_HEADERS, GitHubAppAuth
from integrations.http import RetryPolicy, make_client

__all__ = ["build_deployers", "close_all"]


@runtime_checkable
class _Closeable(Protocol):
    async def aclose(self) -> None: ...


def build_deployers(
    settings: Settings,
    *,
    secret_lookup: SecretLookup,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    jenkins_url: str | None = None,
    jenkins_user: str | None = None,
    jenkins_api_token: str | None = None,
) -> dict[str, Deployer]:
    """`{kind: Deployer}` for every kind whose credentials are configured (see the module doc)."""
    deployers: dict[str, Deployer] = {}

    app_id = (settings.github_app_id or "").strip()
    app_key = _secret(settings.github_app_private_key)
    github_token = _secret(settings.github_token)
    if bool(app_id) != bool(app_key):
        raise CredentialsError("GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY must be set together")
    if app_id:
        app = GitHubAppAuth(app_id, app_key, retry=retry)
        deployers["github_protection_rule"] = GitHubProtectionRuleDeployer(
            _github_client(settings, transport), app, retry=retry
        )
        deployers["github_workflow"] = GitHubWorkflowDeployer(
            _github_client(settings, transport), app, retry=retry
        )
    elif github_token:
        deployers["github_workflow"] = GitHubWorkflowDeployer(
            _github_client(settings, transport), github_token, retry=retry
        )

    gitlab_token = _secret(settings.gitlab_token)
    if gitlab_token:
        deployers["gitlab_deployment_approval"] = GitLabApprovalDeployer(
            _gitlab_client(settings, transport), gitlab_token, retry=retry
        )
    deployers["gitlab_trigger"] = GitLabTriggerDeployer(
        _gitlab_client(settings, transport), secret_lookup, retry=retry
    )

    argocd_url = (settings.argocd_url or "").strip()
    argocd_token = _secret(settings.argocd_token)
    if argocd_url and argocd_token:
        client = make_client(
            argocd_url, headers={"Accept": "application/json"}, transport=transport
        )
        deployers["argocd"] = ArgoCDDeployer(client, argocd_token, retry=retry)

    user = (jenkins_user or "").strip() or None
    api_token = (jenkins_api_token or "").strip() or None
    if bool(user) != bool(api_token):
        raise CredentialsError("JENKINS_USER and JENKINS_API_TOKEN must be set together")
    if jenkins_url and jenkins_url.strip():
        client = make_client(
            jenkins_url.strip(), headers={"Accept": "application/json"}, transport=transport
        )
        deployers["jenkins"] = JenkinsDeployer(
            client, user, api_token, secrets=secret_lookup, retry=retry
        )

    deployers["webhook"] = WebhookDeployer(
        make_client("", transport=transport), secret_lookup, retry=retry
    )
    return deployers


async def close_all(deployers: Mapping[str, Deployer]) -> None:
    """Close every deployer's HTTP client (each once), even when one of them fails to close."""
    seen: set[int] = set()
    errors: list[BaseException] = []
    for deployer in deployers.values():
        if id(deployer) in seen or not isinstance(deployer, _Closeable):
            continue
        seen.add(id(deployer))
        try:
            await deployer.aclose()
        except Exception as error:  # the one catch-all: close the rest, then raise it again
            errors.append(error)
    if errors:
        raise errors[0]


def _github_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    return make_client(settings.github_api_url, headers=dict(GITHUB_HEADERS), transport=transport)


def _gitlab_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    return make_client(
        settings.gitlab_api_url, headers={"Accept": "application/json"}, transport=transport
    )


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""
