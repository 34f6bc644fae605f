"""`python bot.py`'s memory under images that are small files but huge pictures, through the real
WebSocket and HTTP: seven PNGs of ~180 KB that decode to 6000×6600, seven just under the pixel cap,
then the console page with all its thumbnails. bench/bench_memory.py prints the same numbers with
the bundled model."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import httpx

from bot_process import running_bot
from nailong_testkit import FakeOneBot, group_message_payload, image_segment, large_sparse_png, png_variant

from nailong_bot.config import Config

API_TOKEN = "memory-test-api-token-0123456789abcdef"
ADMIN_TOKEN = "memory-test-admin-token-9876543210fedcba"
GROUP = 141
IMAGES = 7


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


async def post_all(onebot: FakeOneBot, image_server, images: list[bytes], first_id: int) -> None:
    for i, data in enumerate(images):
        url = image_server.add(f"memory-{first_id + i}.png", data, "image/png")
        payload = group_message_payload(
            [image_segment(url)], self_id=42, group_id=GROUP, user_id=5, message_id=first_id + i
        )
        await onebot.post(payload)


async def test_huge_pngs_and_the_console_stay_within_400_mb(tmp_path, image_server) -> None:
    cap = Config().nailong_max_pixels
    width = int(math.sqrt(cap * 10 / 11))
    near_cap = large_sparse_png(width, cap // width - 1)
    attack = large_sparse_png(6000, 6600)
    workdir = tmp_path / "bot"
    async with running_bot(workdir, NAILONG_API_TOKEN=API_TOKEN, NAILONG_ADMIN_TOKEN=ADMIN_TOKEN) as onebot:
        await post_all(onebot, image_server, [png_variant(attack, f"a{i}") for i in range(IMAGES)], 9200)
        await post_all(onebot, image_server, [png_variant(near_cap, f"n{i}") for i in range(IMAGES)], 9300)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{onebot.port}", timeout=60) as client:
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            for _ in range(600):  # the near-cap images take a while on a busy machine
                today = (await client.get("/nailong/api/status", headers=auth)).json()["today"]  # GROUP's alone
                if today["checked"] == IMAGES:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"the near-cap images were not all checked: {today}")
            await client.post("/nailong/login", data={"token": ADMIN_TOKEN})
            page = await client.get("/nailong/")
            thumbs = re.findall(r'src="(/nailong/thumb/[0-9a-f]{64})"', page.text)
            answers = await asyncio.gather(*(client.get(path) for path in thumbs))
        assert len(thumbs) == IMAGES and all(a.status_code == 200 for a in answers)
        peak = peak_rss_mib(onebot.process.pid)  # type: ignore[attr-defined]
    log = (workdir / "bot.log").read_text(errors="replace")
    assert log.count("image over the pixel cap NAILONG_MAX_PIXELS, not checked") == IMAGES
    assert peak <= 400, f"peak RSS {peak:.0f} MiB"
