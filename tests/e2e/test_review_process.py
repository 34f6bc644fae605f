"""The review band through `bot.py` as its own process and the real WebSocket: with threshold 0.999 and
review floor 0.01 a member's nailong is neither recalled, warned about nor muted, and waits in
/nailong/review.json; labelled nailong in the console it is recalled (still within QQ's two minutes)
and its repost acted on; labelled other its repost is let through and not queued again; a label
without the form token is refused; the queue keeps its cap and survives a restart. In a real headless
Chromium at phone width (390 px) an image is labelled on the review page; its screenshot is saved at
$NAILONG_REVIEW_SCREENSHOT when set (the README's docs/review.png is made that way).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bot_process import running_bot
from nailong_testkit import YELLOW, FakeOneBot, group_message_payload, image_segment, md5_name, patterned
from test_web_process import ADMIN_TOKEN, chromium, needs_chromium  # noqa: F401 (chromium: a fixture)

GROUP = 401
CAP = 3


def bot_settings(workdir: Path) -> dict[str, str]:
    return {
        "NAILONG_THRESHOLD": "0.999",
        "NAILONG_REVIEW_FLOOR": "0.01",
        "NAILONG_REVIEW_MAX_PER_GROUP": str(CAP),
        "NAILONG_ADMIN_TOKEN": ADMIN_TOKEN,
        "NAILONG_DATA_DIR": str(workdir / "data"),
        # Muting from the first strike: a mute would show as set_group_ban.
        "NAILONG_MUTE_SECONDS": "600",
    }


async def post_image(onebot: FakeOneBot, image_server, data: bytes, message_id: int) -> None:
    url = image_server.add(f"review-{message_id}.jpg", data)
    await onebot.post(
        group_message_payload(
            [image_segment(url, file=md5_name(data))], self_id=42, group_id=GROUP, user_id=5, message_id=message_id
        )
    )


@asynccontextmanager
async def signed_in(port: int) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A console session (as the operator "ops") and its form token."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/nailong", timeout=10) as client:
        assert (await client.post("/login", data={"token": ADMIN_TOKEN, "name": "ops"})).status_code == 303
        page = await client.get("/review")
        yield client, re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)


async def waiting(client: httpx.AsyncClient) -> list[dict]:
    answer = await client.get("/review.json")
    assert answer.status_code == 200
    return answer.json()["waiting"]


async def wait_until_queued(client: httpx.AsyncClient, message_id: int) -> dict:
    for _ in range(200):
        found = [entry for entry in await waiting(client) if entry["message_id"] == message_id]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {message_id} never queued for review")


def group_actions(onebot: FakeOneBot) -> list[tuple[str, dict]]:
    """What the bot did in the group: recalls, messages to it, mutes."""
    return [
        (name, params)
        for name, params in onebot.actions()
        if name in ("delete_msg", "set_group_ban", "send_group_msg", "send_msg")
    ]


async def test_unsure_images_wait_for_a_label_that_acts(tmp_path: Path, image_server) -> None:
    nailong, innocent = patterned(YELLOW, seed=91), patterned(YELLOW, seed=92)
    async with running_bot(tmp_path, **bot_settings(tmp_path)) as onebot:
        async with signed_in(onebot.port) as (client, csrf):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{onebot.port}/nailong") as stranger:
                assert (await stranger.get("/review.json")).status_code == 401
                assert (await stranger.post("/review", data={"csrf": csrf, "label": "other"})).status_code == 401
            await post_image(onebot, image_server, nailong, 9001)
            entry = await wait_until_queued(client, 9001)
            assert entry["group"] == GROUP and 0.01 <= entry["score"] < 0.999 and set(entry) == {
                "sha256", "group", "score", "time", "message_id"}  # fmt: skip
            assert group_actions(onebot) == []  # no recall, no warning, no mute

            # Without the form token, or with another, nothing is labelled.
            for form in ({"sha256": entry["sha256"], "label": "nailong"},
                         {"csrf": "forged", "sha256": entry["sha256"], "label": "nailong"}):  # fmt: skip
                assert (await client.post("/review", data=form)).status_code == 403
            assert [e["message_id"] for e in await waiting(client)] == [9001]

            labelled = await client.post(
                "/review", data={"csrf": csrf, "sha256": entry["sha256"], "label": "nailong"},
                headers={"Accept": "application/json"},
            )  # fmt: skip
            assert labelled.json() == {"labelled": [entry["sha256"]], "gone": []}
            await onebot.wait_for("delete_msg", message_id=9001)  # within QQ's two minutes: recalled now
            assert await waiting(client) == []

            await post_image(onebot, image_server, nailong, 9002)  # the repost is acted on
            await onebot.wait_for("delete_msg", message_id=9002)
            await onebot.wait_for("send_group_msg", group_id=GROUP)
            await onebot.wait_for("set_group_ban", group_id=GROUP)
            done_in_group = len(group_actions(onebot))

            await post_image(onebot, image_server, innocent, 9003)
            other = await wait_until_queued(client, 9003)
            answer = await client.post("/review", data={"csrf": csrf, "sha256": other["sha256"], "label": "other"})
            assert answer.status_code == 303 and answer.headers["Location"] == "/nailong/review?notice=other"
            await post_image(onebot, image_server, innocent, 9004)
            await post_image(onebot, image_server, patterned(YELLOW, seed=93), 9005)
            await wait_until_queued(client, 9005)  # the barrier: 9004 was decided before it
            assert [e["message_id"] for e in await waiting(client)] == [9005]  # 9004 not queued again
            assert len(group_actions(onebot)) == done_in_group  # 9003, 9004, 9005: nothing done

            # The cap: the group's oldest goes first.
            for message_id, seed in ((9006, 94), (9007, 95), (9008, 96)):
                await post_image(onebot, image_server, patterned(YELLOW, seed=seed), message_id)
                await wait_until_queued(client, message_id)
            kept = [e["message_id"] for e in await waiting(client)]
            assert kept == [9008, 9007, 9006]

    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]
    reviews = [(e["operator"], e["before"]["message_id"], e["after"]["label"], e["after"]["recalled"])
               for e in audit if e["action"] == "review"]  # fmt: skip
    assert reviews == [("web:ops", 9001, "nailong", True), ("web:ops", 9003, "other", None)]

    async with running_bot(tmp_path, **bot_settings(tmp_path)) as onebot:  # restarted
        async with signed_in(onebot.port) as (client, _):
            assert [e["message_id"] for e in await waiting(client)] == kept
            thumbnail = await client.get(f"/review-thumb/{(await waiting(client))[0]['sha256']}")
            assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"


@needs_chromium
async def test_label_on_the_review_page_at_phone_width(tmp_path: Path, image_server, chromium) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    wait = WebDriverWait(driver, 20)
    async with running_bot(tmp_path, **bot_settings(tmp_path)) as onebot:
        async with signed_in(onebot.port) as (client, _):
            for message_id, seed in ((9101, 101), (9102, 102), (9103, 103)):
                await post_image(onebot, image_server, patterned(YELLOW, seed=seed), message_id)
                await wait_until_queued(client, message_id)
            first = (await waiting(client))[0]["sha256"]
        base = f"http://127.0.0.1:{onebot.port}/nailong/"

        def label_one() -> tuple[int, int, str]:
            driver.set_window_size(390, 844)
            driver.get(base)
            driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
            driver.find_element(By.ID, "name").send_keys("phone")
            driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
            wait.until(lambda d: d.current_url == base)
            driver.get(base + "review?lang=zh-CN")  # the README shows it in Chinese
            tiles = driver.find_elements(By.CSS_SELECTOR, "li.waiting")
            for tile in tiles:
                image = tile.find_element(By.TAG_NAME, "img")
                wait.until(lambda d: d.execute_script("return arguments[0].complete", image))
            page_width = driver.execute_script("return document.documentElement.scrollWidth")
            tile = driver.find_element(By.CSS_SELECTOR, f'li.waiting[data-sha256="{first}"]')
            tile.find_element(By.CSS_SELECTOR, "button.other").click()
            wait.until(lambda d: tile.get_attribute("data-labelled") == "other")
            return len(tiles), page_width, tile.find_element(By.TAG_NAME, "img").get_attribute("naturalWidth")

        shown, page_width, thumbnail_width = await asyncio.to_thread(label_one)
        assert shown == 3 and page_width <= 390 and int(thumbnail_width) > 0
        screenshot = tmp_path / "review.png"
        await asyncio.to_thread(driver.save_screenshot, str(screenshot))
        if os.environ.get("NAILONG_REVIEW_SCREENSHOT"):
            shutil.copyfile(screenshot, os.environ["NAILONG_REVIEW_SCREENSHOT"])

        def keyboard_label() -> str:
            from selenium.webdriver.common.action_chains import ActionChains

            ActionChains(driver).send_keys("n").perform()  # the next tile has the focus after a label
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.waiting[data-labelled]")) == 2)
            return driver.find_elements(By.CSS_SELECTOR, "li.waiting[data-labelled]")[1].get_attribute("data-sha256")

        by_key = await asyncio.to_thread(keyboard_label)
        async with signed_in(onebot.port) as (client, _):
            left = [e["sha256"] for e in await waiting(client)]
    assert first not in left and by_key not in left and len(left) == 1
    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]
    assert [(e["operator"], e["after"]["label"]) for e in audit if e["action"] == "review"] == [
        ("web:phone", "other"), ("web:phone", "other")]  # fmt: skip
