"""The supervisors' console: nothing without a session, Login Widget data checked as Telegram
documents it, CSRF on forms, customers' HTML escaped everywhere, and status changes that reach
the customer like an agent's /status."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import aiohttp
import pytest

from bot.console.auth import LoginRefused, sign_login_widget, verify_login_widget
from bot.sandbox.run import Sandbox
from crm_core.models import CampaignStatus, ComplaintStatus, Direction, InteractionKind
from crm_core.services.campaigns import (
    create_campaign,
    get_campaign,
    parse_criteria_text,
    start_sending,
)
from crm_core.services.complaints import file_complaint, get_complaint
from crm_core.services.customers import identify_customer
from crm_core.services.interactions import log_interaction
from tests.bot.sandbox.conftest import CONSOLE_PASSWORD

PAGES = [
    "/console",
    "/console/complaints",
    "/console/complaints/C-000001",
    "/console/customers",
    "/console/customers/1",
    "/console/gaps",
    "/console/campaigns",
]
EVIL_NAME = "<script>alert('name')</script>"
EVIL_TEXT = '<img src=x onerror="alert(1)"> & <b>bold</b>'


def _login_query(sandbox: Sandbox, **override: object) -> dict[str, str]:
    user = {"id": sandbox.supervisor.id, "first_name": "Sue", "username": "sue"}
    return sign_login_widget(sandbox.emulator.token, user, **override)  # type: ignore[arg-type]


async def _sign_in(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    response = await http.get(
        "/console/auth/telegram", params=_login_query(sandbox), allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/console"


async def _csrf(http: aiohttp.ClientSession, path: str = "/console") -> str:
    page = await (await http.get(path)).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


# --- the Login Widget check itself ------------------------------------------------------------


def test_login_widget_hash_is_telegrams() -> None:
    """Computed here the way https://core.telegram.org/widgets/login#checking-authorization
    spells it out, independently of the code under test."""
    token = "123456:ABC-secret"
    fields = {"id": "42", "first_name": "Sue", "username": "sue", "auth_date": "1700000000"}
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    expected = hmac.new(
        hashlib.sha256(token.encode()).digest(), check.encode(), hashlib.sha256
    ).hexdigest()
    signed = sign_login_widget(token, {"id": 42, "first_name": "Sue", "username": "sue"},
                               auth_date=1700000000)  # fmt: skip
    assert signed["hash"] == expected
    assert verify_login_widget(token, signed, now=1700000100)["id"] == "42"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"first_name": "Mallory"}, "not signed"),  # a field changed after signing
        ({"hash": "0" * 64}, "not signed"),
        ({"id": "666"}, "not signed"),
        ({"hash": ""}, "incomplete"),
    ],
)
def test_forged_login_widget_data_is_refused(change: dict[str, str], reason: str) -> None:
    signed = sign_login_widget("1:tok", {"id": 42, "first_name": "Sue"})
    with pytest.raises(LoginRefused, match=reason):
        verify_login_widget("1:tok", {**signed, **change})


def test_login_widget_data_signed_with_another_token_is_refused() -> None:
    signed = sign_login_widget("1:other-bot", {"id": 42, "first_name": "Sue"})
    with pytest.raises(LoginRefused, match="not signed"):
        verify_login_widget("1:tok", signed)


def test_expired_or_future_login_widget_data_is_refused() -> None:
    now = time.time()
    old = sign_login_widget("1:tok", {"id": 42}, auth_date=int(now - 2 * 3600))
    with pytest.raises(LoginRefused, match="expired"):
        verify_login_widget("1:tok", old, now=now)
    future = sign_login_widget("1:tok", {"id": 42}, auth_date=int(now + 3600))
    with pytest.raises(LoginRefused, match="expired"):
        verify_login_widget("1:tok", future, now=now)


# --- through HTTP ------------------------------------------------------------------------------


async def test_no_page_and_no_json_without_a_session(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    for path in PAGES:
        response = await http.get(path, allow_redirects=False)
        assert response.status == 302, path
        assert response.headers["Location"] == "/console/login"
    api = await http.get("/console/api/stats")
    assert api.status == 401
    assert (await api.json())["ok"] is False
    post = await http.post(
        "/console/complaints/C-000001/status", data={"status": "closed"}, allow_redirects=False
    )
    assert post.status == 403
    login = await http.get("/console/login")
    assert login.status == 200
    assert "Console password" in await login.text()


async def test_forged_expired_or_foreign_sign_in_gets_no_session(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    forged = {**_login_query(sandbox), "first_name": "Mallory"}
    expired = _login_query(sandbox, auth_date=int(time.time()) - 2 * 3600)
    stranger = sign_login_widget(sandbox.emulator.token, {"id": 5555, "first_name": "Eve"})
    for query, message in (
        (forged, "not signed by this bot"),
        (expired, "expired"),
        (stranger, "supervisors may sign in"),
    ):
        response = await http.get("/console/auth/telegram", params=query, allow_redirects=False)
        assert response.status == 403
        assert message in await response.text()
        assert (await http.get("/console", allow_redirects=False)).status == 302


async def test_password_sign_in_needs_the_form_token_and_the_password(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    token = await _csrf(http, "/console/login")
    wrong = await http.post("/console/login", data={"csrf": token, "password": "guess"})
    assert wrong.status == 403 and "Wrong password" in await wrong.text()
    no_token = await http.post("/console/login", data={"password": CONSOLE_PASSWORD})
    assert no_token.status == 403 and "form expired" in await no_token.text()
    assert (await http.get("/console", allow_redirects=False)).status == 302
    right = await http.post(
        "/console/login", data={"csrf": token, "password": CONSOLE_PASSWORD}, allow_redirects=False
    )
    assert right.status == 303
    cookie = right.cookies["deskbot_console"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await http.get("/console")).status == 200


async def _evil_customer_with_complaint(sandbox: Sandbox) -> tuple[int, str]:
    async with sandbox.app.deps.session_factory() as session:
        customer = await identify_customer(
            session=session, channel="telegram", external_id="2999", name=EVIL_NAME
        )
        assert customer.id is not None
        complaint = await file_complaint(
            session=session, customer_id=customer.id, category="delivery", description=EVIL_TEXT
        )
        for direction, kind, text in (
            (Direction.inbound, InteractionKind.message, EVIL_TEXT),
            (Direction.outbound, InteractionKind.kb_none, "Sorry, I have no answer to that yet."),
        ):
            await log_interaction(
                session=session,
                customer_id=customer.id,
                channel="telegram",
                direction=direction,
                kind=kind,
                text=text,
            )
        return customer.id, complaint.reference


async def test_customer_html_is_escaped_on_every_page(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    customer_id, reference = await _evil_customer_with_complaint(sandbox)
    await _sign_in(http, sandbox)
    for path in (
        "/console",
        "/console/complaints",
        "/console/complaints?q=bold",
        f"/console/complaints/{reference}",
        "/console/customers",
        f"/console/customers/{customer_id}",
        "/console/gaps",
        "/console/campaigns",
    ):
        response = await http.get(path)
        assert response.status == 200, path
        body = await response.text()
        assert "<script>alert" not in body and "<img src=x" not in body, path
        assert "<b>bold</b>" not in body, path
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    detail = await (await http.get(f"/console/complaints/{reference}")).text()
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in detail
    gaps = await (await http.get("/console/gaps")).text()
    assert "&lt;b&gt;bold&lt;/b&gt;" in gaps and "no answer to that" not in gaps
    who = await (await http.get(f"/console/customers/{customer_id}")).text()
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in who


async def test_a_status_change_needs_the_csrf_token_and_tells_the_customer(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    customer = sandbox.add_customer("Alice")
    sandbox.emulator.push_message(customer, "/start")
    await sandbox.emulator.wait_for_message(customer.id, "Alice")
    async with sandbox.app.deps.session_factory() as session:
        found = await identify_customer(
            session=session, channel="telegram", external_id=str(customer.id)
        )
        assert found.id is not None
        complaint = await file_complaint(
            session=session, customer_id=found.id, category="billing", description="Charged twice"
        )
    await _sign_in(http, sandbox)
    path = f"/console/complaints/{complaint.reference}/status"
    forged = await http.post(path, data={"status": "in_progress", "csrf": "nope"})
    assert forged.status == 403
    token = await _csrf(http, f"/console/complaints/{complaint.reference}")
    since = len(sandbox.emulator.messages)
    done = await http.post(
        path, data={"status": "in_progress", "note": "We are on it", "csrf": token}
    )
    assert done.status == 200
    assert "is now in progress. The customer was told." in await done.text()
    told = await sandbox.emulator.wait_for_message(customer.id, "We are on it", since=since)
    assert complaint.reference in told.text
    async with sandbox.app.deps.session_factory() as session:
        after = await get_complaint(session=session, reference=complaint.reference)
    assert after.status == ComplaintStatus.in_progress
    refused = await http.post(path, data={"status": "in_progress", "csrf": token})
    assert "already" in await refused.text()


async def test_stats_json_with_a_session(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    _, reference = await _evil_customer_with_complaint(sandbox)
    await _sign_in(http, sandbox)
    stats = await (await http.get("/console/api/stats?days=7")).json()
    assert stats["total"] == 1 and stats["by_category"]["delivery"] == 1
    assert stats["open_complaints"] == [reference]


async def test_questions_the_bot_could_not_answer_are_the_gaps(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bea = sandbox.add_customer("Bea")
    for _ in range(2):
        since = len(sandbox.emulator.messages)
        sandbox.emulator.push_message(bea, "What is the meaning of life?")
        await sandbox.emulator.wait_for_message(bea.id, "no answer", since=since)
    await sandbox.emulator.wait_processed()
    await _sign_in(http, sandbox)
    page = await (await http.get("/console/gaps")).text()
    row = re.search(r"<tr><td class=\"text\">(.*?)</td><td>(\d+)</td>", page)
    assert row is not None, page
    assert row.groups() == ("What is the meaning of life?", "2")


async def test_the_campaigns_page_shows_each_campaigns_report(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with sandbox.app.deps.session_factory() as session:
        for n in range(4):
            await identify_customer(
                session=session, channel="telegram", external_id=f"31{n}", name=f"C{n}"
            )
        campaign = await create_campaign(
            session=session,
            name=EVIL_NAME,
            criteria=parse_criteria_text("all"),
            template="Hi",
            buttons=[],
            created_by=None,
            holdout_share=0.5,
        )
        assert campaign.id is not None
        sending = await start_sending(session=session, campaign_id=campaign.id)
    await _sign_in(http, sandbox)
    page = await (await http.get("/console/campaigns")).text()
    assert (
        "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in page and "<script>alert" not in page
    )
    treatment, _ = sending
    assert f"0 / {treatment} ({treatment} to go)" in page and "sending" in page


async def test_a_campaign_is_written_previewed_and_sent_from_the_console(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with sandbox.app.deps.session_factory() as session:
        for n in range(4):
            await identify_customer(
                session=session, channel="telegram", external_id=f"41{n}", name=f"Ann{n} K"
            )
    await _sign_in(http, sandbox)
    token = await _csrf(http, "/console/campaigns")
    form = {
        "csrf": token,
        "name": "Spring",
        "criteria": "all",
        "template": "Hi {{ first_name }}, {{ nonsense.field }}",
        "buttons": "stop",
        "holdout": "25",
        "days": "7",
    }
    refused = await http.post("/console/campaigns", data=form, allow_redirects=False)
    page = await refused.text()
    assert refused.status == 400 and "cannot be filled in" in page  # the reason, and
    assert "Spring" in page  # what was typed is kept
    bad_buttons = await http.post(
        "/console/campaigns", data={**form, "template": "Hi", "buttons": "ring"}
    )
    assert bad_buttons.status == 400 and "Unknown button" in await bad_buttons.text()

    saved = await http.post(
        "/console/campaigns",
        data={**form, "template": "Hi {{ first_name }}, spring is here"},
        allow_redirects=False,
    )
    assert saved.status == 303
    location = saved.headers["Location"]
    draft = await (await http.get(location)).text()
    assert "is saved as a draft" in draft and "It reaches <b>4</b> customers" in draft
    assert re.search(r"Hi Ann\d, spring is here", draft)  # the message for real recipients
    assert "(draft)" in draft

    forged = await http.post(f"{location}/send", data={"csrf": "nope"})
    assert forged.status == 403
    sent = await (await http.post(f"{location}/send", data={"csrf": token})).text()
    assert "is being sent to 3 customers; 1 of the segment are held out" in sent
    again = await (await http.post(f"{location}/send", data={"csrf": token})).text()
    assert "not a draft" in again  # a second press sends nobody twice
    async with sandbox.app.deps.session_factory() as session:
        campaign = await get_campaign(session=session, campaign_id=int(location.split("/")[-1]))
    assert (campaign.status, campaign.holdout_share, campaign.attribution_days) == (
        CampaignStatus.sending,
        0.25,
        7,
    )
    assert campaign.buttons == [{"kind": "stop"}]
