"""Schemathesis against the served OpenAPI document: for every operation, requests generated
from the document's own schemas (a fixed number per operation, a fixed seed) are sent to the
running API with a key holding every scope, and each answer must be no server error, have a
documented status, content type, headers and body schema, and refuse a request without the
key. The bot and its API run in a thread of their own (schemathesis calls are synchronous)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from crm_core.db import create_engine, create_session_factory
from crm_core.models import Customer
from crm_core.services.api_keys import create_api_key
from crm_core.services.complaints import file_complaint
from knowledge_base.holder import KnowledgeBaseHolder
from tests.bot.api.conftest import ALL_SCOPES, serve_api
from tests.conftest import _reset_schema
from tests.fakes.bot_api import FakeBotAPI
from tests.handlers.conftest import Harness, make_settings

EXAMPLES_PER_OPERATION = 20
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Valid requests (by the document) and invalid ones, which must be refused with a 4xx.
CHECKS = [
    checks.negative_data_rejection,
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]


@contextmanager
def running_api(database_url: str, kb: KnowledgeBaseHolder) -> Iterator[tuple[str, str]]:
    """(base URL, token) of the API served by a bot in its own thread and event loop."""
    ready: dict[str, str] = {}
    started = threading.Event()
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []
    failure: list[BaseException] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        stop_box.append(stop)
        engine = create_engine(database_url)
        await _reset_schema(engine)
        factory = create_session_factory(engine)
        async with FakeBotAPI() as fake:
            harness = Harness(
                fake=fake,
                settings=make_settings(fake, database_url),
                session_factory=factory,
                kb_holder=kb,
            )
            await harness.start()
            runner, url = await serve_api(harness)
            try:
                async with factory() as session:
                    created = await create_api_key(session=session, name="fuzz", scopes=ALL_SCOPES)
                    # Something to find: customers 1-3, complaint C-000001.
                    session.add_all(Customer(name=name) for name in ("Ann", "Bob", "Cy"))
                    await session.commit()
                    await file_complaint(
                        session=session, customer_id=1, category="product", description="x"
                    )
                ready.update(url=url, token=created.token)
                started.set()
                await stop.wait()
            finally:
                await runner.cleanup()
                await harness.stop()
                await engine.dispose()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as error:
            failure.append(error)
            started.set()

    thread = threading.Thread(target=thread_main, name="api-under-test", daemon=True)
    thread.start()
    assert started.wait(60), "the API did not start"
    if failure:
        raise failure[0]
    try:
        yield ready["url"], ready["token"]
    finally:
        loop_box[0].call_soon_threadsafe(stop_box[0].set)
        thread.join(30)


def test_the_api_keeps_its_openapi_document(
    database_url: str, kb_holder: KnowledgeBaseHolder
) -> None:
    """On both databases: PostgreSQL refuses what SQLite stores (NUL characters, integers
    past 32 bits), so the fuzzing is worth most there."""
    with running_api(database_url, kb_holder) as (url, token):
        schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 13
        for operation in operations:
            _fuzz(operation, url, {"Authorization": f"Bearer {token}"})


def _fuzz(operation: schemathesis.APIOperation, url: str, headers: dict[str, str]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # the same cases on every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(operation.as_strategy(POSITIVE), operation.as_strategy(NEGATIVE)))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)

    run()
