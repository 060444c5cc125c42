from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.config import (
    Config,
    config_json_schema,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from bot.domain.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "releasebot.yaml"

Data = dict[str, Any]
Mutation = Callable[[Data], None]


@pytest.fixture
def example_data() -> Data:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture
def config() -> Config:
    return load_config(EXAMPLE)


# ---- mutating the example by YAML path ------------------------------------------------------


def _keys(path: str) -> list[str | int]:
    """`services.ledger.environments[0].gate` -> ["services", "ledger", "environments", 0, ...]."""
    keys: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        keys.append(int(index) if index else name)
    return keys


def _walk(data: Data, path: str) -> tuple[Any, str | int]:
    *parents, last = _keys(path)
    node: Any = data
    for key in parents:
        node = node[key]
    return node, last


def put(path: str, value: object) -> Mutation:
    def mutate(data: Data) -> None:
        node, last = _walk(data, path)
        node[last] = value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(data: Data) -> None:
        node, last = _walk(data, path)
        del node[last]

    return mutate


def problems_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


CHECKOUT = "services.checkout"
STAGING = f"{CHECKOUT}.environments[0]"
PRODUCTION = f"{CHECKOUT}.environments[1]"
GATE = f"{PRODUCTION}.gate"
LEDGER_GATE = "services.ledger.environments[0].gate"
STOREFRONT = "services.storefront.environments[0]"
HEALTH = f"{PRODUCTION}.verify[0]"
ERROR_RATE = f"{PRODUCTION}.verify[1]"

BROKEN = [
    pytest.param(
        [put(f"{LEDGER_GATE}.approvals", 0)],
        f"{LEDGER_GATE}.approvals",
        "must be >= 1",
        id="approvals-zero",
    ),
    pytest.param(
        [put(f"{LEDGER_GATE}.apporvals", 2)],
        f"{LEDGER_GATE}.apporvals",
        "unknown key 'apporvals' (did you mean 'approvals'?)",
        id="unknown-key-did-you-mean",
    ),
    pytest.param(
        [put("servics", {})],
        "servics",
        "unknown key 'servics' (did you mean 'services'?)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        [put(f"{GATE}.expires_after", "4 hours")],
        f"{GATE}.expires_after",
        "invalid duration '4 hours': use a number with ms, s, m, h or d",
        id="bad-duration",
    ),
    pytest.param(
        [put(f"{GATE}.remind_after", "4h")],
        f"{GATE}.remind_after",
        "must be shorter than expires_after (4h)",
        id="remind-not-before-expiry",
    ),
    pytest.param(
        [put(f"{STAGING}.auto_promote_to", "prod")],
        f"{STAGING}.auto_promote_to",
        "'prod' is not an environment of this service",
        id="auto-promote-unknown",
    ),
    pytest.param(
        [put(f"{STAGING}.auto_promote_to", "staging")],
        f"{STAGING}.auto_promote_to",
        "not itself",
        id="auto-promote-itself",
    ),
    pytest.param(
        [put(f"{PRODUCTION}.auto_promote_to", "staging")],
        f"{STAGING}.auto_promote_to",
        "loop: staging -> production -> staging",
        id="auto-promote-loop",
    ),
    pytest.param(
        [put(f"{CHECKOUT}.repo", "acme/checkout")],
        f"{CHECKOUT}.repo",
        "must look like 'github:owner/name' or 'gitlab:group/sub/name'",
        id="bad-repo",
    ),
    pytest.param(
        [put("freezes[0].end", "2026-12-01T00:00:00+01:00")],
        "freezes[0].end",
        "must be after start",
        id="freeze-ends-before-start",
    ),
    pytest.param(
        [put("freezes[0].start", "2026-12-23T00:00:00")],
        "freezes[0].start",
        "must include a UTC offset",
        id="naive-freeze-datetime",
    ),
    pytest.param(
        [put("freezes[0].environments", ["prod"])],
        "freezes[0].environments[0]",
        "no service has an environment 'prod'",
        id="freeze-unknown-environment",
    ),
    pytest.param(
        [put("risk.business_hours.timezone", "Mars/Olympus")],
        "risk.business_hours.timezone",
        "unknown time zone 'Mars/Olympus'",
        id="bad-timezone",
    ),
    pytest.param(
        [put("risk.business_hours.end", 1020)],
        "risk.business_hours.end",
        'must be a time like "17:00" in quotes',
        id="unquoted-yaml-time",
    ),
    pytest.param(
        [put("risk.business_hours.days", "mon-fry")],
        "risk.business_hours.days",
        "'fry' is not a weekday",
        id="bad-weekday",
    ),
    pytest.param(
        [put("risk.levels.high", 20)],
        "risk.levels.high",
        "must be greater than medium (30)",
        id="levels-not-ascending",
    ),
    pytest.param(
        [put("risk.levels.critical", 101)],
        "risk.levels.critical",
        "must be <= 100",
        id="level-above-100",
    ),
    pytest.param(
        [put(f"{HEALTH}.prometheus", {"url": "http://127.0.0.1:9390", "query": "up", "max": 1})],
        HEALTH,
        "set exactly one of http or prometheus",
        id="http-and-prometheus",
    ),
    pytest.param(
        [drop(f"{ERROR_RATE}.prometheus.max")],
        f"{ERROR_RATE}.prometheus",
        "set max, min or both",
        id="prometheus-without-bounds",
    ),
    pytest.param(
        [put(f"{HEALTH}.at", ["0s", "60s", "1m"])],
        f"{HEALTH}.at[2]",
        "1m is listed twice",
        id="duplicate-check-offset",
    ),
    pytest.param(
        [put(f"{GATE}.by_risk.low", {"auto_approve": True, "blocked": True})],
        f"{GATE}.by_risk.low",
        "set only one of auto_approve, blocked or require",
        id="by-risk-auto-approve-and-blocked",
    ),
    pytest.param(
        [put(f"{GATE}.by_risk.hihg", {"blocked": True})],
        f"{GATE}.by_risk.hihg",
        "unknown key 'hihg' (did you mean 'high'?)",
        id="by-risk-unknown-level",
    ),
    pytest.param(
        [put(f"{STOREFRONT}.deploy.jenkins", {"job": "storefront"})],
        f"{STOREFRONT}.deploy",
        "set exactly one of github_workflow,",
        id="deploy-two-kinds",
    ),
    pytest.param(
        [put(f"{STOREFRONT}.on_verification_failure", "rollback"), drop(f"{STOREFRONT}.deploy")],
        f"{STOREFRONT}.on_verification_failure",
        "needs a deploy section to roll back through",
        id="rollback-without-deploy",
    ),
    pytest.param(
        [put(f"{STOREFRONT}.on_verification_failure", "rolback")],
        f"{STOREFRONT}.on_verification_failure",
        "must be 'rollback' or 'notify' (did you mean 'rollback'?)",
        id="bad-literal",
    ),
    pytest.param(
        [drop("slack.default_channel")],
        "slack.default_channel",
        "is required",
        id="missing-default-channel",
    ),
    pytest.param(
        [put("slack.default_channel", "deploys")],
        "slack.default_channel",
        "is not a Slack channel",
        id="channel-without-hash",
    ),
    pytest.param(
        [put(f"{STAGING}.name", "production"), drop(f"{STAGING}.auto_promote_to")],
        f"{PRODUCTION}.name",
        "'production' is used twice",
        id="duplicate-environment-names",
    ),
    pytest.param(
        [put("slack.oncall", ["@sre-team"])],
        "slack.oncall[0]",
        "is not a Slack user id (U..., W...) or user-group id (S...)",
        id="bad-slack-principal",
    ),
    pytest.param(
        [put(f"{CHECKOUT}.oncall.pagerduty.routing_key_env", "r0123secret")],
        f"{CHECKOUT}.oncall.pagerduty.routing_key_env",
        "is not an environment variable name",
        id="bad-env-var-name",
    ),
    pytest.param(
        [put(f"{STAGING}.track", {"github_environment": "Production"})],
        f"{PRODUCTION}.track.github_environment",
        f"already tracked by {STAGING}",
        id="ambiguous-track-in-one-service",
    ),
    pytest.param(
        [put(f"{STAGING}.track", {"argocd_app": "storefront-prod"})],
        f"{STOREFRONT}.track.argocd_app",
        f"already tracked by {STAGING}",
        id="ambiguous-argocd-app-across-services",
    ),
    pytest.param(
        [put(f"{STAGING}.track", {})],
        f"{STAGING}.track",
        "set at least one of",
        id="empty-track",
    ),
    pytest.param(
        [put(f"{LEDGER_GATE}.require", [{"approvers": ["S0RELMGRS"], "count": 1}])],
        f"{LEDGER_GATE}.approvals",
        "not both",
        id="require-and-approvals",
    ),
    pytest.param(
        [drop(f"{LEDGER_GATE}.approvers")],
        f"{LEDGER_GATE}.approvers",
        "is required with approvals",
        id="approvals-without-approvers",
    ),
    pytest.param(
        [put(f"{LEDGER_GATE}.approvers", ["U0ALICE", "U0BOB"]), put(f"{LEDGER_GATE}.approvals", 3)],
        f"{LEDGER_GATE}.approvals",
        "lists only 2 people",
        id="quorum-unreachable",
    ),
    pytest.param(
        [put(f"{LEDGER_GATE}.approvers", ["S0RELMGRS", "bob"])],
        f"{LEDGER_GATE}.approvers[1]",
        "'bob' is not a Slack user id",
        id="shorthand-bad-approver",
    ),
    pytest.param(
        [put(f"{PRODUCTION}.deploy.github_workflow.inputs.dry_run", True)],
        f"{PRODUCTION}.deploy.github_workflow.inputs.dry_run",
        "must be a string; put true in quotes",
        id="yaml-bool-where-string",
    ),
    pytest.param(
        [put(f"{CHECKOUT}.environments", None)],
        f"{CHECKOUT}.environments",
        "has no value; it must be a list",
        id="empty-environments",
    ),
    pytest.param(
        [put(f"{CHECKOUT}.environments", [])],
        f"{CHECKOUT}.environments",
        "must not be empty",
        id="no-environments",
    ),
    pytest.param(
        [put("services.ledger.environments[0].name", "all")],
        "services.ledger.environments[0].name",
        "'all' is reserved",
        id="environment-named-all",
    ),
    pytest.param(
        [put("break_glass.valid_for", "0s")],
        "break_glass.valid_for",
        "must be longer than 0s",
        id="zero-duration",
    ),
]


@pytest.mark.parametrize(("mutations", "path", "fragment"), BROKEN)
def test_broken_config_is_reported_at_the_users_key(
    example_data: Data, mutations: list[Mutation], path: str, fragment: str
) -> None:
    for mutate in mutations:
        mutate(example_data)

    problems = problems_of(example_data)

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: "), problems
    assert fragment in problems[0]


def test_several_problems_are_all_reported(example_data: Data) -> None:
    for mutate in (
        drop("slack.default_channel"),
        put("risk.levels.high", 20),
        put(f"{LEDGER_GATE}.approvals", 0),
        put(f"{HEALTH}.at", ["soon"]),
    ):
        mutate(example_data)

    problems = problems_of(example_data)

    assert problems == [
        "slack.default_channel: is required",
        "risk.levels.high: must be greater than medium (30)",
        f"{HEALTH}.at[0]: invalid duration 'soon': use a number with ms, s, m, h or d, "
        'like "30s" or "4h"',
        f"{LEDGER_GATE}.approvals: must be >= 1",
    ]


def test_unknown_key_without_a_close_match_has_no_suggestion(example_data: Data) -> None:
    put("slack.colour", "blue")(example_data)

    assert problems_of(example_data) == ["slack.colour: unknown key 'colour'"]


def test_top_level_that_is_not_a_mapping_is_reported() -> None:
    assert problems_of(["slack"]) == ["(top level): must be a mapping (key: value)"]


# ---- the example ----------------------------------------------------------------------------


def test_example_validates_with_expected_services(config: Config) -> None:
    assert list(config.services) == [
        "checkout",
        "ledger",
        "storefront",
        "payments-batch",
        "search",
    ]
    checkout = config.services["checkout"]
    assert [env.name for env in checkout.environments] == ["staging", "production"]
    assert (checkout.provider, checkout.repo_path) == ("github", "acme/checkout")
    assert checkout.environments[0].auto_promote_to == "production"
    assert checkout.oncall is not None and checkout.oncall.pagerduty is not None
    assert checkout.oncall.pagerduty.routing_key_env == "PD_CHECKOUT_ROUTING_KEY"
    assert config.services["ledger"].provider == "gitlab"
    assert config.identities["U0OWNER01"].github == "octo-owner"
    assert config.slack.slash_command == "/release"


def test_example_shows_every_block(config: Config) -> None:
    """Each block the configuration supports is in the example (Datadog and New Relic as
    commented-out blocks: the demo has no stand-ins for them)."""
    assert config.slack.audit_channel == "#release-audit"
    peak = config.freezes[1]
    assert (peak.production_only, peak.rollbacks, peak.environments) == (True, "blocked", [])
    checkout = config.services["checkout"]
    assert [env.production for env in checkout.environments] == [False, True]
    assert checkout.release is not None
    production = checkout.environment("production")
    assert production is not None and production.gate is not None
    assert production.gate.unknown_people == "refuse"
    search = config.services["search"]
    assert search.slo is not None and search.slo.objective == 99.9
    assert search.markers is not None and search.markers.platforms() == ["grafana"]
    assert search.oncall is not None and search.oncall.pagerduty is not None
    assert search.oncall.pagerduty.escalation_policy == "PSEARCH1"
    assert search.oncall.opsgenie is not None and search.oncall.opsgenie.region == "eu"
    gate = search.environments[0].gate
    assert gate is not None and gate.by_error_budget is not None
    assert (gate.remind_every, gate.escalate_after, gate.escalate_to, gate.unknown_people) == (
        timedelta(hours=2),
        timedelta(hours=6),
        ["S0ONCALL1"],
        "allow",
    )
    assert list(gate.by_error_budget.bands()) == ["exhausted", "below_25_percent"]
    kinds = {
        check.kind
        for service in config.services.values()
        for env in service.environments
        for check in env.verify
    }
    assert kinds == {"http", "prometheus", "prometheus_range", "baseline", "burn_rate"}
    text = EXAMPLE.read_text(encoding="utf-8")
    for commented in ("# datadog: {", "# newrelic: {", "#   datadog: {", "#   nrql: {"):
        assert commented in text


def test_example_durations_and_times_are_parsed(config: Config) -> None:
    production = config.services["checkout"].environment("production")
    assert production is not None and production.gate is not None
    gate = production.gate
    assert gate.expires_after == timedelta(hours=4)
    assert gate.remind_after == timedelta(hours=1)
    assert [check.at for check in production.verify] == [
        [timedelta(0), timedelta(minutes=1), timedelta(minutes=5)],
        [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15)],
    ]
    http = production.verify[0].http
    assert http is not None and http.timeout == timedelta(seconds=2)
    assert config.break_glass is not None
    assert config.break_glass.valid_for == timedelta(hours=2)

    hours = config.risk.business_hours
    assert hours.days == frozenset({0, 1, 2, 3, 4})
    assert (hours.start, hours.end) == (time(9), time(17))
    freeze = config.freezes[0]
    assert freeze.start.utcoffset() == timedelta(hours=1)
    assert freeze.covers("production") and not freeze.covers("staging")


def test_example_gates_and_deploys(config: Config) -> None:
    production = config.services["checkout"].environments[1]
    assert production.gate is not None
    assert set(production.gate.by_risk) == {"low", "high", "critical"}
    assert production.gate.by_risk["low"].auto_approve
    assert production.gate.by_risk["critical"].blocked
    high_rules = production.gate.by_risk["high"].require
    assert high_rules is not None and [r.approvers for r in high_rules] == [
        ["S0RELMGRS"],
        ["S0SREGRPS"],
    ]
    assert production.on_verification_failure == "rollback"
    assert production.deploy is not None and production.deploy.kind == "github_workflow"
    assert production.deploy.github_workflow is not None
    assert production.deploy.github_workflow.inputs == {"environment": "production"}

    kinds = {
        name: service.environments[-1].deploy.kind
        for name, service in config.services.items()
        if service.environments[-1].deploy is not None
    }
    assert kinds == {
        "checkout": "github_workflow",
        "ledger": "gitlab_deployment_approval",
        "storefront": "argocd",
        "payments-batch": "webhook",
        "search": "github_workflow",
    }


def test_ledger_shorthand_becomes_one_require_rule(config: Config) -> None:
    gate = config.services["ledger"].environments[0].gate
    assert gate is not None
    assert len(gate.require) == 1
    assert gate.require[0].approvers == ["S0RELMGRS"]
    assert gate.require[0].count == 2
    assert gate.expires_after == timedelta(hours=8)


def test_minimal_config_takes_defaults() -> None:
    config = parse_config(
        {
            "slack": {"default_channel": "C0123ABC"},
            "services": {
                "api": {"repo": "gitlab:acme/platform/api", "environments": [{"name": "prod"}]}
            },
        }
    )

    assert config.risk.levels.medium == 30 and config.risk.levels.critical == 85
    assert config.risk.business_hours.timezone == "UTC"
    assert config.freezes == [] and config.break_glass is None
    assert config.services["api"].repo_path == "acme/platform/api"
    assert config.channel_for("api") == "C0123ABC"


def test_models_are_frozen(config: Config) -> None:
    with pytest.raises(ValidationError):
        config.slack.default_channel = "#elsewhere"  # type: ignore[misc]


def test_gitlab_deployment_approval_may_be_left_empty(example_data: Data) -> None:
    put("services.ledger.environments[0].deploy.gitlab_deployment_approval", None)(example_data)

    deploy = parse_config(example_data).services["ledger"].environments[0].deploy
    assert deploy is not None and deploy.kind == "gitlab_deployment_approval"


def test_business_hours_contains(config: Config) -> None:
    hours = config.risk.business_hours  # Europe/Berlin, mon-fri 09:00-17:00
    assert hours.contains(datetime(2026, 3, 4, 9, 30, tzinfo=UTC))  # Wednesday 10:30 CET
    assert not hours.contains(datetime(2026, 3, 4, 16, 30, tzinfo=UTC))  # 17:30 CET
    assert not hours.contains(datetime(2026, 3, 7, 10, 0, tzinfo=UTC))  # Saturday


def test_risk_level_for_score(config: Config) -> None:
    levels = config.risk.levels
    assert [levels.level_for(s) for s in (0, 29.9, 30, 60, 84, 85, 100)] == [
        "low",
        "low",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]


# ---- lookups --------------------------------------------------------------------------------


def test_service_for_repo_is_case_insensitive(config: Config) -> None:
    found = config.service_for_repo("github", "ACME/checkout")
    assert found is not None and found[0] == "checkout"
    ledger = config.service_for_repo("gitlab", "acme/ledger")
    assert ledger is not None and ledger[0] == "ledger"
    assert config.service_for_repo("gitlab", "acme/checkout") is None
    assert config.service_for_repo("github", "acme/unknown") is None


def test_a_copy_of_the_config_with_other_services_matches_its_own(config: Config) -> None:
    assert config.service_for_repo("github", "acme/checkout") is not None  # matched once
    ledger_only = {"ledger": config.services["ledger"]}
    copy = config.model_copy(update={"services": ledger_only})
    assert copy.service_for_repo("github", "acme/checkout") is None
    found = copy.service_for_repo("gitlab", "acme/ledger")
    assert found is not None and found[0] == "ledger"
    assert config.service_for_repo("github", "acme/checkout") is not None


def test_service_for_argocd_app(config: Config) -> None:
    found = config.service_for_argocd_app("storefront-prod")
    assert found is not None
    name, service, env = found
    assert (name, env.name) == ("storefront", "production")
    assert service.environment("production") is env
    assert config.service_for_argocd_app("nope") is None


def test_channel_for_falls_back_to_default(config: Config) -> None:
    assert config.channel_for("ledger") == "#ledger-deploys"
    assert config.channel_for("payments-batch") == "#deploys"
    assert config.channel_for("unknown") == "#deploys"


def test_environment_lookup(config: Config) -> None:
    checkout = config.services["checkout"]
    staging = checkout.environment("staging")
    assert staging is not None and staging.track is not None
    assert staging.track.github_workflow == "deploy-staging.yml"
    assert checkout.environment("qa") is None


# ---- loading files --------------------------------------------------------------------------


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}: file not found"]


def test_load_config_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "releasebot.yaml"
    path.write_text('slack:\n  default_channel: "#x"\n services: [\n', encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: invalid YAML at line 3, column 2: ")


def test_load_config_refuses_duplicate_keys(tmp_path: Path) -> None:
    path = tmp_path / "releasebot.yaml"
    path.write_text(
        "slack: {default_channel: '#a'}\nservices: {}\nslack: {default_channel: '#b'}\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.problems == [
        f"{path}: invalid YAML at line 3, column 1: found the key 'slack' twice"
    ]


def test_load_config_allows_merge_keys(tmp_path: Path) -> None:
    path = tmp_path / "releasebot.yaml"
    path.write_text(
        "slack: {default_channel: '#a'}\n"
        "services:\n"
        "  a: &base {repo: 'github:acme/a', environments: [{name: production}]}\n"
        "  b:\n"
        "    <<: *base\n"
        "    repo: 'github:acme/b'\n",
        encoding="utf-8",
    )

    assert load_config(path).services["b"].repo == "github:acme/b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- slack\n", "the top level must be a mapping (slack:, services:, ...), not a list"),
    ],
)
def test_load_config_top_level_must_be_a_mapping(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "releasebot.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.problems == [f"{path}: {message}"]


def test_load_config_reports_validation_problems_by_path(tmp_path: Path) -> None:
    path = tmp_path / "releasebot.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace("approvals: 2", "approvals: 0"))

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.problems == [f"{LEDGER_GATE}.approvals: must be >= 1"]


# ---- JSON schema ----------------------------------------------------------------------------


def test_json_schema_describes_the_file() -> None:
    schema = config_json_schema()

    assert isinstance(schema, dict)
    assert {"slack", "services", "risk", "freezes"} <= set(schema["properties"])
    assert schema["required"] == ["slack", "services"]
    gate = schema["$defs"]["Gate"]
    assert {"require", "approvals", "approvers"} <= set(gate["properties"])
    assert gate["properties"]["expires_after"]["type"] == "string"
    assert gate["properties"]["expires_after"]["default"] == "4h"
    hours = schema["$defs"]["BusinessHours"]["properties"]
    assert (hours["days"]["default"], hours["start"]["default"]) == ("mon-fri", "09:00")


# ---- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("4h", timedelta(hours=4)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (90, timedelta(seconds=90)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "4", "4 h", "1.5h", "4hours", "h", True, 1.5, None])
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**10))
def test_format_duration_round_trips(milliseconds: int) -> None:
    value = timedelta(milliseconds=milliseconds)
    assert parse_duration(format_duration(value)) == value
