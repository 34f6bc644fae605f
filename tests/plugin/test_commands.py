"""Chat commands: each sub-command, the Chinese aliases, bad arguments and who may use them."""

from __future__ import annotations

import pytest
from nonebot.adapters.onebot.v11 import Adapter, Bot
from nonebug import App

from nailong_testkit import SUPERUSER, group_event, text_segment

REFUSAL = (
    "只有群主、管理员和超级用户可以使用这个命令 / Only the group owner, admins and superusers can use this."
)


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
        "已在本群关闭奶龙检测 / Nailong detection is OFF in this group.",
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
    await run_command(app, command(text, role="member"), REFUSAL)
    assert guard.store.get(1) == before
    assert not guard.store.path.exists()


async def test_on_and_off(app: App, guard) -> None:
    await run_command(
        app, command("/nailong off"), "已在本群关闭奶龙检测 / Nailong detection is OFF in this group."
    )
    assert not guard.store.is_enabled(1)
    assert guard.store.is_enabled(2)  # per group
    await run_command(
        app, command("/nailong on"), "已在本群开启奶龙检测 / Nailong detection is ON in this group."
    )
    assert guard.store.is_enabled(1)


async def test_chinese_aliases(app: App, guard) -> None:
    await run_command(
        app, command("/奶龙 关闭"), "已在本群关闭奶龙检测 / Nailong detection is OFF in this group."
    )
    await run_command(
        app, command("/奶龙 开启"), "已在本群开启奶龙检测 / Nailong detection is ON in this group."
    )
    await run_command(app, command("/奶龙 阈值 0.85"), "阈值已设为 / threshold set to 0.85")
    await run_command(app, command("/奶龙 动作 撤回"), "动作已设为 / action set to 撤回 (recall)")
    await run_command(app, command("/奶龙 动作 回复"), "动作已设为 / action set to 回复警告 (reply)")
    await run_command(app, command("/奶龙 动作 都要"), "动作已设为 / action set to 撤回并回复 (both)")
    assert guard.store.get(1).threshold == 0.85
    assert "阈值 / threshold: 0.85" in await run_command(app, command("/奶龙 状态"))
    assert "/nailong threshold" in await run_command(app, command("/奶龙 帮助"))


async def test_threshold(app: App, guard) -> None:
    await run_command(app, command("/nailong threshold 0.85"), "阈值已设为 / threshold set to 0.85")
    assert guard.store.get(1).threshold == 0.85
    await run_command(app, command("/nailong threshold 0"), "阈值已设为 / threshold set to 0.0")


async def test_threshold_is_kept_as_given(app: App, guard) -> None:
    await run_command(app, command("/nailong threshold 0.99999"), "阈值已设为 / threshold set to 0.99999")
    assert guard.store.get(1).threshold == 0.99999
    assert "阈值 / threshold: 0.99999" in await run_command(app, command("/nailong status"))


@pytest.mark.parametrize("value", ["1", "1.0", "0.99999999999999999"])
async def test_a_threshold_that_turns_detection_off_is_refused(app: App, guard, value: str) -> None:
    answer = await run_command(app, command(f"/nailong threshold {value}"))
    assert answer.startswith(f"阈值 {value} 等于关闭检测；要关闭请用 /nailong off")
    assert guard.store.get(1).threshold == guard.store.defaults.threshold
    assert not guard.store.path.exists()


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "nan", "inf", "", "0.5 0.6"])
async def test_bad_threshold_changes_nothing(app: App, guard, value: str) -> None:
    answer = await run_command(app, command(f"/nailong threshold {value}".strip()))
    assert "用法 / usage" in answer
    assert guard.store.get(1).threshold == guard.store.defaults.threshold
    assert not guard.store.path.exists()


@pytest.mark.parametrize(
    ("name", "stored"), [("recall", "recall"), ("reply", "reply"), ("both", "both"), ("BOTH", "both")]
)
async def test_action(app: App, guard, name: str, stored: str) -> None:
    answer = await run_command(app, command(f"/nailong action {name}"))
    assert answer.startswith("动作已设为 / action set to")
    assert guard.store.get(1).action.value == stored


@pytest.mark.parametrize("text", ["/nailong action delete", "/nailong action", "/奶龙 动作 踢出"])
async def test_unknown_action_changes_nothing(app: App, guard, text: str) -> None:
    answer = await run_command(app, command(text))
    assert answer.startswith("未知的动作 / unknown action")
    assert guard.store.get(1).action == guard.store.defaults.action


async def test_status(app: App, guard) -> None:
    guard.stats.add(1, checked=12, hits=3)
    answer = await run_command(app, command("/nailong status"))
    assert answer.splitlines() == [
        "奶龙检测 / detection: 已开启 (on)",
        "阈值 / threshold: 0.7",
        "动作 / action: 撤回并回复 (both)",
        "模型 / model: tiny-test 0.0.1",
        "本群今天检查 12 张图片，命中 3 次；近 7 天检查 12 张，命中 3 次 / today: 12 images checked, 3 hits; "
        "last 7 days: 12 checked, 3 hits",
        "免检 / exempt: 群主、管理员和超级用户免检 (owner, admins and superusers are exempt)；豁免名单 / allow-list: "
        "无 (none)",
        "禁言 / mute: 不禁言 (off)",
        "警告 / warning: 检测到奶龙图片",
        "今天免检图片 0 张，观察模式命中 0 次 / today: 0 images of exempt senders, 0 hits observed",
        "复核 / review: 关 (off)",
    ]


async def test_help_and_unknown_subcommand(app: App, guard) -> None:
    from nailong_bot.commands import help_text

    assert await run_command(app, command("/nailong help")) == help_text()
    assert await run_command(app, command("/nailong")) == help_text()
    answer = await run_command(app, command("/nailong explode"))
    assert answer.startswith("未知的子命令 / unknown sub-command: 'explode'")
    usages = ["on", "off", "threshold 0.85", "action recall|reply|both|observe", "status"]
    usages += ["exempt-admins on|off", "allow @成员|QQ号", "disallow", "allowed", "mute 3 10m", "text <内容>"]
    usages += ["wrong", "miss", "undo", "feedback", "help"]
    for usage in usages:
        assert f"/nailong {usage}" in help_text()


async def test_settings_survive_a_restart(app: App, start_guard, tmp_path) -> None:
    data_dir = tmp_path / "kept"
    await start_guard(data_dir)
    await run_command(
        app,
        command("/nailong off", group_id=7),
        "已在本群关闭奶龙检测 / Nailong detection is OFF in this group.",
    )
    await run_command(app, command("/nailong threshold 0.9", group_id=7), "阈值已设为 / threshold set to 0.9")
    await run_command(
        app, command("/nailong action reply", group_id=7), "动作已设为 / action set to 回复警告 (reply)"
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
    assert answer.startswith("保存设置失败")
    assert guard.store.is_enabled(1)
