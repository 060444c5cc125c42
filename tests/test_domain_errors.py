"""The error tree: every error hangs from ReleasebotError, the docstring draws each one, the
built-in bases keep old catch sites working, and each error carries its context."""

from __future__ import annotations

import inspect

import pytest

from bot.domain import errors
from bot.domain.errors import (
    ConcurrentUpdate,
    ConfigError,
    Conflict,
    DeliveryFailed,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ReleasebotError,
    UnknownAction,
)

CLASSES = [
    obj
    for _, obj in inspect.getmembers(errors, inspect.isclass)
    if obj.__module__ == errors.__name__
]


def test_every_error_hangs_from_the_root() -> None:
    assert CLASSES
    for cls in CLASSES:
        assert issubclass(cls, ReleasebotError), cls


def test_the_docstring_draws_every_error() -> None:
    tree = errors.__doc__ or ""
    for cls in CLASSES:
        assert cls.__name__ in tree, cls


def test_all_lists_every_error() -> None:
    assert sorted(errors.__all__) == sorted(cls.__name__ for cls in CLASSES)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (InvalidRequest, ValueError),
        (UnknownAction, InvalidRequest),
        (UnknownAction, ValueError),
        (NotFound, LookupError),
        (IllegalTransition, Conflict),
        (ConcurrentUpdate, Conflict),
    ],
)
def test_branches(child: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(child, parent)


@pytest.mark.parametrize("cls", [PermissionDenied, Conflict, ConfigError, DeliveryFailed])
def test_no_built_in_base_where_none_is_expected(cls: type[Exception]) -> None:
    assert not issubclass(cls, ValueError | LookupError)


def test_invalid_request_names_its_field() -> None:
    error = InvalidRequest("sha must be a full commit sha (40 hex characters)", field="sha")
    assert str(error) == "sha must be a full commit sha (40 hex characters)"
    assert error.field == "sha"
    assert InvalidRequest("version must not be empty").field is None


def test_an_old_value_error_catch_site_still_catches() -> None:
    with pytest.raises(ValueError, match="unknown action 'launch'"):
        raise UnknownAction("launch")


def test_unknown_action() -> None:
    error = UnknownAction("launch")
    assert str(error) == "unknown action 'launch'"
    assert error.action == "launch"
    assert error.field == "action"


def test_not_found() -> None:
    error = NotFound("release", 42)
    assert str(error) == "release 42 not found"
    assert error.args[0] == "release 42 not found"
    assert (error.kind, error.key) == ("release", 42)
    with pytest.raises(LookupError):
        raise error


def test_permission_denied() -> None:
    error = PermissionDenied("you are not in S0RELMGRS")
    assert str(error) == error.reason == "you are not in S0RELMGRS"


def test_existing_constructors() -> None:
    config = ConfigError(["services.x.repo: required", "slack: required"])
    assert config.problems == ["services.x.repo: required", "slack: required"]
    assert str(config) == "services.x.repo: required; slack: required"
    moved = IllegalTransition("verified", "pending")
    assert (moved.current, moved.target) == ("verified", "pending")
    assert str(moved) == "a deployment cannot move from 'verified' to 'pending'"
    assert str(ConcurrentUpdate("gate 3 changed underneath")) == "gate 3 changed underneath"
    failed = DeliveryFailed("rate limited", retryable=True, retry_after=2.0, status=429)
    assert (failed.reason, failed.retryable, failed.retry_after, failed.status) == (
        "rate limited",
        True,
        2.0,
        429,
    )
    assert DeliveryFailed("no", retryable=False).retry_after is None
