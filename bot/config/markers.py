"""A service's `markers:` block: where its deploys are marked on dashboards.

Secrets are named (environment variables), never written here.

    markers:
      grafana: {url_env: GRAFANA_URL, token_env: GRAFANA_TOKEN, dashboard_uid: abc, tags: [team-a]}
      datadog: {site: datadoghq.eu, api_key_env: DD_API_KEY, tags: ["team:a"]}
      newrelic: {region: eu, api_key_env: NEW_RELIC_API_KEY, entity_guid: "MXxBUE18..."}
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from bot.config.base import ConfigModel, invalid
from bot.config.check_kinds import DatadogSite, NewRelicRegion
from bot.config.types import EnvVarName, Text


class GrafanaMarkers(ConfigModel):
    """Annotations (a region from deploy start to end) through Grafana's HTTP API."""

    url_env: EnvVarName = "GRAFANA_URL"
    token_env: EnvVarName
    dashboard_uid: Text | None = None  # unset: an organization annotation, shown by tag
    tags: list[Text] = []


class DatadogMarkers(ConfigModel):
    """Events in the Datadog event stream."""

    site: DatadogSite = "datadoghq.com"
    api_key_env: EnvVarName
    tags: list[Text] = []


class NewRelicMarkers(ConfigModel):
    """Deployments in New Relic change tracking, on one entity."""

    region: NewRelicRegion = "us"
    api_key_env: EnvVarName
    entity_guid: Text


class Markers(ConfigModel):
    """Deploy markers for a service: any of Grafana, Datadog and New Relic."""

    grafana: GrafanaMarkers | None = None
    datadog: DatadogMarkers | None = None
    newrelic: NewRelicMarkers | None = None

    @model_validator(mode="after")
    def _check_any(self) -> Self:
        if self.grafana is None and self.datadog is None and self.newrelic is None:
            raise invalid("set grafana, datadog or newrelic")
        return self

    def platforms(self) -> list[str]:
        """The platforms configured, in a fixed order."""
        return [name for name in ("grafana", "datadog", "newrelic") if getattr(self, name)]
