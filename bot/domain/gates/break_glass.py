"""Break-glass: passing a gate or a freeze in an emergency, confirmed and time-boxed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bot.config import BreakGlass
from bot.domain.gates import refusal as refusals
from bot.domain.gates.common import Mention, plain, require_aware
from bot.domain.gates.quorum import belongs_to
from bot.domain.gates.refusal import Refusal
from bot.domain.gates.requirement import Rule

MIN_BREAK_GLASS_REASON: Final = 10  # characters, after stripping spaces


@dataclass(frozen=True)
class BreakGlassRequest:
    """Someone asks to pass a gate or a freeze in an emergency."""

    requested_by: str
    reason: str
    requested_at: datetime


def break_glass_check(
    settings: BreakGlass | None,
    request: BreakGlassRequest,
    confirmer_id: str,
    memberships: Mapping[str, frozenset[str]],
    now: datetime,
    mention: Mention = plain,
) -> Refusal | None:
    """Why this confirmation of a break-glass request is refused, and what would let it
    through (`Refusal`), or None to let it through.

    Needs the `break_glass` section, a reason of at least `MIN_BREAK_GLASS_REASON`
    characters and a confirmer from `break_glass.approvers`; with `second_person` the
    confirmer must be someone other than the requester (without it the requester confirms
    their own request, and must be an approver). A request left unconfirmed for longer than
    `valid_for` lapses.
    """
    require_aware(now, "now")
    if settings is None:
        return refusals.BREAK_GLASS_UNCONFIGURED
    if len(request.reason.strip()) < MIN_BREAK_GLASS_REASON:
        return refusals.break_glass_reason_too_short(MIN_BREAK_GLASS_REASON)
    if now >= request.requested_at + settings.valid_for:
        return refusals.break_glass_lapsed()
    approvers = tuple(settings.approvers)
    if settings.second_person and confirmer_id == request.requested_by:
        return refusals.break_glass_second_person(approvers, mention)
    rule = Rule(approvers=approvers, count=1)
    if not belongs_to(rule, confirmer_id, memberships):
        return refusals.break_glass_not_an_approver(rule.label(), approvers, mention)
    return None


def break_glass_valid_until(settings: BreakGlass, confirmed_at: datetime) -> datetime:
    """A confirmed break-glass holds until this moment (exclusive)."""
    require_aware(confirmed_at, "confirmed_at")
    return confirmed_at + settings.valid_for
