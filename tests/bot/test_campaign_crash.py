"""A campaign being sent by the real ``deskbot run`` is killed with SIGKILL while a message is
in flight; after the restart the sending resumes and nobody gets the message twice.

The fake Bot API holds the sendMessage to one recipient (so the kill lands with that recipient
claimed, its message on the wire), then lets it through once the process is dead: Telegram
delivered it, deskbot never heard. The restarted bot must not send it again (the claim is
settled as failed, unknown after a crash) and must send everyone else exactly once.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from crm_core.clock import utcnow
from crm_core.db import create_engine, create_session_factory
from crm_core.migrate import upgrade_database
from crm_core.models import ChannelIdentity, Customer
from crm_core.services.campaigns import Criteria, create_campaign, start_sending
from tests.bot.running import start_deskbot
from tests.bot.test_crash_recovery import PG, crash_database_url  # noqa: F401  (fixture)
from tests.fakes.bot_api import FakeBotAPI, FakeUser

RECIPIENTS = 12
HELD = 4  # the 5th recipient's message is in flight when the bot is killed
FIRST_CHAT = 7300


async def _seed(database_url: str) -> None:
    """Twelve reachable customers and a campaign to all of them, started (no hold-out)."""
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            for n in range(RECIPIENTS):
                customer = Customer(name=f"Cust{n} X", language="en", last_seen_at=utcnow())
                session.add(customer)
                await session.flush()
                assert customer.id is not None
                session.add(
                    ChannelIdentity(
                        channel="telegram",
                        external_id=str(FIRST_CHAT + n),
                        customer_id=customer.id,
                    )
                )
            await session.commit()
            campaign = await create_campaign(
                session=session,
                name="Crash",
                criteria=Criteria(),
                template="Hello {{ first_name }}",
                buttons=[{"kind": "stop"}],
                created_by=None,
                holdout_share=0,
            )
            assert campaign.id is not None
            await start_sending(session=session, campaign_id=campaign.id)
    finally:
        await engine.dispose()


async def _campaign_facts(database_url: str) -> tuple[str, dict[str, str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            status = (await conn.execute(text("SELECT status FROM campaign"))).scalar_one()
            rows = (
                await conn.execute(
                    text(
                        "SELECT i.external_id, r.status, r.reason FROM campaign_recipient r "
                        "JOIN channel_identity i ON i.customer_id = r.customer_id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return str(status), {str(chat): f"{state}:{reason}" for chat, state, reason in rows}


async def _wait_until_done(database_url: str, timeout: float) -> tuple[str, dict[str, str]]:  # noqa: ASYNC109
    """The campaign's facts once it is done (the crash-cut claim is settled only after
    ``campaign_claim_seconds``; the database has no change notification to wait on, so it is
    polled, bounded by ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    status, recipients = await _campaign_facts(database_url)
    while status != "done" and loop.time() < deadline:
        await asyncio.sleep(0.1)
        status, recipients = await _campaign_facts(database_url)
    return status, recipients


async def _start(fake: FakeBotAPI, workdir: Path, database_url: str) -> asyncio.subprocess.Process:
    since = len(fake.requests)
    process = await start_deskbot(
        fake,
        workdir,
        database_url=database_url,
        sweep_interval_seconds="1",
        campaign_rate_per_second="20",
        campaign_claim_seconds="2",
    )
    await fake.wait_for_request("getUpdates", since=since, timeout=30)
    return process


def _sends(fake: FakeBotAPI) -> Counter[int]:
    return Counter(
        int(r.params["chat_id"])
        for r in fake.requests
        if r.method == "sendMessage" and FIRST_CHAT <= int(r.params["chat_id"]) < FIRST_CHAT + 99
    )


@pytest.mark.parametrize(
    "crash_database_url", ["sqlite", pytest.param("postgres", marks=PG)], indirect=True
)
async def test_a_campaign_killed_mid_send_resumes_without_sending_anyone_twice(
    tmp_path: Path,
    crash_database_url: str,  # noqa: F811
) -> None:
    database_url = crash_database_url
    await _seed(database_url)
    held_chat = FIRST_CHAT + HELD
    hold = asyncio.Event()

    async def hold_one_send(record: object) -> None:
        params = getattr(record, "params", {})
        if getattr(record, "method", None) == "sendMessage" and str(params.get("chat_id")) == str(
            held_chat
        ):
            await hold.wait()

    async with FakeBotAPI() as fake:
        for n in range(RECIPIENTS):
            fake.private_chat(FakeUser(id=FIRST_CHAT + n, first_name=f"Cust{n}"))
        fake.request_hooks.append(hold_one_send)
        process = await _start(fake, tmp_path, database_url)
        try:
            await fake.wait_for(lambda: _sends(fake)[held_chat] == 1, timeout=30, what="held")
            process.send_signal(signal.SIGKILL)
            await process.wait()
            sent_before_kill = dict(_sends(fake))
            hold.set()  # Telegram delivers it; the dead process never learns
            await fake.wait_for(
                lambda: bool(fake.sent_to(held_chat)), timeout=10, what="held delivered"
            )

            process = await _start(fake, tmp_path, database_url)
            everyone = range(FIRST_CHAT, FIRST_CHAT + RECIPIENTS)
            await fake.wait_for(
                lambda: all(_sends(fake)[c] >= 1 for c in everyone), timeout=60, what="all sent"
            )
            status, recipients = await _wait_until_done(database_url, timeout=30)
        finally:
            hold.set()
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()[-3000:]

    sends = _sends(fake)
    assert 1 <= len(sent_before_kill) < RECIPIENTS, sent_before_kill
    assert all(sends[c] == 1 for c in everyone), f"sends per chat: {dict(sends)}"
    assert status == "done", recipients
    assert recipients[str(held_chat)] == "failed:unknown_after_crash", recipients
    others = {chat: state for chat, state in recipients.items() if chat != str(held_chat)}
    assert set(others.values()) == {"sent:None"}, recipients
    texts = {m.chat_id: m.text for m in fake.messages if m.from_bot}
    assert texts[FIRST_CHAT + 7] == "Hello Cust7"
