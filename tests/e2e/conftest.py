"""End-to-end set-up: `bot.py` as a real process, a fake OneBot v11 implementation, an image server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot_process import ACCESS_TOKEN, start_bot, stop_bot
from nailong_testkit import FakeOneBot, ImageServer, free_port


@pytest.fixture(scope="module")
def image_server() -> Iterator[ImageServer]:
    with ImageServer(slow_seconds=3.0) as server:
        yield server


@pytest.fixture(scope="module")
async def onebot(tmp_path_factory) -> AsyncIterator[FakeOneBot]:
    """A running bot with a fake OneBot implementation connected to it (``.process`` is the bot)."""
    workdir: Path = tmp_path_factory.mktemp("bot")
    port = free_port()
    process = start_bot(workdir, port)
    client = FakeOneBot(port, self_id=42, access_token=ACCESS_TOKEN)
    try:
        await client.connect(timeout=60)
        client.process = process  # type: ignore[attr-defined]
        yield client
    except Exception:
        print((workdir / "bot.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        await client.close()
        stop_bot(process)
