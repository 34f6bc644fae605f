"""Decision latency while the bot refreshes its model, against idle: does the guard keep working?

    .venv/bin/python bench/bench_refresh.py                      # the bundled model and its nailong.pt
    .venv/bin/python bench/bench_refresh.py --budget 120 --samples 40

`bot.py` runs as its own process (a fake OneBot v11 implementation on a real WebSocket) with a few
corrections in its data folder. One image a second is posted (how real groups post) and timed from
posted to delete_msg: first with the bot idle, then while `/nailong refresh` runs the trainer in its
low-priority subprocess (NAILONG_REFRESH_NICE, NAILONG_REFRESH_THREADS), until the bot answers with the
gate's result. Prints medians and p95 of both, their ratio, how many images were acted on (every one
must be), and the refresh's own wall time and answer.

One run, 2026-12-03, the project's 2-core box shared with other jobs, the bundled Lite0, defaults (nice 10, one
thread, 600 s budget): idle median 32.9 ms / p95 58.1 ms (n=30); during the refresh 31.7 ms / 63.5 ms (n=312):
0.96× / 1.09×; 343/343 images acted on; the refresh took 325 s (48 steps) and passed its gate (3 corrections).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from nonebot.log import logger

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests" / "plugin"), str(ROOT / "tests" / "e2e")]

from bench_plugin import FIXTURES, hit_image, row, variant  # noqa: E402
from bot_process import ACCESS_TOKEN, start_bot, stop_bot  # noqa: E402
from nailong_testkit import (  # noqa: E402
    SUPERUSER,
    FakeOneBot,
    ImageServer,
    free_port,
    group_message_payload,
    image_segment,
    md5_name,
    text_segment,
)

from nailong_bot.corrections import Corrections  # noqa: E402
from nailong_vision.classifier import Classifier, bundled_model_path  # noqa: E402

GROUP = 1


def seed_corrections(feedback: Path) -> int:
    """The test fixtures' other images, corrected as not nailong: something for the refresh to learn."""
    corrections = Corrections(feedback)
    for path in sorted(FIXTURES.glob("other-*.jpg")):
        corrections.add(path.read_bytes(), label="other", group_id=GROUP, user_id=SUPERUSER, score=0.9,
                        model_version="bench", everywhere=True)  # fmt: skip
    return len(corrections)


async def measure(model: Path, hit: bytes, server: ImageServer, samples: int, budget: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="nailong-bench-refresh-"))
    corrected = seed_corrections(workdir / "data" / "feedback")
    port = free_port()
    process = start_bot(
        workdir,
        port,
        NAILONG_MODEL_PATH=str(model),
        NAILONG_DATA_DIR=str(workdir / "data"),
        NAILONG_REFRESH_BUDGET_SECONDS=str(budget),
        LOG_LEVEL="WARNING",
    )
    onebot = FakeOneBot(port, access_token=ACCESS_TOKEN)
    message_ids = iter(range(1, 1_000_000))
    posted: list[int] = []

    async def post_and_wait(index: int) -> float:
        message_id = next(message_ids)
        data = variant(hit, index)
        url = server.add(f"{message_id}.jpg", data)
        payload = group_message_payload(
            [image_segment(url, file=md5_name(data))], self_id=42, group_id=GROUP, user_id=5, message_id=message_id
        )
        posted.append(message_id)
        started = time.monotonic()
        await onebot.post(payload)
        acted_at, _ = await onebot.wait_for("delete_msg", timeout=60, message_id=message_id)
        return acted_at - started

    try:
        await onebot.connect(timeout=60)
        print(f"Bot: {model}, {corrected} corrections, refresh budget {budget} s, CPU cores {os.cpu_count()}")
        await post_and_wait(100_000)  # warm-up
        idle = []
        for i in range(samples):
            await asyncio.sleep(1.0)
            idle.append(await post_and_wait(i))

        replies = len(onebot.actions("send_msg"))
        started = time.monotonic()
        await onebot.post(
            group_message_payload(
                [text_segment("/nailong refresh")], self_id=42, group_id=GROUP, user_id=SUPERUSER, role="member"
            )
        )
        during = []
        while len(onebot.actions("send_msg")) < replies + 2 and time.monotonic() - started < budget * 3 + 600:
            await asyncio.sleep(1.0)
            during.append(await post_and_wait(10_000 + len(during)))
        refresh_seconds = time.monotonic() - started
        answers = [p["message"][0]["data"]["text"] for _, p in onebot.actions("send_msg")[replies:]]

        acted = {p["message_id"] for _, p in onebot.actions("delete_msg")}
        print("Decision latency, one image a second (posted → delete_msg):")
        idle_median, idle_p95 = row("idle", idle)
        during_median, during_p95 = row("during a refresh", during)
        print(f"  ratio during / idle: median {during_median / idle_median:.2f}×, p95 {during_p95 / idle_p95:.2f}×")
        print(f"  images acted on: {len(acted & set(posted))}/{len(posted)}")
        print(f"Refresh wall time (command → answer): {refresh_seconds:.0f} s")
        print("Answers:\n  " + "\n".join(answers).replace("\n", "\n  "))
    finally:
        await onebot.close()
        stop_bot(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40, help="idle samples, one a second")
    parser.add_argument("--budget", type=int, default=600, help="NAILONG_REFRESH_BUDGET_SECONDS for the refresh")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    model = Path(os.environ.get("NAILONG_MODEL_PATH") or bundled_model_path())
    if not model.with_suffix(".pt").is_file():
        raise SystemExit(f"{model.with_suffix('.pt')} is missing: a refresh starts from the model's checkpoint")
    classifier = Classifier(model, providers=["CPUExecutionProvider"])
    with ImageServer() as server:
        asyncio.run(measure(model, hit_image(classifier), server, args.samples, args.budget))


if __name__ == "__main__":
    main()
