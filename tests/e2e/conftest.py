"""End-to-end set-up: `bot.py` as a real process, a fake OneBot v11 implementation, an image server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bot_process import running_bot
from nailong_testkit import FakeOneBot, ImageServer


@pytest.fixture(scope="module")
def image_server() -> Iterator[ImageServer]:
    with ImageServer(slow_seconds=3.0) as server:
        yield server


@pytest.fixture(scope="module")
async def onebot(tmp_path_factory) -> AsyncIterator[FakeOneBot]:
    """A running bot with a fake OneBot implementation connected to it (``.process`` is the bot)."""
    async with running_bot(tmp_path_factory.mktemp("bot")) as client:
        yield client
