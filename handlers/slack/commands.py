"""The slash command (`slack.slash_command`, default `/release`): parse, one call, answer.

    /release help
    /release status [service]
    /release history <service> [env] [n]
    /release pending
    /release promote <service> <version|latest> to <env>
    /release deploy <service> <ref> to <env>
    /release rollback <service> <env> [to <version>] [-- reason...]
    /release freeze <env|all> <duration> <reason...>
    /release unfreeze <env|all>
    /release lock <service> [env] -- <reason...>
    /release unlock <service> [env]
    /release metrics [service] [days]

The text is parsed by `handlers.slack.command_parser`; the answer is built by
`bot.blocks.commands`. The listener acks at once with nothing and answers through the
command's `response_url` (ephemerally: only the person who typed sees it). Read-only
answers stay there; actions that change something (promote, deploy, rollback, freeze,
unfreeze, lock, unlock) are also announced in the service's channel. Promote and roll back go
through the path the buttons take, with the same permission check and the same gates; a
deploy resolves its ref on the code host and goes through the environment's gate like a
promotion, for the people who may promote there; freezing is
for release managers; locking and unlocking for release managers and the service's owners
(without an environment, every environment of the service). A typed rollback without
` -- reason` is "rolled back with /release by <user>".

Long lists (status, history, pending) are paged; a page's "Next" button replaces the
answer with the following page.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import commands as blocks
from bot.blocks.commands import PAGE_ACTION, STATUS_PAGE, Reply
from bot.config import Config
from bot.usecases import UseCases
from bot.usecases.freeze import ALL
from handlers.slack.command_parser import (
    Command,
    Deploy,
    FreezeCommand,
    Help,
    History,
    Lock,
    Metrics,
    Pending,
    Promote,
    Rollback,
    Status,
    Unfreeze,
    Unlock,
    Usage,
    parse,
)
from handlers.slack.middleware import ACK_FIRST
from integrations.slack.sender import NETWORK_ERRORS

SLACK_CALL_ERRORS: tuple[type[BaseException], ...] = (
    SlackApiError,
    SlackClientError,
    *NETWORK_ERRORS,
)

log = logging.getLogger("releasebot.slack")
PAGE_OFFSET_MAX = 100_000  # a page click further on than this shows no list we could have

__all__ = ["Command", "History", "Reply", "Usage", "answer", "parse", "register_commands"]


def register_commands(app: AsyncApp, usecases: UseCases, command_name: str) -> None:
    """One listener for the slash command and one for the list pages' "Next" buttons."""

    @app.command(command_name, middleware=ACK_FIRST)
    async def command(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        user = str(body.get("user_id") or "")
        parsed = parse(str(body.get("text") or ""), config=usecases.config)
        try:
            reply = await answer(usecases, parsed, user_id=user, command_name=command_name)
        except Exception:
            log.exception("%s failed for %s", command_name, user)
            reply = Reply(blocks.FAILED_TEXT)
        await _send(client, respond, body, reply)
        for channel, text in reply.announcements:
            await _announce(client, channel, text)

    @app.action(PAGE_ACTION, middleware=ACK_FIRST)
    async def page(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        try:
            value = json.loads(body["actions"][0]["value"])
            parsed = parse(str(value["t"]), config=usecases.config)
            offset = min(max(int(value["o"]), 0), PAGE_OFFSET_MAX)
        except (KeyError, IndexError, TypeError, ValueError, OverflowError, RecursionError):
            log.warning("ignoring a page click without a valid value")
            return
        if not isinstance(parsed, Status | History | Pending):
            return
        parsed = dataclasses.replace(parsed, offset=offset)
        user = str(body.get("user", {}).get("id") or "")
        reply = await answer(usecases, parsed, user_id=user, command_name=command_name)
        await _send(client, respond, body, reply, replace=True)


async def answer(
    usecases: UseCases, parsed: Command | Usage, *, user_id: str, command_name: str
) -> Reply:
    """What to tell the person (and the channels) for one parsed command."""
    if isinstance(parsed, Usage):
        return blocks.usage_reply(
            parsed.problem,
            command_name=command_name,
            subcommand=parsed.subcommand,
            suggestion=parsed.suggestion,
            corrected=parsed.corrected,
        )
    if isinstance(parsed, Help):
        return blocks.help_reply(command_name, parsed.topic)
    if isinstance(parsed, Status | History | Pending | Metrics):
        return await _read(usecases, parsed, user_id=user_id)
    if isinstance(parsed, Lock | Unlock):
        return await _lock(usecases, parsed, user_id=user_id)
    return await _change(usecases, parsed, user_id=user_id, command_name=command_name)


async def _read(
    usecases: UseCases, parsed: Status | History | Pending | Metrics, *, user_id: str
) -> Reply:
    """The read-only subcommands: one page of a list, or the DORA metrics."""
    if isinstance(parsed, Status):
        pairs = usecases.environments_of(parsed.service)
        chosen = pairs[parsed.offset : parsed.offset + STATUS_PAGE]
        rows = await usecases.status(chosen)
        return blocks.status_reply(
            parsed.service, rows, offset=parsed.offset, shown=len(chosen), total=len(pairs)
        )
    if isinstance(parsed, History):
        page = await usecases.history(
            service=parsed.service,
            environment=parsed.environment,
            limit=parsed.n,
            offset=parsed.offset,
        )
        return blocks.history_reply(
            page,
            service=parsed.service,
            environment=parsed.environment,
            n=parsed.n,
            offset=parsed.offset,
        )
    if isinstance(parsed, Pending):
        gates = await usecases.pending_approvals(user_id)
        return blocks.pending_reply(gates, offset=parsed.offset)
    message = await usecases.metrics_message(service=parsed.service, days=parsed.days)
    return blocks.metrics_reply(message.text, message.blocks)


async def _change(
    usecases: UseCases,
    parsed: Promote | Deploy | Rollback | FreezeCommand | Unfreeze,
    *,
    user_id: str,
    command_name: str,
) -> Reply:
    """The subcommands that change something, announced in the channels they touch."""
    config = usecases.config
    if isinstance(parsed, Promote):
        outcome = await usecases.promote_version(
            user_id=user_id,
            service=parsed.service,
            version=parsed.version,
            environment=parsed.environment,
        )
        text, said = blocks.operation_reply(outcome, service=parsed.service, user_id=user_id)
        return _with_announcement(text, said, [config.channel_for(parsed.service)])
    if isinstance(parsed, Deploy):
        outcome = await usecases.deploy_ref(
            user_id=user_id,
            service=parsed.service,
            ref=parsed.ref,
            environment=parsed.environment,
        )
        text, said = blocks.operation_reply(outcome, service=parsed.service, user_id=user_id)
        return _with_announcement(text, said, [config.channel_for(parsed.service)])
    if isinstance(parsed, Rollback):
        reason = parsed.reason or f"rolled back with {command_name} by {user_id}"
        outcome = await usecases.rollback_environment(
            user_id=user_id,
            service=parsed.service,
            environment=parsed.environment,
            to_version=parsed.to_version,
            reason=reason,
        )
        text, said = blocks.operation_reply(
            outcome, service=parsed.service, user_id=user_id, reason=reason
        )
        return _with_announcement(text, said, [config.channel_for(parsed.service)])
    if isinstance(parsed, FreezeCommand):
        changed = await usecases.freeze(
            user_id=user_id,
            environment=parsed.environment,
            duration=parsed.duration,
            reason=parsed.reason,
        )
    else:
        changed = await usecases.unfreeze(user_id=user_id, environment=parsed.environment)
    text, said = blocks.freeze_reply(
        changed, user_id=user_id, everywhere=changed.environment == ALL
    )
    channels = []
    if changed.environment is not None:
        channels = _channels_with(config, changed.environment)
    return _with_announcement(text, said, channels)


async def _lock(usecases: UseCases, parsed: Lock | Unlock, *, user_id: str) -> Reply:
    """Lock or unlock a service's environments, announced in the service's channel."""
    if isinstance(parsed, Lock):
        outcome = await usecases.lock(
            user_id=user_id,
            service=parsed.service,
            environment=parsed.environment,
            reason=parsed.reason,
        )
    else:
        outcome = await usecases.unlock(
            user_id=user_id, service=parsed.service, environment=parsed.environment
        )
    text, said = blocks.lock_reply(outcome, user_id=user_id)
    return _with_announcement(text, said, [usecases.config.channel_for(parsed.service)])


def _with_announcement(text: str, said: str | None, channels: list[str]) -> Reply:
    reply = Reply(text)
    if said is not None:
        reply.announcements.extend((channel, said) for channel in channels)
    return reply


def _channels_with(config: Config, environment: str) -> list[str]:
    """The channels of the services a freeze on `environment` touches, once each."""
    channels = [
        config.channel_for(name)
        for name, svc in config.services.items()
        if environment == ALL or svc.environment(environment) is not None
    ]
    return list(dict.fromkeys(channels)) or [config.slack.default_channel]


async def _send(
    client: AsyncWebClient,
    respond: Any,
    body: dict[str, Any],
    reply: Reply,
    *,
    replace: bool = False,
) -> None:
    """Answer only the person: through the `response_url`, else an ephemeral message."""
    response_url = body.get("response_url")
    payload: dict[str, Any] = {"text": reply.text, "response_type": "ephemeral"}
    if reply.blocks:
        payload["blocks"] = reply.blocks
    if replace:
        payload["replace_original"] = True
    try:
        if response_url:
            answered = await respond(**payload)
            if answered.status_code != 200:
                log.warning("response_url answered %s: %s", answered.status_code, answered.body)
            return
        channel = body.get("channel_id") or (body.get("channel") or {}).get("id")
        user = body.get("user_id") or (body.get("user") or {}).get("id")
        if channel and user:
            await client.chat_postEphemeral(
                channel=str(channel), user=str(user), text=reply.text, blocks=reply.blocks or None
            )
    except SLACK_CALL_ERRORS:
        log.exception("could not answer the slash command")


async def _announce(client: AsyncWebClient, channel: str, text: str) -> None:
    try:
        await client.chat_postMessage(channel=channel, text=text)
    except SLACK_CALL_ERRORS:
        log.exception("could not announce in %s", channel)
