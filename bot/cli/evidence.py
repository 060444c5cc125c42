"""`releasebot evidence verify PACK.json --public-key KEY.pub`: check a signed evidence pack
offline, with no database and no secret. Exit 0 valid, 1 invalid or edited, 2 usage error."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, say, warn
from bot.domain import signing
from bot.domain.signing import SigningKeyError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evidence_cmd = commands.add_parser(
        "evidence", help="verify a signed evidence pack offline with the public key"
    )
    evidence_cmd.add_argument("action", choices=["verify"])
    evidence_cmd.add_argument("pack", type=Path, help="the evidence pack (JSON)")
    evidence_cmd.add_argument(
        "--public-key", type=Path, required=True, help="the signer's public key (PEM)"
    )
    evidence_cmd.set_defaults(func=cmd_evidence)


def cmd_evidence(args: argparse.Namespace) -> int:
    try:
        key = signing.load_public_key(args.public_key.read_bytes(), source=str(args.public_key))
    except OSError as exc:
        warn(f"--public-key {args.public_key}: cannot read it: {exc.strerror}")
        return EXIT_ERROR
    except SigningKeyError as exc:
        warn(str(exc))
        return EXIT_ERROR
    try:
        document = json.loads(args.pack.read_text(encoding="utf-8"))
    except OSError as exc:
        warn(f"{args.pack}: cannot read it: {exc.strerror}")
        return EXIT_ERROR
    except (json.JSONDecodeError, UnicodeDecodeError):
        warn(f"{args.pack}: not a JSON document, so not an evidence pack")
        return EXIT_FAIL
    if not isinstance(document, dict):
        warn(f"{args.pack}: not a JSON object, so not an evidence pack")
        return EXIT_FAIL
    why = signing.check(document, key)
    if why is not None:
        warn(f"{args.pack}: INVALID: {why}")
        return EXIT_FAIL
    say(f"{args.pack}: valid signature by {signing.fingerprint(key)}")
    return EXIT_OK
