"""Logging configuration, with secrets and personal data redacted from every line.

PTB and httpx log request URLs (``https://api.telegram.org/bot<TOKEN>/getUpdates``) at INFO and
DEBUG, and exceptions from httpx carry the URL too. At DEBUG, PTB logs every Bot API call's
parameters and answer (messages, contacts, ``setWebhook``'s secret) and SQLAlchemy every
statement's parameters and rows (phones, e-mail addresses, message texts). A
:class:`RedactingFilter` on the root logger's handlers rewrites each record before any handler
formats it: the secrets it was given (the bot token, the webhook secret, the console password),
anything shaped like a bot token, e-mail addresses and phone numbers (see :data:`PATTERNS`).
Handler filters (unlike logger filters) also see records propagated from child loggers such as
``httpx``, ``telegram.ext`` and ``sqlalchemy.engine``.

:func:`install_redaction` is the one way it is set up: ``bot.app.build_application`` calls it
with the settings' secrets, so ``deskbot run`` and the end-to-end test harness (which builds
the application the same way) log through the same filter.
"""

from __future__ import annotations

import logging
import re
import sys

from telegram.error import NetworkError

REDACTED = "<redacted>"
# Any Bot API token shape inside a URL path: bot<digits>:<secret>.
_TOKEN_IN_URL = re.compile(r"bot\d+:[A-Za-z0-9_-]+")
# A bare token anywhere: <digits>:<35-ish url-safe chars>.
_BARE_TOKEN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}")
# Values logged under a name that says what they are (dict reprs, JSON, keyword reprs):
# 'phone_number': '4915112345678', "secret_token": "...", password=...
_NAMED_VALUE = re.compile(
    r"""((?:phone(?:_number)?|mobile|secret_token|password)['"]?\s*[:=]\s*['"]?)"""
    r"""[^'"\s,;)}\]]+""",
    re.IGNORECASE,
)
# The top-level domain is optional: texts are logged cut short ("ann@exam…"). A host that
# starts with a digit (postgres@127.0.0.1) is left alone.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*")
# +4915112345678, +49 151 12345678, +49 (151) 123-456-78: a "+" and 7 to 17 digits.
_INTERNATIONAL_PHONE = re.compile(r"(?<![\w+])\+\d(?:[ ./()-]{0,2}\d){6,16}")
# 0151 12345678, 030/1234567: a trunk "0" and 8 to 15 digits, not inside a number, a date, a
# time or a decimal.
_NATIONAL_PHONE = re.compile(r"(?<![\w.:+-])0\d(?:[ /()-]{0,2}\d){7,14}(?![\w:])")
# A phone as a string value without its "+" (Telegram's contacts: '4915112345678'): ids are
# logged as numbers, not as quoted strings of digits.
_QUOTED_DIGITS = re.compile(r"""(['"])\+?\d{8,15}\1""")
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_TOKEN_IN_URL, f"bot{REDACTED}"),
    (_BARE_TOKEN, REDACTED),
    (_NAMED_VALUE, rf"\g<1>{REDACTED}"),
    (_EMAIL, REDACTED),
    (_QUOTED_DIGITS, rf"\g<1>{REDACTED}\g<1>"),
    (_INTERNATIONAL_PHONE, REDACTED),
    (_NATIONAL_PHONE, REDACTED),
)


class RedactingFilter(logging.Filter):
    """Replaces known secrets, anything shaped like a bot token, e-mail addresses and phone
    numbers in a record's message (its arguments merged in), traceback and stack."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add_secret(self, secret: str) -> None:
        if secret:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        # Longest first: a secret that contains another is replaced whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


# The name it had when it knew only tokens.
TokenRedactingFilter = RedactingFilter

_FILTER = RedactingFilter()


def install_redaction(*secrets: str | None) -> RedactingFilter:
    """Register ``secrets`` for redaction and (re)attach the filter to every root handler.

    Idempotent; call it after adding handlers (``build_application`` calls it with the token,
    the webhook secret and the console password)."""
    for secret in secrets:
        if secret:
            _FILTER.add_secret(secret)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _FILTER


def protect_secret(secret: str | None) -> RedactingFilter:
    """:func:`install_redaction` for one secret."""
    return install_redaction(secret)


class NetworkErrorTracebackFilter(logging.Filter):
    """A network error (Telegram unreachable, a timeout) is an everyday event with a one-line
    cause: log that line instead of a three-exception traceback through httpx and PTB.
    Tracebacks of anything else are kept: those are bugs worth the detail."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], NetworkError):
            record.msg = f"{record.getMessage()} ({record.exc_info[1]})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(level: str = "INFO", *, secrets: tuple[str | None, ...] = ()) -> None:
    """Configure the root logger for `deskbot run`: one stderr handler, redaction."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(NetworkErrorTracebackFilter())
        root.addHandler(handler)
    # httpx logs every request at INFO; that is noise at our INFO level.
    if root.level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    install_redaction(*secrets)
