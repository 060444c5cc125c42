"""`releasebot slack manifest`: the Slack app manifest for "Create an app > From a manifest"."""

from __future__ import annotations

import argparse
import json
import os
from urllib.parse import urlsplit

from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, config_or_report, say, settings_for, warn
from bot.manifests import DEFAULT_NAME, slack_manifest


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    slack = commands.add_parser("slack", help="Slack app setup")
    actions = slack.add_subparsers(dest="slack_action", required=True)
    manifest = actions.add_parser(
        "manifest", help="print the Slack app manifest (JSON) for creating the app"
    )
    manifest.add_argument(
        "--url",
        type=public_url,
        help="the bot's public base URL, e.g. https://bot.example.com (not with --socket-mode)",
    )
    manifest.add_argument(
        "--socket-mode",
        action="store_true",
        help="Socket Mode: no request URLs; needs an app-level token (SLACK_APP_TOKEN)",
    )
    manifest.add_argument("--name", default=DEFAULT_NAME, help="the app's and bot's name")
    manifest.add_argument("--config", help="config file (default: $RELEASEBOT_CONFIG)")
    manifest.set_defaults(func=cmd_slack_manifest)


def public_url(value: str) -> str:
    """An http(s) URL with a host, as typed (a trailing slash is dropped later)."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"{value!r}: give the base URL, without ? or #")
    return value.strip()


def cmd_slack_manifest(args: argparse.Namespace) -> int:
    if args.socket_mode and args.url:
        warn("--socket-mode uses no request URLs: drop --url")
        return EXIT_ERROR
    if not args.socket_mode and not args.url:
        warn("give the bot's public URL with --url, or use --socket-mode")
        return EXIT_ERROR
    slash_command = _slash_command(args)
    if slash_command is None:
        return EXIT_FAIL
    if args.url and urlsplit(args.url).scheme != "https":
        warn("warning: Slack only sends requests to https:// URLs")
    manifest = slack_manifest(
        url=args.url, slash_command=slash_command, socket_mode=args.socket_mode, name=args.name
    )
    say(json.dumps(manifest, indent=2))
    return EXIT_OK


def _slash_command(args: argparse.Namespace) -> str | None:
    """The config's `slack.slash_command`; `/release` when no config was named and none is here."""
    settings = settings_for(args)
    named = bool(args.config) or bool(os.environ.get("RELEASEBOT_CONFIG"))
    if not named and not settings.config_path.exists():
        warn(f"no config at {settings.config_path}: the slash command is /release")
        return "/release"
    config = config_or_report(settings)
    return None if config is None else config.slack.slash_command
