"""Log hygiene (issue 11): a whole conversation logged at DEBUG by every library (PTB, httpx,
httpcore, aiohttp, SQLAlchemy and the drivers) holds no bot token, webhook secret, phone number
or e-mail address."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from bot.logging_setup import REDACTED, install_redaction
from tests.handlers.conftest import BOTH_DATABASES, HarnessFactory
from tests.handlers.desk import open_handoff, start

SECRET = "webhook-Secret_7f3a9c"
EMAIL = "alice.smith@example.com"
# The national significant number of +49 151 12345678, allowing any separators: every written
# form of the phone (E.164, Telegram's digits without "+", 0151 ..., spaced) contains it.
PHONE_DIGITS = "15112345678"
ANY_PHONE_FORM = re.compile(r"[\s().\-/]{0,2}".join(PHONE_DIGITS))
LOGGERS = ("", "telegram", "httpx", "httpcore", "aiohttp", "sqlalchemy", "aiosqlite", "asyncpg")


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """Everything at DEBUG, written by a handler on the root logger like `deskbot run`'s."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    yield stream, handler
    logging.getLogger().removeHandler(handler)


@BOTH_DATABASES
async def test_a_whole_conversation_at_debug_logs_no_secret_and_no_contact_data(
    harness_factory: HarnessFactory, debug_log: tuple[io.StringIO, logging.Handler]
) -> None:
    stream, handler = debug_log
    harness, group = await start(
        harness_factory,
        webhook_url="https://desk.example.com/telegram/hook",
        webhook_secret_token=SECRET,
    )
    # The application's own set-up put the filter on the handler (as in `deskbot run`).
    assert install_redaction() in handler.filters
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")

    await alice.ask("/start", contains="Alice")
    await alice.share_contact("4915112345678")  # as Telegram sends it: no "+"
    await alice.expect("linked")
    await alice.ask(f"/email {EMAIL}", contains="e-mail")
    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Delivery")
    await alice.expect("describe what happened")
    await alice.send(f"Parcel broken. Call me on 0151 12345678 or write to {EMAIL}")
    await alice.press("Submit", await alice.expect("Submit it?"))
    await alice.expect("registered as")
    card = await open_handoff(harness, alice, sam)
    await sam.press("Claim", card)
    await alice.expect("has joined")
    await sam.send("I will call you on +49 151 12345678 today", thread_id=card.thread_id)
    await alice.expect("I will call you")
    await harness.settle()
    # As `deskbot run --webhook` registers itself (PTB logs the call's parameters at DEBUG).
    await harness.app.bot.set_webhook(url=harness.settings.webhook_url or "", secret_token=SECRET)
    await harness.app.bot.delete_webhook()

    output = stream.getvalue()
    # Everything was logged in detail: Bot API calls with their parameters, SQL with its
    # parameters; so what is missing below was redacted, not left out.
    assert "Calling Bot API endpoint `sendMessage` with parameters" in output
    assert "setWebhook" in output and "INSERT INTO interaction" in output
    assert "Parcel broken. Call me on" in output and REDACTED in output
    token = harness.fake.token
    assert token not in output and token.split(":")[1] not in output
    assert SECRET not in output
    assert "alice.smith" not in output and "alice.smith%40" not in output
    leaks = [m.group(0) for m in ANY_PHONE_FORM.finditer(output)]
    assert not leaks, leaks
