import pytest

from crm_core.errors import InvalidEmail, InvalidPhone
from crm_core.normalize import normalize_email, normalize_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+49 151 12345678", None, "+4915112345678"),
        ("+49 (0)151 / 123-45678", None, "+4915112345678"),
        ("0151 12345678", "DE", "+4915112345678"),
        ("0151 12345678", "de", "+4915112345678"),
        ("+1 (202) 555-0123", None, "+12025550123"),
        ("0049 151 12345678", None, "+4915112345678"),
        ("0044 7911 123456", None, "+447911123456"),
    ],
)
def test_phone_to_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("0151 12345678", "no country code"),
        ("call me", "not a phone number"),
        ("+49 151", "not a valid phone number"),
        ("+" + "9" * 300, "…"),  # long input is echoed shortened
    ],
)
def test_bad_phone_explains_itself(raw: str, message: str) -> None:
    with pytest.raises(InvalidPhone, match=message) as err:
        normalize_phone(raw)
    assert "international format" in str(err.value)
    assert len(str(err.value)) < 200


def test_email_is_normalised_and_lower_cased() -> None:
    assert normalize_email("  Eva.Muster@Example.COM ") == "eva.muster@example.com"


@pytest.mark.parametrize("raw", ["", "eva", "eva@", "eva@@example.com", "eva@localhost"])
def test_bad_email_explains_itself(raw: str) -> None:
    with pytest.raises(InvalidEmail, match=r"name@example\.com"):
        normalize_email(raw)
