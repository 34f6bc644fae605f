"""One group's flood of huge images does not hold up another group (issue 21, finding 11), through
`bot.py` and the real WebSocket: a member of group A posts 16 nailong PNGs just under the pixel cap
(each takes most of the decode memory, so they are decoded one at a time), then a nailong photo is
posted in group B. B's must be recalled while A's are still being decided, not after them.
In QQ every image comes from QQ's image hosts, which have no per-host download limit; the test's image
server stands in for them with that limit raised. bench/bench_fairness.py measures how long B waits."""

from __future__ import annotations

import math

from bot_process import running_bot
from nailong_testkit import YELLOW, FakeOneBot, group_message_payload, image_segment, patterned, png_variant, still

from nailong_bot.config import Config

GROUP_A, GROUP_B = 601, 602
FLOOD = 16


def near_cap_nailong() -> bytes:
    """A flat nailong-yellow PNG just under NAILONG_MAX_PIXELS: tens of KB, ~100 MB to decode."""
    cap = Config().nailong_max_pixels
    width = int(math.sqrt(cap * 10 / 11))
    return still(YELLOW, "PNG", size=(width, cap // width - 1))


async def post(onebot: FakeOneBot, url: str, group_id: int, message_id: int) -> None:
    await onebot.post(
        group_message_payload([image_segment(url)], self_id=42, group_id=group_id, user_id=900001, message_id=message_id)
    )


async def test_a_flood_of_near_cap_images_does_not_hold_up_another_group(tmp_path, image_server) -> None:
    flood = near_cap_nailong()
    async with running_bot(tmp_path / "bot", NAILONG_MAX_DOWNLOADS_PER_HOST="64") as onebot:
        for i in range(FLOOD):
            url = image_server.add(f"fair-{i}.png", png_variant(flood, f"fair-{i}"), "image/png")
            await post(onebot, url, GROUP_A, 7000 + i)
        await post(onebot, image_server.add("fair-b.jpg", patterned(YELLOW, seed=7100)), GROUP_B, 7100)
        await onebot.wait_for("delete_msg", timeout=120, message_id=7100)
        for i in range(FLOOD):
            await onebot.wait_for("delete_msg", timeout=120, message_id=7000 + i)
    recalled = [params["message_id"] for _, params in onebot.actions("delete_msg")]
    before_b = recalled.index(7100)
    # Fair: B waits for at most the images of A already being decided when it came (its group's
    # share of the decision slots, NAILONG_WORKERS), never for A's whole queue.
    assert before_b <= Config().nailong_workers + 1, recalled
