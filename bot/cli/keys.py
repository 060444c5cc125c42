"""`releasebot keys generate [--out DIR]`: an Ed25519 key pair for signing evidence and
checkpoints (releasebot-signing.pem, mode 0600, and releasebot-signing.pub)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bot.cli.common import EXIT_ERROR, EXIT_OK, say, warn
from bot.domain import signing

PRIVATE_NAME = "releasebot-signing.pem"
PUBLIC_NAME = "releasebot-signing.pub"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys_cmd = commands.add_parser("keys", help="make the key pair that signs evidence packs")
    keys_cmd.add_argument("action", choices=["generate"])
    keys_cmd.add_argument(
        "--out", type=Path, default=Path("."), help="directory to write the key pair into"
    )
    keys_cmd.set_defaults(func=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    out: Path = args.out
    private_path, public_path = out / PRIVATE_NAME, out / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            warn(f"{path} already exists: refusing to overwrite a key (choose another --out)")
            return EXIT_ERROR
    private_pem, public_pem = signing.generate()
    try:
        out.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as private_file:
            private_file.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        warn(f"cannot write the key pair into {out}: {exc.strerror}")
        return EXIT_ERROR
    key = signing.load_public_key(public_pem, source=str(public_path))
    say(f"private key: {private_path} (mode 0600; set RELEASEBOT_SIGNING_KEY={private_path})")
    say(f"public key:  {public_path} (give it to auditors)")
    say(f"fingerprint: {signing.fingerprint(key)}")
    return EXIT_OK
