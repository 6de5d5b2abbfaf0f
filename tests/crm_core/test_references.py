import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import ComplaintNotFound
from crm_core.services.references import format_reference, next_reference, parse_reference

STYLES = ["{n}", "C{n}", "c-{n}", "C-{n:06d}", " #{n} ", "c {n:08d}"]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("C-000123", "C-000123"),
        ("c-123", "C-000123"),
        ("C123", "C-000123"),
        ("123", "C-000123"),
        ("  #123 ", "C-000123"),
        ("c 7", "C-000007"),
        ("C-1234567", "C-1234567"),
    ],
)
def test_parse_reference_tolerates_what_people_type(typed: str, expected: str) -> None:
    assert parse_reference(typed) == expected


@pytest.mark.parametrize("typed", ["", "hello", "X-123", "C-", "C-0", "12a"])
def test_parse_reference_rejects_non_references_with_the_expected_form(typed: str) -> None:
    with pytest.raises(ComplaintNotFound) as info:
        parse_reference(typed)
    assert "C-000123" in str(info.value) or "no complaint" in str(info.value)


def test_format_reference_pads_to_six_digits_and_grows_beyond() -> None:
    assert format_reference(1) == "C-000001"
    assert format_reference(1_000_000) == "C-1000000"


async def test_counters_are_independent_and_rolled_back_numbers_come_back(
    session: AsyncSession,
) -> None:
    assert await next_reference(session=session) == "C-000001"
    assert await next_reference(session=session, name="ticket", prefix="T-") == "T-000001"
    await session.rollback()
    assert await next_reference(session=session) == "C-000001"
    assert await next_reference(session=session) == "C-000002"
    await session.commit()


@given(number=st.integers(min_value=1, max_value=10**12 - 1), style=st.sampled_from(STYLES))
def test_any_way_of_typing_a_number_finds_the_same_reference(number: int, style: str) -> None:
    canonical = format_reference(number)
    assert parse_reference(style.format(n=number)) == canonical
    assert parse_reference(canonical) == canonical
