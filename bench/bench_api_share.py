"""What callers of the HTTP API can cost the guard: one run prints each number.

    .venv/bin/python bench/bench_api_share.py

`bot.py` runs as its own process (a tiny test model; the API on, with private URLs allowed so that the
stalling server on loopback is reached at all; otherwise the defaults) with a fake OneBot v11
implementation on a real WebSocket. A group's nailong is timed from posted to delete_msg received (the
median and the worst of a few posts), while nothing else runs, while eight classify requests wait on URLs
that never answer (under two names of one address), and while 100 clients upload 10 MB each at once.
For the flood it also prints the bot's RSS before and its peak (VmHWM) after, and how the uploads were
answered. Issue 14 measured, before the API had a share of its own: 29 s with the stalled URLs; 5.4 s and
RSS +1.1 GB with the uploads. Target: a group's nailong acted on within 2 s in each case.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "plugin"), str(ROOT / "tests" / "e2e")]

from bot_process import running_bot  # noqa: E402
from nailong_testkit import YELLOW, FakeOneBot, ImageServer, group_message_payload, image_segment, patterned  # noqa: E402

TOKEN = "bench-api-share-token-0123456789"
POSTS = 3
UPLOADS = 100
UPLOAD_BYTES = 10 * 1024 * 1024
_message_ids = iter(range(70_000, 80_000))


def memory_kb(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def group_latencies(onebot: FakeOneBot, images: ImageServer, label: str) -> list[float]:
    """Seconds from posting a group's nailong to its recall, for ``POSTS`` posts one after another."""
    seconds = []
    for _ in range(POSTS):
        message_id = next(_message_ids)
        url = images.add(f"{label}-{message_id}.jpg", patterned(YELLOW, seed=message_id))
        posted = time.monotonic()
        await onebot.post(
            group_message_payload([image_segment(url)], self_id=42, group_id=501, user_id=5, message_id=message_id)
        )
        recalled_at, _ = await onebot.wait_for("delete_msg", timeout=300, message_id=message_id)
        seconds.append(recalled_at - posted)
    return seconds


def report(label: str, seconds: list[float]) -> None:
    print(f"{label:<28} group nailong acted on after: median {statistics.median(seconds):.3f} s, "
          f"worst {max(seconds):.3f} s ({len(seconds)} posts)")  # fmt: skip


async def upload(api: httpx.AsyncClient, index: int) -> str:
    """One 10 MB upload (a small nailong JPEG, padded: decodable, and unlike every other upload)."""
    head = patterned(YELLOW, seed=10_000 + index)
    padding = bytes(1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        yield head
        sent = len(head)
        while sent + len(padding) <= UPLOAD_BYTES:
            yield padding
            sent += len(padding)
        yield index.to_bytes(4, "big") * ((UPLOAD_BYTES - sent) // 4)

    try:
        return str((await api.post("/nailong/api/classify", content=body())).status_code)
    except httpx.HTTPError as error:  # a refused upload's connection may close mid-body
        return type(error).__name__


async def main() -> None:
    env = {"NAILONG_API_TOKEN": TOKEN, "NAILONG_API_ALLOW_PRIVATE_URLS": "true", "NAILONG_READ_TIMEOUT": "15",
           "NAILONG_FETCH_RETRIES": "2"}  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-share-"))
    with ImageServer() as images, ImageServer() as stalling:
        async with running_bot(workdir / "stalled", **env) as onebot:
            base = f"http://127.0.0.1:{onebot.port}"
            async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300) as api:
                report("idle", await group_latencies(onebot, images, "idle"))
                stalled = [
                    asyncio.create_task(api.post(
                        "/nailong/api/classify",
                        json={"url": stalling.url(f"slow?s=600&n={i}").replace("127.0.0.1", host)},
                    ))
                    for i, host in enumerate(["127.0.0.1", "localhost"] * 4)
                ]  # fmt: skip
                while stalling.active < 2:
                    await asyncio.sleep(0.05)
                report("8 stalled API URLs", await group_latencies(onebot, images, "stalled"))
                for task in stalled:
                    task.cancel()
        async with running_bot(workdir / "flood", **env) as onebot:
            pid = onebot.process.pid  # type: ignore[attr-defined]
            base = f"http://127.0.0.1:{onebot.port}"
            limits = httpx.Limits(max_connections=UPLOADS)
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300, limits=limits
            ) as api:
                rss_before = memory_kb(pid, "VmRSS")
                flood = [asyncio.create_task(upload(api, i)) for i in range(UPLOADS)]
                await asyncio.sleep(0.5)
                report(f"{UPLOADS} uploads of 10 MB", await group_latencies(onebot, images, "flood"))
                answers = Counter(await asyncio.gather(*flood))
                peak = memory_kb(pid, "VmHWM")
    print(f"{'':<28} bot RSS before {rss_before / 1024:.0f} MB, peak {peak / 1024:.0f} MB "
          f"(+{(peak - rss_before) / 1024:.0f} MB); uploads answered {dict(answers)}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
