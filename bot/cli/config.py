"""`releasebot config check [PATH]` and `config schema`: validate a config, print its schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bot.cli.common import EXIT_FAIL, EXIT_OK, say, settings_for, warn
from bot.config import config_json_schema, load_config
from bot.domain.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("config", help="validate the config or print its JSON Schema")
    config.add_argument("action", choices=["check", "schema"])
    config.add_argument("path", nargs="?", help="config file (default: $RELEASEBOT_CONFIG)")
    config.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "schema":
        say(json.dumps(config_json_schema(), indent=2))
        return EXIT_OK
    path = Path(args.path) if args.path else settings_for(args).config_path
    try:
        config = load_config(path)
    except ConfigError as exc:
        warn(f"{path}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            warn(f"  {problem}")
        return EXIT_FAIL
    envs = sum(len(s.environments) for s in config.services.values())
    say(f"{path}: OK ({len(config.services)} services, {envs} environments)")
    return EXIT_OK
