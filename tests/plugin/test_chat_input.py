"""Chat that forgives typing (issue 24): how `/奶龙` is read from phone keyboards, the short help, a typo's
one line, a setting asked with no value, the threshold's safe floor, `wrong` without a reply skipping
hits already corrected, the warning's @ and its one strike line, and what a superuser is."""

from __future__ import annotations

import pytest
from nonebot.adapters.onebot.v11 import Message, MessageSegment
from nonebug import App

from nailong_testkit import YELLOW, group_event, patterned, text_segment
from nonebug_chat import ask, connect, post

from nailong_bot import admin
from nailong_bot.admin import Operator, Refused
from nailong_bot.chat_input import closest, read
from nailong_bot.describe import clock_text
from nailong_bot.i18n import lang
from nailong_bot.warning import render

NAMES = {"on", "开启", "status", "状态", "threshold", "阈值", "help", "帮助"}


def typed(text: str, *, to_me: bool = False, starts: tuple[str, ...] = ("/",), tail: tuple = ()):
    return read(Message([MessageSegment.text(text), *tail]), to_me=to_me, starts=starts, names=NAMES)


@pytest.mark.parametrize(
    ("text", "locale", "words"),
    [
        ("/奶龙 状态", "zh-CN", ["状态"]),
        ("／奶龙 状态", "zh-CN", ["状态"]),
        ("、奶龙 状态", "zh-CN", ["状态"]),
        ("  /奶龙　状态", "zh-CN", ["状态"]),  # a full-width space between the words
        ("/奶龙开启", "zh-CN", ["开启"]),
        ("/奶龙阈值 0.5", "zh-CN", ["阈值", "0.5"]),
        ("/NAILONG status", "en-US", ["status"]),
        ("/Nailong STATUS", "en-US", ["STATUS"]),
        ("/nailongstatus", "en-US", ["status"]),
        ("/奶龙", "zh-CN", []),
        ("／nailong threshold 0.1 confirm", "en-US", ["threshold", "0.1", "confirm"]),
    ],
)
def test_what_phones_type_is_read_as_the_command(text: str, locale: str, words: list[str]) -> None:
    command = typed(text)
    assert command is not None and (command.locale, command.words) == (locale, words)


@pytest.mark.parametrize(
    "text",
    [
        "奶龙 状态",  # no start and not addressed to the bot
        "奶龙真可爱",
        "/奶龙图",  # another plugin's command, perhaps
        "/奶龙开启了吗",
        "/nailongs",
        "看 /奶龙 状态",
        "/help",
        "",
    ],
)
def test_what_is_not_the_command(text: str) -> None:
    assert typed(text) is None


def test_an_at_mention_of_the_bot_needs_no_start_but_a_space_or_a_name() -> None:
    # The adapter has removed the @ of the bot and set to_me.
    assert typed("奶龙 状态", to_me=True).words == ["状态"]
    assert typed("/奶龙 状态", to_me=True).words == ["状态"]
    assert typed("奶龙状态", to_me=True).words == ["状态"]
    assert typed("奶龙真可爱", to_me=True) is None


def test_the_bots_own_command_start_is_honoured() -> None:
    assert typed("!奶龙 状态", starts=("!",)).words == ["状态"]
    assert typed("奶龙 状态", starts=("",)).words == ["状态"]
    assert typed("奶龙真可爱", starts=("",)) is None


def test_at_mentions_after_the_command_are_kept_as_segments() -> None:
    command = typed("、奶龙 豁免 ", tail=(MessageSegment.at(123),))
    assert command.words == ["豁免"] and [seg.type for seg in command.arg] == ["text", "at"]


@pytest.mark.parametrize(
    ("given", "meant"),
    [("开", "开启"), ("stauts", "status"), ("statu", "status"), ("threshlod", "threshold"), ("阈", "阈值"),
     ("xyz", None), ("踢出", None), ("o", "on")],
)  # fmt: skip
def test_closest_name(given: str, meant: str | None) -> None:
    names = ["on", "开启", "status", "状态", "threshold", "阈值", "help", "帮助"]
    assert closest(given, names) == meant


# --- the chat --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "first_line"),
    [("／奶龙 状态", "奶龙检测：已开启"), ("、奶龙 状态", "奶龙检测：已开启"), ("/NAILONG status", "Detection: on"),
     ("/奶龙状态", "奶龙检测：已开启")],
)  # fmt: skip
async def test_forgiven_forms_get_their_answer(app: App, guard, text: str, first_line: str) -> None:
    assert (await ask(app, text)).splitlines()[0] == first_line


async def test_no_space_after_the_command_word_switches_on(app: App, guard) -> None:
    await guard.store.update(1, enabled=False)
    assert await ask(app, "/奶龙开启") == "已在本群开启奶龙检测。"
    assert guard.store.get(1).enabled


async def test_an_at_mention_of_the_bot_is_answered(app: App, guard) -> None:
    assert (await ask(app, "奶龙 状态", to_me=True)).startswith("奶龙检测：已开启")


async def test_text_that_only_looks_like_it_is_left_to_others(app: App, guard) -> None:
    from nailong_bot.commands import nailong_command

    async with app.test_matcher(nailong_command) as ctx:
        ctx.receive_event(connect(ctx), group_event([text_segment("/奶龙图")], role="admin"))
        ctx.should_not_pass_rule(nailong_command)


@pytest.mark.parametrize(
    ("command", "more"), [("/奶龙", "全部命令：/奶龙 帮助 全部"), ("/nailong", "All commands: /nailong help all")]
)
async def test_help_is_short_in_the_commands_language(app: App, guard, command: str, more: str) -> None:
    for text in (command, f"{command} {'帮助' if '奶龙' in command else 'help'}"):
        lines = (await ask(app, text)).splitlines()
        assert len(lines) <= 8 and lines[-1] == more
        assert any(line.startswith(f"{command} ") for line in lines[1:-1])
    everything = await ask(app, f"{command} {'帮助 全部' if '奶龙' in command else 'help all'}")
    assert len(everything.splitlines()) > 8 and ("rollback" in everything or "回退" in everything)
    chinese = await ask(app, "/奶龙 帮助")
    assert "Nailong" not in chinese and "/nailong" not in chinese


@pytest.mark.parametrize(
    ("text", "answer"),
    [("/奶龙 开", "你是不是想用 /奶龙 开启？"), ("/nailong stauts", "Did you mean /nailong status?"),
     ("/奶龙 stauts", "你是不是想用 /奶龙 状态？"), ("/nailong 阈", "Did you mean /nailong threshold?"),
     ("/奶龙 踢出", "没有这个子命令：踢出。发送 /奶龙 帮助 查看命令。")],
)  # fmt: skip
async def test_a_typo_gets_one_line(app: App, guard, text: str, answer: str) -> None:
    assert await ask(app, text) == answer
    assert guard.store.get(1) == guard.store.defaults


async def test_a_setting_with_no_value_shows_it_and_where_it_comes_from(app: App, guard) -> None:
    assert (await ask(app, "/奶龙 阈值")).splitlines() == [
        "现在：0.7（全局默认：模型推荐值）", "用法：/奶龙 阈值 0.85 — 判定阈值，0 到 1 之间",
    ]  # fmt: skip
    await ask(app, "/奶龙 阈值 0.8")
    assert (await ask(app, "/nailong threshold")).startswith("Now: 0.8 (set in this group)\nUsage: /nailong threshold")
    assert (await ask(app, "/奶龙 动作")).startswith("现在：撤回并回复（全局默认，在 .env 的 NAILONG_RECALL / NAILONG_REPLY）\n")
    assert (await ask(app, "/nailong exempt-admins")).startswith(
        "Now: owner, admins and superusers are exempt (the global default, NAILONG_EXEMPT_ADMINS in .env)\n"
    )
    assert (await ask(app, "/奶龙 禁言")).startswith("现在：不禁言（全局默认，在 .env 的 NAILONG_MUTE_AFTER / NAILONG_MUTE_SECONDS）\n")
    assert (await ask(app, "/奶龙 文案")).startswith("现在：检测到奶龙图片（全局默认，在 .env 的 NAILONG_REPLY_TEXT）\n")
    assert (await ask(app, "/奶龙 豁免")).startswith("豁免名单为空。\n用法：/奶龙 豁免 @成员|QQ号")
    review = (await ask(app, "/奶龙 复核")).splitlines()
    assert review[0].startswith("现在：") and review[1].startswith("用法：/奶龙 复核 0.2")
    assert len(guard.audit.latest(10)) == 1  # only the threshold that was set


async def test_a_threshold_below_the_floor_needs_confirming(app: App, guard) -> None:
    before = guard.store.get(1).threshold
    for text in ("/奶龙 阈值 0.1", "/奶龙 阈值 0", "/奶龙 阈值 0 好的"):
        answer = await ask(app, text)
        assert guard.store.get(1).threshold == before, answer
    assert (await ask(app, "/奶龙 阈值 0.1")).splitlines() == [
        "未更改：阈值 0.1 低于安全下限 0.3，普通图片也会被当成奶龙处理。", "确实要这样设置，请发送：/奶龙 阈值 0.1 确认",
    ]  # fmt: skip
    assert guard.audit.latest(10) == []
    assert await ask(app, "/奶龙 阈值 0 确认") == "阈值已设为 0.0"
    assert await ask(app, "/nailong threshold 0.1 CONFIRM") == "Threshold set to 0.1"
    records = guard.audit.latest(10)
    assert [(r["before"]["threshold"], r["after"]["threshold"]) for r in reversed(records)] == [(0.7, 0.0), (0.0, 0.1)]
    assert await ask(app, "/奶龙 阈值 0.3") == "阈值已设为 0.3"  # the floor itself is safe


async def test_the_console_form_needs_its_checkbox_below_the_floor(guard) -> None:
    operator = Operator.console("web", "127.0.0.1")
    with pytest.raises(Refused) as refused:
        await admin.change_settings_form(guard, operator, 1, {"threshold": "0.1"})
    assert refused.value.key == "threshold_below_floor" and guard.store.get(1).threshold == 0.7
    change = await admin.change_settings_form(guard, operator, 1, {"threshold": "0.1", admin.CONFIRM_FIELD: "yes"})
    assert change.after.threshold == 0.1


async def test_wrong_without_a_reply_skips_hits_already_corrected(app: App, guard, image_server) -> None:
    first, second = patterned(YELLOW, seed=31), patterned(YELLOW, seed=32)
    await post(app, image_server.add("skip-first.jpg", first), message_id=301, acted_on=True)
    await post(app, image_server.add("skip-second.jpg", second), message_id=302, acted_on=True)
    times = {message: clock_text(guard.recent.lookup(message)[0].stored_at) for message in (301, 302)}

    answer = await ask(app, "/奶龙 误判")
    assert f"（本群最近一次未纠错的命中：tester {times[302]} 发的图片）" in answer
    answer = await ask(app, "/nailong wrong")
    assert f"(this group's latest hit not yet corrected: the image tester posted at {times[301]})" in answer
    assert len(guard.corrections) == 2  # one each, kept for this group
    assert (await ask(app, "/nailong wrong")).startswith("No hit in this group lately that is not corrected yet")
    assert len(guard.corrections) == 2  # nothing corrected twice


def test_the_default_warning_ats_the_sender_once() -> None:
    assert render("检测到奶龙图片", user_id=7, score=0.9, strikes=1) == Message(
        [MessageSegment.at(7), MessageSegment.text(" 检测到奶龙图片")]
    )
    assert render("别发 {user}", user_id=7, score=0.9, strikes=1) == Message(
        [MessageSegment.text("别发 "), MessageSegment.at(7)]
    )


@pytest.mark.parametrize(("text", "locale"), [("/nailong model", "en-US"), ("/奶龙 回退", "zh-CN")])
async def test_a_non_superuser_is_told_how_to_become_one(app: App, guard, text: str, locale: str) -> None:
    answer = await ask(app, text, role="owner")
    assert answer == lang(locale)("chat", "superusers_only")
    assert "SUPERUSERS" in answer and ".env" in answer
