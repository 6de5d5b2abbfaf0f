"""The bot token never reaches a log line."""

from __future__ import annotations

import io
import logging

import pytest
from telegram.error import NetworkError

from bot.logging_setup import REDACTED, NetworkErrorTracebackFilter, TokenRedactingFilter

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


def _format_with_network_filter(error: BaseException) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(NetworkErrorTracebackFilter())
    redactor = TokenRedactingFilter()
    redactor.add_secret(TOKEN)
    handler.addFilter(redactor)
    log = logging.getLogger(f"test.network.{id(stream)}")
    log.propagate = False
    log.addHandler(handler)
    try:
        raise error
    except BaseException:
        log.exception("Network Retry Loop: failed %s", "run 0")
    return stream.getvalue()


def test_a_network_error_is_one_line_without_traceback() -> None:
    out = _format_with_network_filter(NetworkError(f"httpx.ConnectError: refused bot{TOKEN}/x"))
    assert "Traceback" not in out
    assert "Network Retry Loop: failed run 0 (httpx.ConnectError: refused" in out
    assert TOKEN not in out  # the cause moved into the message is still redacted


def test_other_errors_keep_their_traceback() -> None:
    out = _format_with_network_filter(ValueError("a bug"))
    assert "Traceback" in out and "ValueError: a bug" in out
