"""The web dashboard through the real app: pages built from a release that went through a
gate (signed GitHub deliveries, signed Slack clicks), escaping, the token and GET-only."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot.ports import Commit, Comparison
from bot.scheduling import checks_tick
from bot.services import assessment, dashboard
from bot.store.db import Database
from bot.store.tables import Deployment, Release
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeGitHub, FrozenClock
from tests.helpers import (
    GENERIC_SECRET,
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    generic_body,
    github_headers,
    signed_headers,
)
from tests.slackflow import click, request_gate, the_gate

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
TOKEN = "dashboard-token-for-tests"
PAGES = ("/", "/deployments/1", "/audit", "/dora")


def html(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return answer.text


async def deliver(bot: Bot, event: str, body: dict[str, Any]) -> None:
    raw = encode(body)
    answer = await bot.post("/webhooks/github", raw, github_headers(event, raw))
    assert answer.status_code == 202, answer.text
    await bot.send_outbox()


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    """The usual test environment, with generic webhooks (any CI) enabled."""
    return {**environ, "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}


@pytest.fixture
async def released(
    gated_bot: Bot, github: FakeGitHub, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bot]:
    """checkout production: a medium-risk release whose commit message carries a script tag,
    approved by a release manager in Slack, deployed, its first checks passed; and a
    payments-batch deploy reported by a CI whose actor and commit carry script tags."""
    bot = gated_bot
    github.compare_files = [
        {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
    ]
    comparison: Callable[[str], dict[str, Any]] = github._comparison

    def with_a_script_tag(path: str) -> dict[str, Any]:
        data = comparison(path)
        for commit in [data, *data.get("commits", [])]:
            if "commit" in commit:
                commit["commit"]["message"] = f"Speed up checkout {EVIL}\n\nmore words"
        return data

    monkeypatch.setattr(github, "_comparison", with_a_script_tag)
    await request_gate(bot)
    await click(bot, "U0RM1", "release_approve", the_gate(bot).id or 0)
    await deliver(bot, "deployment_status", deployment_status("success", deployment_id=777))
    await checks_tick(bot.runtime)  # health at 0s
    await bot.send_outbox()
    body = encode(
        generic_body(
            "succeeded",
            actor=EVIL,
            commits=[
                {
                    "sha": SHA_B,
                    "message": f"Batch payouts {EVIL}",
                    "author": EVIL,
                    "timestamp": "2026-11-16T15:04:05+01:00",
                }
            ],
        )
    )
    answer = await bot.post("/webhooks/generic", body, signed_headers(body, GENERIC_SECRET))
    assert answer.status_code == 202, answer.text
    await bot.send_outbox()
    yield bot


# --- pages -----------------------------------------------------------------------------------


async def test_the_empty_dashboard_renders(bot: Bot) -> None:
    page = html(await bot.http.get("/"))
    assert "<h1>Releases</h1>" in page
    for service in ("checkout", "ledger", "storefront", "payments-batch"):
        assert f"<h2>{service}</h2>" in page
    assert "No deployments yet." in page
    assert 'href="/static/dashboard.css"' in page
    assert "Chain intact: 0 records verified" in html(await bot.http.get("/audit"))
    dora = html(await bot.http.get("/dora"))
    assert "<svg" in dora and "No deploys in this period" in dora


async def test_pages_carry_a_strict_content_security_policy(bot: Bot) -> None:
    answer = await bot.http.get("/")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert "script-src" not in policy  # no scripts at all
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    for page in PAGES[:1] + PAGES[2:]:
        text = html(await bot.http.get(page))
        assert "<script" not in text
        assert re.search(r"""(?:src|href)=["']?(?:https?:)?//""", text) is None  # no CDN


async def test_the_overview_lists_each_environment_with_state_and_risk(released: Bot) -> None:
    page = html(await released.http.get("/"))
    production = page.split('aria-label="checkout production"', 1)[1].split("</article>", 1)[0]
    assert 'href="/deployments/1"' in production
    assert "Verifying" in production and "tone-info" in production
    assert "medium" in production and 'class="score">33<' in production
    assert "tone-warn" in production  # medium risk is amber
    assert SHA_A[:7] in production
    staging = page.split('aria-label="checkout staging"', 1)[1].split("</article>", 1)[0]
    assert "No deployments yet." in staging
    batch = page.split('aria-label="payments-batch production"', 1)[1].split("</article>", 1)[0]
    assert 'href="/deployments/2"' in batch and "v2.3.0" in batch


async def test_the_deployment_page_shows_timeline_approval_and_checks(released: Bot) -> None:
    page = html(await released.http.get("/deployments/1"))
    assert "checkout" in page and "production" in page
    # the gate and its approval
    approvals = page.split("<h2>Approvals</h2>", 1)[1].split("</section>", 1)[0]
    assert "Gate 1" in approvals and "1 from S0RELMGRS" in approvals
    assert "<td>U0RM1</td>" in approvals and "Approved" in approvals
    # the checks planned for production and the one that ran
    checks = page.split("<h2>Verification</h2>", 1)[1].split("</section>", 1)[0]
    assert "health" in checks and "error-rate" in checks
    assert "Passed" in checks and "HTTP 200" in checks and "Pending" in checks
    # the risk factors and the commit
    assert "Touches a sensitive path: Dockerfile" in page
    assert f"Speed up checkout {ESCAPED}" in page and "more words" not in page
    # the timeline, in chain order
    timeline = page.split("<h2>Timeline</h2>", 1)[1]
    actions = re.findall(r'<code class="action">([^<]+)</code>', timeline)
    assert actions[0] == "deployment.created"
    for expected in ("gate.opened", "gate.approved", "deployment.state_changed", "check.passed"):
        assert expected in actions
    assert actions.index("gate.opened") < actions.index("gate.approved")
    assert 'href="/deployments/1/evidence.json"' in page
    assert 'href="https://github.com/acme/checkout/actions/runs/4242"' in page


async def test_the_release_message_link_opens_the_deployment_page(released: Bot) -> None:
    details = f"{released.runtime.settings.public_url}/deployments/1"
    path = httpx.URL(details).path
    assert path == "/deployments/1"
    assert (await released.http.get(path)).status_code == 200


async def test_a_missing_deployment_is_a_404_page(bot: Bot) -> None:
    for path in ("/deployments/999", "/deployments/abc", "/deployments/999/evidence.json"):
        answer = await bot.http.get(path)
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")
        assert "Not found" in answer.text


async def test_the_evidence_pack_downloads_as_json(released: Bot) -> None:
    answer = await released.http.get("/deployments/1/evidence.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="evidence-checkout-')
    assert disposition.endswith('-release-1.json"')
    pack = json.loads(answer.content)
    assert pack["format"] == "releasebot.evidence/1"
    assert pack["release"]["sha"] == SHA_A
    [deployment] = pack["deployments"]
    assert deployment["gates"][0]["approvals"][0]["user_id"] == "U0RM1"
    assert pack["audit"]["chain"]["verified"] is True
    assert pack["change"]["commits"][0]["message"].startswith(f"Speed up checkout {EVIL}")


async def test_the_audit_page_says_intact_then_broken_after_tampering(released: Bot) -> None:
    page = html(await released.http.get("/audit"))
    with released.runtime.db.read() as session:
        total = dashboard.audit_page(session, limit=1).total
    assert f"Chain intact: {total} records verified" in page
    assert "BROKEN" not in page

    with released.runtime.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 5"))

    page = html(await released.http.get("/audit"))
    assert "Chain BROKEN at record 5" in page
    assert "Chain intact" not in page
    assert 'id="seq-5" class="broken"' in page


async def test_the_audit_log_pages_newest_first(released: Bot) -> None:
    with released.runtime.db.read() as session:
        first = dashboard.audit_page(session, limit=5)
        total = first.total
        assert [r.seq for r in first.records] == list(range(total, total - 5, -1))
        assert first.older_than == total - 4 and first.newer_than is None
        second = dashboard.audit_page(session, limit=5, before_seq=first.older_than)
        assert [r.seq for r in second.records] == list(range(total - 5, total - 10, -1))
        assert second.newer_than == total + 1
    page = html(await released.http.get("/audit?before=3"))
    assert re.findall(r'<td class="num">(\d+)</td>', page) == ["2", "1"]
    assert "Older" not in page and 'href="/audit?before=' in page  # a way back to newer
    assert (await released.http.get("/audit?before=x")).status_code == 400


async def test_the_dora_page_draws_svg_charts(released: Bot) -> None:
    page = html(await released.http.get("/dora"))
    assert page.count("<svg") == 2
    assert '<rect class="bar-ok"' in page and '<circle class="dot"' in page
    # checkout and payments-batch, both in the week of 2026-11-17 (Monday the 16th)
    assert "Nov 16: 2 deploys" in page
    # deployed 2026-11-17 10:00; authored 2026-11-16 09:00 (25h) and 14:04:05 (19h 56m)
    assert "Nov 16: median 22h 27m" in page
    assert html(await released.http.get("/dora?days=30&bucket=day")).count("<svg") == 2
    assert (await released.http.get("/dora?bucket=month")).status_code == 400
    assert (await released.http.get("/dora?days=5000")).status_code == 400


async def test_text_from_commits_and_deployers_is_escaped_everywhere(released: Bot) -> None:
    seen = 0
    for path in PAGES:
        page = html(await released.http.get(path))
        assert EVIL not in page and "<script" not in page, path
        seen += ESCAPED in page
    assert ESCAPED in html(await released.http.get("/"))  # the payments-batch deployer
    assert ESCAPED in html(await released.http.get("/deployments/1"))  # the commit message
    second = html(await released.http.get("/deployments/2"))
    assert f"Batch payouts {ESCAPED}" in second and f"<dd>{ESCAPED}</dd>" in second
    assert ESCAPED in html(await released.http.get("/audit"))  # the actor
    assert seen >= 3


# --- access ----------------------------------------------------------------------------------


@pytest.fixture
async def guarded(bot_factory: BotFactory) -> AsyncIterator[Bot]:
    async with bot_factory(env={"RELEASEBOT_DASHBOARD_TOKEN": TOKEN}) as running:
        yield running


async def test_without_a_token_configured_the_dashboard_is_open(bot: Bot) -> None:
    assert (await bot.http.get("/")).status_code == 200
    assert (await bot.http.get("/?token=anything")).status_code == 200


async def test_a_configured_token_is_required(guarded: Bot) -> None:
    for path in (*PAGES, "/deployments/1/evidence.json"):
        answer = await guarded.http.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "Sign-in required" in answer.text
        assert TOKEN not in answer.text
    wrong = await guarded.http.get("/", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = await guarded.http.get("/", headers={"authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert (await guarded.http.get("/", headers={"authorization": TOKEN})).status_code == 401
    raw_cookie = await guarded.http.get("/", headers={"cookie": f"token={TOKEN}"})
    assert raw_cookie.status_code == 401  # the cookie holds an HMAC of the token, not it
    # the stylesheet is public, so the 401 page is styled
    assert (await guarded.http.get("/static/dashboard.css")).status_code == 200


async def test_the_token_in_the_url_signs_a_browser_in_with_a_cookie(guarded: Bot) -> None:
    assert (await guarded.http.get("/?token=wrong")).status_code == 401
    answer = await guarded.http.get(f"/audit?before=3&token={TOKEN}")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/audit?before=3"  # the token leaves the address
    cookie = answer.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    value = rest.split(";", 1)[0]
    assert name == "token" and value and TOKEN not in cookie
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    guarded.http.cookies.clear()
    for path in PAGES[:1] + PAGES[2:]:
        signed_in = await guarded.http.get(path, headers={"cookie": f"token={value}"})
        assert signed_in.status_code == 200, path
    forged = await guarded.http.get("/", headers={"cookie": f"token={value[:-1]}0"})
    assert forged.status_code == 401


# --- read-only -------------------------------------------------------------------------------


async def test_only_get_is_allowed(bot: Bot) -> None:
    for path in (*PAGES, "/deployments/1/evidence.json", "/static/dashboard.css"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            answer = await bot.http.request(method, path)
            assert answer.status_code == 405, (method, path)


async def test_the_stylesheet_is_served_by_the_app(bot: Bot) -> None:
    answer = await bot.http.get("/static/dashboard.css")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/css")
    assert "@import" not in answer.text and "url(http" not in answer.text
    for bad in ("/static/../settings.py", "/static/%2e%2e/settings.py", "/static/nope.css"):
        assert (await bot.http.get(bad)).status_code == 404, bad


# --- DORA series -----------------------------------------------------------------------------


def test_dora_series_counts_deploys_and_median_lead_time_per_week(db: Database) -> None:
    now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday
    week = datetime(2026, 11, 16, tzinfo=UTC)  # its Monday

    def seed(session: Any) -> None:
        def release(sha: str, *authored: datetime) -> int:
            row = Release(service="checkout", sha=sha * 40, created_at=now)
            session.add(row)
            session.flush()
            assert row.id is not None
            commits = [
                Commit(sha=f"{sha}{i}".ljust(40, "0"), message="m", author="a", authored_at=at)
                for i, at in enumerate(authored)
            ] + [Commit(sha="f" * 40, message="no time", author="a", authored_at=None)]
            # stored as the worker stores a release's commits
            assessment.store_comparison(
                row,
                comparison=Comparison(tuple(commits), (), len(commits), False),
                base=None,
                source="test",
            )
            return row.id

        def deploy(release_id: int, sha: str, at: datetime, env: str, state: str, n: int) -> None:
            session.add(
                Deployment(
                    release_id=release_id,
                    service="checkout",
                    environment=env,
                    sha=sha * 40,
                    attempt=n,
                    state=state,
                    source="test",
                    created_at=at,
                    updated_at=at,
                    deployed_at=at,
                )
            )

        a = release("a", week + timedelta(hours=1), week - timedelta(hours=3))
        deploy(a, "a", week + timedelta(hours=5), "production", "verified", 1)  # 4h and 8h
        deploy(a, "a", week + timedelta(hours=6), "production", "verified", 2)  # no new leads
        deploy(a, "a", week + timedelta(hours=2), "staging", "verified", 1)  # not production
        b = release("b", week - timedelta(days=7, hours=-2))
        deploy(b, "b", week - timedelta(days=7, hours=-12), "production", "rolled_back", 1)

    db.write(seed)
    with db.read() as session:
        series = dashboard.dora_series(session, now=now, days=28)
        daily = dashboard.dora_series(session, now=now, days=3, bucket="day")
    assert series.since == week - timedelta(weeks=4)  # the Monday on or before 27 days ago
    assert [b.start for b in series.buckets][-2:] == [week - timedelta(weeks=1), week]
    this, last = series.buckets[-1], series.buckets[-2]
    assert (this.deploys, this.failed, this.commits) == (2, 0, 2)
    assert this.lead_time_median == 6 * 3600  # median of 4h and 8h
    assert (last.deploys, last.failed, last.lead_time_median) == (1, 1, 10 * 3600)
    assert (series.deploys, series.failed) == (3, 1)
    assert series.lead_time_median == 8 * 3600  # median of 4h, 8h and 10h
    assert series.change_failure_rate == pytest.approx(1 / 3)
    assert [(b.start.day, b.deploys) for b in daily.buckets] == [(16, 2), (17, 0), (18, 0)]
    with pytest.raises(ValueError, match="bucket"):
        dashboard.dora_series(session, now=now, bucket="month")
