"""``touchpoint.yaml``: project defaults, named destinations and connections.

Secrets never stand in this file: a secret setting holds a reference to an environment variable,
``${CRM_WEBHOOK_SECRET}``, resolved by the worker at run time (:func:`resolve_env`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, WithJsonSchema, field_validator

from config.policies import PolicySettings, Topic
from language.fields import Duration, Model, Slug, text_matching
from workflows.channels import CHANNELS, Channel

ENV_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
SECRET_HEADER = re.compile(r"auth|token|key|secret|cookie|signature|password", re.IGNORECASE)
LOCALE_PATTERN = r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})?$"

KNOWN_SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a SendGrid API key", re.compile(r"\bSG\.[\w-]{10,}\.[\w-]{10,}")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[\w-]{10,}")),
    ("a Slack webhook URL", re.compile(r"hooks\.slack\.com/services/\w+")),
    ("a webhook signing secret", re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}")),
    ("a Telegram bot token", re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{30,}")),
    ("an AWS access key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("a bearer token", re.compile(r"\bBearer\s+(?!\$\{)[A-Za-z0-9._~+/-]{12,}")),
)
"""Shapes of secrets that must never be written into YAML, wherever they appear."""


class Sender(Model):
    email: str
    name: str | None = None


class Defaults(Model):
    locale: Annotated[
        str,
        text_matching(LOCALE_PATTERN, "a locale", "en"),
        WithJsonSchema({"type": "string", "pattern": LOCALE_PATTERN}),
    ] = "en"
    timezone: str = "UTC"
    sender: Sender | None = None


class SendGridSettings(Model):
    """The API key comes from SENDGRID_API_KEY (never from this file)."""

    host: str = Field(
        "https://api.sendgrid.com", description="EU region: https://api.eu.sendgrid.com"
    )
    timeout: Duration = "10s"
    sandbox: bool = Field(False, description="SendGrid validates but does not deliver")
    categories: list[str] = Field(default_factory=list)
    unsubscribe_group: int | None = Field(None, description="SendGrid ASM group id for marketing")


class SmtpSettings(Model):
    """User name and password come from SMTP_USERNAME and SMTP_PASSWORD."""

    host: str = "localhost"
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    timeout: Duration = "10s"
    ca_file: str | None = Field(None, description="trust this CA (PEM) for a relay's certificate")


class MaildirSettings(Model):
    path: str = ".touchpoint/outbox"


class EmailSettings(Model):
    provider: Literal["maildir", "sendgrid", "smtp"] = "maildir"
    unsubscribe_url: str = Field(
        "http://localhost:8000/unsubscribe",
        description="base URL of the one-click unsubscribe endpoint; the signed token is appended",
    )
    unsubscribe_mailto: str | None = Field(None, description="address for mailto: unsubscribes")
    sendgrid: SendGridSettings = SendGridSettings()
    smtp: SmtpSettings = SmtpSettings()
    maildir: MaildirSettings = MaildirSettings()


class WebhookDestination(Model):
    type: Literal["webhook"]
    url: str
    secrets: list[str] = Field(
        default_factory=list, description="signing secrets (whsec_…) as ${ENV} references"
    )


class SlackDestination(Model):
    type: Literal["slack"]
    url: str = Field(description="the incoming-webhook URL, as an ${ENV} reference")


class TeamsDestination(Model):
    type: Literal["teams"]
    url: str = Field(description="the workflow webhook URL, as an ${ENV} reference")


class TelegramDestination(Model):
    type: Literal["telegram"]
    bot_token: str
    chat_id: str | int | None = Field(
        None, description="a fixed chat; without it, the customer's traits.telegram_chat_id"
    )


Destination = Annotated[
    WebhookDestination | SlackDestination | TeamsDestination | TelegramDestination,
    Field(discriminator="type"),
]


class Connection(Model):
    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = "10s"


class TemporalSettings(Model):
    """Where the Temporal service is. Credentials (API key, TLS key) come only from the
    environment: TOUCHPOINT_TEMPORAL_API_KEY, TOUCHPOINT_TEMPORAL_TLS_CERT/_KEY (file paths)."""

    address: str = "localhost:7233"
    namespace: str = "default"


class WorkerSettings(Model):
    task_queue_prefix: str = ""
    max_cached_workflows: int = Field(1000, ge=1)
    max_concurrent_activities: int = Field(100, ge=1)
    rate_limits: dict[str, float] = Field(
        default_factory=dict, description="server-side limit per channel, activities per second"
    )
    index_runs: bool = Field(True, description="keep Touchpoint search attributes on runs")
    analytics: bool = Field(
        True,
        description="record what runs do (entries, step passes, outcomes) in the store, for "
        "`touchpoint stats` and the dashboard",
    )
    send_retry_hours: dict[str, float] = Field(
        default_factory=dict,
        description="how long a send is retried through a provider outage, per channel "
        "(default 24 hours); a refusal (bad address, 4xx) fails at once",
    )

    @field_validator("rate_limits", "send_retry_hours")
    @classmethod
    def _known_channels(cls, limits: dict[str, float]) -> dict[str, float]:
        for name, value in limits.items():
            _require_channel(name)
            if value <= 0:
                raise ValueError(f"{name}: must be more than 0")
        return limits


class ProfileSettings(Model):
    max_bytes: int = Field(
        65_536,
        ge=1_024,
        le=1_048_576,
        description="the most a customer's traits may take, as compact JSON in bytes; an "
        "identify (or context.traits) that would pass it is refused (413), nothing changed",
    )


class EventLogSettings(Model):
    """The event log (docs/operations.md, "The event log"): the calls the API accepted, per
    customer, in order — what replaying journeys against real events reads."""

    enabled: bool = Field(
        True, description="log each accepted track, page, screen and identify call in the store"
    )
    max_bytes: int = Field(
        16_384,
        ge=1_024,
        le=1_048_576,
        description="the most a call's properties (or traits) take in the log, as compact JSON "
        "in bytes; a larger call keeps its smallest fields up to it and is flagged truncated",
    )


class RetentionSettings(Model):
    """How long personal data is kept (docs/privacy.md, "Retention"). The worker registers a
    Temporal Schedule that deletes what is older, every ``every_hours``."""

    closed_runs_days: int = Field(
        30,
        ge=1,
        description="closed runs (their inputs, events and timelines) are kept by Temporal for "
        "the namespace's retention period; the worker warns at start when it is longer",
    )
    ledger_days: int = Field(
        400, ge=1, description="delivery ledger rows older than this are deleted"
    )
    processed_ids_hours: int = Field(
        48,
        ge=48,
        description="message ids seen by the ingestion API (the deduplication window, at least "
        "48 hours) and the provider events among them",
    )
    event_log_days: int = Field(
        30, ge=1, description="event log rows (the calls the API accepted) older than this go"
    )
    outbox_days: int = Field(30, ge=1, description="Maildir outbox files older than this go")
    every_hours: int = Field(24, ge=1, le=168, description="how often the retention job runs")


class ProjectConfig(Model):
    """The project's ``touchpoint.yaml``."""

    defaults: Defaults = Defaults()
    profiles: ProfileSettings = ProfileSettings()
    retention: RetentionSettings = RetentionSettings()
    event_log: EventLogSettings = EventLogSettings()
    policies: PolicySettings = PolicySettings()
    topics: dict[Slug, Topic] = Field(
        default_factory=dict, description="subscription topics customers choose between, by id"
    )
    email: EmailSettings = EmailSettings()
    temporal: TemporalSettings = TemporalSettings()
    worker: WorkerSettings = WorkerSettings()
    database_url: str = Field(
        "sqlite:///.touchpoint/touchpoint.db",
        description="SQLAlchemy URL of Touchpoint's own store",
    )
    destinations: dict[Slug, Destination] = Field(default_factory=dict)
    connections: dict[Slug, Connection] = Field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="settings per channel, e.g. channels.sms.from (see each channel's docs)",
    )

    @field_validator("channels")
    @classmethod
    def _channel_settings_fit(cls, channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
        for name, settings in channels.items():
            model = _require_channel(name).settings_model()
            if model is None:
                raise ValueError(f"the {name} channel has no settings")
            try:
                model.model_validate(settings or {})
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"{name}.{where}: {first['msg']}") from None
        return channels

    def channel_settings(self, name: str) -> Any:
        """``channels.<name>``, validated by the channel's own settings model (``None`` for a
        channel without settings). ``ValueError`` when they do not fit."""
        model = CHANNELS[name].settings_model()
        return None if model is None else model.model_validate(self.channels.get(name) or {})


def _require_channel(name: str) -> Channel:
    if name not in CHANNELS:
        known = ", ".join(sorted(CHANNELS))
        raise ValueError(f"unknown channel {name!r}; known: {known}")
    return CHANNELS[name]


def secret_fields(raw: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every ``(path, value)`` in a raw config that must hold an environment reference."""
    for name, destination in (raw.get("destinations") or {}).items():
        if not isinstance(destination, dict):
            continue
        kind = destination.get("type")
        if kind in ("slack", "teams"):
            yield ("destinations", name, "url"), destination.get("url")
        if kind == "telegram":
            yield ("destinations", name, "bot_token"), destination.get("bot_token")
        secrets = destination.get("secrets")
        if isinstance(secrets, list):
            for i, secret in enumerate(secrets):
                yield ("destinations", name, "secrets", i), secret
    for name, connection in (raw.get("connections") or {}).items():
        headers = connection.get("headers") if isinstance(connection, dict) else None
        for header, value in (headers or {}).items():
            if SECRET_HEADER.search(str(header)):
                yield ("connections", name, "headers", header), value


def env_name_for(path: tuple[str | int, ...]) -> str:
    """A suggested environment variable name for a secret at ``path``: ``CRM_SECRET``."""
    skip = ("destinations", "connections", "headers")
    words = [
        str(p).removesuffix("s") if p == "secrets" else str(p)
        for p in path
        if not isinstance(p, int) and p not in skip
    ]
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(words).upper()).strip("_")


def resolve_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each ``${NAME}`` with the environment's value; ``KeyError`` names a missing one."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise KeyError(name)
        return env[name]

    return ENV_REFERENCE.sub(lookup, value)
