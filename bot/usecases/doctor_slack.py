"""The Slack half of `releasebot doctor`: the bot token, its scopes, channels and user groups.

    findings = await slack_findings(client, config)   # client: the bot's AsyncWebClient

Every Web API call goes through the client the caller built (slack_sdk's `AsyncWebClient`,
pointed at Slack or at a fake). Slack lists the scopes a token was granted in the
`x-oauth-scopes` header of its answers; `auth.test` is asked once for them and for the
bot's name. Where the bot is not in a configured public channel and holds `channels:join`,
it joins it (a fix doctor can make by itself); without that scope it says how to invite it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError

from bot.config import Config
from bot.domain.findings import Finding, failed, passed
from bot.manifests import slack_bot_scopes

__all__ = [
    "SlackCallFailed",
    "SlackWebApi",
    "check_channels",
    "check_scopes",
    "check_token",
    "check_usergroups",
    "configured_channels",
    "configured_groups",
    "slack_findings",
]

MAX_PAGES = 50
"""Pages of 200 channels followed when listing channels (10,000 channels)."""

REINSTALL = (
    "add the missing scopes under OAuth & Permissions (or paste the manifest printed by "
    "`releasebot slack manifest` under App Manifest) and reinstall the app to the workspace"
)


class SlackWebApi(Protocol):
    """What doctor needs of slack_sdk's `AsyncWebClient`."""

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        data: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any: ...


class SlackCallFailed(Exception):
    """A Web API call that did not succeed: Slack's error code, or why no answer came."""

    def __init__(self, method: str, error: str, *, needed: str | None = None) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error
        self.needed = needed  # the scope Slack named with `missing_scope`


@dataclass(frozen=True)
class Answer:
    data: Mapping[str, Any]
    headers: Mapping[str, str]  # names lower-cased


@dataclass(frozen=True)
class BotIdentity:
    user: str
    team: str
    scopes: frozenset[str] | None  # None when Slack did not say


async def _call(method: str, client: SlackWebApi, **params: str) -> Answer:
    """One Web API call; reads are GETs, `conversations.join` posts a form."""
    try:
        if method == "conversations.join":
            response = await client.api_call("conversations.join", data=params)
        else:
            response = await client.api_call(method, http_verb="GET", params=params)
    except SlackApiError as exc:
        body = exc.response.data if isinstance(exc.response.data, dict) else {}
        error = str(body.get("error") or f"HTTP {exc.response.status_code}")
        needed = body.get("needed")
        raise SlackCallFailed(
            method, error, needed=needed if isinstance(needed, str) else None
        ) from None
    except Exception as exc:  # no answer at all (refused, timed out, not Slack): a finding
        raise SlackCallFailed(method, f"no answer ({type(exc).__name__})") from None
    data = response.data if isinstance(response.data, dict) else {}
    headers = {str(k).lower(): str(v) for k, v in dict(response.headers or {}).items()}
    return Answer(data=data, headers=headers)


def _scope_fix(exc: SlackCallFailed, default: str) -> str:
    if exc.error == "missing_scope":
        scope = f"the {exc.needed} scope" if exc.needed else "the scope it needs"
        return f"grant {scope}: {REINSTALL}"
    return default


# ---- the token and its scopes ----------------------------------------------------------------


async def check_token(client: SlackWebApi) -> tuple[Finding, BotIdentity | None]:
    """`auth.test`: the token works; who the bot is and which scopes it holds."""
    try:
        answer = await _call("auth.test", client)
    except SlackCallFailed as exc:
        if exc.error.startswith("no answer"):
            return failed(
                "slack.token",
                f"Slack did not answer auth.test: {exc.error}",
                "check that this host reaches Slack (RELEASEBOT_SLACK_API_URL, proxies, "
                "firewall) and run doctor again",
            ), None
        return failed(
            "slack.token",
            f"Slack refused SLACK_BOT_TOKEN ({exc.error})",
            "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-...) shown under "
            "OAuth & Permissions of the installed app",
        ), None
    raw = answer.headers.get("x-oauth-scopes")
    scopes = None if raw is None else frozenset(s.strip() for s in raw.split(",") if s.strip())
    identity = BotIdentity(
        user=str(answer.data.get("user") or "releasebot"),
        team=str(answer.data.get("team") or "the workspace"),
        scopes=scopes,
    )
    return passed("slack.token", f"the bot @{identity.user} in {identity.team}"), identity


def check_scopes(granted: frozenset[str] | None) -> Finding:
    """Every scope the code's Web API calls, events and slash command need is granted."""
    if granted is None:
        return passed("slack.scopes", "Slack did not list the token's scopes; not checked")
    missing = [scope for scope in slack_bot_scopes() if scope not in granted]
    if missing:
        return failed("slack.scopes", f"the bot token lacks {', '.join(missing)}", REINSTALL)
    return passed("slack.scopes", f"all {len(slack_bot_scopes())} scopes granted")


# ---- channels ----------------------------------------------------------------------------------


def configured_channels(config: Config) -> dict[str, list[str]]:
    """Each channel the config names, with the YAML paths naming it, in file order."""
    found: dict[str, list[str]] = {config.slack.default_channel: ["slack.default_channel"]}
    for name, service in config.services.items():
        if service.channel is not None:
            found.setdefault(service.channel, []).append(f"services.{name}.channel")
    return found


async def _list_channels(client: SlackWebApi, method: str, types: str) -> list[tuple[str, str]]:
    """(id, name) of every channel `users.conversations` or `conversations.list` lists."""
    channels: list[tuple[str, str]] = []
    cursor = ""
    for _ in range(MAX_PAGES):
        params = {"types": types, "exclude_archived": "true", "limit": "200"}
        if cursor:
            params["cursor"] = cursor
        if method == "users.conversations":
            answer = await _call("users.conversations", client, **params)
        else:
            answer = await _call("conversations.list", client, **params)
        for item in answer.data.get("channels") or []:
            if isinstance(item, Mapping):
                channels.append((str(item.get("id") or ""), str(item.get("name") or "")))
        metadata = answer.data.get("response_metadata") or {}
        cursor = str(metadata.get("next_cursor") or "") if isinstance(metadata, Mapping) else ""
        if not cursor:
            break
    return channels


def _is(channel: str, listed: tuple[str, str]) -> bool:
    """`#name` matches by name (Slack's are lower case), an id by id."""
    if channel.startswith("#"):
        return channel[1:].lower() == listed[1].lower()
    return channel == listed[0]


async def check_channels(client: SlackWebApi, config: Config, bot: BotIdentity) -> list[Finding]:
    """The bot is in every configured channel, joining public ones when it holds channels:join."""
    wanted = configured_channels(config)
    private = bot.scopes is None or "groups:read" in bot.scopes
    types = "public_channel,private_channel" if private else "public_channel"
    try:
        mine = await _list_channels(client, "users.conversations", types)
    except SlackCallFailed as exc:
        return [
            failed(
                "slack.channels",
                f"cannot list the bot's channels ({exc})",
                _scope_fix(exc, "run doctor again; if it persists, check Slack's status"),
            )
        ]
    may_join = bot.scopes is None or "channels:join" in bot.scopes
    joiner = _Joiner(client, bot)
    findings: list[Finding] = []
    for channel, where in wanted.items():
        check = f"slack.channel {channel}"
        if any(_is(channel, listed) for listed in mine):
            findings.append(passed(check, "the bot is a member"))
        elif not may_join:
            findings.append(
                failed(
                    check,
                    f"the bot is not a member of {channel} ({', '.join(where)}), so its "
                    "messages there fail; it does not hold channels:join, so it cannot join",
                    f"invite it: `/invite @{bot.user}` in {channel}, or grant channels:join "
                    "and run doctor again to have it join public channels itself",
                )
            )
        else:
            findings.append(await joiner.join(check, channel, where))
    return findings


class _Joiner:
    """Joins public channels by id, finding the ids of `#names` once when first needed."""

    def __init__(self, client: SlackWebApi, bot: BotIdentity) -> None:
        self._client = client
        self._bot = bot
        self._public: list[tuple[str, str]] | None = None

    async def join(self, check: str, channel: str, where: list[str]) -> Finding:
        invite = f"invite the bot: `/invite @{self._bot.user}` in {channel}"
        try:
            channel_id = await self._id_of(channel)
            if channel_id is None:
                return failed(
                    check,
                    f"the bot is not in {channel} and sees no public channel of that name "
                    "(it may be private, archived or misspelt)",
                    f"if it is private, {invite}; otherwise correct {', '.join(where)}",
                )
            await _call("conversations.join", self._client, channel=channel_id)
        except SlackCallFailed as exc:
            reasons = {
                "method_not_supported_for_channel_type": "it is private; a bot cannot join it",
                "is_archived": "it is archived",
                "channel_not_found": "Slack knows no such channel",
            }
            reason = reasons.get(exc.error, str(exc))
            return failed(
                check,
                f"the bot is not in {channel} and could not join it: {reason}",
                _scope_fix(exc, f"{invite}, or correct {', '.join(where)}"),
            )
        return passed(check, "the bot was not a member and has joined it")

    async def _id_of(self, channel: str) -> str | None:
        if not channel.startswith("#"):
            return channel
        if self._public is None:
            self._public = await _list_channels(
                self._client, "conversations.list", "public_channel"
            )
        return next((cid for cid, name in self._public if _is(channel, (cid, name))), None)


# ---- user groups -------------------------------------------------------------------------------


def configured_groups(config: Config) -> dict[str, list[str]]:
    """Each user group (S...) the config names, with the YAML paths naming it."""
    found: dict[str, list[str]] = {}

    def add(principals: list[str], path: str) -> None:
        for principal in principals:
            if principal.startswith("S"):
                paths = found.setdefault(principal, [])
                if path not in paths:
                    paths.append(path)

    add(config.slack.release_managers, "slack.release_managers")
    add(config.slack.oncall, "slack.oncall")
    if config.break_glass is not None:
        add(config.break_glass.approvers, "break_glass.approvers")
    for name, service in config.services.items():
        add(service.owners, f"services.{name}.owners")
        for index, env in enumerate(service.environments):
            if env.gate is None:
                continue
            at = f"services.{name}.environments[{index}].gate"
            for number, rule in enumerate(env.gate.require):
                add(rule.approvers, f"{at}.require[{number}].approvers")
            for level, risk_gate in env.gate.by_risk.items():
                for number, rule in enumerate(risk_gate.require or []):
                    add(rule.approvers, f"{at}.by_risk.{level}.require[{number}].approvers")
    return found


async def check_usergroups(client: SlackWebApi, config: Config) -> list[Finding]:
    """Each user group named as approvers, owners, release managers or on-call has members."""
    findings: list[Finding] = []
    for group, where in configured_groups(config).items():
        check = f"slack.usergroup {group}"
        places = ", ".join(where)
        try:
            answer = await _call("usergroups.users.list", client, usergroup=group)
        except SlackCallFailed as exc:
            if exc.error == "no_such_subteam":
                problem = f"no user group {group} in this workspace ({places})"
                fix = f"put the right group id (S...) at {places}"
            else:
                problem = f"cannot read user group {group} ({exc})"
                fix = _scope_fix(exc, "run doctor again; if it persists, check Slack's status")
            findings.append(failed(check, problem, fix))
            continue
        members = [user for user in answer.data.get("users") or [] if isinstance(user, str)]
        if not members:
            findings.append(
                failed(
                    check,
                    f"user group {group} has no members, so nobody in it can approve or act "
                    f"({places})",
                    f"add people to the group in Slack, or name others at {places}",
                )
            )
        else:
            findings.append(passed(check, f"{len(members)} members"))
    return findings


async def slack_findings(client: SlackWebApi, config: Config) -> list[Finding]:
    """The token first; when Slack accepts it, its scopes, the channels and the user groups."""
    token, bot = await check_token(client)
    if bot is None:
        return [token]
    return [
        token,
        check_scopes(bot.scopes),
        *await check_channels(client, config, bot),
        *await check_usergroups(client, config),
    ]
