"""Every inline-button ``callback_data`` the bot uses: prefixes, builders and parsers in one place.

Format: ``<prefix>:<arg>:<arg>...`` — short ASCII prefixes, ``:``-separated string args, at most
64 bytes (Telegram's limit; :func:`build` raises if exceeded). Register handlers with
``CallbackQueryHandler(callback, pattern=pattern(Prefix.MENU))`` and read the args with
:func:`parse`. Add new prefixes to :class:`Prefix` (keep them unique and short).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_CALLBACK_DATA_BYTES = 64
SEPARATOR = ":"


class Prefix(StrEnum):
    MENU = "m"  # customer menu action: m:<MenuAction>
    KB_FEEDBACK = "kf"  # knowledge-base answer feedback: kf:<article_id>:<up|down>
    KB_ARTICLE = "ka"  # open a suggested article: ka:<article_id>
    COMPLAINT_CATEGORY = "cc"  # complaint flow category choice: cc:<category>
    COMPLAINT_CONFIRM = "cf"  # complaint flow confirm/cancel: cf:<yes|no>
    COMPLAINT_VIEW = "cv"  # show one complaint to its customer: cv:<complaint_id>
    HANDOFF_CLAIM = "hc"  # agent claims a handoff: hc:<handoff_id>
    COMPLAINT_STATUS = "ks"  # agent sets complaint status: ks:<complaint_id>:<status>
    COMPLAINT_ASSIGN = "ca"  # agent takes a complaint: ca:<complaint_id>
    CSAT = "sat"  # satisfaction score after a handoff: sat:<handoff_id>:<1-5>
    CONFIRM_FORGET = "fg"  # confirm erasure: fg:<yes|no>
    STATS_BEHIND = "sb"  # what is behind a /stats figure: sb:<figure>:<start>:<end> (epoch s)
    CAMPAIGN_SEND = "cs"  # supervisor confirms a campaign's send: cs:<campaign_id>:<yes|no>
    CAMPAIGN_BUTTON = "cb"  # customer presses a campaign's button: cb:<campaign_id>:<talk|stop>
    NOOP = "nop"  # a button that does nothing (labels)


class MenuAction(StrEnum):
    ASK = "ask"
    COMPLAINT = "complaint"
    MY_COMPLAINTS = "mycomplaints"
    HUMAN = "human"
    SHARE_PHONE = "share_phone"


class CallbackDataError(ValueError):
    """Callback data we did not build (stale button from an old version, or forged)."""


@dataclass(frozen=True, slots=True)
class Callback:
    prefix: Prefix
    args: tuple[str, ...]

    def arg(self, index: int) -> str:
        try:
            return self.args[index]
        except IndexError:
            raise CallbackDataError(f"callback {self.prefix} lacks argument {index}") from None

    def int_arg(self, index: int) -> int:
        value = self.arg(index)
        try:
            return int(value)
        except ValueError:
            raise CallbackDataError(f"callback {self.prefix} argument {value!r}") from None


def build(prefix: Prefix, *args: object) -> str:
    """``build(Prefix.HANDOFF_CLAIM, 42) == "hc:42"``; raises ValueError over 64 bytes."""
    parts = [str(prefix), *(str(a) for a in args)]
    if any(SEPARATOR in p for p in parts[1:]):
        raise ValueError(f"callback argument may not contain {SEPARATOR!r}: {parts[1:]}")
    data = SEPARATOR.join(parts)
    if len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
        raise ValueError(f"callback_data over {MAX_CALLBACK_DATA_BYTES} bytes: {data!r}")
    return data


def parse(data: str | None) -> Callback:
    """Inverse of :func:`build`; raises :class:`CallbackDataError` for unknown data."""
    if not data:
        raise CallbackDataError("empty callback data")
    head, *args = data.split(SEPARATOR)
    try:
        prefix = Prefix(head)
    except ValueError:
        raise CallbackDataError(f"unknown callback prefix {head!r}") from None
    return Callback(prefix, tuple(args))


def pattern(prefix: Prefix) -> re.Pattern[str]:
    """Regex for ``CallbackQueryHandler(pattern=...)`` matching exactly this prefix."""
    return re.compile(rf"^{re.escape(str(prefix))}(?:{SEPARATOR}|$)")


def menu(action: MenuAction) -> str:
    return build(Prefix.MENU, action)
