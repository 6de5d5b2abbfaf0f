"""Receiving updates through the durable inbox (``crm_core.services.inbox``) and processing
them from it, in polling and in webhook mode.

- **Polling** (:meth:`InboxRuntime.poll_forever`) calls ``getUpdates`` itself (PTB's Updater
  is not used): each batch is written to the inbox in one transaction, and only then is the
  next offset sent, which is what confirms the batch to Telegram. A crash at any point loses
  nothing Telegram considers delivered; what was fetched but not stored is simply fetched
  again. Network outages are retried with backoff and logged once (and once more when the
  Bot API answers again).
- **Webhook**: ``bot.webhook_server`` answers 200 only after :meth:`InboxRuntime.store`.
- **Workers** (``DESKBOT_INBOX_WORKERS``) process updates from the inbox, in update order and
  never two of one chat at once (across instances: the claim is in the database). One
  dispatcher claims for all of them: a single round trip records what the workers finished
  and claims as many updates as there are idle workers, and only the dispatcher wakes when an
  update arrives. Each worker feeds its update to ``application.process_update``. An update
  whose processing raises is retried with backoff a bounded number of times, then kept as
  failed with its error.
- On start the workers first drain what the inbox already holds (a backlog left by a crash or
  a slow desk): claims of a process that is known to be gone (same host, process dead) are
  released at once; others when their lease runs out.
- **One poller per token**: a lock row in the database (``app_state``) with a heartbeat; a
  second instance is refused at start with a clear message (:class:`PollingLockHeld`) instead
  of fighting the first with 409 Conflicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from telegram import Update
from telegram.error import Conflict, InvalidToken

from bot.app import DeskApplication, order_key
from bot.metrics import DeskMetrics
from bot.settings import ConfigurationError, Settings
from crm_core.clock import utcnow
from crm_core.services import inbox
from crm_core.services.inbox import ClaimedUpdate, IncomingUpdate, LockHolder
from handlers.core.inbound import RESUMING_INTERRUPTED

log = logging.getLogger(__name__)

POLL_TIMEOUT_SECONDS = 25  # long polling: Telegram answers at once when updates arrive
POLL_LIMIT = 100
MAX_BACKOFF_SECONDS = 30.0
IDLE_RECHECK_SECONDS = 1.0  # other instances' updates, retries and expired leases
HOUSEKEEPING_SECONDS = 5.0
PURGE_EVERY_SECONDS = 3600.0
SHUTDOWN_GRACE_SECONDS = 15.0


class PollingLockHeld(ConfigurationError):
    """Another live instance polls this bot's updates."""


class PollingConflict(ConfigurationError):
    """Telegram refused getUpdates: something outside this database polls the same token."""


def incoming(update: Update, payload: Mapping[str, Any]) -> IncomingUpdate:
    return IncomingUpdate(
        update_id=update.update_id,
        order_key=order_key(update),
        payload=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
    )


def instance_id() -> str:
    """``host:pid:random``: unique per process; host and pid tell a crashed predecessor."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def is_gone(owner_host: str, owner_pid: int, owner: str, me: str) -> bool:
    """Whether the process behind ``owner`` is known to be dead: on this host, and its pid is
    free or is ours (a container restarted under the same pid)."""
    if owner == me or owner_host != socket.gethostname():
        return False
    return owner_pid == os.getpid() or not _pid_alive(owner_pid)


def _parse_owner(owner: str) -> tuple[str, int] | None:
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


class InboxRuntime:
    def __init__(
        self, application: DeskApplication, settings: Settings, metrics: DeskMetrics
    ) -> None:
        self.app = application
        self.settings = settings
        self.metrics = metrics
        self.session_factory = application.deps.session_factory
        self.me = instance_id()
        self.lease = timedelta(seconds=settings.inbox_lease_seconds)
        self.depth = 0  # refreshed by housekeeping; the webhook reads it to push back
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: set[int] = set()  # claimed by this instance, not yet recorded done
        self._done: set[int] = set()  # handled, to be recorded with the dispatcher's next claim
        self._queue: asyncio.Queue[ClaimedUpdate | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._poller: asyncio.Task[None] | None = None
        self._lock_owned = False
        self._fatal: BaseException | None = None
        self._depth_warned = False
        self.retry_base = 1.0  # seconds before the first retry of a failed update (doubles)
        self._claims_failing = False
        self.backoff_base = 1.0  # seconds before polling again after an outage (doubles)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Release claims of dead predecessors, then start the workers (they drain the
        backlog first) and the background upkeep."""
        await self._release_dead_claims()
        await self._housekeeping_once(purge=True)
        for n in range(self.settings.inbox_workers):
            self._spawn(self._worker(), f"inbox-worker-{n}")
        self._spawn(self._dispatch(), "inbox-dispatcher")
        self._spawn(self._keep_leases(), "inbox-leases")
        self._spawn(self._housekeeping(), "inbox-housekeeping")

    async def stop(self) -> None:
        """Stop polling, let the workers finish the updates in hand, release the lock."""
        self._stopping.set()
        self._notify()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        workers = [t for t in self._tasks if t.get_name().startswith("inbox-worker")]
        dispatcher = [t for t in self._tasks if t.get_name() == "inbox-dispatcher"]
        await asyncio.gather(*dispatcher, return_exceptions=True)  # it ends on _stopping
        for _ in workers:  # after what is queued: those updates are claimed, so handle them
            self._queue.put_nowait(None)
        _, late = (
            await asyncio.wait(workers, timeout=SHUTDOWN_GRACE_SECONDS) if workers else ((), ())
        )
        for task in [*late, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._flush_done()
        if self._lock_owned:
            async with self.session_factory() as session:
                await inbox.release_polling_lock(session=session, owner=self.me)
            self._lock_owned = False

    async def wait_stopped(self) -> None:
        """Until :meth:`stop` is asked for, or polling failed fatally (then raise that)."""
        await self._stopping.wait()
        if self._fatal is not None:
            raise self._fatal

    def request_stop(self) -> None:
        self._stopping.set()

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    # --- receiving -----------------------------------------------------------------------------

    async def store(self, updates: Iterable[IncomingUpdate], *, source: str) -> int:
        """Write updates durably (redeliveries ignored); returns how many were new."""
        batch = list(updates)
        async with self.session_factory() as session:
            new = await inbox.store_updates(session=session, updates=batch)
        if new:
            self.metrics.updates_received.labels(source).inc(new)
            self.depth += new
            self._notify()
        return new

    async def acquire_polling_lock(self) -> None:
        stale = timedelta(seconds=self.settings.polling_lock_seconds)
        host, pid = socket.gethostname(), os.getpid()

        def dead(holder: LockHolder) -> bool:
            return is_gone(holder.host, holder.pid, holder.owner, self.me)

        async with self.session_factory() as session:
            holder = await inbox.acquire_polling_lock(
                session=session, owner=self.me, host=host, pid=pid, stale_after=stale, is_dead=dead
            )
        if holder is not None:
            age = (utcnow() - holder.heartbeat_at).total_seconds()
            raise PollingLockHeld(
                f"another deskbot instance is already polling this bot (host {holder.host}, "
                f"pid {holder.pid}, last heartbeat {age:.0f} s ago). Run one polling instance "
                "per bot token, or use `deskbot run --webhook` for several instances. If that "
                f"instance is gone, its lock expires {self.settings.polling_lock_seconds} s "
                "after its last heartbeat (DESKBOT_POLLING_LOCK_SECONDS)."
            )
        self._lock_owned = True
        self._spawn(self._heartbeat(), "polling-lock-heartbeat")

    def start_polling(self) -> None:
        self._poller = asyncio.create_task(self.poll_forever(), name="inbox-poller")

    async def poll_forever(self) -> None:
        """getUpdates -> store the batch -> only then confirm it with the next offset."""
        bot = self.app.bot
        offset: int | None = None
        backoff = self.backoff_base
        outage_since: float | None = None
        while not self._stopping.is_set():
            if self.depth >= self.settings.inbox_max_depth:
                await self._pause_for_backlog()
                continue
            try:
                updates = await bot.get_updates(
                    offset=offset,
                    limit=POLL_LIMIT,
                    timeout=POLL_TIMEOUT_SECONDS,
                    allowed_updates=Update.ALL_TYPES,  # chat_member updates must be asked for
                )
                if updates:
                    await self.store((incoming(u, u.to_dict()) for u in updates), source="polling")
                    offset = updates[-1].update_id + 1  # confirms the batch on the next call
            except InvalidToken as error:
                self._fail(error)
                return
            except Conflict:
                self._fail(
                    PollingConflict(
                        "Telegram refused getUpdates with 409 Conflict: another program (or a "
                        "deskbot on another database) polls this bot token, or a webhook is "
                        "set. Stop it; deskbot does not fight over the updates."
                    )
                )
                return
            except Exception as error:  # network outage, database down: retry, log once
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning("receiving updates failed (%s); retrying with backoff", error)
                await self._sleep_unless_stopping(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if outage_since is not None:
                log.warning(
                    "receiving updates works again after %.0f s", time.monotonic() - outage_since
                )
                outage_since, backoff = None, self.backoff_base

    async def _pause_for_backlog(self) -> None:
        log.warning(
            "inbox holds %d unhandled updates (DESKBOT_INBOX_MAX_DEPTH=%d): polling paused; "
            "Telegram keeps the rest",
            self.depth,
            self.settings.inbox_max_depth,
        )
        while not self._stopping.is_set() and self.depth >= self.settings.inbox_max_depth:
            await self._sleep_unless_stopping(HOUSEKEEPING_SECONDS)
            await self._housekeeping_once()

    def _fail(self, error: BaseException) -> None:
        log.error("%s", error)
        self._fatal = error
        self._stopping.set()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _heartbeat(self) -> None:
        interval = self.settings.polling_lock_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.session_factory() as session:
                    held = await inbox.heartbeat_polling_lock(session=session, owner=self.me)
            except Exception as error:  # the database is away; the lock ages meanwhile
                log.warning("polling lock heartbeat failed: %s", error)
                continue
            if not held:
                self._lock_owned = False
                self._fail(
                    PollingLockHeld(
                        "another instance took over polling (this one missed its heartbeats); "
                        "stopping"
                    )
                )
                return

    # --- processing ----------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Hand updates to idle workers. One round trip to the database both records what the
        workers finished and claims as many updates as there are idle workers, and only the
        dispatcher is woken when an update arrives or a worker finishes: workers never race
        each other for the same oldest row, nor poll the database while the inbox is empty."""
        while not self._stopping.is_set():
            wake = self._wake
            idle = self.settings.inbox_workers - len(self._in_flight - self._done)
            done = list(self._done)
            claimed: list[ClaimedUpdate] = []
            if idle > 0 or done:
                try:
                    claimed = await self._claim(idle, done)
                except Exception as error:  # the database is away: say so once, keep trying
                    if not self._claims_failing:
                        log.warning("claiming from the inbox failed (%s); retrying", error)
                    self._claims_failing = True
                else:
                    if self._claims_failing:
                        log.warning("claiming from the inbox works again")
                    self._claims_failing = False
            for item in claimed:
                self._in_flight.add(item.update_id)
                self._queue.put_nowait(item)
            if claimed and len(claimed) == idle:
                continue  # every worker busy: the next wake is one of them finishing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), IDLE_RECHECK_SECONDS)

    async def _claim(self, idle: int, done: list[int]) -> list[ClaimedUpdate]:
        async with self.session_factory() as session:
            claimed = await inbox.claim_batch(
                session=session, worker=self.me, limit=idle, lease=self.lease, done=done
            )
        self._forget_done(done)
        return claimed

    def _forget_done(self, done: list[int]) -> None:
        """``done`` is recorded as handled: the updates leave this instance's hands."""
        for update_id in done:
            self._done.discard(update_id)
            self._in_flight.discard(update_id)
        self.depth = max(self.depth - len(done), 0)

    async def _worker(self) -> None:
        while True:
            claimed = await self._queue.get()
            if claimed is None:  # stopping
                return
            handled = False
            try:
                handled = await self._process(claimed)
            finally:
                if not handled:
                    self._in_flight.discard(claimed.update_id)
                self._notify()  # the dispatcher records it, and the chat's next may be claimed

    async def _flush_done(self) -> None:
        """On stop: record what the workers finished, give back what they never started."""
        unstarted = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                unstarted.append(item.update_id)
        try:
            async with self.session_factory() as session:
                if self._done:
                    await inbox.claim_batch(
                        session=session, worker=self.me, limit=0, done=list(self._done)
                    )
                await inbox.release_updates(session=session, update_ids=unstarted)
        except Exception as error:  # their leases run out and they are handled again
            log.warning("recording the last handled updates failed: %s", error)

    async def _process(self, claimed: ClaimedUpdate) -> bool:
        """Process one update; True when it was handled (the dispatcher marks it done)."""
        started = time.monotonic()
        try:
            if claimed.attempts > inbox.MAX_ATTEMPTS:
                raise RuntimeError(
                    f"processing was cut off {claimed.attempts - 1} times (the process died)"
                )
            update = Update.de_json(json.loads(claimed.payload), self.app.bot)
            # A second attempt: the first was cut off (crash) or failed; see handlers.core.inbound.
            token = RESUMING_INTERRUPTED.set(claimed.attempts > 1)
            try:
                await self.app.process_update(update)
            finally:
                RESUMING_INTERRUPTED.reset(token)
        except Exception as error:
            self.metrics.updates_failed.inc()
            log.exception("update %d failed (attempt %d)", claimed.update_id, claimed.attempts)
            retry = timedelta(
                seconds=min(self.retry_base * 2**claimed.attempts, MAX_BACKOFF_SECONDS)
            )
            await self._record_failure(claimed, f"{type(error).__name__}: {error}", retry)
            return False
        self._done.add(claimed.update_id)
        self.metrics.updates_processed.inc()
        self.metrics.processing_seconds.observe(time.monotonic() - started)
        return True

    async def _record_failure(self, claimed: ClaimedUpdate, error: str, retry: timedelta) -> None:
        try:
            async with self.session_factory() as session:
                state = await inbox.mark_failed_attempt(
                    session=session, update_id=claimed.update_id, error=error, retry_after=retry
                )
        except Exception:
            log.exception("recording the failure of update %d failed", claimed.update_id)
            return  # the lease runs out and it is retried
        if state is inbox.InboxState.failed:
            log.error(
                "update %d kept as failed after %d attempts: %s",
                claimed.update_id,
                claimed.attempts,
                error,
            )

    async def _keep_leases(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            if not self._in_flight:
                continue
            try:
                async with self.session_factory() as session:
                    await inbox.renew_leases(
                        session=session,
                        worker=self.me,
                        update_ids=list(self._in_flight),
                        lease=self.lease,
                    )
            except Exception as error:
                log.warning("renewing inbox leases failed: %s", error)

    async def _release_dead_claims(self) -> None:
        async with self.session_factory() as session:
            owners = await inbox.claim_owners(session=session)
            dead = []
            for owner in owners:
                parsed = _parse_owner(owner)
                if parsed is not None and is_gone(parsed[0], parsed[1], owner, self.me):
                    dead.append(owner)
            released = await inbox.release_claims(session=session, owners=dead)
        if released:
            log.warning("taking over %d updates a crashed process was handling", released)

    # --- upkeep --------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        last_purge = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            purge = time.monotonic() - last_purge >= PURGE_EVERY_SECONDS
            if purge:
                last_purge = time.monotonic()
            try:
                await self._housekeeping_once(purge=purge)
            except Exception as error:
                log.warning("inbox housekeeping failed: %s", error)

    async def _housekeeping_once(self, *, purge: bool = False) -> None:
        async with self.session_factory() as session:
            self.depth = await inbox.depth(session=session)
            if purge:
                cutoff = utcnow() - timedelta(hours=self.settings.inbox_retention_hours)
                purged = await inbox.purge_older_than(session=session, before=cutoff)
                if purged:
                    log.info("purged %d handled updates older than the retention", purged)
        self.metrics.inbox_depth.set(self.depth)
        warn_at = self.settings.inbox_warn_depth
        if self.depth > warn_at and not self._depth_warned:
            self._depth_warned = True
            log.warning(
                "inbox holds %d unhandled updates (over DESKBOT_INBOX_WARN_DEPTH=%d): the desk "
                "is falling behind",
                self.depth,
                warn_at,
            )
        elif self.depth <= warn_at // 2:
            self._depth_warned = False
