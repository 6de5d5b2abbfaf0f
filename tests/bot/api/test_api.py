"""The REST API as another channel uses it: keys and scopes, idempotent writes, cursor pages,
problem details, and a complaint's status change reaching the customer in Telegram."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import schemathesis
from sqlmodel import col, select

from crm_core.models import ApiScope, Complaint
from crm_core.services.privacy import forget_customer
from tests.bot.api.conftest import ALL_SCOPES, Api, serve_api
from tests.handlers.conftest import BOTH_DATABASES

pytestmark = BOTH_DATABASES

PROBLEM = "application/problem+json"
WHEN = "2026-11-30T10:00:00+00:00"


def _requests(customer_id: int, reference: str) -> list[tuple[str, str, ApiScope, Any]]:
    """Every operation with a request that would succeed, and the scope it needs."""
    c = f"/api/v1/customers/{customer_id}"
    return [
        ("GET", "/api/v1/customers?q=Ann", ApiScope.read, None),
        ("GET", c, ApiScope.read, None),
        ("GET", f"{c}/identities", ApiScope.read, None),
        ("GET", f"{c}/interactions", ApiScope.read, None),
        ("GET", f"{c}/purchases", ApiScope.read, None),
        ("GET", "/api/v1/complaints", ApiScope.read, None),
        ("GET", f"/api/v1/complaints/{reference}", ApiScope.read, None),
        (
            "POST", "/api/v1/identities", ApiScope.write_interactions,
            {"channel": "shop", "external_id": "u-1", "name": "Ann"},
        ),
        (
            "POST", f"{c}/identities", ApiScope.write_interactions,
            {"channel": "shop", "external_id": "acct-1"},
        ),
        (
            "POST", f"{c}/interactions", ApiScope.write_interactions,
            {"external_id": "m-1", "channel": "email", "direction": "in", "text": "Hi"},
        ),
        (
            "POST", f"{c}/complaints", ApiScope.write_complaints,
            {"category": "delivery", "description": "late"},
        ),
        (
            "POST", f"/api/v1/complaints/{reference}/status", ApiScope.write_complaints,
            {"status": "in_progress"},
        ),
        (
            "POST", f"{c}/purchases", ApiScope.write_purchases,
            {"amount_minor": 1999, "currency": "EUR", "purchased_at": WHEN},
        ),
    ]  # fmt: skip


async def _statuses(api: Api) -> list[str]:
    async with api.harness.session_factory() as session:
        rows = await session.exec(select(Complaint).order_by(col(Complaint.id)))
        return [c.status.value for c in rows.all()]


async def _file(api: Api, customer_id: int, headers: dict[str, str]) -> str:
    response = await api.client.post(
        f"/api/v1/customers/{customer_id}/complaints",
        json={"category": "product", "description": "It broke."},
        headers=headers,
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["reference"])


async def test_every_operation_refuses_a_missing_wrong_revoked_or_insufficient_key(
    api: Api,
) -> None:
    customer_id = await api.customer("Ann")
    reference = await _file(api, customer_id, await api.key())
    revoked = await api.key(*ALL_SCOPES)
    async with api.harness.session_factory() as session:
        from crm_core.services.api_keys import revoke_api_key

        await revoke_api_key(session=session, name=f"key{api._keys}")
    before = await api.counts(), await _statuses(api)
    for method, path, scope, body in _requests(customer_id, reference):
        others = await api.key(*[s for s in ALL_SCOPES if s != scope.value])
        refusals = {
            "none": ({}, 401),
            "not bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
            "wrong": ({"Authorization": "Bearer dsk_" + "x" * 43}, 401),
            "revoked": (revoked, 401),
            "without the scope": (others, 403),
        }
        for case, (headers, status) in refusals.items():
            response = await api.client.request(method, path, json=body, headers=headers)
            assert response.status == status, (method, path, case, await response.text())
            assert response.content_type == PROBLEM
            problem = await response.json()
            assert problem["status"] == status
            assert "WWW-Authenticate" in response.headers
            if status == 403:
                assert problem["scope"] == scope.value, (method, path)
                assert scope.value in problem["detail"]
    assert (await api.counts(), await _statuses(api)) == before  # no refused request wrote
    # ... and each one passes with just its own scope.
    for method, path, scope, body in _requests(customer_id, reference):
        response = await api.client.request(
            method, path, json=body, headers=await api.key(scope.value)
        )
        assert response.status in {200, 201}, (method, path, await response.text())


async def test_an_interaction_sent_twice_is_stored_once(api: Api) -> None:
    headers = await api.key(ApiScope.write_interactions, ApiScope.read)
    customer_id = await api.customer("Ann")
    path = f"/api/v1/customers/{customer_id}/interactions"
    body = {
        "external_id": "msg-42", "channel": "email", "direction": "in",
        "text": "Where is my parcel?", "details": {"subject": "Parcel"}, "occurred_at": WHEN,
    }  # fmt: skip
    first = await api.client.post(path, json=body, headers=headers)
    assert first.status == 201, await first.text()
    again = await api.client.post(path, json=body, headers=headers)
    assert again.status == 200
    assert (await again.json())["id"] == (await first.json())["id"]
    # The same id from another channel is another interaction.
    other = await api.client.post(path, json={**body, "channel": "web"}, headers=headers)
    assert other.status == 201
    # The same id for something else is refused, and the first one stays as it was.
    changed = await api.client.post(path, json={**body, "text": "Refund!"}, headers=headers)
    assert changed.status == 409 and changed.content_type == PROBLEM
    timeline = await (await api.client.get(path, headers=headers)).json()
    assert [i["text"] for i in timeline["items"]] == ["Where is my parcel?"] * 2
    assert timeline["items"][0]["details"]["subject"] == "Parcel"


async def test_a_purchase_reported_twice_is_stored_once(api: Api) -> None:
    headers = await api.key(ApiScope.write_purchases, ApiScope.read)
    customer_id = await api.customer("Ann")
    path = f"/api/v1/customers/{customer_id}/purchases"
    body = {"amount_minor": 4999, "currency": "EUR", "purchased_at": WHEN, "external_ref": "o-7"}
    assert (await api.client.post(path, json=body, headers=headers)).status == 201
    assert (await api.client.post(path, json=body, headers=headers)).status == 200
    other = await api.client.post(path, json={**body, "amount_minor": 1}, headers=headers)
    assert other.status == 409
    view = await (await api.client.get(f"/api/v1/customers/{customer_id}", headers=headers)).json()
    assert view["lifetime_value_minor"] == 4999
    assert view["purchase_count"] == 1


async def test_pages_walk_the_whole_timeline_once_newest_first(api: Api) -> None:
    headers = await api.key(ApiScope.write_interactions, ApiScope.read)
    customer_id = await api.customer("Ann")
    path = f"/api/v1/customers/{customer_id}/interactions"
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(23):
        # Three share each timestamp: the cursor must tell them apart by id.
        at = (start + timedelta(minutes=n // 3)).isoformat()
        body = {"external_id": f"m{n}", "channel": "web", "direction": "in", "text": f"#{n}",
                "occurred_at": at}  # fmt: skip
        assert (await api.client.post(path, json=body, headers=headers)).status == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        page = await (await api.client.get(path, params=params, headers=headers)).json()
        pages += 1
        seen += [item["text"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert seen == [f"#{n}" for n in reversed(range(23))]


async def test_complaints_are_listed_by_status_and_customer_in_pages(api: Api) -> None:
    headers = await api.key()
    ann, bob = await api.customer("Ann"), await api.customer("Bob")
    refs = [await _file(api, ann, headers) for _ in range(3)] + [await _file(api, bob, headers)]
    moved = await api.client.post(
        f"/api/v1/complaints/{refs[0]}/status", json={"status": "in_progress"}, headers=headers
    )
    assert moved.status == 200, await moved.text()
    listed = await api.client.get(
        "/api/v1/complaints", params={"customer_id": str(ann), "limit": "2"}, headers=headers
    )
    page = await listed.json()
    assert [c["reference"] for c in page["items"]] == [refs[2], refs[1]]
    rest = await api.client.get(
        "/api/v1/complaints",
        params={"customer_id": str(ann), "limit": "2", "cursor": page["next_cursor"]},
        headers=headers,
    )
    last = await rest.json()
    assert [c["reference"] for c in last["items"]] == [refs[0]]
    assert last["next_cursor"] is None
    opened = await api.client.get("/api/v1/complaints", params={"status": "open"}, headers=headers)
    assert {c["reference"] for c in (await opened.json())["items"]} == set(refs[1:])


async def test_invalid_requests_are_answered_with_problem_details_naming_each_field(
    api: Api,
) -> None:
    headers = await api.key()
    customer_id = await api.customer("Ann")
    before = await api.counts()
    bad = await api.client.post(
        f"/api/v1/customers/{customer_id}/purchases",
        json={"amount_minor": "lots", "currency": "euro"},
        headers=headers,
    )
    assert bad.status == 422 and bad.content_type == PROBLEM
    problem = await bad.json()
    assert problem["instance"] == f"/api/v1/customers/{customer_id}/purchases"
    pointers = {error["pointer"] for error in problem["errors"]}
    assert pointers == {"#/amount_minor", "#/currency", "#/purchased_at"}
    limit = await api.client.get("/api/v1/complaints", params={"limit": "0"}, headers=headers)
    assert limit.status == 422
    assert [e["parameter"] for e in (await limit.json())["errors"]] == ["limit"]
    cursor = await api.client.get("/api/v1/complaints", params={"cursor": "x"}, headers=headers)
    assert cursor.status == 422
    assert (await cursor.json())["errors"][0]["parameter"] == "cursor"
    not_json = await api.client.post(
        f"/api/v1/customers/{customer_id}/complaints",
        data=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status == 400 and not_json.content_type == PROBLEM
    nul = await api.client.post(
        f"/api/v1/customers/{customer_id}/complaints",
        json={"category": "product", "description": "a\u0000b"},
        headers=headers,
    )
    assert nul.status == 422
    missing = await api.client.get("/api/v1/customers/999999", headers=headers)
    assert missing.status == 404 and missing.content_type == PROBLEM
    unknown = await api.client.get("/api/v1/nothing", headers=headers)
    assert unknown.status == 404 and unknown.content_type == PROBLEM
    method = await api.client.delete("/api/v1/complaints", headers=headers)
    assert method.status == 405 and method.content_type == PROBLEM
    assert "GET" in method.headers["Allow"]
    typo = await api.client.get("/api/v1/complaints", params={"statu": "open"}, headers=headers)
    assert typo.status == 422
    assert (await typo.json())["errors"][0]["parameter"] == "statu"
    assert await api.counts() == before  # nothing half-written


async def test_a_status_change_tells_the_customer_in_telegram(api: Api) -> None:
    alice = api.harness.customer("Alice")
    await alice.ask("/start", contains="Alice")
    customer_id = await api.harness.customer_id_of(alice)
    headers = await api.key(ApiScope.write_complaints, ApiScope.read)
    reference = await _file(api, customer_id, headers)
    # The agents see it in their group, as a complaint filed in Telegram.
    await api.harness.fake.wait_for_message(AGENTS, reference)
    moved = await api.client.post(
        f"/api/v1/complaints/{reference}/status",
        json={"status": "resolved", "note": "A new one is on its way."},
        headers=headers,
    )
    assert moved.status == 200, await moved.text()
    answer = await moved.json()
    assert answer["customer_notified"] is True
    assert answer["complaint"]["status"] == "resolved"
    told = await alice.expect(reference)
    assert "A new one is on its way." in told.text
    # A move the lifecycle forbids changes nothing and tells no one.
    again = await api.client.post(
        f"/api/v1/complaints/{reference}/status", json={"status": "resolved"}, headers=headers
    )
    assert again.status == 409 and again.content_type == PROBLEM
    detail = await (await api.client.get(f"/api/v1/complaints/{reference}", headers=headers)).json()
    assert [e["to_status"] for e in detail["events"]] == ["open", "in_progress", "resolved"]
    await alice.expect_silence()


async def test_a_customer_is_found_as_agents_find_them_and_identified_by_channel(
    api: Api,
) -> None:
    headers = await api.key()
    ann = await api.customer("Ann Example", email="ann@example.com", phone="+4915112345678")
    for q in ("ann@example.com", "+4915112345678", "example", f"#{ann}"):
        found = await api.client.get("/api/v1/customers", params={"q": q}, headers=headers)
        assert [c["id"] for c in (await found.json())["items"]] == [ann], q
    body = {"channel": "shop", "external_id": "acct-9", "name": "Bea"}
    first = await api.client.post("/api/v1/identities", json=body, headers=headers)
    assert first.status == 201
    again = await api.client.post("/api/v1/identities", json=body, headers=headers)
    assert again.status == 200
    bea = (await first.json())["customer"]["id"]
    assert (await again.json())["customer"]["id"] == bea
    identities = await api.client.get(f"/api/v1/customers/{bea}/identities", headers=headers)
    assert [(i["channel"], i["external_id"]) for i in (await identities.json())["items"]] == [
        ("shop", "acct-9")
    ]
    telegram = await api.client.post(
        "/api/v1/identities", json={**body, "channel": "telegram"}, headers=headers
    )
    assert telegram.status == 422
    # The shop's id for a customer the desk knows: linked once; to someone else it is refused.
    link = {"channel": "shop", "external_id": "acct-1", "display_name": "Ann E."}
    linked = await api.client.post(
        f"/api/v1/customers/{ann}/identities", json=link, headers=headers
    )
    assert linked.status == 201
    again = await api.client.post(f"/api/v1/customers/{ann}/identities", json=link, headers=headers)
    assert again.status == 200
    taken = await api.client.post(f"/api/v1/customers/{bea}/identities", json=link, headers=headers)
    assert taken.status == 409 and f"#{ann}" in (await taken.json())["detail"]
    found = await api.client.get("/api/v1/customers", params={"q": "acct-1"}, headers=headers)
    assert [c["id"] for c in (await found.json())["items"]] == [ann]


async def test_the_openapi_document_describes_every_operation(api: Api) -> None:
    from bot.api.endpoints import ENDPOINTS

    document = await (await api.client.get("/api/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI 3.1 meta-schema
    operations = {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
    }
    assert set(operations) == {(e.method, e.path) for e in ENDPOINTS}
    for endpoint in ENDPOINTS:
        op = operations[(endpoint.method, endpoint.path)]
        assert op["security"] == [{"bearerKey": [endpoint.scope.value]}]
        assert {"401", "403"} <= set(op["responses"])
        assert PROBLEM in op["responses"]["401"]["content"]


AGENTS = -1001000000777


async def test_a_customer_without_a_chat_is_not_told_and_an_erased_one_takes_no_data(
    api: Api,
) -> None:
    headers = await api.key()
    imported = await api.customer("Ann")
    reference = await _file(api, imported, headers)
    moved = await api.client.post(
        f"/api/v1/complaints/{reference}/status", json={"status": "in_progress"}, headers=headers
    )
    assert moved.status == 200
    assert (await moved.json())["customer_notified"] is False
    async with api.harness.session_factory() as session:
        await forget_customer(session=session, customer_id=imported)
    before = await api.counts()
    writes = {
        "interactions": {"external_id": "m", "channel": "web", "direction": "in", "text": "x"},
        "complaints": {"category": "other", "description": "x"},
        "purchases": {"amount_minor": 1, "purchased_at": WHEN},
    }
    for what, body in writes.items():
        response = await api.client.post(
            f"/api/v1/customers/{imported}/{what}", json=body, headers=headers
        )
        assert response.status == 404, (what, await response.text())
        assert "erased" in (await response.json())["detail"]
    assert await api.counts() == before


async def test_a_complaint_sent_again_under_its_external_id_is_filed_once(api: Api) -> None:
    headers = await api.key()
    customer_id = await api.customer("Ann")
    path = f"/api/v1/customers/{customer_id}/complaints"
    body = {"category": "billing", "description": "Charged twice.", "external_id": "form-7"}
    # Sent several times at once (a client retrying on a timeout): one complaint.
    answers = await asyncio.gather(
        *(api.client.post(path, json=body, headers=headers) for _ in range(4))
    )
    assert sorted(a.status for a in answers) == [200, 200, 200, 201]
    references = {(await a.json())["reference"] for a in answers}
    assert len(references) == 1
    assert (await api.counts())["Complaint"] == 1
    changed = await api.client.post(
        path, json={**body, "description": "Something else."}, headers=headers
    )
    assert changed.status == 409 and changed.content_type == PROBLEM
    # Without an external id every request files a complaint of its own.
    del body["external_id"]
    for _ in range(2):
        assert (await api.client.post(path, json=body, headers=headers)).status == 201
    assert (await api.counts())["Complaint"] == 3


async def test_a_key_over_its_requests_a_minute_is_told_when_to_retry_and_others_go_on(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    runner, url = await serve_api(api.harness, api_requests_per_minute=2)
    try:
        async with aiohttp.ClientSession(base_url=url) as client:
            busy, other = await api.key("read"), await api.key("read")
            caplog.set_level(logging.INFO, logger="bot.api.access")
            answers = [
                await client.get("/api/v1/customers", params={"q": "+4915112345678"}, headers=busy)
                for _ in range(3)
            ]
            assert [a.status for a in answers] == [200, 200, 429]
            refused = await answers[2].json()
            assert (
                refused["type"].endswith("rate-limited")
                and "2 requests a minute" in (refused["detail"])
            )
            assert 1 <= int(answers[2].headers["Retry-After"]) <= 30
            elsewhere = await client.get("/api/v1/customers", params={"q": "Ann"}, headers=other)
            assert elsewhere.status == 200
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.api.access"]
    assert len(lines) == 4 and lines[2].startswith("GET /api/v1/customers 429 ")
    assert "key=key1" in lines[0] and "key=key2" in lines[3]
    assert all("4915112345678" not in line for line in lines)  # the query is not logged
