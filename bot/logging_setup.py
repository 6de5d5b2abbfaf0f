"""Logging configuration, with the bot token redacted from every line.

PTB and httpx log request URLs (``https://api.telegram.org/bot<TOKEN>/getUpdates``) at INFO and
DEBUG, and exceptions from httpx carry the URL too. A :class:`TokenRedactingFilter` on the root
logger's handlers rewrites each record before any handler formats it. Handler filters (unlike
logger filters) also see records propagated from child loggers such as ``httpx`` and
``telegram.ext``.
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


class TokenRedactingFilter(logging.Filter):
    """Replaces known secrets and anything shaped like a bot token in a record's text."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add_secret(self, secret: str) -> None:
        if secret:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _TOKEN_IN_URL.sub(f"bot{REDACTED}", text)
        return _BARE_TOKEN.sub(REDACTED, text)

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


_FILTER = TokenRedactingFilter()


def protect_secret(secret: str | None) -> TokenRedactingFilter:
    """Register ``secret`` for redaction and (re)attach the filter to every root handler.

    Idempotent; call it after adding handlers (``build_application`` calls it with the token).
    """
    if secret:
        _FILTER.add_secret(secret)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _FILTER


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
    """Configure the root logger for `deskbot run`: one stderr handler, token redaction."""
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
    for secret in secrets:
        protect_secret(secret)
    protect_secret(None)
