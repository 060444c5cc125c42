"""Feature flags as releases: where a flag stands, what step comes next, and the change sent.

A flag of a service's `release:` block goes through its `steps` (percentages of users).
Each step is a gate of its own (a `flag_step` row with its requirement and approvals,
decided by the same rules as a deploy gate: `bot.domain.gates`), then a change sent to the
flag platform, then the service's verify checks run again. The kill switch is a step too:
it turns the flag off at once, without a quorum.

    history = [StepRecord("rollout", 10, PASSED, deployment_id=4)]
    state = flag_state((10, 50, 100), history, deployment_id=4)
    state.next_percent   # 50: "Release new-checkout-flow 50%" is offered
    state.serving        # 10: what the platform serves now

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

from bot.domain.gates import decisions
from bot.domain.gates.common import Mention, plain
from bot.domain.gates.refusal import Refusal, who

ROLLOUT: Final = "rollout"
KILL: Final = "kill"

# A step's status, in the order it moves.
PENDING: Final = "pending"  # waiting for approvals (a gate)
SENDING: Final = "sending"  # approved: the change is queued for the platform
VERIFYING: Final = "verifying"  # the platform took it: the verify checks run again
PASSED: Final = "passed"  # its checks passed (or there are none)
FAILED: Final = "failed"  # a check failed after it: the next step is not offered
UNDELIVERED: Final = "undelivered"  # the platform refused the change
CANCELLED: Final = "cancelled"  # a pending step the kill switch closed
OFF: Final = "off"  # the kill switch's change went through: the flag is off
REJECTED: Final = decisions.REJECTED  # an approver rejected the pending step, with a reason
EXPIRED: Final = decisions.EXPIRED  # nobody decided the pending step in time

STATUSES: Final = (
    PENDING,
    SENDING,
    VERIFYING,
    PASSED,
    FAILED,
    UNDELIVERED,
    CANCELLED,
    OFF,
    REJECTED,
    EXPIRED,
)
CLOSED_UNDECIDED: Final = frozenset({REJECTED, EXPIRED})
"""A step's gate closed without the change: like a deploy gate rejected or expired, the same
deployment offers it no more; a newer verified deploy offers it again."""
_SERVING: Final = frozenset({VERIFYING, PASSED, FAILED})


@dataclass(frozen=True)
class StepRecord:
    """One step of a flag as stored: a rollout to `percent`, or the kill switch."""

    kind: str  # rollout | kill
    percent: int
    status: str
    deployment_id: int


@dataclass(frozen=True)
class FlagState:
    """Where a flag stands for the release message of one deployment.

    `serving`: the percentage the platform serves now (0: off or never released).
    `next_percent`: the step offered now ("Release <flag> N%"), or None. `pending`: that
    step's gate is open (approvals recorded, more needed). `busy`: a change or its checks
    are in flight. `can_kill`: the kill switch applies (the flag serves users).
    """

    serving: int
    next_percent: int | None
    pending: bool
    busy: bool
    can_kill: bool
    status: str | None  # the newest step's status, None before the first


def serving(history: Sequence[StepRecord]) -> int:
    """The percentage the platform serves now, from the steps it took (newest last)."""
    for record in reversed(history):
        if record.kind == KILL and record.status in (SENDING, OFF):
            return 0
        if record.kind == ROLLOUT and record.status in _SERVING:
            return record.percent
    return 0


def step_after(steps: Sequence[int], percent: int) -> int | None:
    """The first configured step above `percent`, or None when the flag is fully out."""
    return next((step for step in steps if step > percent), None)


def flag_state(
    steps: Sequence[int], history: Sequence[StepRecord], *, deployment_id: int
) -> FlagState:
    """What the release message of `deployment_id` offers for a flag with these `steps`,
    given every step taken so far (oldest first).

    After a failed step or the kill switch nothing is offered on the same deployment: a fix
    is deployed and verified first, and its message offers the failed step (or, after the
    kill switch, the first step) again.
    """
    now = serving(history)
    if not history:
        return FlagState(0, steps[0] if steps else None, False, False, False, None)
    last = history[-1]
    newer = deployment_id > last.deployment_id
    if last.kind == KILL and last.status == UNDELIVERED:  # the platform refused: pull again
        return FlagState(now, None, False, False, now > 0, last.status)
    if last.kind == KILL:
        offered = steps[0] if newer and last.status == OFF and steps else None
        return FlagState(0, offered, False, last.status == SENDING, False, last.status)
    if last.status == PENDING:
        return FlagState(now, last.percent, True, False, now > 0, last.status)
    if last.status in (SENDING, VERIFYING):
        return FlagState(now, None, False, True, True, last.status)
    if last.status == PASSED:
        return FlagState(now, step_after(steps, now), False, False, True, last.status)
    if last.status == FAILED:
        return FlagState(now, last.percent if newer else None, False, False, True, last.status)
    if last.status in CLOSED_UNDECIDED:
        return FlagState(now, last.percent if newer else None, False, False, now > 0, last.status)
    # undelivered (or a cancelled gate): the same step may be asked for again
    return FlagState(now, last.percent, False, False, now > 0, last.status)


def rerequested(history: Sequence[StepRecord]) -> bool:
    """The newest step waits for approvals after being asked for again: the step before it,
    to the same percentage on the same deployment, was rejected or expired."""
    if len(history) < 2 or history[-1].status != PENDING:
        return False
    last, before = history[-1], history[-2]
    return (
        before.kind == ROLLOUT
        and before.status in CLOSED_UNDECIDED
        and (before.percent, before.deployment_id) == (last.percent, last.deployment_id)
    )


def can_rerequest(history: Sequence[StepRecord], *, deployment_id: int) -> bool:
    """The release message of `deployment_id` offers Re-request: the flag's newest step was
    opened from it and was rejected or expired."""
    last = history[-1] if history else None
    return (
        last is not None
        and last.kind == ROLLOUT
        and last.status in CLOSED_UNDECIDED
        and last.deployment_id == deployment_id
    )


@dataclass(frozen=True)
class FlagChange:
    """Send one flag change to its platform: roll out to `percent`, or turn it off
    (`action` "off", the kill switch). One key per flag, so changes go out in order."""

    KIND: ClassVar[str] = "flag.change"
    step_id: int
    deployment_id: int
    service: str
    flag: str
    provider: str  # launchdarkly | unleash | webhook
    action: str  # rollout | off
    percent: int

    @property
    def key(self) -> str:
        return f"flag:{self.service}:{self.flag}"

    def to_payload(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "deployment_id": self.deployment_id,
            "service": self.service,
            "flag": self.flag,
            "provider": self.provider,
            "action": self.action,
            "percent": self.percent,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> FlagChange:
        return cls(
            step_id=int(payload["step_id"]),
            deployment_id=int(payload["deployment_id"]),
            service=str(payload["service"]),
            flag=str(payload["flag"]),
            provider=str(payload["provider"]),
            action=str(payload["action"]),
            percent=int(payload["percent"]),
        )

    def describe(self) -> str:
        """`new-checkout-flow → 10%`, `new-checkout-flow off`."""
        return f"{self.flag} off" if self.action == "off" else f"{self.flag} → {self.percent}%"


# --- refusals --------------------------------------------------------------------------------


def not_offered(flag: str, state: FlagState) -> Refusal:
    """A Release click when no step of the flag is offered now, and why."""
    if state.busy:
        return Refusal(
            f"{flag} is changing now: the checks after its last step are still running",
            "wait for them; the next step is offered when they pass",
        )
    if state.status == FAILED:
        return Refusal(
            f"the checks after {flag} went to {state.serving}% failed",
            "use Kill switch, or deploy a fix: its release message offers the step again",
        )
    if state.status in (OFF, SENDING) or state.status is not None and state.serving == 0:
        return Refusal(
            f"{flag} was turned off by the kill switch",
            "deploy a fix: its release message offers the flag again",
        )
    return Refusal(f"{flag} is fully released ({state.serving}%)", "there is no step left")


def step_closed(
    flag: str,
    percent: int,
    status: str,
    *,
    by: str | None,
    reason: str | None,
    expired_at: datetime | None,
    mention: Mention = plain,
) -> Refusal:
    """A click on a step whose gate was rejected or expired: it can no longer be approved."""
    step = f"the step of {flag} to {percent}%"
    again = (
        "use Re-request on its release message to ask for the step again, or deploy again: "
        "the verified release message of the new deploy offers the step again"
    )
    if status == REJECTED:
        said = f": {reason}" if reason else ""
        return Refusal(f"{step} was rejected by {mention(by or 'someone')}{said}", again)
    when = f" at {expired_at:%Y-%m-%d %H:%M} UTC" if expired_at is not None else ""
    return Refusal(f"{step} expired{when}: nobody decided in time", again)


def asked_again(flag: str, percent: int) -> Refusal:
    """A Release or Reject click from before the step was asked for again (its button
    carried the closed step, not the fresh one)."""
    return Refusal(
        f"this button is from before the step of {flag} to {percent}% was asked for again",
        "use the buttons the release message shows now",
    )


def stale_button(flag: str) -> Refusal:
    """A click carrying a step of the flag the release message no longer shows."""
    return Refusal(
        f"this button of {flag} is from an older state of the release message",
        "use the buttons the release message shows now",
    )


def not_rerequestable(flag: str, percent: int, status: str) -> Refusal:
    """A Re-request of a step that was not rejected or did not expire."""
    return Refusal(
        f"only a step that was rejected or expired can be asked for again; the step of "
        f"{flag} to {percent}% is {status}",
        "use the buttons the release message shows now",
    )


def already_asked_again(flag: str, percent: int) -> Refusal:
    """A Re-request of a step that was asked for again already (or the flag moved on)."""
    return Refusal(
        f"the step of {flag} to {percent}% was already asked for again, or {flag} moved on since",
        "decide on the release message as it shows now",
    )


def rerequest_not_allowed(
    flag: str, principals: Sequence[str], mention: Mention = plain
) -> Refusal:
    """A Re-request by someone who is not a release manager, owner or approver of the flag."""
    return Refusal(
        f"only the release managers, the service's owners or the approvers of {flag} may "
        "re-request its step",
        f"ask {who(principals, mention)} to re-request it",
    )


def nothing_to_reject(flag: str) -> Refusal:
    """A Reject click when no step of the flag waits for approvals."""
    return Refusal(f"no step of {flag} is waiting for approval", "use the newest release message")


def kill_not_allowed(flag: str, principals: Sequence[str], mention: Mention = plain) -> Refusal:
    """The kill switch pulled by someone who is neither an approver nor on-call."""
    return Refusal(
        f"only the approvers of {flag} or on-call may pull its kill switch",
        f"ask {who(principals, mention)} to pull it",
    )


def nothing_to_kill(flag: str) -> Refusal:
    return Refusal(f"{flag} is already off", "nothing to turn off")


def unknown_flag(flag: str, known: Sequence[str]) -> Refusal:
    names = ", ".join(known) or "none"
    return Refusal(
        f"{flag} is not a flag of this service's release block (it has {names})",
        "use the newest release message",
    )


def not_released_here(environment: str | None, state: str) -> Refusal:
    where = environment or "its release environment"
    return Refusal(
        f"flags are released from a verified deploy in {where}, and this one is {state}",
        "use the release message of the newest verified deploy there",
    )
