"""Chat commands: each sub-command, the Chinese aliases, bad arguments and who may use them."""

from __future__ import annotations

import pytest
from nonebot.adapters.onebot.v11 import Adapter, Bot
from nonebug import App

from nailong_testkit import SUPERUSER, group_event, text_segment

REFUSAL = "Only the group owner, admins and superusers can use this."
REFUSAL_ZH = "只有群主、管理员和超级用户可以使用这个命令。"


def command(text: str, *, role: str = "admin", user_id: int = 5, group_id: int = 1):
    return group_event([text_segment(text)], role=role, user_id=user_id, group_id=group_id)


async def run_command(app: App, event, expected: str | None = None) -> str:
    """Send one command and return the bot's answer (checked against ``expected`` when given)."""
    from nailong_bot.commands import nailong_command

    answers: list[str] = []
    async with app.test_matcher(nailong_command) as ctx:
        bot = ctx.create_bot(base=Bot, adapter=ctx.create_adapter(base=Adapter), self_id="42")
        ctx.receive_event(bot, event)
        if expected is not None:
            ctx.should_call_send(event, expected, result=None)
        else:

            async def capture(event, message, **kwargs):
                answers.append(str(message))

            bot.send = capture  # type: ignore[method-assign]
        ctx.should_finished(nailong_command)
    return expected if expected is not None else answers[0]


@pytest.mark.parametrize(
    ("role", "user_id"),
    [("owner", 5), ("admin", 5), ("member", SUPERUSER)],
    ids=["owner", "admin", "superuser"],
)
async def test_allowed_roles_can_switch_off(app: App, guard, role: str, user_id: int) -> None:
    await run_command(
        app,
        command("/nailong off", role=role, user_id=user_id),
        "Nailong detection is OFF in this group.",
    )
    assert guard.store.get(1).enabled is False


@pytest.mark.parametrize(
    "text",
    [
        "/nailong off",
        "/nailong threshold 0.1",
        "/nailong action reply",
        "/nailong status",
        "/奶龙 关闭",
        "/nailong help",
    ],
)
async def test_members_are_refused_and_nothing_changes(app: App, guard, text: str) -> None:
    before = guard.store.get(1)
    await run_command(app, command(text, role="member"), REFUSAL_ZH if "奶龙" in text else REFUSAL)
    assert guard.store.get(1) == before
    assert not guard.store.path.exists()


async def test_on_and_off(app: App, guard) -> None:
    await run_command(
        app, command("/nailong off"), "Nailong detection is OFF in this group."
    )
    assert not guard.store.is_enabled(1)
    assert guard.store.is_enabled(2)  # per group
    await run_command(
        app, command("/nailong on"), "Nailong detection is ON in this group."
    )
    assert guard.store.is_enabled(1)


async def test_chinese_aliases_answer_in_chinese(app: App, guard) -> None:
    await run_command(app, command("/奶龙 关闭"), "已在本群关闭奶龙检测。")
    await run_command(app, command("/奶龙 开启"), "已在本群开启奶龙检测。")
    await run_command(app, command("/奶龙 阈值 0.85"), "阈值已设为 0.85")
    await run_command(app, command("/奶龙 动作 撤回"), "动作已设为：撤回")
    await run_command(app, command("/奶龙 动作 回复"), "动作已设为：回复警告")
    await run_command(app, command("/奶龙 动作 都要"), "动作已设为：撤回并回复")
    assert guard.store.get(1).threshold == 0.85
    assert "阈值：0.85" in await run_command(app, command("/奶龙 状态"))
    help_zh = await run_command(app, command("/奶龙 帮助"))
    assert "/奶龙 阈值 0.85" in help_zh and "nailong" not in help_zh and " / " not in help_zh


async def test_english_commands_answer_in_english(app: App, guard) -> None:
    import re

    for text in ("/nailong help", "/nailong threshold 0.8", "/nailong action 踢出", "/nailong mute 3 10m"):
        answer = await run_command(app, command(text))
        assert not re.search("[\u4e00-\u9fff]", answer.replace("踢出", "")), answer


async def test_threshold(app: App, guard) -> None:
    await run_command(app, command("/nailong threshold 0.85"), "Threshold set to 0.85")
    assert guard.store.get(1).threshold == 0.85
    answer = await run_command(app, command("/nailong threshold 0"))
    assert answer.splitlines() == [
        "Nothing changed: a threshold of 0.0 is below the safe floor of 0.3, where ordinary images are taken for "
        "nailong.",
        "To set it anyway, send: /nailong threshold 0 confirm",
    ]
    assert guard.store.get(1).threshold == 0.85
    await run_command(app, command("/nailong threshold 0 confirm"), "Threshold set to 0.0")


async def test_threshold_is_kept_as_given(app: App, guard) -> None:
    await run_command(app, command("/nailong threshold 0.99999"), "Threshold set to 0.99999")
    assert guard.store.get(1).threshold == 0.99999
    assert "Threshold: 0.99999" in await run_command(app, command("/nailong status"))


@pytest.mark.parametrize("value", ["1", "1.0", "0.99999999999999999"])
async def test_a_threshold_that_turns_detection_off_is_refused(app: App, guard, value: str) -> None:
    answer = await run_command(app, command(f"/nailong threshold {value}"))
    assert answer.startswith(f"Nothing changed: a threshold of {value} turns detection off; to do that, use /nailong off")
    assert guard.store.get(1).threshold == guard.store.defaults.threshold
    assert not guard.store.path.exists()


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "nan", "inf", "", "0.5 0.6"])
async def test_bad_threshold_changes_nothing(app: App, guard, value: str) -> None:
    answer = await run_command(app, command(f"/nailong threshold {value}".strip()))
    assert "Usage: /nailong threshold 0.85" in answer
    assert guard.store.get(1).threshold == guard.store.defaults.threshold
    assert not guard.store.path.exists()


@pytest.mark.parametrize(
    ("name", "stored"), [("recall", "recall"), ("reply", "reply"), ("both", "both"), ("BOTH", "both")]
)
async def test_action(app: App, guard, name: str, stored: str) -> None:
    answer = await run_command(app, command(f"/nailong action {name}"))
    assert answer.startswith("Action set to: ")
    assert guard.store.get(1).action.value == stored


@pytest.mark.parametrize(
    ("text", "answer"),
    [("/nailong action delete", "Unknown action: delete"), ("/nailong action a b", "Usage: /nailong action"),
     ("/奶龙 动作 踢出", "未知的动作：踢出")],
)  # fmt: skip
async def test_unknown_action_changes_nothing(app: App, guard, text: str, answer: str) -> None:
    assert (await run_command(app, command(text))).startswith(answer)
    assert guard.store.get(1).action == guard.store.defaults.action


async def test_status(app: App, guard) -> None:
    guard.stats.add(1, checked=12, hits=3)
    answer = await run_command(app, command("/nailong status"))
    assert answer.splitlines() == [
        "Detection: on",
        "Threshold: 0.7",
        "Action: recall and reply",
        "Model: tiny-test 0.0.1",
        "Today: 12 images checked, 3 hits; last 7 days: 12 checked, 3 hits",
        "Exempt: owner, admins and superusers are exempt; allow-list: none",
        "Mute: off",
        "Warning: 检测到奶龙图片",
        "Today: 0 images of exempt senders, 0 hits observed",
        "Review: off",
    ]
    answer = await run_command(app, command("/奶龙 状态"))
    assert answer.splitlines() == [
        "奶龙检测：已开启",
        "阈值：0.7",
        "动作：撤回并回复",
        "模型：tiny-test 0.0.1",
        "本群今天检查 12 张图片，命中 3 次；近 7 天检查 12 张，命中 3 次",
        "免检：群主、管理员和超级用户免检；豁免名单：无",
        "禁言：不禁言",
        "警告：检测到奶龙图片",
        "今天免检图片 0 张，观察模式命中 0 次",
        "复核：已关闭",
    ]


async def test_help_and_unknown_subcommand(app: App, guard) -> None:
    from nailong_bot.commands import help_text
    from nailong_bot.i18n import lang

    english = help_text(lang("en-US"))
    assert await run_command(app, command("/nailong help all")) == english
    assert await run_command(app, command("/nailong help")) == help_text(lang("en-US"), everything=False)
    assert await run_command(app, command("/nailong")) == help_text(lang("en-US"), everything=False)
    answer = await run_command(app, command("/nailong explode"))
    assert answer == "No such sub-command: explode. Send /nailong help for the list."
    usages = ["on", "off", "threshold 0.85", "action recall|reply|both|observe", "status"]
    usages += ["exempt-admins on|off", "allow @member|QQ", "disallow", "allowed", "mute 3 10m", "text <warning>"]
    usages += ["wrong", "miss", "undo", "feedback", "help"]
    for usage in usages:
        assert f"/nailong {usage}" in english
    assert "/奶龙 豁免 @成员|QQ号" in help_text(lang("zh-CN"))


async def test_an_unknown_sub_command_is_echoed_cut_short(app: App, guard) -> None:
    answer = await run_command(app, command("/nailong " + "x" * 50_000))
    assert answer == "No such sub-command: " + "x" * 32 + "…. Send /nailong help for the list."


async def test_settings_survive_a_restart(app: App, start_guard, tmp_path) -> None:
    data_dir = tmp_path / "kept"
    await start_guard(data_dir)
    await run_command(
        app,
        command("/nailong off", group_id=7),
        "Nailong detection is OFF in this group.",
    )
    await run_command(app, command("/nailong threshold 0.9", group_id=7), "Threshold set to 0.9")
    await run_command(
        app, command("/nailong action reply", group_id=7), "Action set to: reply with a warning"
    )
    restarted = await start_guard(data_dir)
    settings = restarted.store.get(7)
    assert (settings.enabled, settings.threshold, settings.action.value) == (False, 0.9, "reply")
    assert restarted.store.get(8) == restarted.store.defaults


async def test_failed_save_changes_nothing(app: App, guard, monkeypatch) -> None:
    def disk_full(snapshot: dict) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(guard.store, "_write", disk_full)
    answer = await run_command(app, command("/nailong off"))
    assert answer.startswith("Saving failed, nothing changed")
    assert guard.store.is_enabled(1)
