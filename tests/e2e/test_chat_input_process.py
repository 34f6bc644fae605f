"""Chat that forgives typing (issue 24), through `bot.py` and the real WebSocket: the slash as phones type
it, no space after the command word, any letter case, an @-mention of the bot, a typo's one line, the
threshold's safe floor (and its one audit record once confirmed), `wrong` without a reply skipping hits
already corrected, and a group's warning that says its strike once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot_process import running_bot
from nailong_testkit import YELLOW, FakeOneBot, patterned, text_segment
from test_group_policy_process import MEMBER, ask, post_image, warning_about

AT_BOT = {"type": "at", "data": {"qq": "42"}}


@pytest.fixture(scope="module")
async def bot(tmp_path_factory) -> AsyncIterator[FakeOneBot]:
    workdir: Path = tmp_path_factory.mktemp("chat-input")
    async with running_bot(workdir, NAILONG_DATA_DIR=str(workdir / "data")) as client:
        client.audit = workdir / "data" / "audit.jsonl"  # type: ignore[attr-defined]
        yield client


def audit_records(bot: FakeOneBot) -> list[dict]:
    path: Path = bot.audit  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    ("typed", "first_line"),
    [
        ("／奶龙 状态", "奶龙检测：已开启"),
        ("、奶龙 状态", "奶龙检测：已开启"),
        ("/奶龙状态", "奶龙检测：已开启"),
        ("/NAILONG status", "Detection: on"),
        ([AT_BOT, text_segment(" 奶龙 状态")], "奶龙检测：已开启"),
        ([AT_BOT, text_segment(" /nailong status")], "Detection: on"),
    ],
    ids=["full-width-slash", "pinyin-slash", "no-space", "upper-case", "at-bot", "at-bot-with-slash"],
)
async def test_each_way_of_typing_it_gets_its_answer(bot: FakeOneBot, typed, first_line: str) -> None:
    assert (await ask(bot, typed, 701)).splitlines()[0] == first_line


async def test_no_space_after_the_command_word_switches_on(bot: FakeOneBot) -> None:
    assert await ask(bot, "/nailong off", 702) == "Nailong detection is OFF in this group."
    assert await ask(bot, "/奶龙开启", 702) == "已在本群开启奶龙检测。"
    assert "奶龙检测：已开启" in await ask(bot, "／奶龙 状态", 702)


async def test_a_typo_gets_one_line(bot: FakeOneBot) -> None:
    assert await ask(bot, "/奶龙 开", 703) == "你是不是想用 /奶龙 开启？"
    assert await ask(bot, "/nailong stauts", 703) == "Did you mean /nailong status?"
    assert len((await ask(bot, "/奶龙 帮助", 703)).splitlines()) <= 8


async def test_a_threshold_of_zero_needs_confirming(bot: FakeOneBot) -> None:
    group = 704
    before = len(audit_records(bot))
    answer = await ask(bot, "/奶龙 阈值 0", group)
    assert answer.splitlines()[-1] == "确实要这样设置，请发送：/奶龙 阈值 0 确认"
    assert "阈值：0.7" in await ask(bot, "/奶龙 状态", group)
    assert await ask(bot, "/奶龙 阈值", group) == "现在：0.7（全局默认：模型推荐值）\n用法：/奶龙 阈值 0.85 — 判定阈值，0 到 1 之间"
    assert len(audit_records(bot)) == before

    assert await ask(bot, "/奶龙 阈值 0 确认", group) == "阈值已设为 0.0"
    assert "阈值：0.0" in await ask(bot, "/奶龙 状态", group)
    (record,) = audit_records(bot)[before:]
    assert (record["action"], record["before"], record["after"]) == (
        "group-settings", {"group_id": group, "threshold": 0.7}, {"group_id": group, "threshold": 0.0}
    )  # fmt: skip


async def test_wrong_without_a_reply_skips_a_corrected_hit(bot: FakeOneBot, image_server) -> None:
    group = 705
    for message_id in (7051, 7052):
        await post_image(bot, image_server.add(f"skip-{message_id}.jpg", patterned(YELLOW, seed=message_id)),
                         group, message_id)  # fmt: skip
        await warning_about(bot, message_id)
    first = await ask(bot, "/奶龙 误判", group)
    second = await ask(bot, "/奶龙 误判", group)
    assert "（本群最近一次未纠错的命中：tester " in first and "（本群最近一次未纠错的命中：tester " in second
    assert f"已撤销成员 {MEMBER} 的这次记过" in first and f"已撤销成员 {MEMBER} 的这次记过" in second
    assert (await ask(bot, "/奶龙 误判", group)).startswith("本群最近没有未纠错的奶龙命中")
    corrections = [r for r in audit_records(bot) if r["action"] == "correction" and r["before"]["group_id"] == group]
    assert sorted(r["before"]["message_id"] for r in corrections) == [7051, 7052]


async def test_a_warning_that_says_its_strike_gets_no_second_strike_line(bot: FakeOneBot, image_server) -> None:
    group = 706
    assert (await ask(bot, "/nailong mute 2 10m", group)).startswith("Mute set: ")
    assert (await ask(bot, "/奶龙 文案 {user} 第 {strikes} 次", group)).startswith("警告已设为")
    await post_image(bot, image_server.add("says-strike.jpg", patterned(YELLOW, seed=7061)), group, 7061)
    warning = await warning_about(bot, 7061)
    mention, words = {"type": "at", "data": {"qq": str(MEMBER)}}, {"type": "text", "data": {"text": " 第 1 次"}}
    assert warning["message"] == [mention, words]  # recalled: not quoted; and no second strike line
