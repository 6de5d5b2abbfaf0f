"""The fake Bot API behaves like Telegram (the other tests rely on it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter

from tests.fakes.bot_api import FakeBotAPI, FakeUser, parse_telegram_html

ALICE = FakeUser(id=42, first_name="Alice")


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    fake.private_chat(ALICE)
    async with Bot(fake.token, base_url=fake.api_url, base_file_url=fake.file_url) as client:
        yield client


@pytest.mark.parametrize(
    "html",
    [
        "<b>bold",  # unclosed
        "<b>a</i>",  # mismatched
        "<div>x</div>",  # not a Telegram tag
        "Tom & Jerry",  # raw ampersand
        "a < b",  # raw less-than
        "<br/>",  # self-closing tags do not exist in Telegram HTML
        '<span class="x">s</span>',  # span only as spoiler
        "&nbsp;",  # only &lt; &gt; &amp; &quot; and numeric entities
    ],
)
async def test_bad_html_is_rejected_with_cant_parse_entities(bot: Bot, html: str) -> None:
    with pytest.raises(BadRequest, match=r"(?i)parse entities"):
        await bot.send_message(ALICE.id, html, parse_mode=ParseMode.HTML)


def test_good_html_parses_to_what_the_user_sees() -> None:
    html = (
        '<b>Hi</b> <i>&lt;you&gt;</i> &amp; <a href="https://x.test">link</a> &#128512; '
        '<tg-spoiler>s</tg-spoiler> <pre><code class="language-py">x</code></pre>'
    )
    assert parse_telegram_html(html) == "Hi <you> & link 😀 s x"


async def test_message_length_counts_after_entity_parsing(bot: Bot) -> None:
    fits = "<b>" + "&amp;" * 4096 + "</b>"  # 4096 visible characters
    await bot.send_message(ALICE.id, fits, parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(ALICE.id, "x" * 4097)


async def test_blocked_user_gives_forbidden(fake: FakeBotAPI, bot: Bot) -> None:
    fake.block(ALICE.id)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(ALICE.id, "hi")


async def test_rate_rule_gives_retry_after(fake: FakeBotAPI, bot: Bot) -> None:
    fake.rate_limit("sendMessage", retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE.id, "hi")
    assert caught.value.retry_after in (7, timedelta(seconds=7))
    await bot.send_message(ALICE.id, "hi")  # the rule was used up


async def test_migrated_group_gives_chat_migrated(fake: FakeBotAPI, bot: Bot) -> None:
    fake.add_group(-100, "Agents", type="group")
    fake.migrate_group(-100, -1001234567890)
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(-100, "hi")
    assert caught.value.new_chat_id == -1001234567890
    await bot.send_message(-1001234567890, "hi")


async def test_forum_topics(fake: FakeBotAPI, bot: Bot) -> None:
    fake.add_group(-1001, "Agents", forum=True)
    topic = await bot.create_forum_topic(-1001, "C-000001 Alice")
    sent = await bot.send_message(-1001, "card", message_thread_id=topic.message_thread_id)
    assert sent.message_thread_id == topic.message_thread_id
    assert fake.sent_to(-1001, thread_id=topic.message_thread_id)[0].text == "card"
    await bot.close_forum_topic(-1001, topic.message_thread_id)
    await bot.reopen_forum_topic(-1001, topic.message_thread_id)
    await bot.edit_forum_topic(-1001, topic.message_thread_id, name="C-000001 closed")

    fake.delete_topic(-1001, topic.message_thread_id)
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(-1001, "x", message_thread_id=topic.message_thread_id)
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(-1001, "x", message_thread_id=999)


async def test_get_chat_member_reflects_configured_members(fake: FakeBotAPI, bot: Bot) -> None:
    fake.add_group(-1001, members={7: "member", 8: "administrator", 9: "kicked"})
    assert (await bot.get_chat_member(-1001, 7)).status == "member"
    assert (await bot.get_chat_member(-1001, 8)).status == "administrator"
    assert (await bot.get_chat_member(-1001, 9)).status == "kicked"
    assert (await bot.get_chat_member(-1001, 10)).status == "left"
    fake.set_member(-1001, 7, "left")
    assert (await bot.get_chat_member(-1001, 7)).status == "left"


async def test_get_updates_long_polls_until_an_update_arrives(fake: FakeBotAPI, bot: Bot) -> None:
    import asyncio

    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_for_request("getUpdates")
    assert not poll.done()
    fake.push_message(ALICE, "/start")
    updates = await asyncio.wait_for(poll, 5)
    assert updates[0].message is not None and updates[0].message.text == "/start"
    assert updates[0].message.entities[0].type == "bot_command"
    # Confirming with the offset drops it; an empty poll with timeout 0 returns at once.
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()


async def test_edit_copy_callback_and_files(fake: FakeBotAPI, bot: Bot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Claim", callback_data="hc:1")]])
    sent = await bot.send_message(ALICE.id, "card", reply_markup=markup)
    query_id = fake.press(ALICE, fake.message(ALICE.id, sent.message_id), "Claim")
    await bot.answer_callback_query(query_id, text="ok")
    assert fake.answered_callbacks[query_id]["text"] == "ok"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("card", ALICE.id, sent.message_id, reply_markup=markup)
    await bot.edit_message_text("<b>claimed</b>", ALICE.id, sent.message_id, parse_mode="HTML")
    edited = fake.message(ALICE.id, sent.message_id)
    assert edited.text == "claimed" and not edited.inline_buttons()  # as Telegram: markup gone

    photo = fake.push_photo(ALICE, caption="broken")
    copied = await bot.copy_message(ALICE.id, ALICE.id, photo.message_id)
    assert fake.message(ALICE.id, copied.message_id).data["photo"]
    file = await bot.get_file(photo.data["photo"][-1]["file_id"])
    assert await file.download_as_bytearray() == bytearray(b"\x89PNG fake photo")
    await bot.send_document(ALICE.id, b"%PDF upload", filename="r.pdf", caption="yours")
    assert fake.sent_to(ALICE.id)[-1].method == "sendDocument"


async def test_wrong_token_is_invalid_token(fake: FakeBotAPI) -> None:
    wrong = Bot("1:wrong", base_url=fake.api_url)
    with pytest.raises(InvalidToken):
        await wrong.initialize()
    await wrong.shutdown()
