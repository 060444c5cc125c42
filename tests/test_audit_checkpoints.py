"""Audit checkpoints: the chain's head published outside the database, and held against it.

The app runs with a checkpoint file, the Slack audit channel (`slack.audit_channel`), a
signed webhook sink and a signing key made by `releasebot keys generate`. The scheduler's
job is called as a plain function with the test clock; the outbox worker publishes. An
attacker then changes the database (raw SQL) or the checkpoint file, and
`releasebot audit verify --checkpoints FILE` must name the first bad record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot.app import Overrides
from bot.cli import main
from bot.config.loading import parse_config
from bot.scheduling import audit_checkpoint
from bot.store.db import make_engine
from bot.store.tables import Release
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import EXAMPLE_CONFIG, SHA_A, SHA_B, example_config_data
from tests.slackflow import gated_env, request_gate
from tests.test_audit import deploy, two_releases

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
AUDIT_CHANNEL = "#audit-trail"
SINK = "https://audit-sink.example/checkpoints"
SINK_SECRET = "sink-hmac-secret-0123456789"


@dataclass
class Sink:
    """The webhook sink: records what it received, answers with `statuses` in turn."""

    statuses: list[int] = field(default_factory=list)
    received: list[httpx.Request] = field(default_factory=list)

    def handler(self, edge: FakeEdge) -> Callable[[httpx.Request], httpx.Response]:
        def route(request: httpx.Request) -> httpx.Response:
            if request.url.host != "audit-sink.example":
                return edge.transport.handle_request(request)
            self.received.append(request)
            return httpx.Response(self.statuses.pop(0) if self.statuses else 200)

        return route


@dataclass
class Published:
    file: Path
    public_key: Path
    sink: Sink


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A signing key pair made the way an operator makes one."""
    assert main(["keys", "generate", "--out", str(tmp_path / "keys")]) == EXIT_OK
    capsys.readouterr()
    return tmp_path / "keys"


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    return database_url


@pytest.fixture
def published(tmp_path: Path, keys: Path) -> Published:
    return Published(
        tmp_path / "anchors" / "checkpoints.jsonl", keys / "releasebot-signing.pub", Sink()
    )


def publishing_bot(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    *,
    edge: FakeEdge | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    data = example_config_data()
    data["slack"]["audit_channel"] = AUDIT_CHANNEL
    edge = edge or FakeEdge()
    overrides = Overrides(
        clock=clock,
        config=parse_config(data),
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=httpx.MockTransport(published.sink.handler(edge)),
        environ={},
    )
    return bot_factory(
        env={
            "RELEASEBOT_AUDIT_CHECKPOINT_FILE": str(published.file),
            "RELEASEBOT_AUDIT_CHECKPOINT_URL": SINK,
            "RELEASEBOT_AUDIT_CHECKPOINT_SECRET": SINK_SECRET,
            "RELEASEBOT_SIGNING_KEY": str(keys / "releasebot-signing.pem"),
            **(env or {}),
        },
        overrides=overrides,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def head(database_url: str) -> tuple[int, str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1")
            ).one()
            return int(row.seq), str(row.hash)
    finally:
        engine.dispose()


def execute(database_url: str, statement: str, **params: Any) -> int:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            return int(conn.execute(sa.text(statement), params).rowcount)
    finally:
        engine.dispose()


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", "verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def checkpoint(bot: Bot) -> int | None:
    """Send what is due (the risk assessment appends records too), then run the job."""
    await bot.send_outbox()
    seq = await audit_checkpoint(bot.runtime)
    await bot.send_outbox()
    return seq


# --- publishing ---------------------------------------------------------------------------


async def test_the_job_publishes_the_head_everywhere_and_only_when_it_moved(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    slack: FakeSlackWebApi,
    cli_env: str,
) -> None:
    async with publishing_bot(
        bot_factory, clock, published, keys, env={"RELEASEBOT_AUDIT_KEY": "k1:" + "s" * 20}
    ) as bot:
        await deploy(bot, clock, SHA_A, "in_progress", "success")
        await bot.send_outbox()  # the risk assessment appends its record too
        seq, digest = head(cli_env)
        at = clock.now()
        assert await checkpoint(bot) == seq
        assert await checkpoint(bot) is None  # the head has not moved: nothing new
        await deploy(bot, clock, SHA_B, "in_progress")
        later = await checkpoint(bot)

    first, second = lines(published.file)
    assert (first["seq"], first["hash"], first["key_id"]) == (seq, digest, "k1")
    assert first["type"] == "releasebot.audit_checkpoint" and first["reason"] == "interval"
    assert first["at"] == at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert first["signature"]["algorithm"] == "ed25519"
    assert second["seq"] == later and later is not None and later > seq

    posts = slack.messages(AUDIT_CHANNEL)
    assert len(posts) == 2
    assert f"Audit checkpoint (signed): record {seq}, hash `{digest}`, key k1" in posts[0]["text"]

    assert len(published.sink.received) == 2
    request = published.sink.received[0]
    body = request.content
    assert json.loads(body) == first
    expected = "sha256=" + hmac.new(SINK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert request.headers["X-Releasebot-Signature-256"] == expected


async def test_the_webhook_sink_is_retried_through_the_outbox_until_it_answers(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
) -> None:
    published.sink.statuses = [503]
    async with publishing_bot(bot_factory, clock, published, keys) as bot:
        await deploy(bot, clock, SHA_A, "in_progress")
        await checkpoint(bot)
        assert len(published.sink.received) == 1
        assert len(lines(published.file)) == 1  # the file and Slack do not wait for it
        clock.advance(minutes=10)
        await bot.send_outbox()
    assert len(published.sink.received) == 2
    assert published.sink.received[0].content == published.sink.received[1].content
    assert len(lines(published.file)) == 1  # never appended twice


async def test_a_gate_decided_in_production_is_checkpointed_at_once(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    app_private_key: str,
    slack: FakeSlackWebApi,
    cli_env: str,
) -> None:
    edge = FakeEdge()
    async with publishing_bot(
        bot_factory, clock, published, keys, edge=edge, env=gated_env(app_private_key)
    ) as bot:
        await request_gate(bot)  # low risk: the production gate is approved on assessment
        await bot.send_outbox()
        assert [d["state"] for d in edge.github.decisions()] == ["approved"]
    [line] = lines(published.file)
    assert line["reason"].startswith("production decision, deployment ")
    assert line["seq"] >= 1
    assert verify_line_is_a_stored_record(cli_env, line)
    assert len(slack.messages(AUDIT_CHANNEL)) == 1


def verify_line_is_a_stored_record(database_url: str, line: dict[str, Any]) -> bool:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT hash, action FROM audit_event WHERE seq = :s"), {"s": line["seq"]}
            ).one()
    finally:
        engine.dispose()
    return bool(stored.hash == line["hash"])


# --- verifying against checkpoints --------------------------------------------------------


async def test_an_untouched_chain_matches_its_signed_checkpoints(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with publishing_bot(bot_factory, clock, published, keys) as bot:
        await deploy(bot, clock, SHA_A, "in_progress", "success")
        await checkpoint(bot)
        await deploy(bot, clock, SHA_B, "in_progress")
        await checkpoint(bot)
    code, out, err = verify(
        capsys, "--checkpoints", str(published.file), "--public-key", str(published.public_key)
    )
    assert (code, err) == (EXIT_OK, "")
    assert f"checkpoints: 2 in {published.file} match the chain" in out


async def test_deleting_the_newest_records_passes_alone_but_not_against_a_checkpoint(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with publishing_bot(bot_factory, clock, published, keys) as bot:
        await two_releases(bot, clock)
        last = await checkpoint(bot)
    assert last is not None and head(cli_env)[0] == last
    assert execute(cli_env, "DELETE FROM audit_event WHERE seq > :s", s=last - 6) == 6

    assert verify(capsys)[0] == EXIT_OK  # the truncated chain still links up on its own
    code, _, err = verify(
        capsys, "--checkpoints", str(published.file), "--public-key", str(published.public_key)
    )
    assert code == EXIT_FAIL
    assert f"audit chain broken at record {last - 5}:" in err
    assert f"the chain ends at record {last - 6}" in err
    assert f"vouches for record {last}: records were deleted" in err


async def test_a_rewritten_unkeyed_chain_passes_alone_but_not_against_a_checkpoint(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with publishing_bot(bot_factory, clock, published, keys) as bot:
        await two_releases(bot, clock)
        last = await checkpoint(bot)
    assert last is not None
    rewrite_unkeyed(cli_env, start=2)

    assert verify(capsys)[0] == EXIT_OK  # without a key the rewrite links up
    code, _, err = verify(
        capsys, "--checkpoints", str(published.file), "--public-key", str(published.public_key)
    )
    assert code == EXIT_FAIL
    assert f"audit chain broken at record {last}:" in err
    assert f"the chain was rewritten at or before record {last}" in err


def rewrite_unkeyed(database_url: str, *, start: int) -> None:
    """Change record `start`'s actor and recompute every sha256 link after it."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            stored = [
                dict(r._mapping)
                for r in conn.execute(sa.text("SELECT * FROM audit_event ORDER BY seq"))
            ]
            previous = stored[start - 2]["hash"]
            for row in stored[start - 1 :]:
                if row["seq"] == start:
                    row["actor"] = "U0MALLORY"
                fields = {k: row[k] for k in ("seq", "at", "actor", "action", "subject")}
                fields["details"] = json.loads(row["details"])
                text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                digest = hashlib.sha256((previous + text).encode()).hexdigest()
                conn.execute(
                    sa.text(
                        "UPDATE audit_event SET actor = :a, prev_hash = :p, hash = :h"
                        " WHERE seq = :s"
                    ),
                    {"a": row["actor"], "p": previous, "h": digest, "s": row["seq"]},
                )
                previous = digest
    finally:
        engine.dispose()


async def test_a_forged_checkpoint_line_is_caught_by_its_signature(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with publishing_bot(bot_factory, clock, published, keys) as bot:
        await deploy(bot, clock, SHA_A, "in_progress", "success")
        first = await checkpoint(bot)
        await deploy(bot, clock, SHA_B, "in_progress", "success")
        second = await checkpoint(bot)
    assert first is not None and second is not None
    # Delete the records after the first checkpoint, and make the file agree: the second
    # line now vouches for the truncated head (its old signature kept, or none at all).
    execute(cli_env, "DELETE FROM audit_event WHERE seq > :s", s=first + 1)
    seq, digest = head(cli_env)
    original = lines(published.file)
    forged = {**original[1], "seq": seq, "hash": digest}
    unsigned = {k: v for k, v in forged.items() if k != "signature"}
    monkeypatch.setenv("RELEASEBOT_SIGNING_KEY", str(keys / "releasebot-signing.pem"))
    for fake, why in ((forged, "changed after signing"), (unsigned, "carries no signature")):
        published.file.write_text("\n".join(json.dumps(doc) for doc in (original[0], fake)) + "\n")
        assert verify(capsys, "--checkpoints", str(published.file))[0] == EXIT_FAIL  # own key
        code, _, err = verify(
            capsys, "--checkpoints", str(published.file), "--public-key", str(published.public_key)
        )
        assert code == EXIT_FAIL
        assert f"audit chain broken at record {seq}: checkpoint on line 2 (record {seq})" in err
        assert why in err


async def test_checkpoints_that_cannot_be_read_are_a_usage_error(
    cli_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = verify(capsys, "--checkpoints", str(tmp_path / "missing.jsonl"))
    assert code == EXIT_ERROR
    assert "cannot read it" in err
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    code, _, err = verify(capsys, "--checkpoints", str(garbage))
    assert code == EXIT_FAIL
    assert "line 1 is not JSON" in err


@pytest.mark.parametrize(("every", "seconds"), [(None, 300), ("60", 60)])
async def test_the_checkpoint_job_runs_every_configured_interval(
    bot_factory: BotFactory, every: str | None, seconds: int
) -> None:
    from bot.scheduling import build_scheduler, register_jobs

    async with bot_factory(env={"RELEASEBOT_AUDIT_CHECKPOINT_EVERY": every}) as bot:
        scheduler = build_scheduler()
        register_jobs(scheduler, bot.runtime)
        job = scheduler.get_job("audit.checkpoint")
    assert job is not None
    assert job.trigger.interval.total_seconds() == seconds


async def test_the_evidence_pack_names_the_signed_checkpoint_that_covers_its_release(
    bot_factory: BotFactory,
    clock: FrozenClock,
    published: Published,
    keys: Path,
    app_private_key: str,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELEASEBOT_CONFIG", str(EXAMPLE_CONFIG))
    edge = FakeEdge()
    async with publishing_bot(
        bot_factory, clock, published, keys, edge=edge, env=gated_env(app_private_key)
    ) as bot:
        await request_gate(bot)  # the production decision is checkpointed at once
        await bot.send_outbox()  # ... and the callback's receipt is recorded after it
        with bot.runtime.db.read() as session:
            [release_id] = session.execute(sa.select(Release.id)).scalars().all()
        capsys.readouterr()
        assert main(["audit", "evidence", str(release_id)]) == 0
        stretch = json.loads(capsys.readouterr().out)["audit"]["stretch"]
        [decision] = lines(published.file)
        assert decision["seq"] < stretch["last_seq"]
        assert stretch["checkpoint"] is None  # nothing published covers the receipt yet

        await audit_checkpoint(bot.runtime)  # the scheduler's next checkpoint
        await bot.send_outbox()
    assert main(["audit", "evidence", str(release_id)]) == 0
    stretch = json.loads(capsys.readouterr().out)["audit"]["stretch"]
    covering = stretch["checkpoint"]
    assert set(covering["published_to"].values()) == {"sent"}
    line = lines(published.file)[-1]
    assert covering["checkpoint"] == line  # the very line the file holds, signature included
    assert line["seq"] >= stretch["last_seq"] and "signature" in line
