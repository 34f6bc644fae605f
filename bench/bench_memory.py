"""Memory under images that are small files but huge pictures: the bot's peak RSS.

    .venv/bin/python bench/bench_memory.py            # the bundled model
    .venv/bin/python bench/bench_memory.py --tiny     # a tiny test model (checks the bench runs)

Runs `bot.py` as its own process (console on), with a fake OneBot v11 implementation on a real
WebSocket, and posts, in one burst each:
  1. seven 6000×6600 RGBA PNGs of ~180 KB (issue 14: each took the bot from 167 to 805 MB),
  2. seven PNGs just under the pixel cap (NAILONG_MAX_PIXELS), all different, and while they are decoded
     a nailong photo in another group (how long until it is acted on),
then opens the console page and fetches every thumbnail on it at once, as a browser does.
Prints the bot's RSS (VmRSS) after each step and its peak (VmHWM). Target: peak ≤ 400 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "plugin"), str(ROOT / "tests" / "e2e")]

from bot_process import ACCESS_TOKEN, start_bot, stop_bot  # noqa: E402
from nailong_testkit import (  # noqa: E402
    YELLOW,
    FakeOneBot,
    ImageServer,
    build_tiny_model,
    free_port,
    group_message_payload,
    image_segment,
    large_sparse_png,
    png_variant,
    still,
)

from nailong_bot.config import Config  # noqa: E402
from nailong_vision.classifier import bundled_model_path  # noqa: E402

ADMIN_TOKEN = "bench-memory-admin-token-0123456789abcdef"
NAILONG = ROOT / "tests" / "plugin" / "fixtures" / "nailong-still-3.jpg"
ATTACK_SIZE = (6000, 6600)
IMAGES = 7
TARGET_MB = 400


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(pid: int, quiet: float = 1.5, timeout: float = 180.0) -> None:
    """Wait until the bot has used no CPU worth counting for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, quiet_since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = cpu_seconds(pid)
        if now - last > 0.02:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return


def near_cap_size(max_pixels: int) -> tuple[int, int]:
    """The largest width × height (width:height = 10:11, like the attack's) under ``max_pixels``."""
    width = int(math.sqrt(max_pixels * 10 / 11))
    return width, int(max_pixels // width) - 1


async def burst(onebot: FakeOneBot, server: ImageServer, images: list[bytes], group_id: int, first_id: int) -> None:
    for i, data in enumerate(images):
        url = server.add(f"mem-{first_id + i}.png", data, "image/png")
        payload = group_message_payload(
            [image_segment(url)], self_id=42, group_id=group_id, user_id=5, message_id=first_id + i
        )
        await onebot.post(payload)


async def open_console(port: int) -> tuple[int, int]:
    """Sign in, load the page and all its thumbnails at once; (thumbnails, their bytes)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        await client.post("/nailong/login", data={"token": ADMIN_TOKEN})
        page = await client.get("/nailong/")
        page.raise_for_status()
        thumbs = re.findall(r'src="(/nailong/thumb/[0-9a-f]{64})"', page.text)
        answers = await asyncio.gather(*(client.get(path) for path in thumbs))
        return sum(a.status_code == 200 for a in answers), sum(len(a.content) for a in answers)


async def run(model_path: Path, workdir: Path) -> float:
    max_pixels = Config().nailong_max_pixels
    print(f"Building images: {IMAGES}× {ATTACK_SIZE[0]}×{ATTACK_SIZE[1]}, {IMAGES}× {near_cap_size(max_pixels)} "
          f"(NAILONG_MAX_PIXELS={max_pixels:,})")  # fmt: skip
    attack = large_sparse_png(*ATTACK_SIZE)
    near_cap = large_sparse_png(*near_cap_size(max_pixels))
    print(f"  attack PNG {len(attack) / 1024:.0f} KB, near-cap PNG {len(near_cap) / 1024:.0f} KB")
    process = start_bot(
        workdir, port := free_port(), NAILONG_MODEL_PATH=str(model_path), NAILONG_ADMIN_TOKEN=ADMIN_TOKEN
    )
    onebot = FakeOneBot(port, self_id=42, access_token=ACCESS_TOKEN)
    try:
        with ImageServer() as server:
            await onebot.connect(timeout=120)
            await burst(onebot, server, [still(YELLOW)], 1, 100)
            await settle(process.pid)
            rss, _ = memory_mb(process.pid)
            print(f"  {'started, one image decided':<52} RSS {rss:7.1f} MB")
            await burst(onebot, server, [png_variant(attack, f"a{i}") for i in range(IMAGES)], 2, 200)
            await settle(process.pid)
            rss, peak = memory_mb(process.pid)
            print(f"  {f'{IMAGES} attack PNGs posted at once':<52} RSS {rss:7.1f} MB   peak {peak:7.1f} MB")
            await burst(onebot, server, [png_variant(near_cap, f"n{i}") for i in range(IMAGES)], 3, 300)
            await asyncio.sleep(0.2)  # the near-cap images are being decoded: another group posts a nailong
            posted = time.monotonic()
            await burst(onebot, server, [NAILONG.read_bytes()], 4, 400)
            acted_at, _ = await onebot.wait_for("delete_msg", timeout=120, message_id=400)
            print(f"  {'a nailong in another group meanwhile: acted on after':<52} {acted_at - posted:7.2f} s")
            await settle(process.pid)
            rss, peak = memory_mb(process.pid)
            print(f"  {f'{IMAGES} near-cap PNGs posted at once':<52} RSS {rss:7.1f} MB   peak {peak:7.1f} MB")
            shown, thumb_bytes = await open_console(port)
            await settle(process.pid)
            rss, peak = memory_mb(process.pid)
            print(f"  {f'console opened, {shown} thumbnails ({thumb_bytes / 1024:.0f} KB)':<52} RSS {rss:7.1f} MB"
                  f"   peak {peak:7.1f} MB")  # fmt: skip
            acted = sorted(p["message_id"] for _, p in onebot.actions("delete_msg"))
            print(f"  acted on: {acted}")
    finally:
        await onebot.close()
        stop_bot(process)
    log = (workdir / "bot.log").read_text(errors="replace")
    refused = log.count("image too large")
    print(f"  images refused as too large (bot.log): {refused}")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="use a tiny test model (checks that the bench runs)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="nailong-bench-memory-"))
    model_path = build_tiny_model(workdir / "tiny.onnx") if args.tiny else bundled_model_path()
    print(f"Model: {model_path}; CPU cores: {os.cpu_count()}")
    peak = asyncio.run(run(model_path, workdir / "bot"))
    met = "met" if peak <= TARGET_MB else "NOT met"
    print(f"\nTarget:\n  {'bot peak RSS (MB)':<44} {peak:9.1f}   target ≤ {TARGET_MB:<20} {met}")


if __name__ == "__main__":
    main()
