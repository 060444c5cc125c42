"""`/release deploy <service> <ref> to <env>`: deploy a branch, tag or commit from chat.

Who may: the people who may promote into that environment (release managers, the
service's owners, the environment's approvers). The ref is resolved on the service's code
host first (outside any transaction); then, in one transaction, the deployment starts and
waits at the environment's gate as a promotion does (`services.chat_deploys`). Every
refusal says why and what would work, listing the valid choices; a refused person is
audited.
"""

from __future__ import annotations

from bot.domain.errors import DeliveryFailed
from bot.domain.gates import refusal as refusals
from bot.services import chat_deploys, gates, releases
from bot.services.chat_deploys import ChatDeploy
from bot.usecases.context import Context
from bot.usecases.refusals import audit_refusal, unknown_person

ACTION = "promote"  # who may deploy from chat: who may promote into the environment


async def deploy_ref(
    ctx: Context, *, user_id: str, service: str, ref: str, environment: str
) -> gates.Outcome:
    """Resolve `ref` in the service's repository and deploy its commit to `environment`."""
    config = ctx.config
    svc = config.services.get(service)
    if svc is None:
        told = refusals.unknown_name("service", service, sorted(config.services))
        return gates.Outcome(gates.REFUSED, told.text)
    names = [e.name for e in svc.environments]
    if svc.environment(environment) is None:
        told = refusals.unknown_environment(service, environment, names)
        return gates.Outcome(gates.REFUSED, told.text)
    refused = await _permission(ctx, user_id=user_id, service=service, environment=environment)
    if refused is not None:
        return refused
    client = ctx.scm.get(svc.provider)
    if client is None:
        told = refusals.Refusal(
            f"releasebot has no {svc.provider} credentials to look {ref} up in {svc.repo_path}",
            "set them (see `releasebot doctor`), or deploy through the pipeline",
        )
        return gates.Outcome(gates.REFUSED, told.text)
    try:
        sha = await client.resolve_ref(repo=svc.repo_path, ref=ref)
    except DeliveryFailed as failure:
        told = refusals.Refusal(
            f"could not look {ref} up in {svc.repo_path}: {failure.reason}",
            "try again in a minute" if failure.retryable else "check the code host's access",
        )
        return gates.Outcome(gates.REFUSED, told.text)
    if sha is None:
        told = refusals.Refusal(
            f"no branch, tag or commit named {ref} in {svc.repo_path}",
            f"name a branch, a tag or a commit sha of {svc.repo_path}, e.g. "
            + refusals.cmd(f"/release deploy {service} main to {environment}"),
        )
        return gates.Outcome(gates.REFUSED, told.text)
    asked = ChatDeploy(service, environment, ref, sha, user_id)
    now = ctx.clock.now()
    outcome = await ctx.write(lambda s: chat_deploys.deploy(s, now=now, config=config, asked=asked))
    ctx.wake()
    return outcome


async def _permission(
    ctx: Context, *, user_id: str, service: str, environment: str
) -> gates.Outcome | None:
    """The refusal (audited) when this person may not deploy into the environment."""
    allowed = releases.operators(ctx.config, service, environment, action=ACTION)
    subject = f"environment:{service}/{environment}"
    try:
        memberships = await ctx.groups_of(user_id, allowed)
    except DeliveryFailed as failure:
        reason = unknown_person(failure)
    else:
        if user_id in allowed or memberships & allowed:
            return None
        reason = refusals.not_allowed(
            allowed,
            action="deploy",
            subject=f"{service} to {environment}",
            mention=refusals.slack_mention,
        ).text
    await audit_refusal(
        ctx,
        user_id=user_id,
        action="release.action_refused",
        subject=subject,
        details={"action": "deploy", "reason": reason},
    )
    return gates.Outcome(gates.REFUSED, reason)
