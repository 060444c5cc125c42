"""The `releasebot` command line: each subcommand builds Settings and calls one service.

One module per command group (`serve`, `db`, `config`, `audit`, `keys`, `evidence`,
`metrics`, `gate`, `demo`, `slack`, `github`, `doctor`, `webhooks`), each adding its parser with
`add_parser(commands)` and answering with an exit code: 0 ok, 1 a failed check or a
refusal, 2 an error in the call itself.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Sequence

# Importing the command groups imports the whole bot; the collector would walk the
# growing heap dozens of times on the way (~10% of the import time). Off meanwhile; then
# what was loaded is frozen (it stays for the life of the process: no collection walks it
# again, and `serve`'s own collection before it listens has only its app to walk).
_COLLECTING = gc.isenabled()
gc.disable()

from bot import __version__  # noqa: E402
from bot.cli import (  # noqa: E402
    audit,
    config,
    db,
    demo,
    doctor,
    evidence,
    gate,
    github,
    keys,
    metrics,
    serve,
    slack,
    webhooks,
)
from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK  # noqa: E402
from bot.cli.gate import (  # noqa: E402
    GateApiError,
    GateApiUnavailable,
    run_gate,
    wait_for_decision,
)

gc.freeze()
if _COLLECTING:
    gc.enable()

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAIL",
    "EXIT_OK",
    "GateApiError",
    "GateApiUnavailable",
    "build_parser",
    "main",
    "run_gate",
    "wait_for_decision",
]

# In the order `releasebot --help` lists them.
_COMMAND_GROUPS = (
    serve.add_parser,
    db.add_parser,
    config.add_parser,
    audit.add_parser,
    keys.add_parser,
    evidence.add_parser,
    metrics.add_parser,
    gate.add_parser,
    demo.add_parser,
    slack.add_parser,
    github.add_parser,
    doctor.add_parser,
    webhooks.add_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="releasebot", description="Slack release bot for continuous deployment."
    )
    parser.add_argument("--version", action="version", version=f"releasebot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_group in _COMMAND_GROUPS:
        add_group(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_FAIL
