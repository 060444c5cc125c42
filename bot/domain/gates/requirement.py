"""What a gate requires: its rules, its mode at a risk level, and how that is stored.

`by_risk` per level: `auto_approve` (continuous deployment: nobody is asked), `blocked` (no
number of approvals passes, only break-glass) or a stricter `require`. In both non-quorum
modes `Requirement.rules` keeps the gate's own `require`: that is who is told about the gate
and who may still reject it.

`by_error_budget` then applies the band the service's error budget is in (`exhausted`,
`below_25_percent`, ...): `blocked`, or its `require`. The stricter of the risk's and the
budget's requirement wins: blocked over a quorum, and of two quorums the one with more seats
(the budget's on a tie). An unknown budget (Prometheus did not answer) takes the strictest
band set, unless `unknown: allow`. `Requirement.budget` says which band chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from bot.config import GatePolicy
from bot.config.gates import ErrorBudgetGate
from bot.domain.gates.common import Mention, plain
from bot.domain.slo import Budget
from bot.domain.wording import join

Mode = Literal["quorum", "auto_approve", "blocked"]

MODES: Final[tuple[Mode, ...]] = ("quorum", "auto_approve", "blocked")


@dataclass(frozen=True)
class Rule:
    """`count` distinct people from `approvers` (user ids and user-group ids)."""

    approvers: tuple[str, ...]
    count: int

    def __post_init__(self) -> None:
        if not self.approvers:
            raise ValueError("a rule needs at least one approver")
        if self.count < 1:
            raise ValueError(f"a rule needs a count >= 1, not {self.count}")

    def label(self, mention: Mention = plain) -> str:
        """`"S0RELMGRS"`, or `"S0RELMGRS or U0ALICE01"` for several principals."""
        return join([mention(p) for p in dict.fromkeys(self.approvers)], "or")


@dataclass(frozen=True)
class Requirement:
    """What one gate needs, fixed when the gate opens (stored with it, see `to_dict`).

    `mode` "quorum": every rule met by distinct people. "auto_approve": nothing to wait for.
    "blocked": only break-glass passes. `risk_level` is the level that chose the mode, if any.
    """

    mode: Mode
    rules: tuple[Rule, ...]
    risk_level: str | None = None
    budget: str | None = None  # "error budget exhausted", ... when the budget chose the mode

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"gate mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode == "quorum" and not self.rules:
            raise ValueError("a quorum needs at least one rule")

    @property
    def seats(self) -> int:
        """How many approvals a quorum needs (0 in the other modes)."""
        return sum(rule.count for rule in self.rules) if self.mode == "quorum" else 0

    def principals(self) -> tuple[str, ...]:
        """Every approver principal of every rule, once each, in rule order."""
        return tuple(dict.fromkeys(p for rule in self.rules for p in rule.approvers))

    def describe(self, mention: Mention = plain) -> str:
        """`"1 from S0RELMGRS and 1 from S0SREGRPS (distinct people)"`, `"approved
        automatically (low risk)"`, `"blocked (critical risk): only break-glass can pass"`."""
        why = f" ({self.risk_level} risk)" if self.risk_level else ""
        if self.budget:
            why = f" ({self.budget})"
        if self.mode == "auto_approve":
            return f"approved automatically{why}"
        if self.mode == "blocked":
            return f"blocked{why}: only break-glass can pass"
        parts = [f"{rule.count} from {rule.label(mention)}" for rule in self.rules]
        distinct = " (distinct people)" if self.seats > 1 else ""
        return join(parts) + distinct + (why if self.budget else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"mode", "rules": [{"approvers": [...], "count"}], "risk_level"}`."""
        return {
            "mode": self.mode,
            "rules": [{"approvers": list(r.approvers), "count": r.count} for r in self.rules],
            "risk_level": self.risk_level,
            **({"budget": self.budget} if self.budget else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirement:
        """The inverse of `to_dict`; raises ValueError on anything it would not have written."""
        mode = data.get("mode")
        if mode not in MODES:
            raise ValueError(f"gate mode must be one of {', '.join(MODES)}, not {mode!r}")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list | tuple):
            raise ValueError("gate rules must be a list")
        rules: list[Rule] = []
        for raw in raw_rules:
            if not isinstance(raw, Mapping):
                raise ValueError(f"a gate rule must be a mapping, not {raw!r}")
            approvers, count = raw.get("approvers"), raw.get("count")
            if not isinstance(approvers, list | tuple) or not all(
                isinstance(p, str) and p for p in approvers
            ):
                raise ValueError(f"a gate rule needs a list of approver ids: {dict(raw)!r}")
            if not isinstance(count, int) or isinstance(count, bool):
                raise ValueError(f"a gate rule needs a whole-number count: {dict(raw)!r}")
            rules.append(Rule(approvers=tuple(approvers), count=count))
        level = data.get("risk_level")
        if level is not None and not isinstance(level, str):
            raise ValueError(f"risk_level must be a string or null, not {level!r}")
        budget = data.get("budget")
        if budget is not None and not isinstance(budget, str):
            raise ValueError(f"budget must be a string or null, not {budget!r}")
        return cls(mode=_mode(mode), rules=tuple(rules), risk_level=level, budget=budget)


def _mode(value: object) -> Mode:
    if value == "auto_approve":
        return "auto_approve"
    if value == "blocked":
        return "blocked"
    return "quorum"


def requirement_for(
    gate: GatePolicy, risk_level: str | None, budget: Budget | None = None
) -> Requirement:
    """The gate's requirement at this risk level: `by_risk[level]` when set, else `require`;
    then made stricter by `by_error_budget` for the `budget` measured (see the module).

    An entry of `by_risk` that sets nothing (all defaults) changes nothing.
    """
    by_risk = _by_risk(gate, risk_level)
    if gate.by_error_budget is None or budget is None:
        return by_risk
    return _stricter(by_risk, _by_budget(gate.by_error_budget, budget))


def _by_budget(policy: ErrorBudgetGate, budget: Budget) -> Requirement | None:
    """What the budget's band demands, or None when it demands nothing."""
    bands = policy.bands()
    if not budget.known:
        if policy.unknown == "allow":
            return None
        band, why = next(iter(bands)), "error budget unknown: the strictest rule applies"
    else:
        found = budget.band(bands)
        if found is None:
            return None
        band = found
        why = "error budget exhausted" if band == "exhausted" else f"error budget {_words(band)}"
    rule = bands[band]
    if rule.blocked or rule.require is None:
        return Requirement(mode="blocked", rules=(), budget=why)
    rules = tuple(Rule(approvers=tuple(r.approvers), count=r.count) for r in rule.require)
    return Requirement(mode="quorum", rules=rules, budget=why)


def _words(band: str) -> str:
    """ "below_25_percent" -> "below 25%"."""
    return band.replace("_percent", "%").replace("_", " ")


def _stricter(risk: Requirement, budget: Requirement | None) -> Requirement:
    if budget is None or risk.mode == "blocked":
        return risk
    if budget.mode == "blocked":
        return Requirement(mode="blocked", rules=risk.rules, budget=budget.budget)
    if risk.mode == "quorum" and risk.seats > budget.seats:
        return risk
    return Requirement(
        mode="quorum", rules=budget.rules, risk_level=risk.risk_level, budget=budget.budget
    )


def _by_risk(gate: GatePolicy, risk_level: str | None) -> Requirement:
    base = tuple(Rule(approvers=tuple(r.approvers), count=r.count) for r in gate.require)
    override = next((rg for level, rg in gate.by_risk.items() if level == risk_level), None)
    if override is not None:
        if override.auto_approve:
            return Requirement(mode="auto_approve", rules=base, risk_level=risk_level)
        if override.blocked:
            return Requirement(mode="blocked", rules=base, risk_level=risk_level)
        if override.require is not None:
            stricter = tuple(
                Rule(approvers=tuple(r.approvers), count=r.count) for r in override.require
            )
            return Requirement(mode="quorum", rules=stricter, risk_level=risk_level)
    return Requirement(mode="quorum", rules=base, risk_level=risk_level)
