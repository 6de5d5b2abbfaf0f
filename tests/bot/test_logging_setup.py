"""The bot token never reaches a log line."""

from __future__ import annotations

import io
import logging

import pytest
from telegram.error import NetworkError

from bot.logging_setup import (
    REDACTED,
    NetworkErrorTracebackFilter,
    TokenRedactingFilter,
    install_redaction,
)

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


PHONE_FORMS = [
    "+4915112345678",
    "+49 151 12345678",
    "+49 (151) 123-456-78",
    "0151 12345678",
    "015112345678",
    "0151/12345678",
]


@pytest.mark.parametrize("phone", PHONE_FORMS)
def test_phone_numbers_are_redacted_in_every_written_form(
    logger: tuple[logging.Logger, io.StringIO], phone: str
) -> None:
    log, stream = logger
    log.debug("Calling Bot API endpoint `sendMessage` with parameters `%s`", {"text": phone})
    log.info("call me on %s please", phone)
    output = stream.getvalue()
    assert phone not in output and "12345678" not in output.replace(REDACTED, "")
    assert output.count(REDACTED) == 2


def test_phones_as_telegram_and_the_database_write_them_are_redacted(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    # PTB's repr of an update, SQLAlchemy's parameters (the raw contact text, a JSON payload).
    log.debug("%s", "Contact(first_name='Ann', phone_number='4915112345678', user_id=5001)")
    log.debug("[generated in 0.00012s] %r", ("telegram", "in", "message", "4915112345678", 7))
    log.debug("%r", ('{"contact": {"phone_number": "4915112345678", "user_id": 5001}}',))
    log.debug("%s", {"phone": "4915112345678", "mobile": "15112345678"})
    output = stream.getvalue()
    assert "5112345678" not in output
    assert "user_id=5001" in output and '"user_id": 5001' in output  # ids stay readable


def test_email_addresses_are_redacted(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    log.info("linked %s", "Ann.Smith+desk@mail.example.co.uk")
    log.debug("GET https://x.example/lookup?email=ann%40example.com&x=1")
    log.debug("transcript: write to ann.smith@exam…")  # cut short
    output = stream.getvalue()
    assert "Ann.Smith" not in output and "ann%40example" not in output
    assert "ann.smith" not in output and "@exam" not in output
    assert output.count(REDACTED) == 3 and "&x=1" in output


def test_secrets_in_named_parameters_are_redacted(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.debug("setWebhook %s", {"url": "https://desk.example.com/hook", "secret_token": "s3-cr3t"})
    log.debug("%s", "Settings(console_password='hunter2hunter2', port=8443)")
    output = stream.getvalue()
    assert "s3-cr3t" not in output and "hunter2" not in output
    assert "https://desk.example.com/hook" in output and "port=8443" in output


@pytest.mark.parametrize(
    "line",
    [
        "2026-12-03 13:47:08,123 INFO deskbot: started",
        "[generated in 0.00012s] (5001, 'kb:refund', 0)",
        "chat -1001000000001 update 123456789 user 5001",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        "due 2026-12-03T13:47:08+00:00, complaint C-000123, 3 of 10000",
        "HTTP Request: POST http://127.0.0.1:8765/getUpdates 200",
    ],
)
def test_ordinary_lines_are_left_alone(
    logger: tuple[logging.Logger, io.StringIO], line: str
) -> None:
    log, stream = logger
    log.info("%s", line)
    assert stream.getvalue() == line + "\n"


def test_install_redaction_filters_every_root_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction("webhook-secret-value", None)
        logging.getLogger("some.library").warning(
            "secret %s, mail a@b.example", "webhook-secret-value"
        )
    finally:
        root.removeHandler(handler)
    assert stream.getvalue() == f"secret {REDACTED}, mail {REDACTED}\n"
