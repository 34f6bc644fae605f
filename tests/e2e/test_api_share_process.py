"""`bot.py` with its HTTP API switched on, through real HTTP and the real WebSocket: what API callers
can do to the guard. Stalled URLs and a flood of uploads do not delay a group's nailong; the URL fetch
refuses loopback; a busy API answers 429; an upload over the cap is answered 413 before it ends;
malformed input gets a 4xx."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from bot_process import running_bot
from nailong_testkit import (
    YELLOW,
    FakeOneBot,
    ImageServer,
    group_message_payload,
    image_segment,
    patterned,
    still,
)

API_TOKEN = "api-share-token-0123456789"
ADMIN_TOKEN = "api-share-admin-9876543210"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
CAP = 1024 * 1024


def image_event(url: str, group_id: int, message_id: int) -> dict:
    return group_message_payload([image_segment(url)], self_id=42, group_id=group_id, user_id=5, message_id=message_id)


@pytest.fixture(scope="module")
async def api_bot(tmp_path_factory) -> AsyncIterator[FakeOneBot]:
    """The API and the console as an operator switches them on: defaults, but for a 1 MiB image cap."""
    tokens = {"NAILONG_API_TOKEN": API_TOKEN, "NAILONG_ADMIN_TOKEN": ADMIN_TOKEN}
    async with running_bot(tmp_path_factory.mktemp("api-bot"), NAILONG_MAX_IMAGE_BYTES=str(CAP), **tokens) as onebot:
        yield onebot


async def test_stalled_urls_and_a_flood_of_uploads_leave_the_guard_on_time(tmp_path, image_server) -> None:
    # Private URLs allowed, so that the stalling server (on loopback) is reached at all.
    env = {"NAILONG_API_TOKEN": API_TOKEN, "NAILONG_API_ALLOW_PRIVATE_URLS": "true", "NAILONG_API_MAX_REQUESTS": "6",
           "NAILONG_READ_TIMEOUT": "20", "NAILONG_DOWNLOAD_DEADLINE": "30"}  # fmt: skip
    uploads = [patterned(YELLOW, seed=900 + i, size=(600, 600)) for i in range(40)]
    with ImageServer() as stalling:
        async with running_bot(tmp_path / "bot", **env) as onebot:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{onebot.port}", headers=AUTH, timeout=60) as api:

                async def classify(**request) -> httpx.Response | Exception:
                    try:
                        return await api.post("/nailong/api/classify", **request)
                    except httpx.HTTPError as error:  # a refused upload's connection may close mid-body
                        return error

                # Four stalled downloads under two names of one address (two run, two wait for the
                # address's slots), then forty uploads at once: they have the API's other two slots.
                stalled = [
                    asyncio.create_task(
                        classify(json={"url": stalling.url(f"slow?s=8&n={i}").replace("127.0.0.1", host)})
                    )
                    for i, host in enumerate(["127.0.0.1", "localhost"] * 2)
                ]
                for _ in range(400):
                    if stalling.active >= 2:
                        break
                    await asyncio.sleep(0.05)
                flood = [asyncio.create_task(classify(content=data)) for data in uploads]
                await asyncio.sleep(0.3)
                posted = time.monotonic()
                await onebot.post(image_event(image_server.add("e2e-api-share.jpg", still(YELLOW)), 401, 9001))
                recalled_at, _ = await onebot.wait_for("delete_msg", timeout=60, message_id=9001)
                answers = await asyncio.gather(*flood)
                for task in stalled:
                    task.cancel()
    assert recalled_at - posted < 2.0
    statuses = [a.status_code for a in answers if isinstance(a, httpx.Response)]
    assert all(status in (200, 429) for status in statuses) and 200 in statuses
    busy = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 429]
    assert busy and all(int(a.headers["Retry-After"]) > 0 for a in busy)
    # The API's downloads never took more than their per-address slots, whatever the names.
    assert stalling.max_active <= 2


async def test_a_loopback_url_is_refused_with_nothing_fetched(api_bot, image_server) -> None:
    url = image_server.add("e2e-api-loopback.jpg", patterned(YELLOW, seed=910))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_bot.port}", headers=AUTH, timeout=30) as api:
        answers = [
            await api.post("/nailong/api/classify", json={"url": spelling})
            for spelling in (url, url.replace("127.0.0.1", "localhost"), url.replace("127.0.0.1", "[::1]"))
        ]
    assert [a.status_code for a in answers] == [422, 422, 422]
    assert len({a.json()["detail"] for a in answers}) == 1
    assert image_server.requests["/img/e2e-api-loopback.jpg"] == 0
    # The OneBot implementation's own local URL, in a group, is checked as ever.
    await api_bot.post(image_event(url, group_id=402, message_id=9101))
    await api_bot.wait_for("delete_msg", message_id=9101)
    assert image_server.requests["/img/e2e-api-loopback.jpg"] == 1


async def test_an_unfinished_upload_over_the_cap_is_answered_413(api_bot) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api_bot.port)
    writer.write(
        b"POST /nailong/api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {API_TOKEN}\r\n".encode()
        + b"Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"\xff" * 65536
    # Past the cap, and never the last chunk: a server waiting for the whole body would never answer.
    # (No more than that: a server closing on unread bytes resets the connection, answer and all.)
    for _ in range(CAP // len(chunk) + 2):
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
    try:
        status = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 413")


async def test_malformed_input_gets_a_4xx(api_bot) -> None:
    base = f"http://127.0.0.1:{api_bot.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        deep = await client.post(
            "/nailong/api/classify", content=b"[" * 30_000 + b"]" * 30_000,
            headers={**AUTH, "Content-Type": "application/json"},
        )  # fmt: skip
        assert (await client.post("/nailong/login", data={"token": ADMIN_TOKEN})).status_code == 303
        page = (await client.get("/nailong/")).text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        correct = await client.post(
            "/nailong/correct", data={"csrf": csrf, "label": "other", "sha256": "0" * 64, "message_id": "--1"}
        )
    assert deep.status_code == 400 and "JSON" in deep.json()["detail"]
    assert correct.status_code == 400
