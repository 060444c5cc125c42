"""The `nrql` verify check: a New Relic NRQL query run through NerdGraph.

    runner = NrqlCheckRunner(make_client(""), secrets=os.environ.get)
    await runner.run({"name": "apdex", "nrql": {"region": "us", "api_key_env": "NEW_RELIC_API_KEY",
        "account_id": 1234567, "query": "SELECT apdex(duration, t: 0.4) FROM Transaction "
        "WHERE appName = 'checkout' SINCE 10 minutes ago", "min": 0.9}})

One `POST https://api.newrelic.com/graphql` (`api.eu.newrelic.com` for the EU region) with
the `API-Key` header (a user key, read from the variable the check names) and the query

    query($accountId: Int!, $nrql: Nrql!) { actor { account(id: $accountId) {
        nrql(query: $nrql) { results } } } }

The value is the check's `field` of the first result row, or else its first number (a
nested `{"score": ...}` as for `apdex` counts too). The NRQL query sets its own window
(`SINCE ...`). GraphQL `errors` and HTTP errors are failed results in plain words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.ports import CheckResult
from integrations.checks import describe_transport_error, misconfigured, section
from integrations.checks.metric import Misconfigured, Threshold, clip, failed, judge, text
from integrations.http import make_client

NRQL_QUERY = (
    "query($accountId: Int!, $nrql: Nrql!) "
    "{ actor { account(id: $accountId) { nrql(query: $nrql) { results } } } }"
)


def graphql_url(region: str) -> str:
    return (
        "https://api.eu.newrelic.com/graphql"
        if region == "eu"
        else "https://api.newrelic.com/graphql"
    )


def query_link(region: str, account_id: int, query: str) -> str:
    """The query builder of New Relic for this account and query."""
    host = "one.eu.newrelic.com" if region == "eu" else "one.newrelic.com"
    params = urlencode({"accountId": str(account_id), "query": query})
    return f"https://{host}/data-exploration/query-builder?{params}"


class NrqlCheckRunner:
    """`CheckRunner` for `nrql` checks."""

    def __init__(
        self, client: httpx.AsyncClient | None = None, *, secrets: Callable[[str], str | None]
    ) -> None:
        self._client = client if client is not None else make_client("")
        self._secrets = secrets

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, check: Mapping[str, Any]) -> CheckResult:
        config = section(check, "nrql")
        if config is None:
            return misconfigured(check, "no nrql section")
        try:
            query, key_env = text(config, "query"), text(config, "api_key_env")
            threshold = Threshold.of(config)
        except Misconfigured as error:
            return misconfigured(check, f"nrql.{error}")
        account = config.get("account_id")
        if isinstance(account, bool) or not isinstance(account, int):
            return misconfigured(check, f"nrql.account_id must be a number, got {account!r}")
        region = str(config.get("region") or "us")
        evidence: dict[str, Any] = {
            "region": region,
            "account_id": account,
            "query": query,
            **threshold.to_evidence(),
            "link": config.get("link") or query_link(region, account, query),
        }
        key = self._secrets(key_env)
        if not key:
            return failed(f"{key_env} is not set: cannot query New Relic", evidence)
        body = {"query": NRQL_QUERY, "variables": {"accountId": account, "nrql": query}}
        try:
            response = await self._client.post(
                graphql_url(region), json=body, headers={"API-Key": key}
            )
        except httpx.HTTPError as error:
            reason = f"could not reach New Relic: {describe_transport_error(error)}"
            return failed(reason, evidence, error=reason)
        evidence["status_code"] = response.status_code
        value = _value(response, config.get("field"), evidence)
        if isinstance(value, CheckResult):
            return value
        what = str(evidence.get("field") or "value")
        return judge([value], what=what, threshold=threshold, evidence=evidence)


def _value(
    response: httpx.Response, field: object, evidence: dict[str, Any]
) -> float | CheckResult:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        message = "; ".join(str(e.get("message") if isinstance(e, dict) else e) for e in errors)
        prefix = (
            f"New Relic answered HTTP {response.status_code}"
            if not response.is_success
            else "the NRQL query failed"
        )
        return failed(f"{prefix}: {clip(message, 200)}", evidence, error=clip(message))
    if not response.is_success or not isinstance(body, dict):
        return failed(
            f"New Relic answered HTTP {response.status_code}", evidence, error=clip(response.text)
        )
    try:
        results = body["data"]["actor"]["account"]["nrql"]["results"]
    except (KeyError, TypeError):
        results = None
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        return failed("no data: the NRQL query returned no results", evidence)
    row: dict[str, Any] = results[0]
    found = _number_in(row, field if isinstance(field, str) else None)
    if found is None:
        wanted = f"field {field!r}" if isinstance(field, str) else "a number"
        return failed(f"no data: the first result row has no {wanted}", evidence)
    evidence["field"] = found[0]
    return found[1]


def _number_in(row: dict[str, Any], field: str | None) -> tuple[str, float] | None:
    """(field, value): the named field, or the first number of the row."""
    for name, value in row.items():
        if field is not None and name != field:
            continue
        if isinstance(value, dict):  # apdex and friends: {"score": 0.95, ...}
            value = value.get("score", next(iter(value.values()), None))
        if isinstance(value, int | float) and not isinstance(value, bool):
            return name, float(value)
    return None
