"""What `releasebot doctor` found: one finding per check, a problem always with its fix.

    found = [passed("database", "at migration 0007"), failed("slack.scopes", "...", "...")]
    print(render_text(found))            # for people
    json.dumps(as_json(found))           # for scripts: [{check, ok, problem, fix, note}, ...]

A check that does not apply here (the Slack checks when the local sandbox stands in for
Slack) passes with a note saying why. Nothing in a finding ever carries a secret's value:
checks name the environment variable, never what it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Finding",
    "as_json",
    "failed",
    "not_applicable",
    "passed",
    "problems",
    "render_text",
    "summary",
]


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: passed (`ok`, maybe with a note) or a problem and its fix."""

    check: str
    ok: bool
    problem: str | None = None
    fix: str | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ok": self.ok,
            "problem": self.problem,
            "fix": self.fix,
            "note": self.note,
        }


def passed(check: str, note: str | None = None) -> Finding:
    return Finding(check=check, ok=True, note=note)


def failed(check: str, problem: str, fix: str) -> Finding:
    return Finding(check=check, ok=False, problem=problem, fix=fix)


def not_applicable(check: str, why: str) -> Finding:
    return Finding(check=check, ok=True, note=f"not applicable: {why}")


def problems(findings: Iterable[Finding]) -> list[Finding]:
    return [finding for finding in findings if not finding.ok]


def as_json(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [finding.as_json() for finding in findings]


def summary(findings: Sequence[Finding]) -> str:
    """`all 9 checks passed`, or `2 problems in 9 checks`."""
    count = len(problems(findings))
    if count == 0:
        return f"all {len(findings)} checks passed"
    noun = "problem" if count == 1 else "problems"
    return f"{count} {noun} in {len(findings)} checks"


def render_text(findings: Sequence[Finding]) -> str:
    """One line per check (`ok` or `PROBLEM`), each problem followed by its fix, then a summary."""
    lines: list[str] = []
    for finding in findings:
        if finding.ok:
            lines.append(
                f"ok       {finding.check}" + (f": {finding.note}" if finding.note else "")
            )
        else:
            lines.append(f"PROBLEM  {finding.check}: {finding.problem}")
            lines.append(f"         fix: {finding.fix}")
    lines.append(summary(findings))
    return "\n".join(lines)
