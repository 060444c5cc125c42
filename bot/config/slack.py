"""The `slack:` section and `identities:`: where the bot talks and who people are."""

from __future__ import annotations

from typing import Annotated

from bot.config.base import ConfigModel
from bot.config.types import SlackChannel, SlackPrincipal, matching, string_schema


class SlackConfig(ConfigModel):
    """Where the bot talks and who it calls on."""

    default_channel: SlackChannel
    slash_command: Annotated[
        str,
        matching(
            r"/[a-z0-9_-]+", "must be '/' then lowercase letters, digits, '-' or '_', like /release"
        ),
        string_schema(r"/[a-z0-9_-]+"),
    ] = "/release"
    release_managers: list[SlackPrincipal] = []
    oncall: list[SlackPrincipal] = []
    # Where audit checkpoints are posted (docs/audit.md); none: they are not posted to Slack.
    audit_channel: SlackChannel | None = None


class Identity(ConfigModel):
    """A Slack user's logins on the code hosts (for the self-approval ban)."""

    github: str | None = None
    gitlab: str | None = None
    email: (
        Annotated[str, matching(r"[^@\s]+@[^@\s]+", "'{value}' is not an e-mail address")] | None
    ) = None
