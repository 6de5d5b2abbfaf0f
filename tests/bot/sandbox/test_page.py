"""The sandbox's page API and the emulator's Telegram-like refusals, without a browser."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.cli import main
from bot.emulator import FakeBotAPI
from bot.sandbox.render import message_view, segments
from bot.sandbox.run import Sandbox
from tests.bot.running import REPO

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


async def test_a_customer_created_on_the_page_talks_to_the_real_bot(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    created = await (await http.post("/api/customers", json={"first_name": "Bea"})).json()
    bea = created["customer"]["id"]
    sent = await http.post("/api/send", json={"user_id": bea, "chat_id": bea, "text": "/start"})
    assert sent.status == 200
    greeting = await sandbox.emulator.wait_for_message(bea, "Bea")
    shown = await (await http.get("/api/messages", params={"chat": str(bea)})).json()
    bot_lines = [m for m in shown["messages"] if m["sender"]["is_bot"]]
    assert bot_lines[-1]["id"] == greeting.message_id
    keys = [b for row in shown["keyboard"] for b in row]
    assert any(b["request_contact"] for b in keys), "the menu's contact-share button is shown"
    world = await (await http.get("/api/world")).json()
    assert [c["name"] for c in world["customers"]] == ["Bea"]
    assert world["console_login"].startswith("/console/auth/telegram?id=")


async def test_pressing_a_button_returns_the_bots_answer(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bea = sandbox.add_customer("Bea")
    await http.post("/api/send", json={"user_id": bea.id, "text": "i forgot my password"})
    answer = await sandbox.emulator.wait_for_message(bea.id, "password")
    data = answer.button("elpful")["callback_data"]
    pressed = await http.post(
        "/api/press", json={"user_id": bea.id, "message_id": answer.message_id, "data": data}
    )
    assert (await pressed.json())["ok"] is True
    gone = await http.post(
        "/api/press", json={"user_id": bea.id, "message_id": answer.message_id, "data": "forged"}
    )
    assert gone.status == 400


async def test_the_page_refuses_what_telegram_would(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bea = sandbox.add_customer("Bea")
    too_long = await http.post("/api/send", json={"user_id": bea.id, "text": "x" * 4097})
    assert too_long.status == 400 and "4096" in (await too_long.json())["error"]
    stranger = await http.post(
        "/api/send", json={"user_id": bea.id, "chat_id": sandbox.group.id, "text": "hi"}
    )
    assert stranger.status == 403 and "not in the agents' group" in (await stranger.json())["error"]
    nobody = await http.post("/api/send", json={"user_id": 42, "text": "hi"})
    assert nobody.status == 400
    garbage = await http.post("/api/send", data=b"not json")
    assert garbage.status == 400


async def test_uploads_become_photos_or_documents_and_files_never_run_on_the_page(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bea = sandbox.add_customer("Bea")
    for name, content in (("cat.png", PNG), ("evil.html", b"<script>alert(1)</script>")):
        form = aiohttp.FormData()
        form.add_field("user_id", str(bea.id))
        form.add_field("chat_id", str(bea.id))
        form.add_field("file", content, filename=name)
        assert (await http.post("/api/upload", data=form)).status == 200
    await sandbox.emulator.wait_processed(10)
    shown = await (await http.get("/api/messages", params={"chat": str(bea.id)})).json()
    kinds = {m["attachment"]["kind"]: m["attachment"] for m in shown["messages"] if m["attachment"]}
    photo = await http.get(f"/api/files/{kinds['photo']['file_id']}")
    assert photo.content_type == "image/png" and await photo.read() == PNG
    document = await http.get(
        f"/api/files/{kinds['document']['file_id']}", params={"name": "e.html"}
    )
    assert document.content_type == "application/octet-stream"
    assert document.headers["Content-Disposition"].startswith("attachment")
    page = await http.get("/")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


async def test_the_event_stream_announces_changes(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bea = sandbox.add_customer("Bea")
    async with http.get("/api/events") as stream:
        first = await asyncio.wait_for(stream.content.readline(), 5)
        assert first == b"event: change\n"
        await stream.content.readline()  # data
        await stream.content.readline()  # blank
        sandbox.emulator.push_message(bea, "/help")
        assert await asyncio.wait_for(stream.content.readline(), 5) == b"event: change\n"


def test_bot_html_becomes_segments_and_unsafe_links_lose_their_href() -> None:
    html = 'Hi <b>Bea</b> &amp; <a href="javascript:alert(1)">x</a> <a href="https://e.org">y</a>'
    assert segments("Hi Bea & x y", html) == [
        {"text": "Hi "},
        {"text": "Bea", "marks": ["b"]},
        {"text": " & "},
        {"text": "x", "marks": ["a"]},
        {"text": " "},
        {"text": "y", "marks": ["a"], "href": "https://e.org"},
    ]
    # A customer's text is never read as HTML, even when it looks like it.
    assert segments("<b>hi</b>", None) == [{"text": "<b>hi</b>"}]


async def test_the_emulator_applies_telegrams_group_limit_when_asked() -> None:
    async with FakeBotAPI() as emulator, aiohttp.ClientSession() as client:
        emulator.add_group(-100777, "Agents")
        emulator.group_messages_per_minute = 3
        url = f"{emulator.api_url}{emulator.token}/sendMessage"
        codes = []
        for n in range(4):
            response = await client.post(url, json={"chat_id": -100777, "text": f"m{n}"})
            codes.append(response.status)
        body = await response.json()
    assert codes == [200, 200, 200, 429]
    assert body["parameters"]["retry_after"] >= 1
    assert message_view(emulator, emulator.sent[0])["segments"] == [{"text": "m0"}]


def test_sandbox_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sandbox", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--data DIR" in out and "--port N" in out and "emulator" in out


def test_a_port_in_use_is_a_clear_error_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["sandbox", "--port", str(port), "--data", str(tmp_path / "d")])
    assert code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
    assert not (tmp_path / "d" / "deskbot.db").exists(), "nothing was started"


async def test_deskbot_sandbox_prints_its_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKBOT_")}
    env["PYTHONPATH"] = str(REPO)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "sandbox", "--port", "0", "--data", str(tmp_path / "d"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("deskbot sandbox is running: open http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        async with aiohttp.ClientSession() as client, client.get(url) as page:
            assert page.status == 200 and "deskbot sandbox" in await page.text()
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    assert (tmp_path / "d" / "deskbot.db").exists()


async def test_the_contact_button_shares_the_customers_own_number(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bea = sandbox.add_customer("Bea")
    shared = await http.post("/api/contact", json={"user_id": bea.id})
    assert shared.status == 200
    linked = await sandbox.emulator.wait_for_message(bea.id, "is now linked")
    assert "+49 " in linked.text  # masked by the bot, as it should be


async def test_what_telegram_refused_the_bot_is_listed_on_the_page(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bea = sandbox.add_customer("Bea")
    sandbox.emulator.block(bea.id)
    sandbox.emulator.push_message(bea, "/start")
    await sandbox.emulator.wait_processed()
    world = await (await http.get("/api/world")).json()
    assert {"method": "sendMessage", "error": "Forbidden: bot was blocked by the user"} in world[
        "api_errors"
    ]
