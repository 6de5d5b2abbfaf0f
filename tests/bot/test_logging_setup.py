"""The bot token never reaches a log line."""

from __future__ import annotations

import io
import logging

import pytest

from bot.logging_setup import REDACTED, TokenRedactingFilter

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    redactor = TokenRedactingFilter()
    redactor.add_secret(TOKEN)
    handler.addFilter(redactor)
    log = logging.getLogger("test.redaction")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, stream


def test_token_redacted_from_message_args_and_tracebacks(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.debug("POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    log.info(f"token is {TOKEN}")
    log.info("other bot: https://api.telegram.org/bot42:%s/getMe", "x" * 35)
    try:
        raise RuntimeError(f"failed https://api.telegram.org/bot{TOKEN}/sendMessage")
    except RuntimeError:
        log.exception("request failed")
    output = stream.getvalue()
    assert TOKEN not in output and "AAHdqTcvCH1v" not in output
    assert "x" * 35 not in output
    assert output.count(REDACTED) >= 4
    assert "getUpdates" in output and "request failed" in output
