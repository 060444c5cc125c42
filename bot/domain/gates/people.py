"""The self-approval ban: who had a hand in a release, and whether the decider is one of them.

The ban covers everyone who authored, committed or merged a change in the release, approved
its pull or merge request in review, or started its deployment, matched through `identities`
(GitHub/GitLab logins, e-mail) and the e-mail Slack reports for the user (users.info).

When the people behind a release cannot be determined (the code host could not list its
commits or pull requests, or no commit list exists), nobody can be cleared of having touched
it: approvals are refused (`unknown_people_refusal`) unless the gate says
`unknown_people: allow`, and then the decision is recorded as taken blind (`blind_note`).

Nor is such a release ever approved automatically: a gate whose `by_risk` would let it
through by itself asks people instead (`asked_of_people`), and says why (`not_automatic_note`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import Identity
from bot.domain.gates.common import fold
from bot.domain.gates.requirement import Requirement
from bot.domain.wording import join


@dataclass(frozen=True)
class ReleasePeople:
    """Everyone who had a hand in the release, as the code host and CI name them.

    `authors` and `committers` hold one entry per commit (a login, or "" when the host knows
    none), so "2 of the commits" can be counted. `author_emails` and `committer_emails` are
    one e-mail per commit too (or ""): when one lines up with its logins (same length) a
    commit counts once if either its login or its e-mail is the person's; otherwise the two
    lists are counted apart and the larger count is used. `mergers` (one per merged change)
    and `deployers` are logins or names as the CI system reports them, or Slack user ids
    when the bot itself deployed; a deployer may be listed under several names (a login and
    an e-mail). `approvers` holds one tuple per change: the logins that approved it in review.

    `unknown` says why the people behind the release cannot be determined ("its commits
    could not be listed: ..."), None when they are known.
    """

    authors: tuple[str, ...] = ()
    committers: tuple[str, ...] = ()
    mergers: tuple[str, ...] = ()
    deployers: tuple[str, ...] = ()
    author_emails: tuple[str, ...] = ()
    committer_emails: tuple[str, ...] = ()
    approvers: tuple[tuple[str, ...], ...] = ()
    unknown: str | None = None


@dataclass(frozen=True)
class Person:
    """A Slack user deciding on a gate: their id, the e-mail Slack reports (users.info), and
    their code-host identities from the config's `identities`, if listed."""

    user_id: str
    email: str | None = None
    identity: Identity | None = None

    @classmethod
    def from_config(
        cls, user_id: str, email: str | None, identities: Mapping[str, Identity]
    ) -> Person:
        return cls(user_id=user_id, email=email, identity=identities.get(user_id))

    def logins(self) -> frozenset[str]:
        """Names that are this person (case-folded): code-host logins and the Slack id."""
        names = [self.user_id]
        if self.identity is not None:
            names += [self.identity.github or "", self.identity.gitlab or ""]
        return frozenset(fold(name) for name in names if name.strip())

    def emails(self) -> frozenset[str]:
        """This person's e-mail addresses (case-folded): Slack's and the identity's."""
        found = [self.email or ""]
        if self.identity is not None:
            found.append(self.identity.email or "")
        return frozenset(fold(email) for email in found if email.strip())

    def is_login(self, name: str) -> bool:
        """A login or name from a code host or CI is this person (case-insensitive).

        CI systems sometimes name the actor by e-mail, so e-mails count here too.
        """
        folded = fold(name)
        return bool(folded) and (folded in self.logins() or folded in self.emails())

    def is_email(self, email: str) -> bool:
        """An e-mail is this person's, including GitHub's noreply address for their login
        (`12345+octo-owner@users.noreply.github.com`)."""
        folded = fold(email)
        if not folded:
            return False
        if folded in self.emails():
            return True
        local, _, domain = folded.partition("@")
        github = self.identity.github if self.identity is not None else None
        if domain == "users.noreply.github.com" and github:
            return local.rpartition("+")[2] == fold(github)
        return False


def noreply_login(email: str) -> str | None:
    """The GitHub login behind a noreply address (`12345+octo@users.noreply.github.com`, or
    the older `octo@users.noreply.github.com`), or None for any other address."""
    local, _, domain = email.strip().partition("@")
    if fold(domain) != "users.noreply.github.com":
        return None
    return local.rpartition("+")[2] or None


def _touched(person: Person, names: tuple[str, ...], addresses: tuple[str, ...]) -> int:
    logins = [person.is_login(name) for name in names]
    emails = [person.is_email(email) for email in addresses]
    if len(logins) == len(emails):
        return sum(a or b for a, b in zip(logins, emails, strict=True))
    return max(sum(logins), sum(emails))


def _of_the_commits(count: int) -> str:
    return f"{count} of the commits"


def self_approval_conflict(person: Person, people: ReleasePeople) -> str | None:
    """Why this person may not approve their own release, in plain English, or None.

    "you authored 2 of the commits", "you committed 1 of the commits", "you merged this
    change", "you started this deployment", combined as "you authored 2 of the commits and
    started this deployment".
    """
    reasons: list[str] = []
    authored = _touched(person, people.authors, people.author_emails)
    if authored:
        reasons.append(f"authored {_of_the_commits(authored)}")
    committed = _touched(person, people.committers, people.committer_emails)
    if committed:
        reasons.append(f"committed {_of_the_commits(committed)}")
    merged = sum(person.is_login(name) for name in people.mergers)
    if merged:
        many = len([name for name in people.mergers if name.strip()]) > 1
        reasons.append(f"merged {merged} of the changes" if many else "merged this change")
    reviewed = sum(any(person.is_login(name) for name in change) for change in people.approvers)
    if reviewed:
        many = len(people.approvers) > 1
        reasons.append(
            f"approved {reviewed} of the changes in review"
            if many
            else "approved this change in review"
        )
    if any(person.is_login(name) for name in people.deployers):
        reasons.append("started this deployment")
    return f"you {join(reasons)}" if reasons else None


def unknown_people_refusal(people: ReleasePeople) -> str | None:
    """Why nobody may approve while the people behind the release are unknown, or None.

    "the people behind this change are unknown: its commits could not be listed (GET ...:
    503); nobody can be cleared of having touched it, so approvals are refused"
    """
    if people.unknown is None:
        return None
    return (
        f"the people behind this change are unknown: {people.unknown}; nobody can be cleared "
        "of having touched it, so approvals are refused"
    )


def blind_note(people: ReleasePeople) -> str | None:
    """What a decision taken without knowing the people behind the release says of itself
    (`unknown_people: allow`), or None when they are known."""
    if people.unknown is None:
        return None
    return f"taken blind, as the people behind this change are unknown: {people.unknown}"


def asked_of_people(requirement: Requirement, unknown: str | None) -> Requirement:
    """What the gate asks when the release could not be read in full (`unknown`, the risk
    assessment's reason): an automatic approval becomes the gate's own rules (`require`),
    every other requirement stays as it is."""
    if requirement.mode != "auto_approve" or not unknown:
        return requirement
    if not requirement.rules:  # nobody to ask: only break-glass passes
        return Requirement(mode="blocked", rules=(), risk_level=requirement.risk_level)
    return Requirement(mode="quorum", rules=requirement.rules, risk_level=requirement.risk_level)


def not_automatic_note(unknown: str) -> str:
    """What the gate's progress says when it would have approved by itself.

    "not approved automatically: the changes could not be read: its commits could not be
    listed (GET ...: 503)"
    """
    return f"not approved automatically: the changes could not be read: {unknown}"
