"""Signed evidence: `releasebot keys generate`, packs signed where they leave releasebot (the
CLI and the dashboard), the public key at /.well-known/releasebot-signing-key, and
`releasebot evidence verify` checking a pack offline, with no database and no secret."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from tests.conftest import BotFactory
from tests.fakes import FrozenClock
from tests.helpers import EXAMPLE_CONFIG
from tests.test_audit import two_releases

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "keys"
    assert main(["keys", "generate", "--out", str(out)]) == EXIT_OK
    said = capsys.readouterr().out
    assert "fingerprint: sha256:" in said
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def verify_pack(
    capsys: pytest.CaptureFixture[str], pack: Path, public_key: Path
) -> tuple[int, str, str]:
    return run(capsys, "evidence", "verify", str(pack), "--public-key", str(public_key))


# --- keys ---------------------------------------------------------------------------------


def test_keys_generate_writes_an_ed25519_pair_with_a_private_file_only_its_owner_reads(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = keys / "releasebot-signing.pem", keys / "releasebot-signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")

    code, _, err = run(capsys, "keys", "generate", "--out", str(keys))
    assert code == EXIT_ERROR
    assert "already exists: refusing to overwrite a key" in err


# --- the CLI's pack, verified offline -------------------------------------------------------


async def signed_pack_from_cli(
    bot_factory: BotFactory,
    clock: FrozenClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    signing_key: str,
) -> dict[str, Any]:
    async with bot_factory() as bot:
        await two_releases(bot, clock)
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("RELEASEBOT_CONFIG", str(EXAMPLE_CONFIG))
    monkeypatch.setenv("RELEASEBOT_SIGNING_KEY", signing_key)
    code, out, err = run(capsys, "audit", "evidence", "1")
    assert (code, err) == (EXIT_OK, "")
    pack: dict[str, Any] = json.loads(out)
    return pack


async def test_a_pack_signed_by_the_cli_verifies_offline_and_fails_once_edited(
    bot_factory: BotFactory,
    clock: FrozenClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    keys: Path,
    tmp_path: Path,
) -> None:
    private = keys / "releasebot-signing.pem"
    pack = await signed_pack_from_cli(
        bot_factory, clock, capsys, monkeypatch, database_url, str(private)
    )
    assert pack["release"]["id"] == 1
    assert pack["signature"]["algorithm"] == "ed25519"
    assert pack["signature"]["key_fingerprint"].startswith("sha256:")
    path = tmp_path / "pack.json"
    path.write_text(json.dumps(pack, indent=2))
    # offline: no database, no secret, no config
    for name in ("RELEASEBOT_DATABASE_URL", "RELEASEBOT_SIGNING_KEY", "RELEASEBOT_CONFIG"):
        monkeypatch.delenv(name)
    public = keys / "releasebot-signing.pub"

    code, out, err = verify_pack(capsys, path, public)
    assert (code, err) == (EXIT_OK, "")
    assert f"valid signature by {pack['signature']['key_fingerprint']}" in out

    edited = {**pack, "release": {**pack["release"], "service": "payments"}}
    path.write_text(json.dumps(edited, indent=2))
    code, _, err = verify_pack(capsys, path, public)
    assert code == EXIT_FAIL
    assert "INVALID: the signature does not match the document: it was changed after signing" in err

    unsigned = {k: v for k, v in pack.items() if k != "signature"}
    path.write_text(json.dumps(unsigned))
    code, _, err = verify_pack(capsys, path, public)
    assert code == EXIT_FAIL
    assert "carries no signature" in err


async def test_a_pack_checked_with_another_key_is_invalid_and_bad_calls_are_usage_errors(
    bot_factory: BotFactory,
    clock: FrozenClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    keys: Path,
    tmp_path: Path,
) -> None:
    pem_text = (keys / "releasebot-signing.pem").read_text()  # the PEM itself, not a path
    pack = await signed_pack_from_cli(
        bot_factory, clock, capsys, monkeypatch, database_url, pem_text
    )
    path = tmp_path / "pack.json"
    path.write_text(json.dumps(pack))
    assert verify_pack(capsys, path, keys / "releasebot-signing.pub")[0] == EXIT_OK

    assert run(capsys, "keys", "generate", "--out", str(tmp_path / "other"))[0] == EXIT_OK
    code, _, err = verify_pack(capsys, path, tmp_path / "other" / "releasebot-signing.pub")
    assert code == EXIT_FAIL
    assert "not by the given key" in err

    code, _, err = verify_pack(capsys, path, tmp_path / "missing.pub")
    assert code == EXIT_ERROR and "cannot read it" in err
    code, _, err = verify_pack(capsys, path, keys / "releasebot-signing.pem")
    assert code == EXIT_ERROR and "not a PEM public key" in err
    code, _, err = verify_pack(capsys, tmp_path / "absent.json", keys / "releasebot-signing.pub")
    assert code == EXIT_ERROR
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    code, _, err = verify_pack(capsys, garbage, keys / "releasebot-signing.pub")
    assert code == EXIT_FAIL and "not a JSON document" in err
    with pytest.raises(SystemExit) as usage:
        main(["evidence", "verify", str(path)])  # --public-key is required
    assert usage.value.code == EXIT_ERROR


async def test_an_unreadable_signing_key_is_a_clear_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("RELEASEBOT_CONFIG", str(EXAMPLE_CONFIG))
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    monkeypatch.setenv("RELEASEBOT_SIGNING_KEY", str(bogus))
    code, _, err = run(capsys, "audit", "evidence", "1")
    assert code == EXIT_ERROR
    assert "RELEASEBOT_SIGNING_KEY: not an unencrypted PEM private key" in err


# --- the dashboard and the well-known key ----------------------------------------------------


async def test_the_dashboard_pack_is_signed_and_verifies_with_the_served_public_key(
    bot_factory: BotFactory,
    clock: FrozenClock,
    capsys: pytest.CaptureFixture[str],
    keys: Path,
    tmp_path: Path,
) -> None:
    env = {"RELEASEBOT_SIGNING_KEY": str(keys / "releasebot-signing.pem")}
    async with bot_factory(env=env) as bot:
        await two_releases(bot, clock)
        served = await bot.http.get("/.well-known/releasebot-signing-key")
        answer = await bot.http.get("/deployments/1/evidence.json")
    assert served.status_code == 200
    key = served.json()
    assert key["algorithm"] == "ed25519"
    assert key["public_key"] == (keys / "releasebot-signing.pub").read_text()
    assert answer.status_code == 200
    pack = answer.json()
    assert pack["signature"]["key_fingerprint"] == key["key_fingerprint"]

    public = tmp_path / "served.pub"
    public.write_text(key["public_key"])
    path = tmp_path / "dashboard-pack.json"
    path.write_bytes(answer.content)
    assert verify_pack(capsys, path, public)[0] == EXIT_OK
    pack["checks"] = []
    path.write_text(json.dumps(pack))
    assert verify_pack(capsys, path, public)[0] == EXIT_FAIL


async def test_without_a_signing_key_the_well_known_route_says_so_and_packs_are_unsigned(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    async with bot_factory() as bot:
        await two_releases(bot, clock)
        served = await bot.http.get("/.well-known/releasebot-signing-key")
        answer = await bot.http.get("/deployments/1/evidence.json")
    assert served.status_code == 404
    assert served.json() == {
        "error": "no signing key is configured (RELEASEBOT_SIGNING_KEY is not set)"
    }
    assert answer.status_code == 200
    assert "signature" not in answer.json()
