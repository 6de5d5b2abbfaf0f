"""The sandbox in headless Chromium, as a new user tries it: a customer asks and gets an
answer, files a complaint, asks for a person; the agent claims and replies in the group view;
the customer sees the reply; the supervisor finds the complaint in the console. A screenshot of
each step is kept (see ``browser.artifacts_dir``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.run import Sandbox
from tests.bot.sandbox.browser import artifacts_dir, chromium, require_chromium

STEP_TIMEOUT_MS = 10_000
# A real 1x1 PNG, so that the browser draws it.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    require_chromium()  # before the sandbox starts: a skip costs nothing


def pane(page: Any, role: str) -> Any:
    return page.locator(f'.chat[data-role="{role}"]')


async def say(page: Any, role: str, text: str) -> None:
    box = pane(page, role).locator(".composer textarea")
    await box.fill(text)
    await box.press("Enter")


async def bot_says(page: Any, role: str, text: str) -> Any:
    """The latest bot message in ``role``'s pane containing ``text``, once it shows."""
    from playwright.async_api import expect

    message = pane(page, role).locator(".msg.bot", has_text=text).last
    await expect(message).to_be_visible(timeout=STEP_TIMEOUT_MS)
    return message


async def test_a_new_user_tries_the_whole_desk(sandbox: Sandbox, tmp_path: Path) -> None:
    from playwright.async_api import expect

    shots = artifacts_dir("sandbox")
    async with chromium() as context:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(sandbox.url)
        await expect(page.locator("#live.on")).to_be_visible(timeout=STEP_TIMEOUT_MS)

        # The customer asks and gets an answer, with the feedback buttons.
        await say(page, "customer", "/start")
        await bot_says(page, "customer", "Alice")
        await say(page, "customer", "i forgot my password")
        answer = await bot_says(page, "customer", "password")
        await expect(answer.locator(".inline-button", has_text="elpful").first).to_be_visible()
        await page.screenshot(path=shots / "01-customer-gets-an-answer.png")

        # Files a complaint through the buttons.
        await say(page, "customer", "/complaint")
        question = await bot_says(page, "customer", "What is it about?")
        await question.locator(".inline-button", has_text="Delivery").click()
        await bot_says(page, "customer", "describe what happened")
        picture = tmp_path / "crushed-parcel.png"
        picture.write_bytes(PNG)
        await pane(page, "customer").locator("input[type=file]").set_input_files(picture)
        await bot_says(page, "customer", "File attached (1 so far)")
        shown = pane(page, "customer").locator(".msg.out img.photo")
        await expect(shown).to_be_visible()
        assert await shown.evaluate("img => img.naturalWidth") == 1, "the picture itself is shown"
        await say(page, "customer", "The parcel arrived <b>crushed</b> & wet")
        summary = await bot_says(page, "customer", "Submit it?")
        await summary.locator(".inline-button", has_text="Submit").click()
        filed = await bot_says(page, "customer", "registered as")
        reference = re.search(r"C-\d+", await filed.inner_text())
        assert reference, await filed.inner_text()
        # What the customer typed is text, never markup, in the page.
        mine = pane(page, "customer").locator(".msg.out", has_text="<b>crushed</b>")
        await expect(mine).to_be_visible()
        await page.screenshot(path=shots / "02-complaint-filed.png")

        # Asks for a person.
        await say(page, "customer", "/human")
        await bot_says(page, "customer", "They will reply here")
        await page.screenshot(path=shots / "03-customer-asks-for-a-person.png")

        # The agent opens the new topic, claims, replies.
        group = page.locator("#group-pane")
        topic = group.locator(".topic", has_text="Alice").first
        await expect(topic).to_be_visible(timeout=STEP_TIMEOUT_MS)
        await topic.click()
        card = (
            pane(page, "group")
            .locator(".msg.bot", has=page.locator(".inline-button", has_text="Claim"))
            .last
        )
        await expect(card).to_be_visible(timeout=STEP_TIMEOUT_MS)
        await card.locator(".inline-button", has_text="Claim").click()
        await bot_says(page, "group", "took this conversation")
        await say(page, "group", "Hello Alice, Sam here. Let me look at your parcel.")
        sent = pane(page, "group").locator(".msg.out", has_text="Let me look at your parcel")
        await expect(sent).to_be_visible(timeout=STEP_TIMEOUT_MS)
        await page.screenshot(path=shots / "04-agent-claims-and-replies.png")

        # The customer sees the reply, signed.
        await bot_says(page, "customer", "Let me look at your parcel")
        await page.screenshot(path=shots / "05-customer-sees-the-reply.png")

        # The supervisor signs in to the console with the page's Login Widget link.
        login = await page.locator("#console-link").get_attribute("href")
        console = await context.new_page()
        await console.goto(sandbox.url.rstrip("/") + login)
        await expect(console.locator("h2", has_text="SLA")).to_be_visible()
        await expect(console.locator("a", has_text=reference.group(0)).first).to_be_visible()
        await console.goto(sandbox.url + "console/complaints?q=crushed")
        row = console.locator("tr", has_text=reference.group(0))
        await expect(row).to_be_visible()
        await expect(row).to_contain_text("<b>crushed</b>")  # escaped, shown as typed
        await console.screenshot(
            path=shots / "06-supervisor-sees-the-complaint.png", full_page=True
        )
        assert not errors, errors
    assert sorted(p.name for p in shots.iterdir()) == [
        "01-customer-gets-an-answer.png",
        "02-complaint-filed.png",
        "03-customer-asks-for-a-person.png",
        "04-agent-claims-and-replies.png",
        "05-customer-sees-the-reply.png",
        "06-supervisor-sees-the-complaint.png",
    ]
