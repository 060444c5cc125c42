"""The `/release` text as a command: `parse(text)` is pure.

It turns the typed text (after the slash command's name) into one dataclass per
subcommand, or a `Usage` saying what is wrong and, through difflib, the closest valid word
("did you mean `rollback`?") for subcommands, services and environments.

A rollback or a lock typed as a command has no modal to ask for a reason: text after ` -- `
is the reason.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from pydantic_core import PydanticCustomError

from bot.blocks.commands import (
    HISTORY_DEFAULT,
    HISTORY_MAX,
    METRICS_DEFAULT_DAYS,
    METRICS_MAX_DAYS,
    SUBCOMMANDS,
)
from bot.config import Config, format_duration, parse_duration
from bot.usecases.freeze import ALL, MAX_DURATION


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Status:
    service: str | None = None
    offset: int = 0


@dataclass(frozen=True)
class History:
    service: str
    environment: str | None = None
    n: int = HISTORY_DEFAULT
    offset: int = 0


@dataclass(frozen=True)
class Pending:
    offset: int = 0


@dataclass(frozen=True)
class Promote:
    service: str
    version: str  # a version, a sha prefix, or "latest"
    environment: str


@dataclass(frozen=True)
class Deploy:
    service: str
    ref: str  # a branch, a tag or a commit sha, resolved on the code host
    environment: str


@dataclass(frozen=True)
class Rollback:
    service: str
    environment: str
    to_version: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class FreezeCommand:
    environment: str  # a name, or "all"
    duration: timedelta
    reason: str


@dataclass(frozen=True)
class Unfreeze:
    environment: str  # a name, or "all"


@dataclass(frozen=True)
class Lock:
    service: str
    environment: str | None  # None: every environment of the service
    reason: str


@dataclass(frozen=True)
class Unlock:
    service: str
    environment: str | None  # None: every locked environment of the service


@dataclass(frozen=True)
class Metrics:
    service: str | None = None
    days: int = METRICS_DEFAULT_DAYS


@dataclass(frozen=True)
class Usage:
    """What was wrong with the input; `suggestion` is the closest valid word and `corrected`
    the whole command with it put in (without the slash command's own name)."""

    problem: str
    subcommand: str | None = None
    suggestion: str | None = None
    corrected: str | None = None


Command = (
    Help
    | Status
    | History
    | Pending
    | Promote
    | Deploy
    | Rollback
    | FreezeCommand
    | Unfreeze
    | Lock
    | Unlock
    | Metrics
)

_DIGITS_MAX = 9  # a count typed with more digits is out of every range
# What git accepts in a ref name, less what no one types: no `..`, no leading `-` or `/`.
_REF = re.compile(r"^(?![-/.])(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+@-]{1,200}(?<![/.])$")
_REASON_SPLIT = re.compile(r"(?:^|\s)(?:--|—|–)(?:\s+|$)")


@dataclass(frozen=True)
class _Names:
    """Services and their environments, for checking names and suggesting close ones."""

    services: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Config | None) -> _Names:
        if config is None:
            return cls()
        return cls(
            {name: [e.name for e in svc.environments] for name, svc in config.services.items()}
        )

    @property
    def known(self) -> bool:
        return bool(self.services)

    @property
    def environments(self) -> list[str]:
        return sorted({env for envs in self.services.values() for env in envs})


def parse(text: str, *, config: Config | None = None) -> Command | Usage:
    """The typed text (after the slash command's name) as a command, or what is wrong with it.

    Names are checked against `config` when given; without it any name is accepted.
    """
    text = _unescape(text).strip()
    tokens = text.split()
    if not tokens:
        return Help()
    names = _Names.of(config)
    sub = tokens[0].lower()
    args = tokens[1:]
    if sub in ("?", "-h", "--help"):
        sub = "help"
    if sub not in SUBCOMMANDS:
        close = _closest(sub, SUBCOMMANDS)
        return Usage(
            f"I don't know the command `{tokens[0]}`",
            subcommand=close,
            suggestion=close,
            corrected=" ".join([close, *args]) if close else None,
        )
    if sub == "help":
        topic = args[0].lower() if args else None
        return Help(topic if topic in SUBCOMMANDS else None)
    if sub == "status":
        if len(args) > 1:
            return _usage("status", f"`status` takes at most one service, not {len(args)} words")
        if not args:
            return Status()
        problem = _check_service(names, tokens, 1, "status")
        return problem or Status(args[0])
    if sub == "history":
        return _history(names, tokens)
    if sub == "pending":
        if args:
            return _usage("pending", "`pending` takes no arguments")
        return Pending()
    if sub == "promote":
        return _promote(names, tokens)
    if sub == "deploy":
        return _deploy(names, tokens)
    if sub == "rollback":
        return _rollback(names, text)
    if sub == "freeze":
        return _freeze(names, text)
    if sub == "unfreeze":
        if len(args) != 1:
            return _usage("unfreeze", "say which environment to unfreeze (or `all`)")
        problem = _check_freeze_env(names, tokens, 1, "unfreeze")
        return problem or Unfreeze(_env_name(args[0]))
    if sub in ("lock", "unlock"):
        return _lock(names, text, sub)
    return _metrics(names, tokens)


def _history(names: _Names, tokens: list[str]) -> Command | Usage:
    args = tokens[1:]
    if not args:
        return _usage("history", "say which service's history to show")
    if len(args) > 3:
        return _usage("history", "too many words for `history`")
    problem = _check_service(names, tokens, 1, "history")
    if problem:
        return problem
    service, environment, n = args[0], None, HISTORY_DEFAULT
    rest = args[1:]
    if rest and not rest[-1].isdecimal() and len(rest) == 2:
        return _usage("history", f"`{rest[-1]}` is not a number of deployments")
    if rest and rest[-1].isdecimal():
        n = _whole(rest[-1])
        rest = rest[:-1]
        if n < 1:
            return _usage("history", "show at least 1 deployment")
        n = min(n, HISTORY_MAX)
    if rest:
        problem = _check_env(names, tokens, 2, service, "history")
        if problem:
            return problem
        environment = rest[0]
    return History(service, environment, n)


def _promote(names: _Names, tokens: list[str]) -> Command | Usage:
    args = tokens[1:]
    if len(args) == 4 and args[2].lower() == "to":
        env_at = 4
    elif len(args) == 3 and args[2].lower() != "to":
        env_at = 3  # `promote checkout v1.2 production`: the "to" is optional
    else:
        return _usage("promote", "say what to promote where")
    problem = _check_service(names, tokens, 1, "promote") or _check_env(
        names, tokens, env_at, args[0], "promote"
    )
    if problem:
        return problem
    version = "latest" if args[1].lower() == "latest" else args[1]
    return Promote(args[0], version, tokens[env_at])


def _deploy(names: _Names, tokens: list[str]) -> Command | Usage:
    """`deploy <service> <ref> to <env>`; an unknown service or environment is answered with
    the ones there are."""
    if len(tokens) == 4 and "to" not in (tokens[2].lower(), tokens[3].lower()):
        tokens = [*tokens[:3], "to", tokens[3]]  # `deploy checkout v1.4.2 production`
    args = tokens[1:]
    if len(args) != 4 or args[2].lower() != "to":
        return _usage("deploy", "say which service, which branch, tag or commit, and where")
    if names.known and args[0] not in names.services:
        known = ", ".join(sorted(names.services))
        said = f"there is no service `{args[0]}` (there are {known})"
        return _unknown(tokens, 1, "deploy", said, list(names.services))
    problem = _check_env(names, tokens, 4, args[0], "deploy")
    if problem:
        return problem
    if not _REF.match(args[1]):
        return _usage("deploy", f"`{args[1]}` is not a branch, tag or commit name")
    return Deploy(args[0], args[1], args[3])


def _rollback(names: _Names, text: str) -> Command | Usage:
    head, *rest = _REASON_SPLIT.split(text, maxsplit=1)
    reason = rest[0].strip() if rest else None
    tokens = head.split()
    args = tokens[1:]
    if len(args) == 2:
        to_version = None
    elif len(args) == 4 and args[2].lower() == "to":
        to_version = args[3]
    else:
        return _usage("rollback", "say which service and environment to roll back")
    problem = _check_service(names, tokens, 1, "rollback") or _check_env(
        names, tokens, 2, args[0], "rollback"
    )
    if problem:
        return problem
    return Rollback(args[0], args[1], to_version, reason or None)


def _freeze(names: _Names, text: str) -> Command | Usage:
    parts = text.split(maxsplit=3)
    if len(parts) < 4:
        return _usage("freeze", "say which environment, for how long, and why")
    problem = _check_freeze_env(names, text.split(), 1, "freeze")
    if problem:
        return problem
    try:
        duration: timedelta | None = parse_duration(parts[2])
    except PydanticCustomError:
        return _usage("freeze", f"`{parts[2]}` is not a duration: use 30m, 2h, 1d or 1h30m")
    except (OverflowError, ValueError):
        duration = None  # more days than a date can hold, or more digits than Python reads
    if duration is not None and duration <= timedelta(0):
        return _usage("freeze", "a freeze needs a duration longer than 0s")
    if duration is None or duration > MAX_DURATION:
        return _usage(
            "freeze",
            f"a freeze from Slack lasts at most {format_duration(MAX_DURATION)}; "
            "put longer ones in releasebot.yaml",
        )
    return FreezeCommand(_env_name(parts[1]), duration, parts[3].strip())


def _lock(names: _Names, text: str, sub: str) -> Command | Usage:
    """`lock <service> [env] -- reason` and `unlock <service> [env]`."""
    head, *rest = _REASON_SPLIT.split(text, maxsplit=1)
    reason = rest[0].strip() if rest else ""
    tokens = head.split()
    args = tokens[1:]
    if not 1 <= len(args) <= 2:
        return _usage(sub, f"say which service (and environment) to {sub}")
    if sub == "lock" and not reason:
        return _usage("lock", "a lock needs a reason after ` -- `")
    if sub == "unlock" and rest:
        return _usage("unlock", "`unlock` takes no reason")
    problem = _check_service(names, tokens, 1, sub)
    if problem is None and len(args) == 2:
        problem = _check_env(names, tokens, 2, args[0], sub)
    if problem:
        if problem.corrected and reason:
            return replace(problem, corrected=f"{problem.corrected} -- {reason}")
        return problem
    environment = args[1] if len(args) == 2 else None
    if sub == "lock":
        return Lock(args[0], environment, reason)
    return Unlock(args[0], environment)


def _metrics(names: _Names, tokens: list[str]) -> Command | Usage:
    args = tokens[1:]
    if len(args) > 2:
        return _usage("metrics", "too many words for `metrics`")
    service: str | None = None
    days = METRICS_DEFAULT_DAYS
    if args and args[-1].isdecimal():
        days = _whole(args[-1])
        args = args[:-1]
        if not 1 <= days <= METRICS_MAX_DAYS:
            return _usage("metrics", f"days must be between 1 and {METRICS_MAX_DAYS}")
    elif len(args) == 2:
        return _usage("metrics", f"`{args[1]}` is not a number of days")
    if args:
        problem = _check_service(names, tokens, 1, "metrics")
        if problem:
            return problem
        service = args[0]
    return Metrics(service, days)


def _whole(digits: str) -> int:
    """A typed count; one too long to be sensible reads as "more than any limit" (one more
    than a billion), so it is answered as out of range rather than converted."""
    return int(digits) if len(digits) <= _DIGITS_MAX else 10**_DIGITS_MAX


def _check_service(names: _Names, tokens: list[str], at: int, sub: str) -> Usage | None:
    word = tokens[at]
    if not names.known or word in names.services:
        return None
    return _unknown(tokens, at, sub, f"there is no service `{word}`", list(names.services))


def _check_env(names: _Names, tokens: list[str], at: int, service: str, sub: str) -> Usage | None:
    word = tokens[at]
    envs = list(names.services.get(service, ()))
    if not names.known or word in envs:
        return None
    return _unknown(
        tokens, at, sub, f"{service} has no environment `{word}` (it has {', '.join(envs)})", envs
    )


def _check_freeze_env(names: _Names, tokens: list[str], at: int, sub: str) -> Usage | None:
    word = tokens[at]
    if word.lower() == ALL or not names.known or word in names.environments:
        return None
    return _unknown(
        tokens,
        at,
        sub,
        f"no service has an environment `{word}`",
        [*names.environments, ALL],
    )


def _unknown(tokens: list[str], at: int, sub: str, problem: str, options: Sequence[str]) -> Usage:
    close = _closest(tokens[at], options)
    corrected = None
    if close is not None:
        fixed = list(tokens)
        fixed[at] = close
        corrected = " ".join(fixed)
    return Usage(problem, sub, close, corrected)


def _usage(sub: str, problem: str) -> Usage:
    return Usage(problem, sub)


def _closest(word: str, options: Sequence[str]) -> str | None:
    """The closest option by difflib, else the only one that starts with `word` (`prod`)."""
    by_lower = {option.lower(): option for option in options}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return by_lower[close[0]]
    starting = [option for lower, option in by_lower.items() if lower.startswith(word.lower())]
    return starting[0] if len(starting) == 1 and len(word) >= 2 else None


def _env_name(word: str) -> str:
    return ALL if word.lower() == ALL else word


def _unescape(text: str) -> str:
    """Slack escapes `&`, `<` and `>` in what people type; undo it (ampersand last)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
