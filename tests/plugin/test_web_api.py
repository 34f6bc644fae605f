"""The HTTP API on a FastAPI app (through httpx's ASGI transport, on the test's event loop): the token,
bad input, the limits, nailong and other images with the tiny model, the cache and corrections."""

from __future__ import annotations

import json
import socket
import threading

import httpx
import pytest
from fastapi import FastAPI

from nailong_bot import runtime as plugin_runtime
from nailong_bot.web import mount

from nailong_testkit import (
    BLUE,
    WHITE,
    YELLOW,
    animated_gif,
    bomb_png,
    patterned,
    still,
    truncated_jpeg,
)

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOT_DECODABLE = "图片无法解码 / image not decodable"
DOWNLOAD_FAILED = "图片下载失败：地址无法访问、不是公网 http(s) 地址或文件过大"


@pytest.fixture
async def client(guard):
    app = FastAPI()
    mount(app, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        yield client


@pytest.fixture
async def lan_client(start_guard):
    """A client of an API allowed to fetch private addresses (the test image server is on 127.0.0.1)."""
    await start_guard(nailong_api_allow_private_urls=True)
    app = FastAPI()
    mount(app, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        yield client


async def classify(client: httpx.AsyncClient, **request: object) -> httpx.Response:
    return await client.post("/nailong/api/classify", headers={**AUTH, **request.pop("headers", {})}, **request)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["missing", "wrong", "basic", "no-scheme"],
)
async def test_without_the_token_nothing_runs(client, guard, image_server, headers) -> None:
    url = image_server.add("api-unauthorised.jpg", still(YELLOW))
    answer = await client.post("/nailong/api/classify", json={"url": url}, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in answer.json()["detail"]
    assert image_server.requests["/img/api-unauthorised.jpg"] == 0
    assert len(guard.cache) == 0
    assert (await client.get("/nailong/api/status", headers=headers)).status_code == 401


async def test_a_nailong_and_an_other_image(client, guard) -> None:
    hit = await classify(client, content=still(YELLOW), headers={"Content-Type": "image/jpeg"})
    assert hit.status_code == 200
    body = hit.json()
    assert body["nailong"] is True and body["score"] > 0.9
    assert body == {
        "score": body["score"],
        "nailong": True,
        "threshold": 0.7,
        "source": "model",
        "correction_id": None,
        "model_score": body["score"],
        "frames": 1,
        "model": {"name": "tiny-test", "version": "0.0.1"},
    }
    miss = (await classify(client, content=still(BLUE, "PNG"))).json()
    assert miss["nailong"] is False and miss["score"] < 0.1 and miss["source"] == "model"


async def test_multipart_upload_and_frames_of_an_animation(client) -> None:
    gif = animated_gif([BLUE, WHITE, YELLOW, (0, 0, 0)])
    answer = await classify(client, files={"file": ("anim.gif", gif, "image/gif")})
    assert answer.status_code == 200
    assert answer.json()["nailong"] is True  # any sampled frame hits
    assert answer.json()["frames"] == 4


async def test_url_is_fetched_like_a_group_image_and_cached_by_content(lan_client, image_server) -> None:
    client = lan_client
    url = image_server.add("api-by-url.jpg", still(YELLOW))
    first = (await classify(client, json={"url": url})).json()
    again = (await classify(client, json={"url": url})).json()
    assert first["source"] == "model" and again["source"] == "cache"
    assert again["score"] == first["score"] and again["nailong"] is True
    assert image_server.requests["/img/api-by-url.jpg"] == 2
    # The same bytes sent directly are the same image to the cache.
    assert (await classify(client, content=still(YELLOW))).json()["source"] == "cache"


async def test_a_correction_for_every_group_decides_before_the_model(client, guard) -> None:
    data = patterned(YELLOW, seed=41)
    # One group's correction is that group's: the API (no group) is decided by the model.
    guard.corrections.add(data, label="other", group_id=1, user_id=5, score=0.99, model_version="0.0.1")
    assert (await classify(client, content=data)).json()["source"] == "model"
    correction = guard.corrections.add(data, label="other", group_id=1, user_id=5, score=0.99, model_version="0.0.1",
                                       everywhere=True)
    body = (await classify(client, content=data)).json()
    assert body["source"] == "correction" and body["correction_id"] == correction.id
    assert body["score"] == 0.0 and body["nailong"] is False and body["model_score"] is None
    assert body["frames"] == 1


@pytest.mark.parametrize(
    ("request_args", "status", "reason"),
    [
        ({"content": b""}, 400, "no image: send its bytes"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON 无法解析"),
        ({"json": {"link": "http://x"}}, 400, 'JSON 需要 {"url": "..."}'),
        ({"json": ["http://x"]}, 400, 'JSON 需要 {"url": "..."}'),
        ({"files": {"note": (None, "no file here")}}, 400, "表单里没有图片文件 / the form holds no file"),
        ({"content": b"<html>403</html>"}, 422, NOT_DECODABLE),
        ({"content": truncated_jpeg()}, 422, NOT_DECODABLE),
        ({"content": bomb_png()}, 422, NOT_DECODABLE),
        ({"json": {"url": "file:///etc/passwd"}}, 422, DOWNLOAD_FAILED),
    ],
    ids=["empty", "bad-json", "json-without-url", "json-not-object", "form-without-file", "html", "truncated",
         "bomb", "file-url"],
)
async def test_bad_input_gets_a_4xx_with_the_reason(client, guard, request_args, status, reason) -> None:
    answer = await classify(client, **request_args)
    assert answer.status_code == status
    assert reason in answer.json()["detail"]
    assert len(guard.cache) == 0


async def test_every_download_failure_gets_one_reason(lan_client, image_server, caplog_loguru) -> None:
    # A closed port, a service that is not HTTP, HTTP errors: told apart, they would map a network.
    with socket.socket() as closed, socket.create_server(("127.0.0.1", 0)) as not_http:
        closed.bind(("127.0.0.1", 0))
        threading.Thread(target=lambda: not_http.accept()[0].sendall(b"SSH-2.0-OpenSSH_9.6\r\n"), daemon=True).start()
        urls = [
            f"http://127.0.0.1:{closed.getsockname()[1]}/a.jpg",
            f"http://127.0.0.1:{not_http.getsockname()[1]}/a.jpg",
            image_server.url("status/404"),
            image_server.url("status/503"),
            image_server.url("huge-declared"),
        ]
        answers = [await classify(lan_client, json={"url": url}) for url in urls]
    assert {answer.status_code for answer in answers} == {422}
    assert {answer.json()["detail"] for answer in answers} == {answers[0].json()["detail"]}
    assert answers[0].json()["detail"].startswith(DOWNLOAD_FAILED)
    assert any("HTTP 404" in line for line in caplog_loguru)  # the operator still sees the cause


async def test_byte_cap_applies_to_bodies_forms_and_urls(start_guard, image_server) -> None:
    await start_guard(nailong_max_image_bytes=2048, nailong_api_allow_private_urls=True)
    app = FastAPI()
    mount(app, TOKEN)
    big = patterned(YELLOW, seed=42, size=(400, 400))
    assert len(big) > 2048
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        raw = await classify(client, content=big)
        form = await classify(client, files={"file": ("big.jpg", big, "image/jpeg")})
        by_url = await classify(client, json={"url": image_server.add("api-big.jpg", big)})
    assert raw.status_code == form.status_code == 413
    assert raw.json()["detail"] == "图片过大 / image too large: > 2048 bytes (NAILONG_MAX_IMAGE_BYTES)"
    assert by_url.status_code == 422 and by_url.json()["detail"].startswith(DOWNLOAD_FAILED)


async def test_status_reports_the_model_and_totals_only(client, guard) -> None:
    """Issue 21: the API token is for other bots; no group's settings, allow-list, offenders or QQ numbers."""
    await guard.store.update(7, threshold=0.8, action=guard.store.defaults.action.RECALL, allowed=(2233445566,))
    await guard.store.update(9, enabled=False)
    guard.stats.add(8, checked=5, hits=2, recalls=1, failed_recalls=1)
    guard.stats.add(7, checked=1, hits=1, recalls=1)
    guard.strikes.add(8, 1357924680, message_id=11)
    guard.corrections.add(patterned(YELLOW, seed=43), label="other", group_id=8, user_id=5, score=0.9,
                          model_version="0.0.1", everywhere=True)
    answer = await client.get("/nailong/api/status", headers=AUTH)
    status = answer.json()
    assert status["model"]["name"] == "tiny-test" and status["model"]["version"] == "0.0.1"
    assert status["model"]["threshold"] == status["model"]["recommended_threshold"] == 0.7
    assert status["defaults"] == {"enabled": True, "threshold": 0.7, "action": "both"}
    assert status["corrections"] == {"nailong": 0, "other": 1}
    assert status["groups"] == {"known": 3, "enabled": 2}
    assert status["today"] == {
        "checked": 6, "hits": 3, "recalls": 2, "failed_recalls": 1, "corrections": 0, "exempt": 0, "observed": 0
    }  # fmt: skip
    assert status["last_7_days"] == status["today"]
    assert status["refresh"] == {"running": False, "last": None, "auto": False}
    for number in ("2233445566", "1357924680", '"group_id"', "allowed", "strikes"):
        assert number not in answer.text


async def test_counts_survive_a_restart(start_guard, tmp_path) -> None:
    data_dir = tmp_path / "kept"
    first = await start_guard(data_dir)
    first.stats.add(3, checked=4, hits=1, recalls=1)
    await plugin_runtime.stop()
    again = await start_guard(data_dir)
    app = FastAPI()
    mount(app, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        status = (await client.get("/nailong/api/status", headers=AUTH)).json()
    assert status["groups"] == {"known": 1, "enabled": 1}
    assert status["last_7_days"] == {
        "checked": 4, "hits": 1, "recalls": 1, "failed_recalls": 0, "corrections": 0, "exempt": 0, "observed": 0
    }  # fmt: skip
    assert json.loads((data_dir / "stats.json").read_text())["version"] == 1
    assert again.stats.over_days(3, 7).checked == 4


async def test_not_running_is_503(client) -> None:
    await plugin_runtime.stop()
    answer = await classify(client, content=still(YELLOW))
    assert answer.status_code == 503
    assert "not running" in answer.json()["detail"]


@pytest.mark.parametrize("token", ["short", "x" * 15])
def test_a_short_token_is_refused_at_start_up(token) -> None:
    from pydantic import ValidationError

    from nailong_bot.config import Config

    with pytest.raises(ValidationError, match="at least 16 characters"):
        Config(nailong_api_token=token)
    assert Config(nailong_api_token="").nailong_api_token is None  # empty in .env: off
