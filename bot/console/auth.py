"""Console sign-in: Telegram Login Widget data (checked as Telegram documents it) or the
console password; server-side sessions in an HttpOnly cookie, a CSRF token on every form.

Login Widget check (https://core.telegram.org/widgets/login#checking-authorization): the
``hash`` is HMAC-SHA256 of the *data-check-string* (every other field as ``key=value``, sorted
by key, joined by newlines) with SHA256(bot token) as the key; ``auth_date`` must be recent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LOGIN_MAX_AGE_SECONDS = 3600
CLOCK_SKEW_SECONDS = 60
SESSION_SECONDS = 8 * 3600
WIDGET_FIELDS = ("id", "first_name", "last_name", "username", "photo_url", "auth_date", "hash")


class LoginRefused(Exception):
    """Why the sign-in data was not accepted (shown to the person signing in)."""


def _data_check_string(data: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={data[key]}" for key in sorted(data) if key != "hash")


def _widget_hash(bot_token: str, data: Mapping[str, str]) -> str:
    secret = hashlib.sha256(bot_token.encode()).digest()
    return hmac.new(secret, _data_check_string(data).encode(), hashlib.sha256).hexdigest()


def sign_login_widget(
    bot_token: str, user: Mapping[str, Any], *, auth_date: int | None = None
) -> dict[str, str]:
    """Login Widget data for ``user``, signed as Telegram signs it (the sandbox's sign-in link,
    and tests)."""
    data = {key: str(value) for key, value in user.items() if value not in (None, "")}
    data["auth_date"] = str(int(time.time()) if auth_date is None else auth_date)
    data["hash"] = _widget_hash(bot_token, data)
    return data


def verify_login_widget(
    bot_token: str,
    query: Mapping[str, str],
    *,
    now: float | None = None,
    max_age: int = LOGIN_MAX_AGE_SECONDS,
) -> dict[str, str]:
    """The signed user fields, or LoginRefused. Fields Telegram does not send are ignored for
    the check only if absent: any field present is part of the signature."""
    data = {key: str(value) for key, value in query.items() if key in WIDGET_FIELDS}
    given = data.get("hash", "")
    if not given or "id" not in data or "auth_date" not in data:
        raise LoginRefused("The Telegram sign-in data is incomplete.")
    if not hmac.compare_digest(_widget_hash(bot_token, data), given.lower()):
        raise LoginRefused("The Telegram sign-in data is not signed by this bot.")
    try:
        auth_date = int(data["auth_date"])
    except ValueError:
        raise LoginRefused("The Telegram sign-in data is malformed.") from None
    now = time.time() if now is None else now
    if auth_date > now + CLOCK_SKEW_SECONDS or now - auth_date > max_age:
        raise LoginRefused("The Telegram sign-in has expired; please sign in again.")
    return data


@dataclass
class Session:
    token: str
    user_id: int | None  # None: signed in with the console password
    name: str
    csrf: str
    expires_at: float
    flash: list[str] = field(default_factory=list)  # shown once on the next page


@dataclass
class Sessions:
    """Sessions kept in memory: a restart signs everyone out, which is fine for a console."""

    lifetime: int = SESSION_SECONDS
    _by_token: dict[str, Session] = field(default_factory=dict)

    def open(self, user_id: int | None, name: str) -> Session:
        self._expire()
        session = Session(
            token=secrets.token_urlsafe(32),
            user_id=user_id,
            name=name,
            csrf=secrets.token_urlsafe(32),
            expires_at=time.time() + self.lifetime,
        )
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None or session.expires_at < time.time():
            self._by_token.pop(token, None)
            return None
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def _expire(self) -> None:
        now = time.time()
        for token in [t for t, s in self._by_token.items() if s.expires_at < now]:
            del self._by_token[token]


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
