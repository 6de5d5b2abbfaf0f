"""All settings, read from the environment (prefix ``DESKBOT_``) and an optional ``.env`` file.

Every field is documented in the README's settings table; keep the two in step.
"""

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crm_core.business_hours import BusinessHoursError, parse_business_hours
from crm_core.db import DEFAULT_DATABASE_URL, database_url_problem
from crm_core.sla import DEFAULT_HOURS_BY_NAME, MAX_SLA_HOURS

DEFAULT_SLA_HOURS: dict[str, float] = dict(DEFAULT_HOURS_BY_NAME)
# Upper bounds for durations: far larger ones overflow the dates computed from them.
MINUTES_PER_YEAR = 525_600
SECONDS_PER_DAY = 86_400


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DESKBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- Telegram ---------------------------------------------------------------------------
    telegram_token: SecretStr | None = Field(
        default=None, description="Bot token from @BotFather (required by `deskbot run`)."
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org/bot",
        description="Bot API base URL; the token is appended as PTB does.",
    )
    telegram_file_api_url: str = Field(
        default="https://api.telegram.org/file/bot", description="Bot API file base URL."
    )
    agent_chat_id: int | None = Field(
        default=None, description="The agents' supergroup (forum or plain); bot must be admin."
    )
    supervisor_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="Comma-separated Telegram user ids of supervisors."
    )

    # --- Storage and knowledge base ---------------------------------------------------------
    database_url: str = Field(default=DEFAULT_DATABASE_URL, description="SQLAlchemy async URL.")
    kb_dir: Path | None = Field(
        default=None, description="Knowledge-base folder; default: the bundled sample."
    )
    kb_answer_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Confidence from which the bot answers with an article (overrides kb.yaml).",
    )
    kb_suggest_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Confidence from which the bot suggests articles (overrides kb.yaml).",
    )
    kb_semantic: bool | None = Field(
        default=None,
        description="Blend in the static sentence embeddings (on by default; overrides kb.yaml).",
    )

    # --- Behaviour --------------------------------------------------------------------------
    log_level: str = Field(default="INFO", description="Python logging level.")
    flow_ttl_minutes: int = Field(
        default=30,
        gt=0,
        le=MINUTES_PER_YEAR,
        description="Minutes after which an unfinished complaint flow expires.",
    )
    sla_hours: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_SLA_HOURS),
        description=(
            "Complaint SLA in hours per severity, as JSON, e.g. "
            '{"low": 72, "medium": 24, "high": 8, "critical": 2}.'
        ),
    )
    handoff_reminder_minutes: int = Field(
        default=10,
        gt=0,
        le=MINUTES_PER_YEAR,
        description="Minutes before agents are reminded of an unclaimed handoff.",
    )
    handoff_escalation_minutes: int = Field(
        default=30,
        gt=0,
        le=MINUTES_PER_YEAR,
        description="Minutes before supervisors hear of an unclaimed handoff.",
    )
    agent_signature: Literal["first_name", "none"] = Field(
        default="first_name",
        description="How agent replies are signed to customers: `first_name` or `none`.",
    )
    membership_cache_seconds: int = Field(
        default=5,
        ge=0,
        le=SECONDS_PER_DAY,
        description=(
            "Seconds Telegram's answer on an agents'-group membership is trusted before an agent "
            "action asks again (a removal Telegram reports applies at once)."
        ),
    )
    card_refresh_seconds: float = Field(
        default=3,
        ge=0,
        le=SECONDS_PER_DAY,
        description=(
            "A card (and its topic's title) is edited at most once in this many seconds: a "
            "burst of changes shows as a few edits, the last one the final state."
        ),
    )
    card_edits_per_minute: int = Field(
        default=10,
        ge=2,
        le=20,
        description=(
            "Card edits and topic renames the bot makes per minute in one group, over all "
            "instances (Telegram allows about 20 messages a minute per group; the rest is "
            "left for new messages)."
        ),
    )
    sweep_interval_seconds: int = Field(
        default=60,
        gt=0,
        le=SECONDS_PER_DAY,
        description="Seconds between sweeps for expired flows, reminders, SLAs.",
    )
    campaign_rate_per_second: float = Field(
        default=10,
        gt=0,
        le=25,
        description=(
            "Campaign messages sent per second at most (Telegram allows about 30 a second to "
            "different chats; the rest is left for the desk's own replies)."
        ),
    )
    campaign_batch_size: int = Field(
        default=300,
        gt=0,
        le=10_000,
        description="Campaign messages sent per sweep at most; the rest go in the next sweeps.",
    )
    campaign_claim_seconds: int = Field(
        default=300,
        gt=0,
        le=SECONDS_PER_DAY,
        description=(
            "A campaign message claimed this long ago and not recorded as sent was cut off by a "
            "crash: it is recorded as failed (unknown) and never sent again."
        ),
    )
    default_phone_region: str | None = Field(
        default=None,
        description="ISO country code for phone numbers given without +country (e.g. DE).",
    )
    auto_assign: bool = Field(
        default=False,
        description="Give waiting customers to available agents, round robin (else agents claim).",
    )
    agent_cap: int = Field(
        default=5, ge=1, le=100, description="Most open conversations auto-assigned to one agent."
    )
    auto_resolve_hours: float = Field(
        default=0, ge=0, le=24 * 365, description="Close a conversation idle this long (0: never)."
    )
    reopen_hours: float = Field(
        default=0,
        ge=0,
        le=24 * 365,
        description="A customer writing this soon after a close reopens it (0: never).",
    )
    timezone: str = Field(
        default="UTC",
        description="The desk's time zone (IANA name, e.g. Europe/Berlin) for every time shown.",
    )
    business_hours: str = Field(
        default="",
        description="When people answer, e.g. 'mon-fri 09:00-17:30; sat 10:00-14:00'.",
    )
    holidays: str = Field(
        default="", description="Days the desk is closed, e.g. '2026-12-24, 2026-12-25'."
    )
    retention_days: int = Field(
        default=0,
        ge=0,
        le=36_500,
        description="Interactions older than this many days are anonymised or deleted by a "
        "sweep (0: kept forever).",
    )
    retention_mode: Literal["anonymise", "delete"] = Field(
        default="anonymise",
        description="What the retention sweep does: `anonymise` (text and personal details go, "
        "the row and its counts stay) or `delete`.",
    )

    # --- Webhook (optional; `deskbot run --webhook`) -----------------------------------------
    webhook_url: str | None = Field(
        default=None, description="Public HTTPS URL Telegram posts updates to (webhook mode)."
    )
    webhook_listen: str = Field(default="0.0.0.0", description="Address the webhook server binds.")
    webhook_port: int = Field(
        default=8443, gt=0, lt=65536, description="Port the webhook server listens on."
    )
    webhook_secret_token: SecretStr | None = Field(
        default=None,
        description="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token (webhook mode).",
    )
    console_port: int | None = Field(
        default=None,
        gt=0,
        lt=65536,
        description="Port of the supervisors' web console served by `deskbot run`; unset: off.",
    )
    console_listen: str = Field(
        default="127.0.0.1", description="Address the web console binds (put TLS in front)."
    )
    console_password: SecretStr | None = Field(
        default=None,
        description="Password for the supervisors' web console (/console); unset: Telegram "
        "Login Widget sign-in only.",
    )

    # --- Update inbox and runtime ------------------------------------------------------------
    inbox_workers: int = Field(
        default=8, gt=0, le=256, description="Updates processed at once (never two of one chat)."
    )
    inbox_lease_seconds: int = Field(
        default=30,
        gt=0,
        le=SECONDS_PER_DAY,
        description="Seconds an instance holds an update it processes (renewed while it works); "
        "a crashed instance's updates are taken over after this.",
    )
    inbox_warn_depth: int = Field(
        default=1000, gt=0, description="Inbox depth (unhandled updates) above which to warn."
    )
    inbox_max_depth: int = Field(
        default=10000,
        gt=0,
        description="Inbox depth at which polling pauses and the webhook answers 503 "
        "(Telegram keeps the updates and delivers them later).",
    )
    inbox_retention_hours: int = Field(
        default=24,
        gt=0,
        le=24 * 365,
        description="Hours handled updates stay in the inbox (replayable) before they are purged.",
    )
    polling_lock_seconds: int = Field(
        default=30,
        ge=3,
        le=SECONDS_PER_DAY,
        description="Seconds without a heartbeat after which another instance may take over "
        "polling.",
    )
    http_port: int | None = Field(
        default=None,
        gt=0,
        lt=65536,
        description="Polling mode: serve /healthz, /readyz, /metrics and the REST API on this "
        "port (webhook mode serves them on the webhook port).",
    )
    send_per_second: int = Field(
        default=30,
        gt=0,
        le=1000,
        description="Messages a second the bot sends at most, across all its instances "
        "(Telegram's limit is about 30 per bot).",
    )
    group_sends_per_minute: int = Field(
        default=20,
        gt=0,
        le=1000,
        description="Messages a minute the bot sends at most into one group (Telegram: 20).",
    )
    outbox_retry_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="First wait before a message Telegram could not take is sent again "
        "(doubling up to a minute; never given up).",
    )
    outbox_retention_hours: int = Field(
        default=24,
        gt=0,
        le=24 * 365,
        description="Hours sent (and refused) messages stay in the outbox before they are "
        "purged; pending ones stay until sent.",
    )
    metrics_port: int | None = Field(
        default=None,
        gt=0,
        lt=65536,
        description="The former name of DESKBOT_HTTP_PORT (still read when that is unset).",
    )
    api_enabled: bool = Field(
        default=True,
        description="Serve the REST API (/api/v1, /api/openapi.json) on the HTTP server.",
    )
    api_requests_per_minute: int = Field(
        default=600,
        ge=1,
        le=1_000_000,
        description="Requests a minute per API key and instance; beyond it 429 with Retry-After.",
    )

    @property
    def polling_http_port(self) -> int | None:
        """The polling mode's HTTP server port (``DESKBOT_HTTP_PORT``, else the old name)."""
        return self.http_port if self.http_port is not None else self.metrics_port

    @field_validator("sla_hours", mode="before")
    @classmethod
    def _parse_sla(cls, value: Any) -> Any:
        # Parsed here rather than by pydantic-settings so that bad JSON is a validation error
        # that names the setting, not a SettingsError traceback.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(
                    'must be a JSON object of severity to hours, e.g. {"high": 8}'
                ) from None
        return value

    @field_validator("sla_hours")
    @classmethod
    def _check_sla(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DEFAULT_SLA_HOURS))
        if unknown:
            raise ValueError(
                f"unknown severities {unknown}; use {sorted(DEFAULT_SLA_HOURS)} as keys"
            )
        if not all(0 < hours <= MAX_SLA_HOURS for hours in value.values()):  # also NaN
            raise ValueError(f"hours must be positive and at most {MAX_SLA_HOURS}")
        # Severities not mentioned keep their default, so a partial mapping is fine.
        return {**DEFAULT_SLA_HOURS, **value}

    @field_validator("retention_mode", mode="before")
    @classmethod
    def _retention_spelling(cls, value: Any) -> Any:
        # Both spellings are accepted; the American one is stored as the setting's own.
        if isinstance(value, str) and value.strip().lower() == "anonymize":
            return "anonymise"
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        problem = database_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("default_phone_region")
    @classmethod
    def _check_region(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("must be a two-letter ISO country code, e.g. DE")
        return value.strip().upper()

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name, e.g. Europe/Berlin or UTC") from None
        return value.strip()

    @model_validator(mode="after")
    def _business_hours_readable(self) -> "Settings":
        try:
            parse_business_hours(self.business_hours, self.holidays, self.timezone)
        except BusinessHoursError as error:
            raise ValueError(f"DESKBOT_BUSINESS_HOURS / DESKBOT_HOLIDAYS: {error}") from None
        return self

    @field_validator("supervisor_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError(
                    "must be comma-separated numeric Telegram user ids, e.g. 123,456"
                ) from None
        return value

    @field_validator("kb_dir")
    @classmethod
    def _kb_dir_is_a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a folder of knowledge-base articles")
        return value

    @model_validator(mode="after")
    def _inbox_depths_in_order(self) -> "Settings":
        if self.inbox_warn_depth > self.inbox_max_depth:
            raise ValueError(
                f"DESKBOT_INBOX_WARN_DEPTH ({self.inbox_warn_depth}) must not exceed "
                f"DESKBOT_INBOX_MAX_DEPTH ({self.inbox_max_depth})"
            )
        return self

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> "Settings":
        answer, suggest = self.kb_answer_threshold, self.kb_suggest_threshold
        if answer is not None and suggest is not None and suggest > answer:
            raise ValueError(
                f"DESKBOT_KB_SUGGEST_THRESHOLD ({suggest}) must not exceed "
                f"DESKBOT_KB_ANSWER_THRESHOLD ({answer})"
            )
        return self


class ConfigurationError(ValueError):
    """Settings that are each valid but do not work together (e.g. with the knowledge base's
    own ``kb.yaml``); the message names the settings."""


def describe_validation_error(error: ValidationError) -> str:
    """One clear line per bad setting, naming it as the user wrote it (``DESKBOT_X``)."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"]:
            lines.append(f"DESKBOT_{str(item['loc'][0]).upper()}: {message}")
        else:  # a check across settings: its message names them
            lines.append(message)
    return "invalid settings:\n  " + "\n  ".join(lines)
