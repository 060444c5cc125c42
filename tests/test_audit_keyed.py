"""The keyed audit chain (RELEASEBOT_AUDIT_KEY), as an auditor and an attacker meet it.

Records come from real deployments posted to the running app; `releasebot audit verify`
then reads the same database. Tampering is raw SQL behind the app's back, done the way an
attacker with database access but without the audit key would do it. Keyed hashes are
recomputed here from the docs/audit.md definition, independently of bot.domain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.store.db import make_engine
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, SHA_B
from tests.test_audit import deploy, mentions_record, two_releases

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
GENESIS = "0" * 64
SECRET_A = "alpha-secret-0123456789abcdef"
SECRET_B = "bravo-secret-0123456789abcdef"
KEY_A = f"A:{SECRET_A}"
KEY_B = f"B:{SECRET_B}"


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    return database_url


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", "verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unkeyed_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """What an attacker without the key can compute: the plain sha256 link."""
    fields = {name: row[name] for name in ("seq", "at", "actor", "action", "subject")}
    fields["details"] = json.loads(row["details"])
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def keyed_hash(prev_hash: str, row: dict[str, Any], secret: str) -> str:
    fields = {name: row[name] for name in ("seq", "at", "actor", "action", "subject", "key_id")}
    fields["details"] = json.loads(row["details"])
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(secret.encode(), (prev_hash + canonical).encode(), hashlib.sha256).hexdigest()


def rows(database_url: str) -> list[dict[str, Any]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text("SELECT * FROM audit_event ORDER BY seq"))
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def execute(database_url: str, *statements: tuple[str, dict[str, Any]]) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for statement, params in statements:
                conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def rehash_from(database_url: str, start: int, *, strip_key: bool) -> None:
    """Recompute every hash from `start` on without the key (optionally dropping key ids)."""
    stored = rows(database_url)
    previous = stored[start - 2]["hash"] if start > 1 else GENESIS
    updates = []
    for row in stored[start - 1 :]:
        digest = unkeyed_hash(previous, row)
        updates.append(
            (
                "UPDATE audit_event SET prev_hash = :prev, hash = :hash"
                + (", key_id = NULL" if strip_key else "")
                + " WHERE seq = :seq",
                {"prev": previous, "hash": digest, "seq": row["seq"]},
            )
        )
        previous = digest
    execute(database_url, *updates)


async def keyed_releases(bot_factory: BotFactory, clock: FrozenClock, key: str) -> None:
    async with bot_factory(env={"RELEASEBOT_AUDIT_KEY": key}) as bot:
        await two_releases(bot, clock)


# --- the keyed chain ----------------------------------------------------------------------


async def test_records_written_under_a_key_carry_its_id_and_an_hmac_only_the_key_verifies(
    bot_factory: BotFactory,
    clock: FrozenClock,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await keyed_releases(bot_factory, clock, KEY_A)
    stored = rows(cli_env)
    assert len(stored) >= 6
    previous = GENESIS
    for row in stored:
        assert row["key_id"] == "A"
        assert row["prev_hash"] == previous
        assert row["hash"] == keyed_hash(previous, row, SECRET_A)
        assert row["hash"] != unkeyed_hash(previous, row)
        previous = row["hash"]

    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", KEY_A)
    code, out, err = verify(capsys)
    assert (code, err) == (EXIT_OK, "")
    assert f"audit chain intact: {len(stored)} records verified" in out
    assert "keyed with: A" in out
    assert "could rewrite" not in out


async def test_the_key_can_be_read_from_a_file(
    bot_factory: BotFactory,
    clock: FrozenClock,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY_A + "\n")
    await keyed_releases(bot_factory, clock, str(key_file))
    assert {row["key_id"] for row in rows(cli_env)} == {"A"}
    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", str(key_file))
    assert verify(capsys)[0] == EXIT_OK


async def test_without_a_key_verify_says_plainly_that_a_full_rewrite_would_pass(
    bot: Bot, clock: FrozenClock, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await two_releases(bot, clock)
    assert {row["key_id"] for row in rows(cli_env)} == {None}
    code, out, _ = verify(capsys)
    assert code == EXIT_OK
    assert "carry no audit key" in out
    assert "could rewrite them and the whole chain after them" in out


async def test_an_edited_field_of_a_keyed_record_is_reported_at_that_record(
    bot_factory: BotFactory,
    clock: FrozenClock,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await keyed_releases(bot_factory, clock, KEY_A)
    target = rows(cli_env)[2]
    execute(
        cli_env,
        ("UPDATE audit_event SET actor = :a WHERE seq = :s", {"a": "mallory", "s": target["seq"]}),
    )
    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", KEY_A)
    code, _, err = verify(capsys)
    assert code == EXIT_FAIL
    assert f"audit chain broken at record {target['seq']}:" in err
    assert "hash does not match" in err


@pytest.mark.parametrize("strip_key", [False, True], ids=["key-id-kept", "key-id-dropped"])
async def test_an_edit_with_the_rest_rehashed_without_the_key_is_caught_at_the_edit(
    bot_factory: BotFactory,
    clock: FrozenClock,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    strip_key: bool,
) -> None:
    await keyed_releases(bot_factory, clock, KEY_A)
    stored = rows(cli_env)
    target = stored[3]
    forged = json.dumps(
        {**json.loads(target["details"]), "approver": "U0MALLORY"},
        sort_keys=True,
        separators=(",", ":"),
    )
    execute(
        cli_env,
        ("UPDATE audit_event SET details = :d WHERE seq = :s", {"d": forged, "s": target["seq"]}),
    )
    rehash_from(cli_env, target["seq"], strip_key=strip_key)
    after = rows(cli_env)
    assert all(  # every link holds as plain sha256: the unkeyed check alone would pass
        row["prev_hash"] == (after[i - 1]["hash"] if i else GENESIS) for i, row in enumerate(after)
    )

    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", KEY_A)
    code, _, err = verify(capsys)
    assert code == EXIT_FAIL
    assert f"audit chain broken at record {target['seq']}:" in err
    if strip_key:
        assert "no key id after keyed records" in err


async def test_a_record_inserted_into_a_keyed_chain_is_reported_at_the_insertion(
    bot_factory: BotFactory,
    clock: FrozenClock,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await keyed_releases(bot_factory, clock, KEY_A)
    stored = rows(cli_env)
    after = stored[2]  # the forged record goes right after this one
    inserted = {
        "seq": after["seq"] + 1,
        "at": after["at"],
        "actor": "U0MALLORY",
        "action": "gate.approved",
        "subject": "gate:1",
        "details": "{}",
        "key_id": "A",
    }
    inserted["prev_hash"] = after["hash"]
    inserted["hash"] = unkeyed_hash(after["hash"], inserted)
    last = stored[-1]["seq"]
    execute(
        cli_env,
        # make room: move the later records up by one (through negative numbers, so the
        # primary key never collides on either database)
        ("UPDATE audit_event SET seq = -seq WHERE seq > :s", {"s": after["seq"]}),
        ("UPDATE audit_event SET seq = 1 - seq WHERE seq < 0", {}),
        (
            "INSERT INTO audit_event (seq, at, actor, action, subject, details, prev_hash, hash,"
            " key_id) VALUES (:seq, :at, :actor, :action, :subject, :details, :prev_hash,"
            " :hash, :key_id)",
            inserted,
        ),
    )
    assert rows(cli_env)[-1]["seq"] == last + 1

    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", KEY_A)
    code, _, err = verify(capsys)
    assert code == EXIT_FAIL
    assert mentions_record(err, inserted["seq"])
    assert f"audit chain broken at record {inserted['seq']}:" in err


# --- rotation -----------------------------------------------------------------------------


async def test_a_new_key_continues_from_the_head_and_both_keys_verify_the_whole_chain(
    bot_factory: BotFactory,
    clock: FrozenClock,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with bot_factory(env={"RELEASEBOT_AUDIT_KEY": KEY_A}) as bot:
        await deploy(bot, clock, SHA_A, "in_progress", "success")
    under_a = len(rows(cli_env))
    async with bot_factory(
        env={"RELEASEBOT_AUDIT_KEY": KEY_B, "RELEASEBOT_AUDIT_KEYS": KEY_A}
    ) as bot:
        await deploy(bot, clock, SHA_B, "in_progress", "success")
    stored = rows(cli_env)
    assert [row["key_id"] for row in stored] == ["A"] * under_a + ["B"] * (len(stored) - under_a)
    first_b = stored[under_a]
    assert first_b["prev_hash"] == stored[under_a - 1]["hash"]  # continues from A's head
    assert first_b["hash"] == keyed_hash(first_b["prev_hash"], first_b, SECRET_B)

    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", KEY_B)
    monkeypatch.setenv("RELEASEBOT_AUDIT_KEYS", KEY_A)
    code, out, err = verify(capsys)
    assert (code, err) == (EXIT_OK, "")
    assert f"{len(stored)} records verified" in out
    assert "keyed with: A, B" in out

    monkeypatch.delenv("RELEASEBOT_AUDIT_KEYS")
    code, _, err = verify(capsys)
    assert code == EXIT_FAIL
    assert "audit chain broken at record 1:" in err
    assert "key id 'A', which is not available" in err


async def test_an_audit_key_that_cannot_work_is_a_usage_error_that_never_prints_the_secret(
    cli_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", "A:tooshort")
    code, out, err = verify(capsys)
    assert code == EXIT_ERROR
    assert "RELEASEBOT_AUDIT_KEY" in err and "shorter than 16 characters" in err
    assert "tooshort" not in err + out

    monkeypatch.setenv("RELEASEBOT_AUDIT_KEY", KEY_B)
    monkeypatch.setenv("RELEASEBOT_AUDIT_KEYS", "B:another-secret-0123456789")
    code, _, err = verify(capsys)
    assert code == EXIT_ERROR
    assert "key id 'B' is given two different secrets" in err
    assert SECRET_B not in err


async def test_the_app_refuses_to_start_with_an_unusable_audit_key(
    bot_factory: BotFactory,
) -> None:
    with pytest.raises(Exception, match="RELEASEBOT_AUDIT_KEY: expected <key-id>:<secret>"):
        async with bot_factory(env={"RELEASEBOT_AUDIT_KEY": "no separator here at all"}):
            pass
