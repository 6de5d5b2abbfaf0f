"""The fake Telegram Bot API used by the end-to-end tests now lives in the product as
:mod:`bot.emulator` (``deskbot sandbox`` runs the bot against it); this module keeps the old
import path working for every test."""

from bot.emulator import *  # noqa: F403
from bot.emulator import (
    ALLOWED_REACTIONS,
    ALLOWED_TAGS,
    CAPTION_LIMIT,
    DEFAULT_TOKEN,
    MESSAGE_LIMIT,
    ApiError,
    FakeBotAPI,
    FakeChat,
    FakeTopic,
    FakeUser,
    RateRule,
    RecordedRequest,
    StoredMessage,
    bad_request,
    parse_telegram_html,
)

__all__ = [
    "ALLOWED_REACTIONS",
    "ALLOWED_TAGS",
    "CAPTION_LIMIT",
    "DEFAULT_TOKEN",
    "MESSAGE_LIMIT",
    "ApiError",
    "FakeBotAPI",
    "FakeChat",
    "FakeTopic",
    "FakeUser",
    "RateRule",
    "RecordedRequest",
    "StoredMessage",
    "bad_request",
    "parse_telegram_html",
]
