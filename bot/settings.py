"""Process settings from the environment (secrets and endpoints never live in the YAML).

Built by the app factory or the CLI from a mapping, never at import time:

    settings = load_settings(os.environ)
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.audit import AuditKey, AuditKeyError, AuditKeys, parse_key, parse_keys
from bot.domain.errors import ReleasebotError
from bot.domain.signing import Signer, SigningKeyError, load_private_key
from bot.logs import LOG_FORMATS

MIB = 1024 * 1024


class SettingsError(ReleasebotError, ValueError):
    """Environment variables that cannot work together; the message names the fix."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    config_path: Path = Field(Path("releasebot.yaml"), validation_alias=_env("RELEASEBOT_CONFIG"))
    database_url: str = Field(
        "sqlite:///./releasebot.db", validation_alias=_env("RELEASEBOT_DATABASE_URL")
    )
    public_url: str = Field("http://localhost:8000", validation_alias=_env("RELEASEBOT_PUBLIC_URL"))
    api_token: SecretStr | None = Field(None, validation_alias=_env("RELEASEBOT_API_TOKEN"))
    dashboard_token: SecretStr | None = Field(
        None, validation_alias=_env("RELEASEBOT_DASHBOARD_TOKEN")
    )
    max_body_bytes: int = Field(5 * MIB, gt=0, validation_alias=_env("RELEASEBOT_MAX_BODY_BYTES"))
    webhook_retention_days: int = Field(
        30, ge=1, validation_alias=_env("RELEASEBOT_WEBHOOK_RETENTION_DAYS")
    )
    digest_day: str = Field(  # weekly DORA digest: APScheduler day_of_week, e.g. mon or fri
        "mon",
        pattern=r"(?i)^(mon|tue|wed|thu|fri|sat|sun)([-,](mon|tue|wed|thu|fri|sat|sun))*$",
        validation_alias=_env("RELEASEBOT_DIGEST_DAY"),
    )
    digest_hour: int = Field(9, ge=0, le=23, validation_alias=_env("RELEASEBOT_DIGEST_HOUR"))
    # Without a dashboard token the sandbox answers loopback clients only; 1 opens it to all.
    sandbox_public: bool = Field(False, validation_alias=_env("RELEASEBOT_SANDBOX_PUBLIC"))
    sandbox_directory: Path | None = Field(
        None, validation_alias=_env("RELEASEBOT_SANDBOX_DIRECTORY")
    )
    templates_dir: Path | None = Field(None, validation_alias=_env("RELEASEBOT_TEMPLATES_DIR"))
    log_level: str = Field("INFO", validation_alias=_env("RELEASEBOT_LOG_LEVEL"))
    log_format: str = Field("text", validation_alias=_env("RELEASEBOT_LOG_FORMAT"))  # or json
    # On SIGTERM: how long in-flight requests, outbox sends and checks may take to finish.
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, le=3600, validation_alias=_env("RELEASEBOT_SHUTDOWN_GRACE_SECONDS")
    )
    # What this process runs: web (HTTP; stores deliveries), worker (the applier, the
    # outbox worker and the scheduler) or all (both; `releasebot serve --role`).
    role: str = Field(
        "all", pattern=r"^(web|worker|all)$", validation_alias=_env("RELEASEBOT_ROLE")
    )
    # Attempts at applying a stored delivery before it is "failed" (retries back off from
    # 1 s, doubling, up to 5 minutes apart).
    apply_attempts: int = Field(
        10, ge=1, le=100, validation_alias=_env("RELEASEBOT_APPLY_ATTEMPTS")
    )

    # The outbox: how many messages (each sent in order) may have calls in flight at once,
    # and how long a claim holds a row before another worker may take it (renewed while
    # its call is in flight, every third of it). Slack's own limits are kept by the shared
    # limiter (Retry-After per method) and at most 4 posts in flight per channel; the
    # concurrency bounds the calls waiting on a slow Slack (at 5 s a call, 100 in flight
    # still send 20 calls/s).
    outbox_concurrency: int = Field(
        100, ge=1, le=1000, validation_alias=_env("RELEASEBOT_OUTBOX_CONCURRENCY")
    )
    outbox_lease_seconds: float = Field(
        60.0, ge=1, le=3600, validation_alias=_env("RELEASEBOT_OUTBOX_LEASE_SECONDS")
    )
    # Where this replica holds deliveries while the database cannot be reached (default: a
    # `releasebot-spool` directory beside a SQLite file, else in the temp directory; give
    # it a persistent volume), and how many it holds at most before answering 503.
    spool_dir: Path | None = Field(None, validation_alias=_env("RELEASEBOT_SPOOL_DIR"))
    spool_max: int = Field(
        100_000, ge=0, le=10_000_000, validation_alias=_env("RELEASEBOT_SPOOL_MAX")
    )

    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str = Field(
        "https://slack.com/api/", validation_alias=_env("RELEASEBOT_SLACK_API_URL")
    )

    github_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("GITHUB_WEBHOOK_SECRET")
    )
    github_token: SecretStr | None = Field(None, validation_alias=_env("GITHUB_TOKEN"))
    github_app_id: str | None = Field(None, validation_alias=_env("GITHUB_APP_ID"))
    github_app_private_key: SecretStr | None = Field(
        None, validation_alias=_env("GITHUB_APP_PRIVATE_KEY")
    )
    github_api_url: str = Field("https://api.github.com", validation_alias=_env("GITHUB_API_URL"))

    gitlab_webhook_token: SecretStr | None = Field(
        None, validation_alias=_env("GITLAB_WEBHOOK_TOKEN")
    )
    gitlab_token: SecretStr | None = Field(None, validation_alias=_env("GITLAB_TOKEN"))
    gitlab_api_url: str = Field(
        "https://gitlab.com/api/v4", validation_alias=_env("GITLAB_API_URL")
    )

    argocd_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("ARGOCD_WEBHOOK_SECRET")
    )
    argocd_url: str | None = Field(None, validation_alias=_env("ARGOCD_URL"))
    argocd_token: SecretStr | None = Field(None, validation_alias=_env("ARGOCD_TOKEN"))
    generic_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("RELEASEBOT_GENERIC_WEBHOOK_SECRET")
    )
    jenkins_webhook_secret: SecretStr | None = Field(
        None, validation_alias=_env("JENKINS_WEBHOOK_SECRET")
    )
    jenkins_url: str | None = Field(None, validation_alias=_env("JENKINS_URL"))
    jenkins_user: str | None = Field(None, validation_alias=_env("JENKINS_USER"))
    jenkins_api_token: SecretStr | None = Field(None, validation_alias=_env("JENKINS_API_TOKEN"))
    pagerduty_events_url: str = Field(
        "https://events.pagerduty.com", validation_alias=_env("PAGERDUTY_EVENTS_URL")
    )
    # Who is on call (the REST API's /oncalls), and Opsgenie's API when it is neither the US
    # nor the EU address a service's `oncall.opsgenie.region` names (a proxy).
    pagerduty_api_url: str = Field(
        "https://api.pagerduty.com", validation_alias=_env("PAGERDUTY_API_URL")
    )
    opsgenie_api_url: str | None = Field(None, validation_alias=_env("OPSGENIE_API_URL"))
    # The audit forwarder (docs/audit-evidence.md): every new audit record, POSTed as JSON
    # Lines to this URL in near real time, signed with an HMAC of the secret when it is set.
    audit_forward_url: str | None = Field(
        None, pattern=r"^https?://\S+$", validation_alias=_env("RELEASEBOT_AUDIT_FORWARD_URL")
    )
    audit_forward_secret: SecretStr | None = Field(
        None, validation_alias=_env("RELEASEBOT_AUDIT_FORWARD_SECRET")
    )

    # The audit chain (docs/audit.md): `<key-id>:<secret>`, or the path of a file holding it.
    audit_key: SecretStr | None = Field(None, validation_alias=_env("RELEASEBOT_AUDIT_KEY"))
    # Older keys that still verify: `id:secret,id:secret`, or a file of one per line.
    audit_keys: SecretStr | None = Field(None, validation_alias=_env("RELEASEBOT_AUDIT_KEYS"))
    audit_checkpoint_every: float = Field(  # seconds between checkpoints (when the head moved)
        300.0, ge=1, le=86400, validation_alias=_env("RELEASEBOT_AUDIT_CHECKPOINT_EVERY")
    )
    audit_checkpoint_file: Path | None = Field(
        None, validation_alias=_env("RELEASEBOT_AUDIT_CHECKPOINT_FILE")
    )
    audit_checkpoint_url: str | None = Field(
        None, validation_alias=_env("RELEASEBOT_AUDIT_CHECKPOINT_URL")
    )
    audit_checkpoint_secret: SecretStr | None = Field(
        None, validation_alias=_env("RELEASEBOT_AUDIT_CHECKPOINT_SECRET")
    )
    # Ed25519 private key (PEM text, or the path of a PEM file) that signs checkpoints and
    # evidence packs; `releasebot keys generate` makes one.
    signing_key: SecretStr | None = Field(None, validation_alias=_env("RELEASEBOT_SIGNING_KEY"))

    @property
    def spool_path(self) -> Path:
        """The spool's directory: `spool_dir`, or a default named after the database."""
        if self.spool_dir is not None:
            return self.spool_dir
        url = self.database_url
        if url.startswith("sqlite:///") and ":memory:" not in url:
            return Path(url.removeprefix("sqlite:///")).resolve().parent / "releasebot-spool"
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"releasebot-spool-{digest}"

    @property
    def slack_sandbox(self) -> bool:
        """No bot token: Slack calls stay inside the process."""
        return self.slack_bot_token is None

    @property
    def slack_socket_mode(self) -> bool:
        """Both tokens: Slack's events arrive over a WebSocket the bot opens (Socket Mode)."""
        return self.slack_app_token is not None and self.slack_bot_token is not None

    def check_slack_tokens(self) -> None:
        """Refuse an app-level token without a bot token: Socket Mode needs both.

        The app token (xapp-) only opens the WebSocket; every message, modal and lookup
        is a Web API call made with the bot token (xoxb-). The local sandbox is for when
        no Slack token is set at all, never a stand-in for a missing one.
        """
        if self.slack_app_token is not None and self.slack_bot_token is None:
            raise SettingsError(
                "SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not: Socket Mode needs both "
                "(the app-level xapp- token opens the connection, the bot's xoxb- token makes "
                "every Web API call). Set SLACK_BOT_TOKEN, or unset SLACK_APP_TOKEN to run "
                "with the local Slack sandbox."
            )

    def audit_keyring(self) -> AuditKeys:
        """The audit key new records are written under and every key that verifies.

        Raises SettingsError naming the variable when a key cannot be read or parsed.
        """
        try:
            current = None
            if self.audit_key is not None:
                text = _value_or_file(self.audit_key, "RELEASEBOT_AUDIT_KEY")
                current = parse_key(text, source="RELEASEBOT_AUDIT_KEY")
            older: list[AuditKey] = []
            if self.audit_keys is not None:
                text = _value_or_file(self.audit_keys, "RELEASEBOT_AUDIT_KEYS")
                older = parse_keys(text, source="RELEASEBOT_AUDIT_KEYS")
            return AuditKeys.of(current, older)
        except AuditKeyError as exc:
            raise SettingsError(str(exc)) from exc

    def signer(self) -> Signer | None:
        """The checkpoint and evidence signer (None: RELEASEBOT_SIGNING_KEY is not set)."""
        if self.signing_key is None:
            return None
        value = self.signing_key.get_secret_value().strip()
        if "-----BEGIN" in value:
            pem = value.encode("utf-8")
        else:
            pem = _read_file(Path(value), "RELEASEBOT_SIGNING_KEY").encode("utf-8")
        try:
            return Signer(load_private_key(pem, source="RELEASEBOT_SIGNING_KEY"))
        except SigningKeyError as exc:
            raise SettingsError(str(exc)) from exc


def _read_file(path: Path, variable: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror}") from exc


def _value_or_file(value: SecretStr, variable: str) -> str:
    """The setting itself, or the text of the file it names (an absolute or ./ path)."""
    text = value.get_secret_value().strip()
    if text.startswith(("/", "./", "../", "~")):
        return _read_file(Path(text).expanduser(), variable)
    return text


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from an explicit mapping (os.environ in production, a dict in tests)."""
    known = {
        alias
        for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for alias in field.validation_alias.choices
        if isinstance(alias, str)
    }
    values = {key: value for key, value in environ.items() if key in known and value != ""}
    for key in ("RELEASEBOT_LOG_FORMAT", "releasebot_log_format"):
        if key in values and values[key] not in LOG_FORMATS:
            raise SettingsError(
                f"RELEASEBOT_LOG_FORMAT={values[key]!r} is not a log format: use "
                f"{' or '.join(LOG_FORMATS)} (text is the default)"
            )
    return Settings.model_validate(values)
