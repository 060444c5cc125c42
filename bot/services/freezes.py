"""Change freezes: the ones in releasebot.yaml and the ones started from Slack.

`/release freeze production 2h <reason>` stores a `FreezeWindow`; `/release unfreeze` lifts
it. Both are audited (`freeze.started`, `freeze.lifted`, refusals as `freeze.refused`).
Everything that respects freezes (gate decisions, automatic promotion, the release message)
asks `active(...)`, which merges both kinds as `bot.config.ScheduledFreeze` objects, so
`covers`/`active_at`/`reason` work the same for a YAML freeze and a typed one.

Only release managers (`slack.release_managers`, users or user groups) may freeze or lift.
A freeze from the YAML cannot be lifted from Slack: it is version-controlled on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from bot.config import Config, ScheduledFreeze
from bot.domain.gates import refusal as refusals
from bot.domain.gates.refusal import Refusal, slack_mention
from bot.services import audit
from bot.store import statements as sql
from bot.store.tables import FreezeWindow

ALL: Final = "all"
# How a `production_only` freeze without `environments` is listed (status, App Home).
EVERY_PRODUCTION: Final = "every production environment"
MAX_DURATION: Final = timedelta(days=30)
FROZEN: Final = "frozen"
LIFTED: Final = "lifted"
REFUSED: Final = "refused"


@dataclass(frozen=True)
class ActiveFreeze:
    """One freeze in force, for lists (status, App Home): from the YAML or from Slack."""

    environments: tuple[str, ...]
    start: datetime
    end: datetime
    reason: str
    source: str  # "config" | "slack"
    created_by: str | None = None
    id: int | None = None
    production_only: bool = False

    def covers(self, environment: str, production: bool | None = None) -> bool:
        """As `ScheduledFreeze.covers`: `production` says whether the environment is
        production for the service asked about (None: when it is named `production`)."""
        if self.production_only:
            if not (environment == "production" if production is None else production):
                return False
            if self.environments == (EVERY_PRODUCTION,):
                return True
        return ALL in self.environments or environment in self.environments


@dataclass(frozen=True)
class FreezeOutcome:
    result: str  # frozen | lifted | refused
    message: str  # what to tell the person who typed the command
    environment: str | None = None
    end: datetime | None = None
    reason: str | None = None
    lifted: int = 0


def environments(config: Config) -> list[str]:
    """Every environment name any service has, sorted (what `freeze` accepts, with "all")."""
    return sorted({env.name for _, _, env in config.iter_environments()})


def may_freeze(config: Config, user_id: str, memberships: frozenset[str]) -> bool:
    """Release managers only: listed by user id, or through one of their user groups."""
    allowed = set(config.slack.release_managers)
    return user_id in allowed or bool(memberships & allowed)


def freeze(
    session: Session,
    *,
    now: datetime,
    config: Config,
    environment: str,
    duration: timedelta,
    reason: str,
    actor: str,
    memberships: frozenset[str] = frozenset(),
) -> FreezeOutcome:
    """Start a freeze on one environment (of every service) or on all of them, from now."""
    reason = reason.strip()
    refusal: str | None = None
    if not may_freeze(config, actor, memberships):
        refusal = _managers_only(config, "freeze deploys")
    elif environment != ALL and environment not in environments(config):
        refusal = _unknown_environment(config, environment)
    elif duration <= timedelta(0):
        refusal = "a freeze needs a duration longer than 0s"
    elif duration > MAX_DURATION:
        refusal = "a freeze from Slack lasts at most 30 days; put longer ones in releasebot.yaml"
    elif not reason:
        refusal = "a freeze needs a reason"
    if refusal is not None:
        _refused(session, now=now, actor=actor, what="freeze", environment=environment, why=refusal)
        return FreezeOutcome(REFUSED, refusal, environment)
    window = FreezeWindow(
        environment=environment,
        starts_at=now,
        ends_at=now + duration,
        reason=reason[:1000],
        created_by=actor,
        created_at=now,
    )
    session.add(window)
    session.flush()
    audit.append(
        session,
        at=now,
        actor=actor,
        action="freeze.started",
        subject=f"freeze:{window.id}",
        details={
            "environment": environment,
            "starts_at": window.starts_at.isoformat(),
            "ends_at": window.ends_at.isoformat(),
            "reason": window.reason,
        },
    )
    where = "every environment" if environment == ALL else environment
    return FreezeOutcome(
        FROZEN,
        f"{where} is frozen until {window.ends_at.isoformat(timespec='minutes')}: {window.reason}",
        environment,
        window.ends_at,
        window.reason,
    )


def unfreeze(
    session: Session,
    *,
    now: datetime,
    config: Config,
    environment: str,
    actor: str,
    memberships: frozenset[str] = frozenset(),
) -> FreezeOutcome:
    """Lift the Slack freezes on `environment` ("all": every Slack freeze in force)."""
    refusal: str | None = None
    if not may_freeze(config, actor, memberships):
        refusal = _managers_only(config, "lift a freeze")
    elif environment != ALL and environment not in environments(config):
        refusal = _unknown_environment(config, environment)
    if refusal is not None:
        _refused(
            session, now=now, actor=actor, what="unfreeze", environment=environment, why=refusal
        )
        return FreezeOutcome(REFUSED, refusal, environment)
    query = _in_force(select(FreezeWindow), now)
    if environment != ALL:
        query = query.where(FreezeWindow.environment == environment)
    lifted = list(session.exec(query.order_by(col(FreezeWindow.id))).all())
    for window in lifted:
        window.lifted_at = now
        window.lifted_by = actor
        session.add(window)
        audit.append(
            session,
            at=now,
            actor=actor,
            action="freeze.lifted",
            subject=f"freeze:{window.id}",
            details={"environment": window.environment, "reason": window.reason},
        )
    session.flush()
    still = [
        f
        for f in listing(session, config=config, now=now)
        if environment == ALL or f.covers(environment)
    ]
    where = "every environment" if environment == ALL else environment
    if not lifted and not still:
        told = Refusal(f"{where} is not frozen", "nothing to lift: deploys go ahead there")
        return FreezeOutcome(REFUSED, told.text, environment)
    parts = []
    if lifted:
        parts.append(f"lifted {_count(len(lifted), 'freeze')} on {where}")
    else:
        parts.append(f"no freeze from Slack is in force on {where}")
    for remaining in still:
        if remaining.source == "config":
            parts.append(
                f"still frozen until {remaining.end.isoformat(timespec='minutes')} by "
                f"releasebot.yaml ({remaining.reason}): change it there, or use break-glass"
            )
        else:
            parts.append(
                f"still frozen by the freeze on all environments ({remaining.reason}): "
                "`unfreeze all` lifts it"
            )
    return FreezeOutcome(
        LIFTED if lifted else REFUSED, "; ".join(parts), environment, lifted=len(lifted)
    )


def _managers_only(config: Config, what: str) -> str:
    managers = list(config.slack.release_managers)
    return refusals.managers_only(managers, what, slack_mention).text


def _unknown_environment(config: Config, environment: str) -> str:
    return refusals.unknown_name("environment", environment, environments(config), ALL).text


# `_in_force` built once, as a Core statement: every gate decision asks `active(...)`, and
# it needs the window's values only, not FreezeWindow objects.
_AT = sa.bindparam("at", type_=sql.FREEZE_WINDOW.c.ends_at.type)


def _in_force_clause(at: Any) -> sa.ColumnElement[bool]:
    """Windows in force at `at` (a time or a bound parameter): started, not ended, not
    lifted by then. `_is_in_force` is the same test in Python."""
    return sa.and_(
        col(FreezeWindow.ends_at) > at,
        col(FreezeWindow.starts_at) <= at,
        sa.or_(col(FreezeWindow.lifted_at).is_(None), col(FreezeWindow.lifted_at) > at),
    )


_IN_FORCE = (
    sa.select(
        sql.FREEZE_WINDOW.c.environment,
        sql.FREEZE_WINDOW.c.starts_at,
        sql.FREEZE_WINDOW.c.ends_at,
        sql.FREEZE_WINDOW.c.lifted_at,
        sql.FREEZE_WINDOW.c.reason,
    )
    .where(_in_force_clause(_AT))
    .order_by(sql.FREEZE_WINDOW.c.id)
)


def active(session: Session, *, config: Config, now: datetime) -> list[ScheduledFreeze]:
    """Every freeze in force at `now`: the YAML's (file order), then Slack's (oldest first)."""
    found = [f for f in config.freezes if f.active_at(now)]
    session.flush()  # what the ORM query would flush first (a window added just now)
    found.extend(_freeze(w) for w in session.connection().execute(_IN_FORCE, {"at": now}))
    return found


def active_at_each(
    session: Session, *, config: Config, moments: Iterable[datetime]
) -> dict[datetime, list[ScheduledFreeze]]:
    """`active(...)` at each of several moments, with one query for all of them (the outbox
    worker renders a batch of release messages, each as of its deployment's last change)."""
    wanted = set(moments)
    if not wanted:
        return {}
    earliest, latest = min(wanted), max(wanted)
    # Every window in force at some moment between the first and the last, in id order;
    # then, for each moment, the ones in force at it.
    windows = session.exec(
        select(FreezeWindow)
        .where(col(FreezeWindow.ends_at) > earliest)
        .where(col(FreezeWindow.starts_at) <= latest)
        .where(
            sa.or_(col(FreezeWindow.lifted_at).is_(None), col(FreezeWindow.lifted_at) > earliest)
        )
        .order_by(col(FreezeWindow.id))
    ).all()
    found: dict[datetime, list[ScheduledFreeze]] = {}
    for moment in wanted:
        freezes = [f for f in config.freezes if f.active_at(moment)]
        freezes.extend(_freeze(w) for w in windows if _is_in_force(w, moment))
        found[moment] = freezes
    return found


def listing(session: Session, *, config: Config, now: datetime) -> list[ActiveFreeze]:
    """The freezes in force at `now`, with where they come from (for status and App Home)."""
    found = [
        ActiveFreeze(
            tuple(f.environments) or (EVERY_PRODUCTION,),
            f.start,
            f.end,
            f.reason,
            "config",
            production_only=f.production_only,
        )
        for f in config.freezes
        if f.active_at(now)
    ]
    found.extend(
        ActiveFreeze((w.environment,), w.starts_at, _end(w), w.reason, "slack", w.created_by, w.id)
        for w in _windows(session, now)
    )
    return found


def covering(
    freezes: list[ActiveFreeze], environment: str, production: bool | None = None
) -> ActiveFreeze | None:
    return next((f for f in freezes if f.covers(environment, production)), None)


def _windows(session: Session, at: datetime) -> list[FreezeWindow]:
    return list(
        session.exec(_in_force(select(FreezeWindow), at).order_by(col(FreezeWindow.id))).all()
    )


def _in_force(query: SelectOfScalar[FreezeWindow], at: datetime) -> SelectOfScalar[FreezeWindow]:
    return query.where(_in_force_clause(at))


class _Window(Protocol):
    """A FreezeWindow, or a row of `_IN_FORCE`."""

    @property
    def environment(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def lifted_at(self) -> datetime | None: ...
    @property
    def reason(self) -> str: ...


def _is_in_force(window: _Window, at: datetime) -> bool:
    return (
        window.ends_at > at
        and window.starts_at <= at
        and (window.lifted_at is None or window.lifted_at > at)
    )


def _freeze(window: _Window) -> ScheduledFreeze:
    return ScheduledFreeze(
        environments=[window.environment],
        start=window.starts_at,
        end=_end(window),
        reason=window.reason,
    )


def _end(window: _Window) -> datetime:
    """When a window (a FreezeWindow, or a row of `_IN_FORCE`) ends: lifted or run out."""
    if window.lifted_at is not None and window.lifted_at < window.ends_at:
        return window.lifted_at
    return window.ends_at


def _refused(
    session: Session, *, now: datetime, actor: str, what: str, environment: str, why: str
) -> None:
    audit.append(
        session,
        at=now,
        actor=actor,
        action="freeze.refused",
        subject=f"environment:{environment}",
        details={"command": what, "reason": why},
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
