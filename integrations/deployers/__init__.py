"""Deployers: `bot.ports.Deployer` for each way an environment deploys (its `deploy:` section).

    deployers = build_deployers(settings, secret_lookup=os.environ.get)   # registry.py
    result = await deployers[request.kind].execute(request)
    await close_all(deployers)

| kind                         | module               | class                              |
|------------------------------|----------------------|------------------------------------|
| github_protection_rule       | github_protection.py | `GitHubProtectionRuleDeployer`     |
| github_workflow              | github_workflow.py   | `GitHubWorkflowDeployer`           |
| gitlab_deployment_approval   | gitlab_approval.py   | `GitLabApprovalDeployer`           |
| gitlab_trigger               | gitlab_approval.py   | `GitLabTriggerDeployer`            |
| argocd                       | argocd.py            | `ArgoCDDeployer`                   |
| jenkins                      | jenkins.py           | `JenkinsDeployer`                  |
| webhook                      | webhook.py           | `WebhookDeployer`                  |

Every deployer takes its `httpx.AsyncClient` and its credentials in the constructor (none of
them reads `os.environ`; secrets a target names by environment variable come through a
`SecretLookup`), sends every call through `integrations.http.request_with_retries` and raises
`bot.domain.errors.DeliveryFailed`: retryable for network errors, 5xx and rate limits (with
`retry_after` when the provider said how long), not retryable for other 4xx, with the
provider's own message. Reasons never carry a token, a trigger token or a signing secret.

Calls that start something and are not idempotent (workflow dispatch, pipeline trigger,
Jenkins build) are sent once (`attempts=1`); each module says what it does when the answer
is lost. `aclose()` closes the client a deployer was given.

This module holds the small helpers the deployers share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest

__all__ = [
    "DEPLOY_REF",
    "SecretLookup",
    "SecretSource",
    "deploy_ref",
    "decision_comment",
    "explained",
    "is_ambiguous",
    "json_object",
    "lookup_from",
    "opt_str",
    "refused",
    "relative_to_base",
    "require_action",
    "require_context",
    "require_target",
    "secret_value",
    "short_sha",
]

SecretLookup = Callable[[str], str | None]
"""`name -> value or None`: how a deployer reads a secret named by an environment variable."""

SecretSource = SecretLookup | Mapping[str, str]
"""A `SecretLookup`, or a mapping of already-resolved environment values."""

COMMENT_MAX_CHARS = 1024
"""GitHub caps protection-rule comments at 1024 characters; GitLab's limit is larger."""


def lookup_from(source: SecretSource) -> SecretLookup:
    """A `SecretLookup` from a callable or a `{name: value}` mapping; empty means unset."""
    if isinstance(source, Mapping):
        values = dict(source)

        def from_mapping(name: str) -> str | None:
            return values.get(name) or None

        return from_mapping

    def from_callable(name: str) -> str | None:
        return source(name) or None

    return from_callable


def refused(reason: str, *, status: int | None = None) -> DeliveryFailed:
    """A failure no retry can fix (bad config, a refused decision)."""
    return DeliveryFailed(reason, retryable=False, status=status)


def secret_value(lookup: SecretLookup, name: str, what: str) -> str:
    """The secret in environment variable `name`, or a non-retryable failure naming it."""
    value = (lookup(name) or "").strip()
    if not value:
        raise refused(f"environment variable {name} is not set ({what})")
    return value


DEPLOY_REF = "deploy_ref"
"""The context key of the branch or tag a deploy from chat (`/release deploy`) names."""


def deploy_ref(request: DeployRequest) -> str | None:
    """The branch or tag a deploy from chat asked for (None for a commit sha, and for
    every other call): the deployer deploys that ref."""
    value = request.context.get(DEPLOY_REF)
    return value.strip() or None if isinstance(value, str) else None


def require_action(request: DeployRequest, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if request.action not in allowed:
        raise refused(
            f"the {request.kind} deployer cannot {request.action!r}: "
            f"it can only {' or '.join(allowed)}"
        )


def require_target(request: DeployRequest, key: str) -> str:
    """A non-empty string from the environment's `deploy.<kind>` section."""
    value = request.target.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise refused(f"deploy.{request.kind}.{key} is not set for {request.service}")
    return value.strip()


def require_context(request: DeployRequest, key: str, where: str) -> Any:
    """A value the webhook left in `request.context`; `where` says which webhook."""
    value = request.context.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise refused(f"{request.kind}: the request has no {key} (it comes from {where})")
    return value


def short_sha(sha: str) -> str:
    return sha[:7] if len(sha) >= 40 else sha


def decision_comment(request: DeployRequest) -> str:
    """`Approved in Slack by <actor>: <reason>` (or `Rejected ...`), capped at 1024 characters."""
    verb = "Approved" if request.action == "approve" else "Rejected"
    text = f"{verb} in Slack by {request.actor or 'an unknown user'}"
    if request.reason and request.reason.strip():
        text += f": {request.reason.strip()}"
    if len(text) > COMMENT_MAX_CHARS:
        text = text[: COMMENT_MAX_CHARS - 3] + "..."
    return text


def is_ambiguous(failure: DeliveryFailed) -> bool:
    """The call may have been carried out: no answer (network, timeout), a 408 or a 5xx."""
    return failure.retryable and (
        failure.status is None or failure.status >= 500 or failure.status == 408
    )


def explained(failure: DeliveryFailed, explanations: Mapping[int, str]) -> DeliveryFailed:
    """`failure` with what its (non-retryable) status means for the user appended."""
    if failure.retryable or failure.status is None or failure.status not in explanations:
        return failure
    return DeliveryFailed(
        f"{failure.reason} ({explanations[failure.status]})",
        retryable=False,
        retry_after=failure.retry_after,
        status=failure.status,
    )


def relative_to_base(client: httpx.AsyncClient, url: str) -> str | None:
    """`url` as a path relative to the client's base URL, or None when it lies elsewhere.

    Same scheme, host and port, a path under the base path, no user info and no `.`/`..`
    segments: anything else would carry the client's credentials to a host nobody chose.
    The query string is kept.
    """
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    base = client.base_url
    if not target.is_absolute_url or target.userinfo:
        return None
    if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
        return None
    base_path = base.raw_path.decode("ascii").split("?", 1)[0]
    if not base_path.endswith("/"):
        base_path += "/"
    path = target.raw_path.decode("ascii").split("?", 1)[0]
    if not path.startswith(base_path):
        return None
    rest = path[len(base_path) :]
    if any(part in (".", "..") or part.lower() in ("%2e", "%2e%2e") for part in rest.split("/")):
        return None
    query = f"?{target.query.decode('ascii')}" if target.query else ""
    return "/" + rest + query


def json_object(response: httpx.Response, what: str) -> Mapping[str, Any]:
    """The reply as a JSON object; a garbled reply is worth another try, a wrong shape is not."""
    try:
        data: Any = response.json()
    except ValueError:
        raise DeliveryFailed(
            f"{what}: the reply is not JSON", retryable=True, status=response.status_code
        ) from None
    if not isinstance(data, Mapping):
        raise refused(f"{what}: the reply is not a JSON object", status=response.status_code)
    return data


def opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
