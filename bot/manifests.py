"""The Slack app manifest and the GitHub App manifest releasebot needs, built from data.

    slack = slack_manifest(url="https://bot.example.com", slash_command="/release")
    socket = slack_manifest(url=None, slash_command="/release", socket_mode=True)
    github = github_manifest(url="https://bot.example.com")

Both are plain dicts ready for `json.dumps`. What goes in them is derived from the tables
below, one row per Slack Web API method, Slack event, GitHub REST endpoint and GitHub
webhook event releasebot uses, each with the scope or permission it needs and why. The
tests hold these tables to the code: a Web API method or REST endpoint the code calls that
is missing here fails them.

Pure: no I/O, no network, no settings.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from bot.blocks.commands import SUBCOMMANDS

__all__ = [
    "GITHUB_ENDPOINTS",
    "GITHUB_EVENTS",
    "GITHUB_PERMISSION_LEVELS",
    "SLACK_EVENTS",
    "SLACK_METHODS",
    "SLACK_SLASH_COMMAND_SCOPE",
    "GitHubEndpoint",
    "GitHubEvent",
    "SlackEvent",
    "SlackMethod",
    "github_manifest",
    "github_permissions",
    "github_registration_page",
    "github_web_url",
    "slack_bot_scopes",
    "slack_manifest",
]

SLACK_EVENTS_PATH: Final = "/slack/events"
GITHUB_WEBHOOK_PATH: Final = "/webhooks/github"
DEFAULT_NAME: Final = "releasebot"


@dataclass(frozen=True)
class SlackMethod:
    """A Slack Web API method releasebot calls, the bot scopes it needs, and why it calls it."""

    method: str
    scopes: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class SlackEvent:
    """An Events API event releasebot listens to, the bot scopes it needs, and why."""

    event: str
    scopes: tuple[str, ...]
    why: str


SLACK_METHODS: Final[tuple[SlackMethod, ...]] = (
    SlackMethod(
        "chat.postMessage",
        ("chat:write",),
        "posts each deployment's message and its thread replies, the weekly DORA digest, "
        "slash-command announcements, direct answers to clicks on the Home tab and direct "
        "messages to approvers when a gate escalates (the channel is their user id)",
    ),
    SlackMethod(
        "chat.update",
        ("chat:write",),
        "edits a deployment's message in place as it moves through its states",
    ),
    SlackMethod(
        "conversations.history",
        ("channels:history", "groups:history"),
        "when a post's answer was lost (a crash, a timeout, the database down), looks for it "
        "in the channel by its message metadata before posting again, so it appears once",
    ),
    SlackMethod(
        "conversations.replies",
        ("channels:history", "groups:history"),
        "the same for a thread line whose answer was lost: looks for it in the thread first",
    ),
    SlackMethod(
        "chat.postEphemeral",
        ("chat:write",),
        "answers a button click or a slash command only to the person who made it",
    ),
    SlackMethod(
        "users.info",
        ("users:read", "users:read.email"),
        "reads a person's name and e-mail address, which the self-approval ban matches "
        "against commit authors",
    ),
    SlackMethod(
        "users.lookupByEmail",
        ("users:read.email",),
        "finds the Slack user of each person PagerDuty says is on call, to mention them",
    ),
    SlackMethod(
        "usergroups.users.list",
        ("usergroups:read",),
        "resolves approver, owner and on-call user groups to their members",
    ),
    SlackMethod(
        "views.open",
        (),
        "opens the modals that ask for a reason (reject, roll back, break-glass)",
    ),
    SlackMethod("views.publish", (), "publishes each person's Home tab"),
    SlackMethod(
        "auth.test",
        (),
        "Bolt asks once who the bot is; `releasebot doctor` reads the token's scopes from it",
    ),
    SlackMethod(
        "users.conversations",
        ("channels:read", "groups:read"),
        "`releasebot doctor` lists the public and private channels the bot is in, to find "
        "configured channels it cannot post to",
    ),
    SlackMethod(
        "conversations.list",
        ("channels:read", "groups:read"),
        "finds the id of a channel configured by `#name` (once per process), which "
        "`conversations.history` and `conversations.replies` need to look for a post whose "
        "answer was lost; `releasebot doctor` finds the id of a configured public channel "
        "the bot is not in",
    ),
    SlackMethod(
        "conversations.join",
        ("channels:join",),
        "`releasebot doctor` (and start-up) joins configured public channels the bot is not in",
    ),
)
"""Every Slack Web API method the code calls (the `say` of a Bolt listener is chat.postMessage)."""

SLACK_EVENTS: Final[tuple[SlackEvent, ...]] = (
    SlackEvent("app_home_opened", (), "builds the Home tab when someone opens it"),
    SlackEvent(
        "app_mention",
        ("app_mentions:read",),
        "answers a mention of the bot with a pointer to the slash command's help",
    ),
)
"""Every event the Bolt app listens to."""

SLACK_SLASH_COMMAND_SCOPE: Final = SlackMethod(
    "(slash command)", ("commands",), "receives the slash command (`/release` by default)"
)

SLASH_COMMAND_DESCRIPTION: Final = (
    "Releases: status, history, approvals, promote, rollback, freezes, DORA metrics"
)
SLASH_COMMAND_USAGE: Final = " | ".join(SUBCOMMANDS)


def slack_bot_scopes() -> list[str]:
    """The bot token scopes the methods, events and slash command need, sorted, once each."""
    scopes = {scope for row in SLACK_METHODS for scope in row.scopes}
    scopes.update(scope for row in SLACK_EVENTS for scope in row.scopes)
    scopes.update(SLACK_SLASH_COMMAND_SCOPE.scopes)
    return sorted(scopes)


def slack_manifest(
    *,
    url: str | None,
    slash_command: str = "/release",
    socket_mode: bool = False,
    name: str = DEFAULT_NAME,
) -> dict[str, Any]:
    """The app manifest for Slack's "Create an app > From a manifest" (JSON).

    Over HTTP every request URL is `<url>/slack/events` (slash command, interactivity and
    events share the one route); in Socket Mode there are no request URLs at all.
    """
    if not socket_mode and not url:
        raise ValueError("a public URL is needed unless the app uses Socket Mode")
    request_url = None if socket_mode else f"{_base(url or '')}{SLACK_EVENTS_PATH}"
    command: dict[str, Any] = {
        "command": slash_command,
        "description": SLASH_COMMAND_DESCRIPTION,
        "usage_hint": SLASH_COMMAND_USAGE,
        "should_escape": False,
    }
    interactivity: dict[str, Any] = {"is_enabled": True}
    events: dict[str, Any] = {"bot_events": sorted(row.event for row in SLACK_EVENTS)}
    if request_url is not None:
        command["url"] = request_url
        interactivity["request_url"] = request_url
        events["request_url"] = request_url
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "Deployments, approvals and rollbacks in Slack",
            "background_color": "#1d3b53",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": slack_bot_scopes()}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


@dataclass(frozen=True)
class GitHubEndpoint:
    """A GitHub REST endpoint releasebot calls and the App permission it needs.

    `permission` is None for the App's own endpoints, which take the App's JWT and need no
    repository permission. `path` names its parameters in braces, as GitHub's docs do.
    """

    method: str
    path: str
    permission: str | None
    access: str | None
    why: str


@dataclass(frozen=True)
class GitHubEvent:
    """A webhook event releasebot handles and the App permission that makes GitHub send it."""

    event: str
    permission: str
    why: str


GITHUB_ENDPOINTS: Final[tuple[GitHubEndpoint, ...]] = (
    GitHubEndpoint(
        "GET", "/rate_limit", None, None, "`releasebot doctor` checks GitHub answers to the token"
    ),
    GitHubEndpoint(
        "GET", "/app", None, None, "`releasebot doctor` checks GitHub accepts the App's JWT"
    ),
    GitHubEndpoint(
        "POST",
        "/app/installations/{installation_id}/access_tokens",
        None,
        None,
        "trades the App's JWT for an installation token",
    ),
    GitHubEndpoint(
        "GET",
        "/repos/{owner}/{repo}/installation",
        None,
        None,
        "finds the App's installation on a repository",
    ),
    GitHubEndpoint(
        "GET",
        "/repos/{owner}/{repo}/compare/{basehead}",
        "contents",
        "read",
        "lists the commits and files a release ships",
    ),
    GitHubEndpoint(
        "GET",
        "/repos/{owner}/{repo}/commits/{ref}",
        "contents",
        "read",
        "reads the one commit of a service's first deployment",
    ),
    GitHubEndpoint(
        "GET",
        "/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
        "pull_requests",
        "read",
        "finds the pull requests that brought a release's commits in (self-approval ban)",
    ),
    GitHubEndpoint(
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        "pull_requests",
        "read",
        "reads who merged a pull request (self-approval ban)",
    ),
    GitHubEndpoint(
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        "pull_requests",
        "read",
        "reads who approved a pull request in review (self-approval ban)",
    ),
    GitHubEndpoint(
        "POST",
        "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
        "actions",
        "write",
        "starts a deploy workflow (deploy kind github_workflow)",
    ),
    GitHubEndpoint(
        "GET",
        "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs",
        "actions",
        "read",
        "looks for the run a dispatch started when its answer was lost",
    ),
    GitHubEndpoint(
        "POST",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule",
        "deployments",
        "write",
        "approves or rejects a waiting deployment protection rule",
    ),
)
"""Every GitHub REST endpoint the code calls."""

GITHUB_EVENTS: Final[tuple[GitHubEvent, ...]] = (
    GitHubEvent("deployment", "deployments", "a deployment was created"),
    GitHubEvent("deployment_status", "deployments", "a deployment's state changed"),
    GitHubEvent("workflow_run", "actions", "a deploy workflow was requested, ran or finished"),
    GitHubEvent(
        "deployment_protection_rule",
        "deployments",
        "a job waits for the App's protection rule to approve its environment",
    ),
    GitHubEvent(
        "deployment_review",
        "actions",
        "someone approved or rejected a waiting job in GitHub: its releasebot gate follows",
    ),
)
"""Every webhook event the GitHub route handles (`ping` comes unasked when the hook is made)."""

GITHUB_PERMISSION_LEVELS: Final = ("read", "write")
GITHUB_BASE_PERMISSIONS: Final = {"metadata": "read"}
"""Every GitHub App has read access to repository metadata; the manifest says so openly."""


def github_permissions() -> dict[str, str]:
    """Each permission at the highest access an endpoint or event needs (read < write)."""
    needed: dict[str, str] = dict(GITHUB_BASE_PERMISSIONS)
    wanted = [(row.permission, row.access) for row in GITHUB_ENDPOINTS]
    wanted += [(row.permission, "read") for row in GITHUB_EVENTS]
    for permission, access in wanted:
        if permission is None or access is None:
            continue
        current = needed.get(permission)
        if current is None or _level(access) > _level(current):
            needed[permission] = access
    return dict(sorted(needed.items()))


def github_manifest(
    *, url: str, name: str = DEFAULT_NAME, redirect_url: str | None = None
) -> dict[str, Any]:
    """The GitHub App manifest for GitHub's "register an App from a manifest" flow.

    The webhook goes to `<url>/webhooks/github`; GitHub generates its secret, the App's ID
    and private key when the App is registered.
    """
    base = _base(url)
    manifest: dict[str, Any] = {
        "name": name,
        "url": base,
        "description": "Slack release bot: tracks deployments, holds approval gates "
        "and decides deployment protection rules",
        "hook_attributes": {"url": f"{base}{GITHUB_WEBHOOK_PATH}", "active": True},
        "public": False,
        "default_permissions": github_permissions(),
        "default_events": [row.event for row in GITHUB_EVENTS],
    }
    if redirect_url:
        manifest["redirect_url"] = redirect_url
    return manifest


def github_web_url(api_url: str) -> str | None:
    """Where people register Apps for an API root: github.com, or a GitHub Enterprise Server
    whose API is at `<host>/api/v3`; None when it cannot be told."""
    base = _base(api_url)
    if base == "https://api.github.com":
        return "https://github.com"
    if base.endswith("/api/v3"):
        return base[: -len("/api/v3")]
    return None


def github_registration_page(
    manifest: dict[str, Any], *, web_url: str, organization: str | None = None
) -> str:
    """A small HTML page whose button posts `manifest` to GitHub's "new App" form, for a
    personal account or, with `organization`, for that organization."""
    base = _base(web_url)
    if organization:
        action = f"{base}/organizations/{quote(organization, safe='')}/settings/apps/new"
    else:
        action = f"{base}/settings/apps/new"
    value = html.escape(json.dumps(manifest), quote=True)
    title = html.escape(f"Register the {manifest.get('name', DEFAULT_NAME)} GitHub App")
    return (
        "<!doctype html>\n"
        f'<html><head><meta charset="utf-8"><title>{title}</title></head><body>\n'
        f'<form action="{html.escape(action, quote=True)}" method="post">\n'
        f'<input type="hidden" name="manifest" value="{value}">\n'
        f'<button type="submit">{title}</button>\n'
        "</form>\n</body></html>\n"
    )


def _level(access: str) -> int:
    return GITHUB_PERMISSION_LEVELS.index(access)


def _base(url: str) -> str:
    return url.strip().rstrip("/")
