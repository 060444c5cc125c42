"""Promotion rules: which states may move on or be rolled back, and where a release goes
after each environment (listed order, `auto_promote_to` overriding it)."""

from __future__ import annotations

import pytest

from bot.config import Environment, Service, load_config
from bot.domain import states
from bot.domain.promotion import (
    PROMOTABLE,
    ROLLBACKABLE,
    next_environment,
    promotion_sources,
)
from tests.helpers import EXAMPLE_CONFIG


def service(*names: str, **promote_to: str) -> Service:
    """A service with these environments in order; `promote_to` maps a name to its
    `auto_promote_to`."""
    return Service(
        repo="github:acme/app",
        environments=[
            Environment(name=name, auto_promote_to=promote_to.get(name)) for name in names
        ],
    )


def test_only_deployed_releases_are_promotable() -> None:
    assert PROMOTABLE == {states.SUCCEEDED, states.VERIFIED}


def test_rollback_restores_anything_that_ran() -> None:
    assert ROLLBACKABLE == {
        states.SUCCEEDED,
        states.VERIFYING,
        states.VERIFIED,
        states.VERIFICATION_FAILED,
        states.FAILED,
        states.ROLLBACK_FAILED,  # a rollback the pipeline refused may be tried again
    }


def test_the_sets_name_real_states() -> None:
    assert PROMOTABLE <= states.STATES
    assert ROLLBACKABLE <= states.STATES
    assert PROMOTABLE <= ROLLBACKABLE


def test_next_is_the_environment_listed_after() -> None:
    svc = service("dev", "staging", "production")
    assert next_environment(svc, "dev") == "staging"
    assert next_environment(svc, "staging") == "production"


def test_the_last_environment_promotes_nowhere() -> None:
    assert next_environment(service("dev", "production"), "production") is None
    assert next_environment(service("production"), "production") is None


def test_auto_promote_to_overrides_the_listed_order() -> None:
    svc = service("dev", "staging", "production", dev="production")
    assert next_environment(svc, "dev") == "production"
    assert next_environment(svc, "staging") == "production"


def test_auto_promote_to_may_point_backwards_in_the_list() -> None:
    svc = service("production", "staging", staging="production")
    assert next_environment(svc, "staging") == "production"
    assert next_environment(svc, "production") == "staging"


@pytest.mark.parametrize("environment", ["qa", "", "Production"])
def test_an_unknown_environment_promotes_nowhere(environment: str) -> None:
    assert next_environment(service("dev", "production"), environment) is None


def test_an_unknown_service_promotes_nowhere() -> None:
    assert next_environment(None, "staging") is None


def test_the_example_config() -> None:
    config = load_config(EXAMPLE_CONFIG)
    checkout = config.services["checkout"]
    assert next_environment(checkout, "staging") == "production"
    assert next_environment(checkout, "production") is None
    assert next_environment(config.services.get("ledger"), "production") is None
    assert next_environment(config.services.get("no-such-service"), "production") is None


def test_promotion_sources_are_the_environments_that_lead_to_the_target() -> None:
    svc = service("dev", "qa", "staging", "production", dev="staging")
    assert promotion_sources(svc, "staging") == ("dev", "qa")
    assert promotion_sources(svc, "production") == ("staging",)
    assert promotion_sources(svc, "dev") == ()


def test_the_first_environment_is_reached_only_from_ci() -> None:
    svc = service("staging", "production")
    assert promotion_sources(svc, "staging") == ()
    assert promotion_sources(svc, "no-such-environment") == ()
