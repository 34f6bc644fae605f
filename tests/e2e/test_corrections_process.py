"""Corrections through the real adapter: the admin replies to the bot's warning or to the image (resolved by
get_msg); one group's admin moderates one group, until a superuser confirms the correction for every group."""

from __future__ import annotations

import asyncio
import time

from nailong_testkit import (
    BLUE,
    SUPERUSER,
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
    # The cache kept the model's word (by the file's name); the group's correction is applied after it.
    assert image_server.requests["/img/e2e-corrected.jpg"] == 1


GROUP_A, GROUP_B = 301, 302


async def answers(onebot: FakeOneBot, group_id: int, count: int, timeout: float = 10.0) -> list[str]:
    """The bot's first ``count`` answers in ``group_id``, waiting for them."""
    deadline = time.monotonic() + timeout
    while True:
        said = [p["message"][0]["data"]["text"] for _, p in onebot.actions("send_msg") if p.get("group_id") == group_id]
        if len(said) >= count or time.monotonic() > deadline:
            return said
        await asyncio.sleep(0.05)


async def settled(onebot: FakeOneBot, image_server, group_id: int, message_id: int) -> None:
    """Wait until the messages posted in ``group_id`` before now are decided: a nailong posted after them
    is recalled (a group's images are decided side by side, this one last)."""
    url = image_server.add(f"e2e-barrier-{message_id}.jpg", patterned(YELLOW, seed=message_id))
    await onebot.post(
        group_message_payload([image_segment(url)], self_id=42, group_id=group_id, user_id=6, message_id=message_id)
    )
    await onebot.wait_for("delete_msg", message_id=message_id)
    await asyncio.sleep(0.3)


async def test_a_miss_in_one_group_acts_in_another_only_once_a_superuser_confirms_it(
    onebot: FakeOneBot, image_server
) -> None:
    data = patterned(BLUE, seed=31)  # the model lets it through
    url = image_server.add("e2e-scoped.jpg", data)

    async def post_in(group_id: int, message_id: int) -> None:
        await onebot.post(
            group_message_payload([image_segment(url)], self_id=42, group_id=group_id, user_id=7,
                                  message_id=message_id)
        )  # fmt: skip

    await post_in(GROUP_A, 6101)
    await post_in(GROUP_B, 6102)
    await settled(onebot, image_server, GROUP_A, 6103)
    onebot.responses["get_msg"] = (
        0,
        {
            "time": int(time.time()),
            "message_type": "group",
            "message_id": 6101,
            "real_id": 6101,
            "sender": {"user_id": 7, "nickname": "member"},
            "message": [image_segment(url)],
        },
    )
    reply = [{"type": "reply", "data": {"id": "6101"}}]

    async def command(text: str, **who) -> None:
        await onebot.post(
            group_message_payload([*reply, text_segment(text)], self_id=42, group_id=GROUP_A, **who)
        )

    await command("/奶龙 漏判", user_id=5, role="admin")
    (answer,) = await answers(onebot, GROUP_A, 1)
    assert answer.startswith("已记录：这是奶龙")
    # Acted on in group A at once; in group B the admin of group A has no say.
    await post_in(GROUP_A, 6104)
    await onebot.wait_for("delete_msg", message_id=6104)
    await post_in(GROUP_B, 6105)
    await settled(onebot, image_server, GROUP_B, 6106)
    assert not [p for _, p in onebot.actions("delete_msg") if p["message_id"] in (6101, 6102, 6105)]
    assert "只在本群生效" in answer

    await command("/奶龙 确认", user_id=SUPERUSER, role="member")
    confirmed = (await answers(onebot, GROUP_A, 2))[1:]
    assert confirmed and confirmed[0].startswith("已确认 1 条纠错")
    await post_in(GROUP_B, 6107)
    await onebot.wait_for("delete_msg", message_id=6107)
