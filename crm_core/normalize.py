"""Canonical forms of contact data, so that the same phone or e-mail always matches itself."""

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from crm_core.errors import InvalidEmail, InvalidPhone

_PHONE_HINT = "Please send it in international format, e.g. +49 151 12345678."


def _short(text: str, limit: int = 60) -> str:
    """Echo user input back in an error without pasting a whole essay."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalize_region(raw: str) -> str:
    """An ISO 3166 country code phonenumbers knows (``"de"`` -> ``"DE"``) or InvalidPhone."""
    code = (raw or "").strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidPhone(f"“{_short(raw)}” is not a country code; use two letters, e.g. DE.")
    return code


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """Return ``raw`` in E.164 (``+4915112345678``) or raise :class:`InvalidPhone`.

    Without a leading ``+`` the number is read in ``default_region`` (ISO 3166 code, e.g. "DE").
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone(f"The phone number is empty. {_PHONE_HINT}")
    region = default_region.upper() if default_region else None
    digits = text
    if region is None and text.startswith("00"):
        # "00" is the international prefix almost everywhere (no national number starts with
        # it); with a region, phonenumbers already reads that region's own prefix.
        digits = "+" + text[2:]
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        if region is None and not text.startswith("+") and any(c.isdigit() for c in text):
            raise InvalidPhone(f"“{_short(text)}” has no country code. {_PHONE_HINT}") from None
        raise InvalidPhone(f"“{_short(text)}” is not a phone number. {_PHONE_HINT}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"“{_short(text)}” is not a valid phone number. {_PHONE_HINT}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """Return the normalised, lower-cased address or raise :class:`InvalidEmail`.

    Deliverability (DNS) is not checked: that would make linking slow and flaky offline.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidEmail("The e-mail address is empty. Please send it like name@example.com.")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(
            f"“{_short(text)}” is not a valid e-mail address ({exc}) "
            "Please send it like name@example.com."
        ) from None
    return result.normalized.lower()
