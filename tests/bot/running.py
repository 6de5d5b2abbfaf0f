"""Start the real ``deskbot run`` in a subprocess against a fake Bot API (for runtime tests)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fakes.bot_api import FakeBotAPI

REPO = Path(__file__).resolve().parents[2]


async def start_deskbot(
    fake: FakeBotAPI, workdir: Path, *args: str, **settings: str
) -> asyncio.subprocess.Process:
    """``python -m bot run *args`` in ``workdir`` with a clean ``DESKBOT_*`` environment:
    the fake's token and URL, a SQLite database in ``workdir``, plus ``settings``
    (``database_url="..."`` becomes ``DESKBOT_DATABASE_URL``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKBOT_")}
    env.update(
        DESKBOT_TELEGRAM_TOKEN=fake.token,
        DESKBOT_TELEGRAM_API_URL=fake.api_url,
        DESKBOT_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'run.db'}",
        PYTHONPATH=str(REPO),
    )
    env.update({f"DESKBOT_{name.upper()}": value for name, value in settings.items()})
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", *args,
        cwd=workdir, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
