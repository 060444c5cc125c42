"""`releasebot github manifest`: the GitHub App manifest, or a page that registers the App."""

from __future__ import annotations

import argparse
import json

from bot.cli.common import EXIT_ERROR, EXIT_OK, say, settings_for, warn
from bot.cli.slack import public_url
from bot.manifests import (
    DEFAULT_NAME,
    github_manifest,
    github_registration_page,
    github_web_url,
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    github = commands.add_parser("github", help="GitHub App setup")
    actions = github.add_subparsers(dest="github_action", required=True)
    manifest = actions.add_parser(
        "manifest", help="print the GitHub App manifest (JSON), or a page that registers it"
    )
    manifest.add_argument("--url", type=public_url, required=True, help="the bot's public base URL")
    manifest.add_argument("--name", default=DEFAULT_NAME, help="the App's name (unique on GitHub)")
    manifest.add_argument(
        "--redirect-url",
        type=public_url,
        help="where GitHub sends the browser, with ?code=..., once the App is registered",
    )
    manifest.add_argument(
        "--html",
        action="store_true",
        help="print an HTML page whose button registers the App on GitHub (or the "
        "Enterprise Server of GITHUB_API_URL)",
    )
    manifest.add_argument("--org", help="with --html: register the App for this organization")
    manifest.set_defaults(func=cmd_github_manifest)


def cmd_github_manifest(args: argparse.Namespace) -> int:
    manifest = github_manifest(url=args.url, name=args.name, redirect_url=args.redirect_url)
    if not args.html:
        if args.org:
            warn("--org only applies with --html")
            return EXIT_ERROR
        say(json.dumps(manifest, indent=2))
        return EXIT_OK
    api_url = settings_for(args).github_api_url
    web_url = github_web_url(api_url)
    if web_url is None:
        warn(
            f"cannot tell the web address of the GitHub at GITHUB_API_URL={api_url} "
            "(expected https://api.github.com or https://<host>/api/v3)"
        )
        return EXIT_ERROR
    say(github_registration_page(manifest, web_url=web_url, organization=args.org))
    return EXIT_OK
