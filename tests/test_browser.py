"""The sandbox and the dashboard in a real browser: Debian's Chromium, headless, via Playwright.

The bot runs for real in a background thread, as `releasebot demo` runs it: SQLite in a
temporary file, the local Slack sandbox, and the demo's stand-ins for GitHub, /healthz,
Prometheus and PagerDuty on a free loopback port. The demo's story is played up to the
production gate; then the browser acts as people in the sandbox and reads the dashboard.

Chromium is Debian's (`apt-get install chromium`; `.ci/run` installs it), found at
$RELEASEBOT_CHROMIUM or /usr/bin/chromium. Playwright never downloads a browser here, and a
missing Chromium fails the tests rather than skipping them. Each step leaves a screenshot in
artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import uvicorn
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bot.app import Overrides, create_app
from bot.cli import demo
from bot.settings import load_settings
from tests.helpers import EXAMPLE_CONFIG, REPO_ROOT

pytestmark = pytest.mark.browser

# Read at import: the autouse clean_environ fixture strips RELEASEBOT_* before each test.
CHROMIUM = Path(os.environ.get("RELEASEBOT_CHROMIUM") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
CHANNEL = "#checkout-deploys"
RITA, SAM, OLGA = "U0RELMGR1", "U0SRE0001", "U0OWNER01"
SCRIPT_COMMIT = "Tune the connection pool <script>"  # one of the stand-in's commit messages
WAIT_SECONDS = 20.0


@dataclass
class RunningDemo:
    base: str
    world: demo.World
    story: demo.Story

    def sandbox(self, user: str) -> str:
        return f"{self.base}/sandbox?" + urlencode({"as": user, "channel": CHANNEL})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _demo_config(world_port: int, path: Path) -> Path:
    """The example config, pointed at the stand-ins and made independent of the date.

    The checkout checks go to the stand-ins' port instead of the demo's fixed 9310/9390; the
    staging checks run once (the example also runs one at 30 s); and the year-end freeze is
    dropped, so the gate asks for one release manager whatever day the tests run on.
    """
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text = text.replace("127.0.0.1:9310", f"127.0.0.1:{world_port}")
    text = text.replace("127.0.0.1:9390", f"127.0.0.1:{world_port}")
    data = yaml.safe_load(text)
    data.pop("freezes", None)
    for environment in data["services"]["checkout"]["environments"]:
        if environment["name"] == "staging":
            for check in environment["verify"]:
                check["at"] = ["0s"]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _stop(server: uvicorn.Server, port: int) -> None:
    server.should_exit = True
    for thread in threading.enumerate():
        if thread.name == f"demo-{port}":
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """The bot and the outside world on free loopback ports, the story played to the gate."""
    tmp = tmp_path_factory.mktemp("browser")
    world = demo.World()
    world_port = _free_port()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    secret = secrets.token_hex(16)
    world_url = f"http://127.0.0.1:{world_port}"
    settings = load_settings(
        {
            "RELEASEBOT_CONFIG": str(_demo_config(world_port, tmp / "releasebot.yaml")),
            "RELEASEBOT_DATABASE_URL": f"sqlite:///{tmp / 'releasebot.db'}",
            "RELEASEBOT_PUBLIC_URL": base,  # the sandbox's Bolt client calls back over loopback
            "GITHUB_WEBHOOK_SECRET": secret,
            "GITHUB_TOKEN": "demo-token",
            "GITHUB_API_URL": world_url,
            "PAGERDUTY_EVENTS_URL": world_url,
        }
    )
    overrides = Overrides(environ={"PD_CHECKOUT_ROUTING_KEY": "demo-routing-key"})
    with ExitStack() as servers:
        world_server = demo.serve(demo.outside_world(world), "127.0.0.1", world_port)
        servers.callback(_stop, world_server, world_port)
        bot_server = demo.serve(create_app(settings, overrides=overrides), "127.0.0.1", port)
        servers.callback(_stop, bot_server, port)
        story = demo.Story(
            base=base, secret=secret, world=world, auto=False, say=lambda _: None, timeout=30
        )
        story.deployment_status("success", demo.PREVIOUS, 100)  # production runs the old one
        story.staging_run(demo.RELEASE)  # staging verifies, then promotes to production's gate
        story.wait("the production gate", story.gate)
        yield RunningDemo(base=base, world=world, story=story)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser tests need Debian's Chromium "
            "(apt-get install chromium, which .ci/run does) or RELEASEBOT_CHROMIUM=<path>",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    # The sandbox reloads itself every 4 s; with the page's clock paused, no reload can land in
    # the middle of a click. The tests reload explicitly instead.
    opened.clock.install()
    opened.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))
    try:
        yield opened
    finally:
        context.close()


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def reload_until(page: Page, assertion: Callable[[], None]) -> None:
    """Reload until `assertion` holds: the bot answers and edits its messages asynchronously."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            assertion()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()


def assert_script_is_text(page: Page, own_scripts: int) -> None:
    """The commit message shows as written, and its `<script>` is escaped, not an element."""
    expect(page.get_by_text(SCRIPT_COMMIT).first).to_be_visible()
    html = page.content()
    assert "Tune the connection pool &lt;script&gt;" in html
    assert "Tune the connection pool <script>" not in html
    scripts = page.evaluate("document.querySelectorAll('script').length")
    assert scripts == own_scripts, f"{scripts} <script> elements, expected the page's own"


def test_release_manager_approves_in_sandbox_and_dashboard_shows_it(
    page: Page, running_demo: RunningDemo
) -> None:
    # Olga wrote the change: the sandbox refuses her approval, in a message only she sees.
    page.goto(running_demo.sandbox(OLGA))
    approve = page.locator('button[data-action="release_approve"]')
    expect(approve).to_have_count(1)
    shoot(page, "01-sandbox-gate-as-olga")
    approve.click()
    page.wait_for_url(re.compile(r"/sandbox\?as=U0OWNER01"))
    refusal = page.locator(".ephemeral")
    reload_until(page, lambda: expect(refusal).to_contain_text("you authored", timeout=1000))
    shoot(page, "02-sandbox-olga-refused")

    # Rita, a release manager, through the acting-as switcher.
    page.select_option("#as", RITA)
    page.wait_for_url(re.compile(r"/sandbox\?.*as=U0RELMGR1"))
    expect(page.locator(".ephemeral")).to_have_count(0)  # Olga's refusal was only for her
    approve.click()
    page.wait_for_url(re.compile(r"/sandbox\?as=U0RELMGR1"))
    running_demo.story.wait("the production deploy", lambda: running_demo.world.dispatches)
    reload_until(page, lambda: expect(approve).to_have_count(0, timeout=1000))  # message edited
    expect(page.locator(".ephemeral")).to_contain_text("approved")
    expect(page.locator("article.msg").last).to_contain_text("approved by")
    shoot(page, "03-sandbox-rita-approved")

    # The dashboard: the release on the overview, then its page with Rita's approval.
    page.goto(f"{running_demo.base}/")
    production = page.locator('article[aria-label="checkout production"] a.latest')
    expect(production).to_contain_text("9e60244")
    shoot(page, "04-dashboard-overview")
    production.click()
    page.wait_for_url(re.compile(r"/deployments/\d+$"))
    approvals = page.locator("section.card").filter(
        has=page.get_by_role("heading", name="Approvals", exact=True)
    )
    rita = approvals.locator("tbody tr").filter(has_text=RITA)
    expect(rita).to_have_count(1)
    expect(rita.locator("td").nth(1)).to_have_text(re.compile("approved", re.IGNORECASE))
    expect(approvals.locator("article.gate h3")).to_contain_text(
        re.compile("approved", re.IGNORECASE)
    )
    shoot(page, "05-dashboard-deployment")


def test_commit_message_with_script_tag_renders_as_text(
    page: Page, running_demo: RunningDemo
) -> None:
    page.goto(running_demo.sandbox(SAM))
    expect(page.locator("#feed")).to_contain_text(SCRIPT_COMMIT)
    assert_script_is_text(page, own_scripts=1)  # the sandbox's own refresh timer
    shoot(page, "06-sandbox-script-as-text")

    page.goto(f"{running_demo.base}/")
    page.locator('article[aria-label="checkout production"] a.latest').click()
    page.wait_for_url(re.compile(r"/deployments/\d+$"))
    expect(page.locator("ul.commits")).to_contain_text(SCRIPT_COMMIT)
    assert_script_is_text(page, own_scripts=0)  # the dashboard runs no script at all
    shoot(page, "07-dashboard-script-as-text")
