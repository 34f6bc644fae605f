"""What group admins set, through `bot.py` and the real WebSocket: exempt senders, strikes that mute and
survive a restart, a correction taking its strike back, the group's own warning, the observe mode, and
members refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot_process import running_bot
from nailong_testkit import YELLOW, FakeOneBot, group_message_payload, image_segment, patterned, text_segment

ADMIN, MEMBER = 5, 900001
REFUSAL = ("只有群主、管理员和超级用户可以使用这个命令", "Only the group owner, admins and superusers can use this")


async def ask(
    onebot: FakeOneBot, text: str | list[dict], group_id: int, *, role: str = "admin", user_id: int = ADMIN
) -> str:
    """Send a command (its text, or its segments); the text of the bot's answer in that group."""
    seen = len(onebot.actions("send_msg"))
    segments = [text_segment(text)] if isinstance(text, str) else text
    await onebot.post(
        group_message_payload(segments, self_id=42, group_id=group_id, user_id=user_id, role=role)
    )
    for _ in range(200):
        answers = [p for _, p in onebot.actions("send_msg")[seen:] if p["group_id"] == group_id]
        if answers:
            return "".join(segment["data"].get("text", "") for segment in answers[0]["message"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer to {text!r}; calls: {onebot.calls}")


async def post_image(
    onebot: FakeOneBot, url: str, group_id: int, message_id: int, *, user_id: int = MEMBER, role: str = "member"
) -> None:
    await onebot.post(
        group_message_payload(
            [image_segment(url)], self_id=42, group_id=group_id, user_id=user_id, role=role, message_id=message_id
        )
    )


def warnings_about(onebot: FakeOneBot, message_id: int) -> list[dict]:
    """The bot's warnings about this message: those quoting it, or, once it was recalled (a recalled
    message cannot be quoted), the next warning that quotes nothing."""
    found, recalled = [], False
    for _, name, params in onebot.calls:
        if name == "delete_msg" and params["message_id"] == message_id:
            recalled = True
        elif name == "send_group_msg":
            first = params["message"][0]
            if first["type"] == "reply":
                if first["data"].get("id") == str(message_id):
                    found.append(params)
            elif recalled:
                found.append(params)
                recalled = False
    return found


def acted_on(onebot: FakeOneBot, message_id: int) -> list[str]:
    """The bot's calls about this message."""
    calls = [name for name, p in onebot.actions("delete_msg") if p["message_id"] == message_id]
    return calls + ["send_group_msg" for _ in warnings_about(onebot, message_id)]


async def warning_about(onebot: FakeOneBot, message_id: int, timeout: float = 20) -> dict:
    """The bot's warning about this message, once it is sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := warnings_about(onebot, message_id):
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no warning about {message_id}; calls: {onebot.calls}")


def bans(onebot: FakeOneBot, group_id: int) -> list[tuple[int, int]]:
    return [(p["user_id"], p["duration"]) for _, p in onebot.actions("set_group_ban") if p["group_id"] == group_id]


async def test_owner_admin_and_allowed_member_are_neither_downloaded_nor_acted_on(onebot, image_server) -> None:
    group = 401
    assert (await ask(onebot, "/nailong allow 123456", group)).startswith("Now exempt: 123456")
    senders = [(7, "owner", 6001), (8, "admin", 6002), (123456, "member", 6003)]
    for user_id, role, message_id in senders:
        url = image_server.add(f"exempt-{message_id}.jpg", patterned(YELLOW, seed=message_id))
        await post_image(onebot, url, group, message_id, user_id=user_id, role=role)
    barrier = image_server.add("exempt-barrier.jpg", patterned(YELLOW, seed=6004))
    await post_image(onebot, barrier, group, 6004)
    await onebot.wait_for("delete_msg", message_id=6004)
    await asyncio.sleep(0.3)
    for _, _, message_id in senders:
        assert image_server.requests[f"/img/exempt-{message_id}.jpg"] == 0
        assert acted_on(onebot, message_id) == []
    assert "今天免检图片 3 张" in await ask(onebot, "/奶龙 状态", group)


async def test_the_groups_warning_renders_and_a_bad_one_changes_nothing(onebot, image_server) -> None:
    group = 402
    answer = await ask(onebot, "/奶龙 文案 {user} 第 {strikes} 次了，得分 {score}", group)
    assert answer == "警告已设为：{user} 第 {strikes} 次了，得分 {score}"
    for bad in ("{user.__class__}", "{user} {nick}", "{"):
        assert (await ask(onebot, f"/nailong text {bad}", group)).startswith("Nothing changed: ")
    assert "Warning: {user} 第 {strikes} 次了，得分 {score}" in await ask(onebot, "/nailong status", group)

    await post_image(onebot, image_server.add("template.jpg", patterned(YELLOW, seed=6010)), group, 6010)
    _, warning = await onebot.wait_for("send_group_msg", group_id=group)
    mention, text = warning["message"]  # recalled: not quoted, the @ says who
    assert mention["type"] == "at" and mention["data"]["qq"] == str(MEMBER)
    assert text["data"]["text"].startswith(" 第 1 次了，得分 ") and float(text["data"]["text"].rsplit(" ", 1)[1]) > 0.9


async def test_observe_mode_acts_on_nothing_and_counts_the_hit(onebot, image_server) -> None:
    group = 403
    assert "observe" in await ask(onebot, "/nailong action observe", group)
    url = image_server.add("observed.jpg", patterned(YELLOW, seed=6020))
    await post_image(onebot, url, group, 6020)
    deadline = time.monotonic() + 30
    while "1 hits observed" not in (status := await ask(onebot, "/nailong status", group)):
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.3)
    assert "1 hits" in status and image_server.requests["/img/observed.jpg"] == 1
    assert acted_on(onebot, 6020) == [] and bans(onebot, group) == []


async def test_a_member_cannot_change_any_of_these_settings(onebot) -> None:
    group = 404
    before = await ask(onebot, "/nailong status", group)
    for text in (
        "/nailong exempt-admins off", "/奶龙 豁免管理 关", "/nailong allow 900001", "/nailong disallow 123456",
        "/nailong allowed", "/nailong mute 3 10m", "/奶龙 禁言 关", "/nailong text {user} 走开",
        "/奶龙 文案 重置", "/nailong action observe", "/奶龙 动作 观察",
    ):  # fmt: skip
        assert (await ask(onebot, text, group, role="member", user_id=MEMBER)).startswith(REFUSAL)
    assert await ask(onebot, "/nailong status", group) == before


async def test_a_correction_takes_its_strike_back(onebot, image_server) -> None:
    group = 405
    assert (await ask(onebot, "/nailong mute 2 10m", group)).startswith("Mute set: ")
    for message_id in (6030, 6031):
        await post_image(onebot, image_server.add(f"strike-{message_id}.jpg", patterned(YELLOW, seed=message_id)),
                         group, message_id)  # fmt: skip
        await warning_about(onebot, message_id)
    assert bans(onebot, group) == [(MEMBER, 600)]
    await asyncio.sleep(0.5)  # the decided image is kept right after the warning

    # "wrong" as a reply to the second image's message (the adapter asks get_msg what it replies to).
    onebot.responses["get_msg"] = (0, {
        "time": int(time.time()), "message_type": "group", "message_id": 6031, "real_id": 6031,
        "sender": {"user_id": MEMBER, "nickname": "member"}, "message": [image_segment("x")],
    })  # fmt: skip
    try:
        seen = len(onebot.actions("send_msg"))
        reply = [{"type": "reply", "data": {"id": "6031"}}, text_segment("/奶龙 误判")]
        await onebot.post(group_message_payload(reply, self_id=42, group_id=group, user_id=ADMIN, role="admin"))
        await onebot.wait_for("get_msg", message_id=6031)
        while len(onebot.actions("send_msg")) == seen:
            await asyncio.sleep(0.05)
    finally:
        del onebot.responses["get_msg"]
    answer = "".join(s["data"].get("text", "") for s in onebot.actions("send_msg")[seen][1]["message"])
    assert f"已撤销成员 {MEMBER} 的这次记过（还剩 1 次），已解除禁言" in answer
    assert bans(onebot, group) == [(MEMBER, 600), (MEMBER, 0)]

    # The next hit is the second strike again, not the third: the same 10 minutes, not 20.
    await post_image(onebot, image_server.add("strike-6032.jpg", patterned(YELLOW, seed=6032)), group, 6032)
    await onebot.wait_for("delete_msg", message_id=6032)
    for _ in range(100):
        if len(bans(onebot, group)) == 3:
            break
        await asyncio.sleep(0.05)
    assert bans(onebot, group) == [(MEMBER, 600), (MEMBER, 0), (MEMBER, 600)]


async def test_the_third_hit_mutes_and_a_restart_keeps_the_count(tmp_path: Path, image_server) -> None:
    group = 406
    workdir = tmp_path / "bot"
    async with running_bot(workdir) as first:
        assert (await ask(first, "/nailong mute 3 10m", group)).startswith("Mute set: ")
        for message_id in (6040, 6041):
            await post_image(first, image_server.add(f"restart-{message_id}.jpg", patterned(YELLOW, seed=message_id)),
                             group, message_id)  # fmt: skip
            await warning_about(first, message_id)
        assert bans(first, group) == []
    async with running_bot(workdir) as again:
        await post_image(again, image_server.add("restart-6042.jpg", patterned(YELLOW, seed=6042)), group, 6042)
        await again.wait_for("set_group_ban", group_id=group, user_id=MEMBER, duration=600)
        warning = await warning_about(again, 6042)
    note = warning["message"][-1]["data"]["text"]
    assert note == "（24 小时内第 3 次，已禁言 10 分钟）"
