"""The API's share of the bot, through the FastAPI app: the URL fetch reaches public addresses only
(after DNS and after every redirect), a busy API answers 429, uploads are refused at the byte cap as
they arrive, and group images from the OneBot implementation's local URLs are still checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
from fastapi import FastAPI

from nailong_bot.images import image_refs
from nailong_bot.pipeline import check_image
from nailong_bot.web import mount

from nailong_testkit import YELLOW, ImageServer, group_event, image_segment, still

TOKEN = "limits-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOWNLOAD_FAILED = "图片下载失败：地址无法访问、不是公网 http(s) 地址或文件过大"
# Stands in for a public server: a second loopback address the API's fetcher is told to allow.
STAND_IN = "127.0.0.2"


@asynccontextmanager
async def api_client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    mount(app, TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bot", headers=AUTH, timeout=30
    ) as client:
        yield client


async def classify_url(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.post("/nailong/api/classify", json={"url": url})


async def wait_until(condition, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never met")


async def test_a_loopback_url_is_refused_and_nothing_fetched(guard, image_server) -> None:
    url = image_server.add("api-loopback.jpg", still(YELLOW))
    port = image_server.port
    spellings = [
        url,
        url.replace("127.0.0.1", "localhost"),  # a name that resolves to loopback
        url.replace("127.0.0.1", "[::ffff:127.0.0.1]"),
        url.replace("127.0.0.1", "0.0.0.0"),
        f"http://169.254.169.254:{port}/latest/meta-data/",
        f"http://10.0.0.1:{port}/a.jpg",
        "file:///etc/passwd",
    ]
    async with api_client() as client:
        answers = [await classify_url(client, spelling) for spelling in spellings]
    assert [a.status_code for a in answers] == [422] * len(spellings)
    assert all(a.json()["detail"].startswith(DOWNLOAD_FAILED) for a in answers)
    assert image_server.requests["/img/api-loopback.jpg"] == 0
    # The same local URL in a group message is the OneBot implementation's: it is checked.
    event = group_event([image_segment(url)], message_id=61)
    (ref,) = image_refs(event.message)
    checked = await check_image(None, event, ref, guard)
    assert checked is not None and checked.decision.score > 0.9
    assert image_server.requests["/img/api-loopback.jpg"] == 1


async def test_a_redirect_to_loopback_is_refused(guard, image_server) -> None:
    guard.api.fetcher.address_allowed = lambda address: str(address) == STAND_IN
    secret = image_server.add("api-behind-redirect.jpg", still(YELLOW))
    with ImageServer(host=STAND_IN) as public:
        public.add("api-public.jpg", still(YELLOW))
        async with api_client() as client:
            allowed = await classify_url(client, public.url("img/api-public.jpg"))
            redirected = [
                await classify_url(client, public.url("redirect?to=" + quote(target, safe="")))
                for target in (secret, secret.replace("127.0.0.1", "localhost"))
            ]
    assert allowed.status_code == 200 and allowed.json()["nailong"] is True
    assert [r.status_code for r in redirected] == [422, 422]
    assert public.requests["/redirect"] == 2
    assert image_server.requests["/img/api-behind-redirect.jpg"] == 0


async def test_private_urls_when_the_operator_allows_them(start_guard, image_server) -> None:
    await start_guard(nailong_api_allow_private_urls=True)
    async with api_client() as client:
        url = image_server.add("api-lan.jpg", still(YELLOW)).replace("127.0.0.1", "localhost")
        answer = await classify_url(client, url)
    assert answer.status_code == 200 and answer.json()["nailong"] is True


async def test_a_busy_api_answers_429_with_retry_after(start_guard) -> None:
    guard = await start_guard(
        nailong_api_max_requests=2, nailong_api_allow_private_urls=True, nailong_read_timeout=10.0
    )
    pulled = 0

    async def upload() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield still(YELLOW)

    with ImageServer() as server:
        async with api_client() as client:
            stalled = [
                asyncio.create_task(classify_url(client, server.url(f"slow?s=1.5&n={i}"))) for i in range(2)
            ]
            await wait_until(lambda: server.active == 2)
            busy = [
                await classify_url(client, server.url("slow?s=0")),
                await client.post("/nailong/api/classify", content=upload()),
            ]
            done = await asyncio.gather(*stalled)
            after = await client.post("/nailong/api/classify", content=still(YELLOW))
    assert [answer.status_code for answer in busy] == [429, 429]
    assert all(int(answer.headers["Retry-After"]) > 0 for answer in busy)
    assert "接口繁忙" in busy[0].json()["detail"]
    assert pulled == 0  # a refused upload is never read
    assert server.requests["/slow"] == 2
    assert [answer.status_code for answer in done] == [200, 200]
    assert after.status_code == 200 and not guard.api.requests.locked()


async def test_an_upload_over_the_cap_is_refused_as_it_arrives(start_guard) -> None:
    cap = 64 * 1024
    await start_guard(nailong_max_image_bytes=cap)
    chunk = b"\xff" * 16 * 1024
    form_head = (
        b'--edge\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    sent = 0

    async def endless(head: bytes = b"") -> AsyncIterator[bytes]:
        nonlocal sent
        yield head
        while True:
            sent += len(chunk)
            yield chunk

    async with api_client() as client:
        raw = await client.post("/nailong/api/classify", content=endless())
        raw_sent, sent = sent, 0
        form = await client.post(
            "/nailong/api/classify",
            content=endless(form_head),
            headers={"Content-Type": "multipart/form-data; boundary=edge"},
        )
    assert raw.status_code == form.status_code == 413
    assert "NAILONG_MAX_IMAGE_BYTES" in raw.json()["detail"]
    # Read up to the cap (a form: plus room for its headers), never on to the end.
    assert raw_sent <= cap + 2 * len(chunk)
    assert sent <= cap + 64 * 1024 + 2 * len(chunk)
