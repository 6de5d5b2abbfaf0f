"""What the conversation handlers need to know about the deployment.

:class:`DeskConfig` is built from ``bot.settings.Settings`` by ``bot.app`` (handlers never import
``bot``); tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from crm_core.business_hours import BusinessHours, parse_business_hours
from crm_core.sla import DEFAULT_HOURS_BY_NAME, SlaPolicy

DEFAULT_SLA_HOURS: dict[str, float] = dict(DEFAULT_HOURS_BY_NAME)


@dataclass(frozen=True, slots=True)
class DeskConfig:
    agent_chat_id: int | None = None
    supervisor_ids: frozenset[int] = frozenset()
    flow_ttl: timedelta = timedelta(minutes=30)
    # Severity value ("low", "medium", "high", "critical") -> hours until the SLA is due.
    sla_hours: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SLA_HOURS))
    handoff_reminder_delay: timedelta = timedelta(minutes=10)
    handoff_escalation_delay: timedelta = timedelta(minutes=30)
    agent_signature: Literal["first_name", "none"] = "first_name"
    membership_cache_seconds: int = 5
    sweep_interval_seconds: int = 60
    # Campaigns: messages a second and a sweep at most; a claim older than this was cut off.
    campaign_rate_per_second: float = 10
    campaign_batch_size: int = 300
    campaign_claim_seconds: int = 300
    # A card is edited at most once per card_refresh_seconds, and a group gets at most
    # card_edits_per_minute card edits and topic renames (Telegram counts them as messages).
    card_refresh_seconds: float = 3
    card_edits_per_minute: int = 10
    default_phone_region: str | None = None
    default_language: str = "en"
    # Give waiting customers to free agents (round robin), at most agent_cap open each.
    auto_assign: bool = False
    agent_cap: int = 5
    # Close a claimed conversation idle this long (0: never); a customer writing within
    # reopen_hours of a close reopens it (0: the bot answers again).
    auto_resolve_hours: float = 0
    reopen_hours: float = 0
    # The desk's time zone (IANA name): every time a customer or an agent reads is shown in it.
    timezone: str = "UTC"
    # When people answer (empty: always) and the days they do not; SLA clocks pause outside.
    business_hours: str = ""
    holidays: str = ""
    # Interactions older than this are anonymised or deleted by a sweep (0: kept forever).
    retention_days: int = 0
    retention_mode: Literal["anonymise", "delete"] = "anonymise"
    # The outbox: first wait before a message Telegram could not take is sent again, and how
    # long sent ones are kept.
    outbox_retry_seconds: float = 2.0
    outbox_retention: timedelta = timedelta(hours=24)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def hours(self) -> BusinessHours:
        return parse_business_hours(self.business_hours, self.holidays, self.timezone)

    @property
    def sla(self) -> SlaPolicy:
        """The SLA policy: the configured hours, counted while the desk is open."""
        return SlaPolicy.from_mapping(self.sla_hours, business_hours=self.hours)

    def is_supervisor(self, telegram_user_id: int) -> bool:
        return telegram_user_id in self.supervisor_ids
