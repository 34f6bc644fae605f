"""`python bot.py` against slow and hostile sources, through the real reverse WebSocket:
a slow image host, local paths that block, images hidden in a forwarded message."""

from __future__ import annotations

import asyncio
import signal

from bot_process import running_bot, wait_for_exit
from nailong_testkit import YELLOW, FakeOneBot, ImageServer, group_message_payload, image_segment, still

WARNING = "检测到奶龙图片"


def image_event(url: str | None, group_id: int, message_id: int, **extra) -> dict:
    return group_message_payload(
        [image_segment(url, **extra)], self_id=42, group_id=group_id, user_id=5, message_id=message_id
    )


def recalled(onebot: FakeOneBot, message_ids: range) -> list[int]:
    return [p["message_id"] for _, p in onebot.actions("delete_msg") if p["message_id"] in message_ids]


async def test_a_slow_host_does_not_delay_another_group(onebot: FakeOneBot, image_server) -> None:
    with ImageServer(host="127.0.0.2") as slow_host:  # another address: per-host limits go by address
        # A 43-byte nailong GIF sent a byte every 0.1 s: never a read time-out, 4 s a download.
        slow = slow_host.add("e2e-slow.gif", still(YELLOW, "GIF", size=(4, 4)), "image/gif")
        slow = slow.replace("/img/", "/trickle/") + "?every=0.1"
        for i in range(6):
            await onebot.post(image_event(f"{slow}&n={i}", group_id=121, message_id=5021 + i))
        for _ in range(100):
            if slow_host.requests["/trickle/e2e-slow.gif"] >= 2:
                break
            await asyncio.sleep(0.05)
        positive = image_server.add("e2e-beside-slow.jpg", still(YELLOW, size=(52, 52)))
        await onebot.post(image_event(positive, group_id=122, message_id=5027))
        await onebot.wait_for("delete_msg", message_id=5027)
        assert recalled(onebot, range(5021, 5028)) == [5027]
        # The slow host's images are decided too, two at a time.
        for message_id in range(5021, 5027):
            await onebot.wait_for("delete_msg", timeout=60, message_id=message_id)


async def test_images_in_a_forwarded_message(onebot: FakeOneBot, image_server) -> None:
    inside = image_server.add("e2e-forwarded.jpg", still(YELLOW, size=(53, 53)))
    onebot.responses["get_forward_msg"] = (0, {"messages": [{"message": [image_segment(inside)]}]})
    try:
        forward = {"type": "forward", "data": {"id": "e2e-forward-1"}}
        await onebot.post(group_message_payload([forward], self_id=42, group_id=125, user_id=5, message_id=5041))
        await onebot.wait_for("get_forward_msg", id="e2e-forward-1")
        await onebot.wait_for("delete_msg", message_id=5041)
        _, params = await onebot.wait_for("send_group_msg", group_id=125)
        assert params["message"][0] == {"type": "at", "data": {"qq": "5"}}  # recalled: @ its sender, no quote
    finally:
        del onebot.responses["get_forward_msg"]


async def test_blocking_local_paths_are_refused_and_sigterm_stops(tmp_path, image_server) -> None:
    # /proc/kmsg is a "regular file" whose read waits for the kernel's next message; a link hides it.
    link = tmp_path / "cache" / "E1.jpg"
    link.parent.mkdir()
    link.symlink_to("/proc/kmsg")
    async with running_bot(tmp_path / "bot") as onebot:
        onebot.responses["get_image"] = (0, {"file": str(link)})
        for i in range(8):
            await onebot.post(image_event(None, group_id=131, message_id=5051 + i, file=f"K{i}.image"))
        positive = image_server.add("e2e-beside-kmsg.jpg", still(YELLOW, size=(54, 54)))
        await onebot.post(image_event(positive, group_id=132, message_id=5060))
        await onebot.wait_for("delete_msg", message_id=5060)
        assert recalled(onebot, range(5051, 5061)) == [5060]
        await onebot.close()
        onebot.process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        assert wait_for_exit(onebot.process, timeout=30) is not None  # type: ignore[attr-defined]
        log = (tmp_path / "bot" / "bot.log").read_text(errors="replace")
        assert log.count("refused a system file") == 8
