"""What every `releasebot` subcommand shares: exit codes, settings, output and config errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import SecretStr

from bot.config import Config, load_config
from bot.domain.errors import ConfigError
from bot.settings import Settings, load_settings

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with `--config` (when the command has it) winning."""
    environ = dict(os.environ)
    if getattr(args, "config", None):
        environ["RELEASEBOT_CONFIG"] = str(args.config)
    return load_settings(environ)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold (tokens, webhook secrets), for the logs to redact."""
    return [value.get_secret_value() for _, value in settings if isinstance(value, SecretStr)]


def say(text: str) -> None:
    """One line (or block) on stdout."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def warn(text: str) -> None:
    """One line (or block) on stderr."""
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def report_invalid_config(path: Path, error: ConfigError) -> None:
    """`<path>: invalid configuration`, then every problem with its YAML path, on stderr."""
    warn(f"{path}: invalid configuration")
    for problem in error.problems:
        warn(f"  {problem}")


def config_or_report(settings: Settings) -> Config | None:
    """The config the settings name, or None after printing every problem with its path."""
    try:
        return load_config(settings.config_path)
    except ConfigError as exc:
        report_invalid_config(settings.config_path, exc)
        return None
