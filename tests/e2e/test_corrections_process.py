"""A correction through the real adapter: the admin replies to the bot's warning (resolved by get_msg)."""

from __future__ import annotations

import asyncio
import time

from nailong_testkit import (
    YELLOW,
    FakeOneBot,
    group_message_payload,
    image_segment,
    md5_name,
    patterned,
    text_segment,
)

GROUP = 201
WARNING_ID = 7001


async def post_image(onebot: FakeOneBot, url: str, message_id: int, file: str | None = None) -> None:
    await onebot.post(
        group_message_payload(
            [image_segment(url, file=file)], self_id=42, group_id=GROUP, user_id=5, message_id=message_id
        )
    )


async def test_reply_to_the_warning_corrects_the_image(onebot: FakeOneBot, image_server) -> None:
    data = patterned(YELLOW, seed=21)
    url = image_server.add("e2e-corrected.jpg", data)
    onebot.responses["send_group_msg"] = (0, {"message_id": WARNING_ID})
    await post_image(onebot, url, 6001, file=md5_name(data))
    await onebot.wait_for("delete_msg", message_id=6001)
    await onebot.wait_for("send_group_msg", group_id=GROUP)

    # What the OneBot implementation returns for the warning; QQ adds an @ of its sender to a reply.
    onebot.responses["get_msg"] = (
        0,
        {
            "time": int(time.time()),
            "message_type": "group",
            "message_id": WARNING_ID,
            "real_id": WARNING_ID,
            "sender": {"user_id": 42, "nickname": "bot"},
            "message": [{"type": "at", "data": {"qq": "5"}}, text_segment(" 检测到奶龙图片")],
        },
    )
    reply = [{"type": "reply", "data": {"id": str(WARNING_ID)}}, {"type": "at", "data": {"qq": "42"}}]
    await onebot.post(
        group_message_payload(
            [*reply, text_segment(" /奶龙 误判")], self_id=42, group_id=GROUP, user_id=5, role="admin"
        )
    )
    await onebot.wait_for("get_msg", message_id=WARNING_ID)
    _, answer = await onebot.wait_for("send_msg", group_id=GROUP)
    assert answer["message"][0]["data"]["text"].startswith("已记录：这不是奶龙")

    await post_image(onebot, url, 6002, file=md5_name(data))
    barrier = image_server.add("e2e-barrier-after-correction.jpg", patterned(YELLOW, seed=22))
    await post_image(onebot, barrier, 6003)
    await onebot.wait_for("delete_msg", message_id=6003)
    await asyncio.sleep(0.3)
    assert not [p for _, p in onebot.actions("delete_msg") if p["message_id"] == 6002]
    assert image_server.requests["/img/e2e-corrected.jpg"] == 2  # the cache was cleared, not trusted
