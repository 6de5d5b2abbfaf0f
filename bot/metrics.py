"""Prometheus metrics of one deskbot process (``/metrics``).

Counters and the latency histogram are updated where things happen (the inbox runtime, the
webhook server, :class:`MeteredRateLimiter` for every Bot API call); the gauges that describe
shared state (inbox depth, open handoffs, waiting customers) are read from the database when
scraped, so every instance reports the same desk-wide figures.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from telegram.error import RetryAfter, TelegramError

from bot.rate_limit import DeskRateLimiter
from crm_core.db import SessionFactory
from crm_core.services import inbox, outbox
from crm_core.services.runtime_stats import handoff_counts

__all__ = ["CONTENT_TYPE_LATEST", "DeskMetrics", "MeteredRateLimiter"]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class DeskMetrics:
    """The metrics, in their own registry (tests build several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates_received = Counter(
            "deskbot_updates_received",
            "Updates newly written to the inbox (redeliveries not counted)",
            ["source"],
            registry=r,
        )
        self.updates_processed = Counter(
            "deskbot_updates_processed", "Updates handled from the inbox", registry=r
        )
        self.updates_failed = Counter(
            "deskbot_updates_failed",
            "Update processing attempts that failed (retried, or kept as failed)",
            registry=r,
        )
        self.processing_seconds = Histogram(
            "deskbot_update_processing_seconds",
            "Time to handle one update",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.telegram_calls = Counter(
            "deskbot_telegram_requests", "Bot API calls made, by method", ["method"], registry=r
        )
        self.telegram_errors = Counter(
            "deskbot_telegram_errors",
            "Bot API calls that failed, by method and error",
            ["method", "error"],
            registry=r,
        )
        self.telegram_429 = Counter(
            "deskbot_telegram_rate_limited",
            "Bot API calls answered 429 Too Many Requests, by method",
            ["method"],
            registry=r,
        )
        self.inbox_depth = Gauge(
            "deskbot_inbox_depth", "Updates in the inbox not yet handled", registry=r
        )
        self.inbox_failed = Gauge(
            "deskbot_inbox_failed", "Updates kept as failed in the inbox", registry=r
        )
        self.open_handoffs = Gauge(
            "deskbot_open_handoffs", "Handoffs to a person not yet closed", registry=r
        )
        self.waiting_customers = Gauge(
            "deskbot_waiting_customers", "Customers waiting for an agent to claim them", registry=r
        )
        self.outbox_depth = Gauge(
            "deskbot_outbox_depth",
            "Messages in the outbox waiting to be sent again (desk-wide)",
            registry=r,
        )
        self.outbox_failed = Gauge(
            "deskbot_outbox_failed",
            "Messages Telegram refused for good (400), within the outbox's retention",
            registry=r,
        )

    async def refresh(self, session_factory: SessionFactory) -> None:
        """Read the desk-wide gauges from the database."""
        async with session_factory() as session:
            counts = await inbox.counts(session=session)
            handoffs = await handoff_counts(session=session)
            queued = await outbox.counts(session=session)
        self.inbox_depth.set(counts.pending)
        self.inbox_failed.set(counts.failed)
        self.open_handoffs.set(handoffs.open)
        self.waiting_customers.set(handoffs.waiting)
        self.outbox_depth.set(queued.pending)
        self.outbox_failed.set(queued.failed)

    def render(self) -> bytes:
        return generate_latest(self.registry)


Callback = Callable[..., Coroutine[Any, Any, Any]]


class MeteredRateLimiter(DeskRateLimiter):
    """The desk's rate limiter (``bot.rate_limit``), counting every Bot API call (each retry
    of a 429 too)."""

    def __init__(self, metrics: DeskMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        metrics = self.metrics

        async def counted(*a: Any, **kw: Any) -> Any:
            metrics.telegram_calls.labels(endpoint).inc()
            try:
                return await callback(*a, **kw)
            except RetryAfter:
                metrics.telegram_429.labels(endpoint).inc()
                metrics.telegram_errors.labels(endpoint, "RetryAfter").inc()
                raise
            except TelegramError as error:
                metrics.telegram_errors.labels(endpoint, type(error).__name__).inc()
                raise

        return await super().process_request(counted, args, kwargs, endpoint, data, rate_limit_args)
