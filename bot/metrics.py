"""Prometheus metrics, one registry per app so several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter(
            "releasebot_webhooks",
            "Inbound webhook deliveries by provider and outcome.",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "releasebot_outbox_backlog",
            "Outbox messages waiting to be sent.",
            registry=self.registry,
        )
        self.outbox_dead = Gauge(
            "releasebot_outbox_dead",
            "Outbox messages given up on after the retry horizon or a permanent error.",
            registry=self.registry,
        )
        self.spool_held = Gauge(
            "releasebot_spool_held",
            "Webhook deliveries this replica holds in its local spool while the database "
            "cannot be reached.",
            registry=self.registry,
        )
        self.deliveries = Gauge(
            "releasebot_webhook_deliveries",
            "Stored webhook deliveries not applied: pending (retrying ones included), "
            "retrying after a failed attempt, and failed (given up on).",
            ["state"],
            registry=self.registry,
        )
        self.deliveries_apply_failures = Counter(
            "releasebot_webhook_apply_failures",
            "Failed attempts to apply a stored webhook delivery.",
            registry=self.registry,
        )
        self.outbox_sent = Counter(
            "releasebot_outbox_sent",
            "Outbox messages sent, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.outbox_failures = Counter(
            "releasebot_outbox_failures",
            "Failed outbox send attempts, by kind and whether they will be retried.",
            ["kind", "retryable"],
            registry=self.registry,
        )
        self.slack_api_errors = Counter(
            "releasebot_slack_api_errors",
            "Slack Web API calls that failed, by error.",
            ["error"],
            registry=self.registry,
        )
        self.held_back = Counter(
            "releasebot_held_back_seconds",
            "Seconds the background work waited for the requests this process answers "
            "(requests first), by work: applier, outbox.",
            ["work"],
            registry=self.registry,
        )
        for work in ("applier", "outbox"):
            self.held_back.labels(work)  # 0 until it first holds back, not absent
        self.request_latency = Histogram(
            "releasebot_http_request_duration_seconds",
            "HTTP request latency by route and status class.",
            ["route", "method", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._checks()
        self.ready = Gauge(
            "releasebot_ready",
            "1 when the last readiness check passed (database, migrations), else 0.",
            registry=self.registry,
        )

    def _checks(self) -> None:
        """What the verification schedule reports."""
        self.check_runs = Counter(
            "releasebot_check_runs",
            "Verification check runs finished, by check kind and outcome (passed or failed).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.check_lag = Histogram(
            "releasebot_check_lag_seconds",
            "How long after its due time a check run was started (drift of the check schedule).",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.checks_last_tick = Gauge(
            "releasebot_checks_last_tick_timestamp_seconds",
            "When this process last looked for due check runs (Unix time).",
            registry=self.registry,
        )
