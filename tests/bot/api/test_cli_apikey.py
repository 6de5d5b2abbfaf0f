"""`deskbot apikey create|list|revoke`: the token is printed once and works; only its hash is
kept; a revoked key stops working; bad input is one clear line."""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import select

from bot.cli import main
from bot.settings import Settings
from crm_core.db import create_engine, create_session_factory
from crm_core.models import ApiKey
from crm_core.services.api_keys import authenticate
from tests.bot.running import start_deskbot
from tests.bot.test_cli_db_import import empty_schema
from tests.fakes.bot_api import FakeBotAPI


def _authenticate(url: str, token: str) -> ApiKey | None:
    async def go() -> ApiKey | None:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                return await authenticate(session=session, token=token)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _stored(url: str) -> list[ApiKey]:
    async def go() -> list[ApiKey]:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                return list((await session.exec(select(ApiKey))).all())
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_create_list_revoke(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/keys.db"
    else:
        url = str(request.getfixturevalue("postgres_url"))
        empty_schema(url)
        assert main(["db", "upgrade", "--database-url", url]) == 0
    db = ["--database-url", url]
    assert main(["apikey", "create", "--name", "Shop", "--scope", "read", "--scope",
                 "write:complaints", *db]) == 0  # fmt: skip
    out = capsys.readouterr().out
    tokens = re.findall(r"^dsk_[A-Za-z0-9_-]{43}$", out, re.M)
    assert len(tokens) == 1, out
    token = tokens[0]
    (stored,) = _stored(url)
    assert stored.name == "shop" and stored.scopes == ["read", "write:complaints"]
    assert stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    key = _authenticate(url, token)
    assert key is not None and key.last_used_at is not None

    assert main(["apikey", "list", *db]) == 0
    listing = capsys.readouterr().out
    assert "shop" in listing and token[:12] in listing and token not in listing
    assert "live" in listing

    # One live key per name.
    assert main(["apikey", "create", "--name", "shop", "--scope", "read", *db]) == 1
    assert "revoke it first" in capsys.readouterr().err

    assert main(["apikey", "revoke", "shop", *db]) == 0
    assert "revoked" in capsys.readouterr().out
    assert _authenticate(url, token) is None
    assert main(["apikey", "revoke", "shop", *db]) == 1
    # Its name is free again, for a new token.
    assert main(["apikey", "create", "--name", "shop", "--scope", "read", *db]) == 0
    assert len(_stored(url)) == 2


def test_an_unknown_scope_is_refused_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/keys.db"
    code = main(["apikey", "create", "--name", "shop", "--scope", "admin", "--database-url", url])
    assert code == 1
    err = capsys.readouterr().err
    assert "admin" in err and "write:purchases" in err
    assert _stored(url) == []


def test_the_http_port_keeps_its_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKBOT_METRICS_PORT", "9100")
    assert Settings(_env_file=None).polling_http_port == 9100  # type: ignore[call-arg]
    monkeypatch.setenv("DESKBOT_HTTP_PORT", "9200")
    assert Settings(_env_file=None).polling_http_port == 9200  # type: ignore[call-arg]


async def test_a_polling_deployment_serves_the_api_on_the_http_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'run.db'}"
    created = await asyncio.to_thread(
        main, ["apikey", "create", "--name", "web", "--scope", "read", "--database-url", url]
    )
    assert created == 0
    token = re.findall(r"^dsk_\S+$", capsys.readouterr().out, re.M)[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    async with FakeBotAPI() as fake:
        process = await start_deskbot(
            fake, tmp_path, database_url=url, http_port=str(port), webhook_listen="127.0.0.1"
        )
        try:
            await fake.wait_for(lambda: fake.calls("getUpdates"), timeout=30)
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/api/openapi.json")).status == 200
                refused = await http.get("/api/v1/customers", params={"q": "ann"})
                assert refused.status == 401
                found = await http.get(
                    "/api/v1/customers",
                    params={"q": "ann"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert found.status == 200 and (await found.json())["items"] == []
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert token not in stderr.decode()
