"""App Home: what the person opening the bot's Home tab should know.

On `app_home_opened` (the Home tab) it publishes, for that viewer:

- the approvals they can still decide, with Approve/Reject buttons that carry the release
  message's action ids (`release_approve`, `release_reject`) and the gate id as value, so a
  click runs through the same listeners, permission checks and audit as on the message;
- recent releases of the services they own (`owners` in the config: their user id, or a
  user group they are in);
- the freezes in force (releasebot.yaml and `/release freeze`).

The view itself is built by `bot.blocks.home`.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import home
from bot.usecases import UseCases

log = logging.getLogger("releasebot.slack")


def register_home(app: AsyncApp, usecases: UseCases, *, command_name: str = "/release") -> None:
    @app.event("app_home_opened")
    async def opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab
        user = str(event.get("user") or "")
        if not user:
            return
        view = await home_view(usecases, user, command_name=command_name)
        await client.views_publish(user_id=user, view=view)


async def home_view(
    usecases: UseCases, user_id: str, *, command_name: str = "/release"
) -> dict[str, Any]:
    """The Home tab of `user_id`, as a `views.publish` view."""
    approvals = await usecases.pending_approvals(user_id, only_actionable=True)
    owned = await usecases.owned_services(user_id)
    now = usecases.clock.now()
    releases = await usecases.recent_releases(owned, limit=home.MAX_RELEASES + 1)
    in_force = await usecases.freezes_in_force()
    locked = await usecases.locks_in_force()
    return home.home_view(
        now=now,
        approvals=approvals,
        owned=owned,
        releases=releases,
        in_force=in_force,
        locked=locked,
        command_name=command_name,
    )
