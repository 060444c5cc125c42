"""The Bolt app: Slack's signature check and dispatch, with releasebot's listeners registered."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from bot.usecases import UseCases
from handlers.slack.actions import register_actions, register_operations
from handlers.slack.commands import register_commands
from handlers.slack.home import register_home
from handlers.slack.middleware import answer_errors, once_per_event

log = logging.getLogger("releasebot.slack")

SANDBOX_TEAM = "T0SANDBOX"
SANDBOX_BOT_USER = "U0RELBOT"


def build_bolt_app(
    *,
    signing_secret: str,
    client: AsyncWebClient,
    slash_command: str,
    usecases: UseCases,
    process_before_response: bool = False,
) -> AsyncApp:
    """One AsyncApp using `client` and its token; without a token it acts as the sandbox bot."""
    app = AsyncApp(
        name="releasebot",  # named, Bolt does not walk the call stack for a name (~90 ms)
        signing_secret=signing_secret,
        client=client,
        authorize=None if client.token else _sandbox_authorize,
        process_before_response=process_before_response,
        logger=log,
    )
    app.use(once_per_event(usecases))
    app.error(answer_errors)
    register(app, slash_command=slash_command)
    register_actions(app, usecases)
    register_operations(app, usecases)
    register_commands(app, usecases, slash_command)
    register_home(app, usecases, command_name=slash_command)
    return app


async def _sandbox_authorize(**_: Any) -> AuthorizeResult:
    return AuthorizeResult(
        enterprise_id=None,
        team_id=SANDBOX_TEAM,
        bot_user_id=SANDBOX_BOT_USER,
        bot_id="B0RELBOT",
        bot_token="xoxb-sandbox",
    )


def register(app: AsyncApp, *, slash_command: str) -> None:
    """Listeners; each is a thin call into the services (more arrive with gates and commands)."""

    @app.event("app_mention")
    async def _mentioned(event: dict[str, Any], say: Any) -> None:
        await say(
            text=f"I post a message for every deployment here. Try `{slash_command} help`.",
            thread_ts=event.get("ts"),
        )
