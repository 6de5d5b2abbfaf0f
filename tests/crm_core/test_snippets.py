import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import InvalidInput, SnippetNotFound
from crm_core.services.snippets import delete_snippet, get_snippet, list_snippets, save_snippet


async def test_snippets_are_saved_replaced_listed_and_removed(session: AsyncSession) -> None:
    await save_snippet(session=session, name="Refund-Time", text="  Refunds take 3 days.  ")
    await save_snippet(session=session, name="address", text="Our address is ...")
    replaced = await save_snippet(session=session, name="refund-time", text="Refunds take 2 days.")

    assert replaced.name == "refund-time" and replaced.text == "Refunds take 2 days."
    assert [s.name for s in await list_snippets(session=session)] == ["address", "refund-time"]
    assert (await get_snippet(session=session, name=" REFUND-TIME ")).id == replaced.id

    await delete_snippet(session=session, name="address")
    with pytest.raises(SnippetNotFound, match="There is no snippet “address”"):
        await get_snippet(session=session, name="address")


@pytest.mark.parametrize(
    ("name", "text"),
    [("two words", "x"), ("", "x"), ("a" * 33, "x"), ("ok", "   "), ("ok", "y" * 3001)],
)
async def test_bad_snippets_are_refused_and_nothing_is_written(
    session: AsyncSession, name: str, text: str
) -> None:
    with pytest.raises(InvalidInput):
        await save_snippet(session=session, name=name, text=text)
    assert await list_snippets(session=session) == []
