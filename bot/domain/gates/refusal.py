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
from bot.domain.ingest import revision_label
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


# --- re-request ------------------------------------------------------------------------------

_NOT_EXPIRED: Final = {
    "pending": "it is still waiting: decide it on the release message (Approve or Reject)",
    "approved": "nothing to ask again: it was approved and goes ahead",
    "rejected": "a new run of the pipeline asks for a new approval",
    "superseded": "decide on the newer release's message",
}


def not_expired(status: str) -> Refusal:
    """A Re-request on a gate that did not expire."""
    return Refusal(
        f"only an expired gate can be re-requested; this one is {status}",
        _NOT_EXPIRED.get(status, "only a gate nobody decided in time is asked for again"),
    )


def no_gate_any_more(service: str, environment: str) -> Refusal:
    """A Re-request for an environment whose gate was taken out of the config."""
    return Refusal(
        f"{environment} of {service} has no gate configured any more",
        "run its pipeline again (without a gate it deploys at once), or add a gate to "
        f"{environment} of {service} in releasebot.yaml",
    )


def asked_again_already(sha: str, environment: str, newer_id: int | None, state: str) -> Refusal:
    """A Re-request of a release that was asked for again since."""
    return Refusal(
        f"{revision_label(sha)} was already asked for again in {environment} "
        f"(deployment #{newer_id}, {state})",
        f"decide on the release message of deployment #{newer_id} "
        "(`/release pending` lists the gates waiting)",
    )


def superseded_since(
    sha: str, newer_sha: str, newer_id: int | None, state: str, *, environment: str, again: str
) -> Refusal:
    """A Re-request of a release something newer went past (`again`: how to send it anyway)."""
    return Refusal(
        f"superseded by {revision_label(newer_sha)} (deployment #{newer_id}, {state}): a newer "
        f"release went to {environment} after this gate",
        f"act on {revision_label(newer_sha)}'s release message; to send {revision_label(sha)} "
        f"to {environment} "
        f"anyway, {again}",
    )


# --- promotion and rollback ------------------------------------------------------------------


def cmd(text: str) -> str:
    """A command to type, as Slack shows code."""
    return f"`{text}`"


def not_deployed(
    action: str, state: str, *, service: str, environment: str, next_environment: str | None
) -> Refusal:
    """A promotion or rollback of a release that is not deployed (`action`: promote, rollback)."""
    said = state.replace("_", " ")
    if action == "promote":
        remedy = (
            f"promote it once its checks in {environment} pass"
            if state == "verifying"
            else f"promote it once it has deployed to {environment}"
        )
        if next_environment:
            remedy += ", or promote the newest deployed release: " + cmd(
                f"/release promote {service} latest to {next_environment}"
            )
        return Refusal(f"only a deployed release can be promoted; this one is {said}", remedy)
    return Refusal(
        f"only a deployed release can be rolled back; this one is {said}",
        f"roll back what runs in {environment}: "
        + cmd(f"/release rollback {service} {environment} -- reason"),
    )


def no_next_environment(service: str, environment: str, path: Sequence[str]) -> Refusal:
    """A promotion from the last environment of a service's path."""
    return Refusal(
        f"{service} has no environment after {environment} to promote to",
        f"{environment} ends {service}'s path ({' → '.join(path)}): add an environment after "
        "it, or an `auto_promote_to`, in releasebot.yaml",
    )


def no_deploy_section(service: str, environment: str) -> Refusal:
    """A promotion or rollback into an environment releasebot cannot deploy to."""
    return Refusal(
        f"{environment} of {service} has no deploy section: releasebot cannot start its pipeline",
        f"add a deploy section to {environment} of {service} in releasebot.yaml, or deploy "
        "it through its own pipeline",
    )


def under_way(revision: str, state: str, environment: str, service: str) -> Refusal:
    """A promotion of a release already on its way into the environment (`revision`: the
    short sha, or the version of a release reported without one)."""
    return Refusal(
        f"{revision} is already {state.replace('_', ' ')} in {environment}",
        "nothing to do: follow it on its release message, or " + cmd(f"/release status {service}"),
    )


def _versions(versions: Sequence[str]) -> str:
    return join([f"`{v}`" for v in versions])


def no_earlier_version(service: str, environment: str, ran: Sequence[str]) -> Refusal:
    """A rollback with nothing good before it (`ran`: the other versions that ran there)."""
    reason = f"no earlier version of {service} was deployed to {environment}"
    if not ran:
        return Refusal(reason, "nothing else ever ran there: deploy a fix through the pipeline")
    return Refusal(
        reason,
        f"roll back to one that ran there ({_versions(ran)}): "
        + cmd(f"/release rollback {service} {environment} to {ran[0]} -- reason"),
    )


def unknown_environment(service: str, name: str, environments: Sequence[str]) -> Refusal:
    """A service has no environment of that name."""
    return Refusal(
        f"{service} has no environment '{name}'",
        f"use {join([f'`{e}`' for e in environments], 'or')}"
        if environments
        else f"add environments to {service} in releasebot.yaml",
    )


def promotes_from_ci(service: str, target: str, targets: Sequence[str], version: str) -> Refusal:
    """A promotion into an environment nothing promotes to (`targets`: the ones something
    does)."""
    reason = (
        f"no environment of {service} promotes to {target}: releases arrive in {target} from CI"
    )
    if not targets:
        return Refusal(reason, f"{service} promotes nowhere: its releases all arrive from CI")
    return Refusal(
        reason,
        f"promote to {join([f'`{t}`' for t in targets], 'or')}: "
        + cmd(f"/release promote {service} {version} to {targets[0]}"),
    )


def nothing_deployed(action: str, service: str, where: str) -> Refusal:
    """Nothing of the service is deployed where it would be promoted or rolled back from."""
    verb = "to promote" if action == "promote" else "to roll back"
    return Refusal(
        f"nothing of {service} is deployed in {where} {verb}",
        f"deploy a release to {where} first; "
        + cmd(f"/release status {service}")
        + " shows what runs where",
    )


def version_not_there(
    service: str, version: str, where: str, *, versions: Sequence[str], example: str
) -> Refusal:
    """A version that never ran where it was looked for (`example`: the command with the
    first of `versions` put in, `{}` where the version goes)."""
    reason = f"{service} {version} was never deployed to {where}"
    if not versions:
        return Refusal(
            reason, f"no other version of {service} ran in {where}: deploy the one you want first"
        )
    return Refusal(
        reason, f"versions there: {_versions(versions)}; " + cmd(example.format(versions[0]))
    )


def runs_now(label: str, environment: str, service: str, versions: Sequence[str]) -> Refusal:
    """A rollback to the version the environment runs now."""
    reason = f"{label} is what {environment} runs now"
    if not versions:
        return Refusal(reason, "nothing else ran there: there is nothing to roll back to")
    return Refusal(
        reason,
        f"name an earlier one ({_versions(versions)}): "
        + cmd(f"/release rollback {service} {environment} to {versions[0]} -- reason"),
    )


def ambiguous_sha(text: str, shas: Sequence[str]) -> Refusal:
    """A sha prefix more than one version starts with."""
    return Refusal(
        f"'{text}' matches several versions ({', '.join(s[:10] for s in shas[:5])})",
        "type more of the sha",
    )


REASON_MISSING: Final = Refusal(
    "A reason is required", "type why in this box, then submit again (it is recorded)"
)
"""A reason form submitted empty: the error shown under the form's field."""
