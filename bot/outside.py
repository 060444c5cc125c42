"""The outside world as the app reaches it: what tests swap in (`Overrides`), the clients,
deployers, pagers and check runners built from settings (`outside_world`), and the outbox's
senders beside the worker's own (`senders`). Everything built here is closed with the app.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from bot import audit_forwarding
from bot.config import Config
from bot.paging import OPSGENIE_EU, OncallFinder, OncallLines
from bot.ports import (
    CheckRunner,
    Clock,
    Deployer,
    DeploymentLookup,
    Pager,
    ScmClient,
    SlackDirectory,
    SlackPeople,
    SlackSender,
)
from bot.render import Renderer
from bot.settings import Settings
from bot.store.db import Database
from bot.usecases.flags import FlagLedger
from bot.usecases.markers import MarkerLedger
from bot.usecases.rollouts import RolloutLedger
from bot.usecases.slo import BudgetMeter
from integrations.argocd.rollouts import RolloutSenders
from integrations.checkpoint_sinks import checkpoint_handlers
from integrations.checks.budget import PrometheusBudget
from integrations.checks.registry import build_runners
from integrations.deployers.registry import build_deployers, close_all
from integrations.flags import FlagSenders
from integrations.github.client import GitHubClient, github_client_from_settings
from integrations.gitlab.client import GitLabClient, gitlab_client_from_settings
from integrations.http import make_client
from integrations.markers import MarkerSenders
from integrations.pagers.oncall import PagerDutyOncalls
from integrations.pagers.opsgenie import OPSGENIE_API_URL, OPSGENIE_EU_API_URL, OpsgeniePager
from integrations.pagers.pagerduty import PagerDutyPager
from integrations.siem.webhook import AuditWebhook

__all__ = ["OutsideWorld", "Overrides", "outside_world", "senders"]


@dataclass(frozen=True)
class Overrides:
    """What tests (and the demo) swap in; production passes nothing."""

    clock: Clock | None = None
    config: Config | None = None
    slack_sender: SlackSender | None = None
    scm_clients: dict[str, ScmClient] | None = None
    lookups: dict[str, DeploymentLookup] | None = None
    directory: SlackDirectory | None = None
    deployers: dict[str, Deployer] | None = None
    http_transport: httpx.AsyncBaseTransport | None = None  # the outside world's HTTP APIs
    environ: Mapping[str, str] | None = None  # where secrets named in the config are read
    check_runners: dict[str, CheckRunner] | None = None
    pagers: dict[str, Pager] | None = None
    process_before_response: bool = False
    start_scheduler: bool = True
    run_outbox_worker: bool = True
    startup_checks: bool | None = None  # doctor's checks once at start; None: as the scheduler
    outbox_poll_seconds: float = 5.0
    # The applier looks for retries come due, and for deliveries another process stored
    # that no ring told of (`bot.store.doorbell`), this often.
    applier_poll_seconds: float = 1.0
    # Store and apply each webhook delivery before answering it, instead of leaving it to
    # the applier. None: when the outbox worker's loop is not run either (a test that
    # drives the background work itself asserts on what a delivery did once answered).
    apply_before_response: bool | None = None


@dataclass(frozen=True)
class OutsideWorld:
    """The outside APIs the worker and the verifier call, each behind its port."""

    scm: Mapping[str, ScmClient]
    lookups: Mapping[str, DeploymentLookup]
    deployers: Mapping[str, Deployer]
    pagers: Mapping[str, Pager]
    runners: Mapping[str, CheckRunner]


async def outside_world(
    settings: Settings, overrides: Overrides, stack: AsyncExitStack, clock: Clock
) -> OutsideWorld:
    """The clients tests did not swap in are made here and closed when the app stops."""
    transport = overrides.http_transport
    environ = overrides.environ if overrides.environ is not None else os.environ
    own_scm = _scm(settings, transport) if overrides.scm_clients is None else {}
    own_deployers = (
        build_deployers(
            settings,
            secret_lookup=environ.get,
            transport=transport,
            jenkins_url=settings.jenkins_url,
            jenkins_user=settings.jenkins_user,
            jenkins_api_token=settings.jenkins_api_token.get_secret_value()
            if settings.jenkins_api_token
            else None,
        )
        if overrides.deployers is None
        else {}
    )
    own_pagers = _pagers(settings, transport) if overrides.pagers is None else {}
    own_runners = (
        build_runners(transport, secrets=environ.get, clock=clock)
        if overrides.check_runners is None
        else {}
    )
    stack.push_async_callback(close_all, own_deployers)
    for closeable in (*own_scm.values(), *own_pagers.values(), *own_runners.values()):
        stack.push_async_callback(closeable.aclose)
    return OutsideWorld(
        scm=overrides.scm_clients if overrides.scm_clients is not None else own_scm,
        lookups=overrides.lookups if overrides.lookups is not None else _lookups(own_scm),
        deployers=overrides.deployers if overrides.deployers is not None else own_deployers,
        pagers=overrides.pagers if overrides.pagers is not None else own_pagers,
        runners=overrides.check_runners if overrides.check_runners is not None else own_runners,
    )


def _scm(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> dict[str, GitHubClient | GitLabClient]:
    """The code hosts' compare APIs that credentials are configured for."""
    clients: dict[str, GitHubClient | GitLabClient] = {}
    github = github_client_from_settings(settings, transport=transport)
    if github is not None:
        clients["github"] = github
    gitlab = gitlab_client_from_settings(settings, transport=transport)
    if gitlab is not None:
        clients["gitlab"] = gitlab
    return clients


def _pagers(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> dict[str, PagerDutyPager | OpsgeniePager]:
    """PagerDuty, and Opsgenie in each region (`OPSGENIE_API_URL`, when set, for both)."""
    us = settings.opsgenie_api_url or OPSGENIE_API_URL
    eu = settings.opsgenie_api_url or OPSGENIE_EU_API_URL
    return {
        "pagerduty": PagerDutyPager(
            make_client(settings.pagerduty_events_url, transport=transport)
        ),
        "opsgenie": OpsgeniePager(make_client(us, transport=transport)),
        OPSGENIE_EU: OpsgeniePager(make_client(eu, transport=transport)),
    }


def _lookups(clients: dict[str, GitHubClient | GitLabClient]) -> dict[str, DeploymentLookup]:
    gitlab = clients.get("gitlab")
    return {"gitlab": gitlab} if isinstance(gitlab, GitLabClient) else {}


def senders(
    settings: Settings,
    config: Config,
    slack: SlackSender,
    db: Database,
    clock: Clock,
    o: Overrides,
    stack: AsyncExitStack,
    *,
    renderer: Renderer,
    directory: SlackDirectory,
) -> dict[str, Any]:
    """The outbox senders beside the worker's own: audit checkpoints, deploy markers, feature
    flag changes, error budget measurements, the audit forwarder and the lines mentioning
    on-call (their clients closed with the app)."""
    secrets = (o.environ if o.environ is not None else os.environ).get
    transport = o.http_transport
    schedule = PagerDutyOncalls(make_client(settings.pagerduty_api_url, transport=transport))
    stack.push_async_callback(schedule.aclose)
    people = directory if isinstance(directory, SlackPeople) else None
    finder = OncallFinder(schedule=schedule, people=people, secrets=secrets)
    oncall_lines = OncallLines(
        db=db, config=config, finder=finder, slack=slack, renderer=renderer, clock=clock
    )
    ledger = MarkerLedger(db, clock)
    markers = MarkerSenders(config=config, secrets=secrets, ledger=ledger, clock=clock)
    flags = FlagSenders(
        config=config, secrets=secrets, ledger=FlagLedger(db, clock, config), clock=clock
    )
    forwarder = AuditWebhook.from_settings(settings, transport=transport)
    if forwarder is not None:
        stack.push_async_callback(forwarder.aclose)
    budgets = PrometheusBudget(make_client("", transport=transport))
    stack.push_async_callback(budgets.aclose)
    meter = BudgetMeter(db=db, clock=clock, config=config, source=budgets)
    rollouts: dict[str, Any] = {}
    if settings.argocd_url and settings.argocd_token:
        argocd = RolloutSenders(
            make_client(settings.argocd_url, transport=transport),
            settings.argocd_token.get_secret_value(),
            ledger=RolloutLedger(db, clock, config),
        )
        stack.push_async_callback(argocd.aclose)
        rollouts = argocd.handlers()
    return {
        **meter.handlers(),
        **rollouts,
        **checkpoint_handlers(settings, slack, transport),
        **markers.handlers(transport),
        **flags.handlers(transport),
        **audit_forwarding.handlers(db, forwarder),
        **oncall_lines.handlers(),
    }
