"""Every refusal says why, and what would make the same click or command succeed.

    refused = not_allowed(("S0RELMGRS",), action="promote", subject="checkout", mention=m)
    refused.reason   # "only S0RELMGRS may promote checkout"
    refused.remedy   # "ask someone from <!subteam^S0RELMGRS> to promote it"
    refused.text     # "only S0RELMGRS may promote checkout; ask someone from ..."

`reason` keeps the words people and the audit trail have always seen (ids as they are);
`remedy` names who or what would let it through: the user groups as Slack mentions (the
`mention` a caller passes, `slack_mention` for an answer in Slack), the command to type, or
when to try again. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from bot.domain.gates.common import Mention, plain
from bot.domain.gates.freeze import FreezeHold, moment
from bot.domain.wording import join

_GROUP_PREFIX: Final = "S"


@dataclass(frozen=True)
class Refusal:
    """Why something was refused, and what would make it succeed."""

    reason: str
    remedy: str

    @property
    def text(self) -> str:
        """The answer shown to the person: the reason, then the remedy."""
        return f"{self.reason}; {self.remedy}" if self.remedy else self.reason


def slack_mention(principal: str) -> str:
    """A Slack user id as `<@U1>`, a user group id as `<!subteam^S1>`, anything else as is."""
    if principal[:1] in ("U", "W") and principal[1:].isalnum() and principal.isupper():
        return f"<@{principal}>"
    if principal[:1] == _GROUP_PREFIX and principal[1:].isalnum() and principal.isupper():
        return f"<!subteam^{principal}>"
    return principal


def who(principals: Iterable[str], mention: Mention = plain) -> str:
    """`someone from <!subteam^S1> or <!subteam^S2>`, `<@U1> or <@U2>`: who could act."""
    found = sorted(set(principals))
    if not found:
        return "nobody"
    names = join([mention(p) for p in found], "or")
    if any(p.startswith(_GROUP_PREFIX) for p in found):
        return f"someone from {names}"
    return names


# --- gates -----------------------------------------------------------------------------------

_CLOSED: Final = {
    "approved": ("this gate was already approved", "nothing is left to decide: it goes ahead"),
    "rejected": (
        "this gate was already rejected",
        "a new run of the pipeline asks for a new approval",
    ),
    "expired": (
        "this gate already expired",
        "ask for a new approval (Re-request on the release message)",
    ),
    "superseded": (
        "this gate was superseded by a newer release",
        "decide on the newer release's message",
    ),
}


def closed(status: str) -> Refusal:
    """A decision on a gate that is no longer pending."""
    reason, remedy = _CLOSED.get(
        status, (f"this gate is {status}, not pending", "only a pending gate takes decisions")
    )
    return Refusal(reason, remedy)


def not_an_approver(principals: Sequence[str], mention: Mention = plain) -> Refusal:
    """Someone the gate's rules do not list."""
    if not principals:
        return Refusal(
            "this gate has no approvers", "add approvers to the environment's gate in the config"
        )
    names = join(list(principals), "or")
    if all(p.startswith(_GROUP_PREFIX) for p in principals):
        reason = f"you are not in {names}"
    else:
        reason = f"only {names} can decide on this gate"
    return Refusal(reason, f"ask {who(principals, mention)} to decide it")


def self_approval(conflict: str, principals: Sequence[str], mention: Mention = plain) -> Refusal:
    """Someone who touched the change approving it (`conflict`: "you authored 2 of ...")."""
    return Refusal(conflict, f"needs {who(principals, mention)} who did not write the change")


def people_unknown(reason: str) -> Refusal:
    """An approval while nobody can tell who touched the change (`unknown_people: refuse`)."""
    return Refusal(
        reason,
        "use break-glass, or once the code host answers ask again; the gate's "
        "`unknown_people: allow` lets approvals through, recorded as taken blind",
    )


def already_voted(principals: Sequence[str], mention: Mention = plain) -> Refusal:
    """A second vote by the same person."""
    return Refusal(
        "you already approved this release",
        f"one vote each: the next approval must come from {who(principals, mention)} else",
    )


def frozen(hold: FreezeHold) -> Refusal:
    """An approval while a freeze covers the environment."""
    closed_at = (
        f" (the break-glass window closed at {moment(hold.window_closed_at)})"
        if hold.window_closed_at is not None
        else ""
    )
    return Refusal(
        f"{hold.environment} is frozen: {hold.reason}",
        f"use break-glass{closed_at}, or wait until the freeze ends at {moment(hold.until)}",
    )


def blocked(risk_level: str | None, budget: str | None = None) -> Refusal:
    """An approval on a gate its risk level (or the error budget) blocks."""
    level = budget or (f"{risk_level} risk" if risk_level else "this gate is blocked")
    return Refusal(
        f"{level}: only break-glass can pass this gate",
        "ask for break-glass on the release message, with a reason",
    )


def reason_required(what: str) -> Refusal:
    """A reject or a rollback without a reason."""
    return Refusal(f"a reason is required to {what}", "try again and say why in the form")


def unknown_gate() -> Refusal:
    """A click on a gate that is not in the database."""
    return Refusal(
        "this gate does not exist", "use the newest release message, or `/release status`"
    )


def unknown_deployment() -> Refusal:
    """A click on a deployment that is not in the database."""
    return Refusal(
        "this deployment does not exist", "use the newest release message, or `/release status`"
    )


# --- people ----------------------------------------------------------------------------------


def unknown_person(failure: str, *, retryable: bool) -> Refusal:
    """Someone Slack's directory cannot vouch for (`failure`: what Slack answered)."""
    if retryable:
        return Refusal(
            f"Slack's directory did not answer ({failure}), so I cannot check who you are: "
            "nothing was recorded",
            "try again in a minute",
        )
    return Refusal(
        f"Slack's directory could not confirm who you are ({failure}), so I cannot check "
        "that you may decide this: nothing was recorded",
        "Someone from this workspace listed as an approver can decide it",
    )


def not_allowed(
    principals: Iterable[str], *, action: str, subject: str, mention: Mention = plain
) -> Refusal:
    """Someone who may not promote, roll back or unlock (`subject`: the service)."""
    allowed = sorted(set(principals))
    names = ", ".join(allowed) or "nobody"
    return Refusal(f"only {names} may {action} {subject}", f"ask {who(allowed, mention)} to do it")


# --- break-glass -----------------------------------------------------------------------------

BREAK_GLASS_UNCONFIGURED: Final = Refusal(
    "break-glass is not configured (no break_glass section in releasebot.yaml)",
    "add a break_glass section (approvers, valid_for) to releasebot.yaml",
)


def break_glass_reason_too_short(minimum: int) -> Refusal:
    return Refusal(
        f"break-glass needs a reason of at least {minimum} characters saying what is on fire",
        "ask again with a longer reason",
    )


def break_glass_on_closed_gate(status: str) -> Refusal:
    return Refusal(
        f"this gate is already {status}", "break-glass passes only a gate that is still waiting"
    )


def break_glass_lapsed() -> Refusal:
    return Refusal(
        "this break-glass request lapsed before anyone confirmed it",
        "ask again (Break glass on the release message)",
    )


def break_glass_second_person(approvers: Sequence[str], mention: Mention = plain) -> Refusal:
    return Refusal(
        "break-glass needs a second person: someone else must confirm your request",
        f"ask {who(approvers, mention)} to confirm it",
    )


def break_glass_not_an_approver(
    label: str, approvers: Sequence[str], mention: Mention = plain
) -> Refusal:
    return Refusal(
        f"only {label} can confirm break-glass", f"ask {who(approvers, mention)} to confirm it"
    )


def break_glass_not_asked() -> Refusal:
    return Refusal(
        "nobody has asked for break-glass on this gate",
        "ask for it first: Break glass on the release message, with a reason",
    )


def break_glass_confirmed() -> Refusal:
    return Refusal(
        "this break-glass was already confirmed", "nothing is left to confirm: it goes ahead"
    )


def break_glass_touched(
    conflict: str, approvers: Sequence[str], mention: Mention = plain
) -> Refusal:
    return Refusal(
        f"{conflict}: someone who did not touch this change must confirm break-glass",
        f"ask {who(approvers, mention)} who did not touch it",
    )


# --- locks and freezes -----------------------------------------------------------------------


def locked(service: str, environment: str, locked_by: str, reason: str) -> Refusal:
    """A promotion into, or an approval in, an environment locked with `/release lock`."""
    return Refusal(
        f"{environment} of {service} is locked by {locked_by}: {reason}",
        f"it stays locked until someone unlocks it (`/release unlock {service} {environment}`)",
    )


def managers_only(managers: Sequence[str], what: str, mention: Mention = plain) -> Refusal:
    """Someone who is not a release manager freezing or lifting a freeze."""
    names = ", ".join(managers) or "nobody"
    return Refusal(
        f"only release managers ({names}) may {what}", f"ask {who(managers, mention)} to do it"
    )


def lockers_only(
    service: str, lockers: Sequence[str], what: str, mention: Mention = plain
) -> Refusal:
    """Someone who is neither a release manager nor an owner locking or unlocking."""
    names = ", ".join(sorted(lockers)) or "nobody"
    return Refusal(
        f"only release managers and the owners of {service} ({names}) may {what} it",
        f"ask {who(lockers, mention)} to {what} it",
    )


def unknown_name(what: str, name: str, known: Sequence[str], extra: str = "") -> Refusal:
    """A name no service has (`what`: "service", "environment")."""
    choices = join([f"`{k}`" for k in [*known, *([extra] if extra else [])]], "or")
    reason = (
        f"there is no {what} '{name}'"
        if what == "service"
        else f"no service has an {what} '{name}'"
    )
    return Refusal(reason, f"use {choices}" if choices else f"add the {what} to the config first")
