"""`/nailong <sub-command>` (alias `/奶龙`) for group owners, admins and superusers.

Sub-commands are registered with :func:`subcommand`; adding one is a decorated function here.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nonebot import on_command
from nonebot.adapters.onebot.v11 import GROUP_ADMIN, GROUP_OWNER, Bot, GroupMessageEvent, Message
from nonebot.log import logger
from nonebot.params import CommandArg
from nonebot.permission import SUPERUSER

from .runtime import Runtime, get_runtime
from .storage import Action

ADMIN = GROUP_ADMIN | GROUP_OWNER | SUPERUSER
ACTION_NAMES = {
    "recall": Action.RECALL, "撤回": Action.RECALL,
    "reply": Action.REPLY, "回复": Action.REPLY,
    "both": Action.BOTH, "都要": Action.BOTH,
}  # fmt: skip
ACTION_LABELS = {
    Action.RECALL: "撤回 (recall)",
    Action.REPLY: "回复警告 (reply)",
    Action.BOTH: "撤回并回复 (both)",
    Action.LOG: "仅记录日志 (log only)",
}
REFUSAL = (
    "只有群主、管理员和超级用户可以使用这个命令 / Only the group owner, admins and superusers can use this."
)


@dataclass(frozen=True)
class Invocation:
    bot: Bot
    event: GroupMessageEvent
    args: list[str]
    runtime: Runtime


Handler = Callable[[Invocation], Awaitable[str]]


@dataclass(frozen=True)
class SubCommand:
    names: tuple[str, ...]
    usage: str
    handler: Handler


SUBCOMMANDS: dict[str, SubCommand] = {}
# In registration order, for the help text.
_REGISTERED: list[SubCommand] = []


def subcommand(*names: str, usage: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` under every name in ``names`` (English and Chinese)."""

    def register(handler: Handler) -> Handler:
        entry = SubCommand(names, usage, handler)
        _REGISTERED.append(entry)
        for name in names:
            SUBCOMMANDS[name.lower()] = entry
        return handler

    return register


def format_threshold(value: float) -> str:
    """0.85 → "0.85", 0.5 → "0.5", 1 → "1.0": a plain decimal, never scientific notation."""
    text = f"{value:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def help_text() -> str:
    lines = ["奶龙守卫命令（群主/管理员/超级用户可用）/ nailong guard commands:"]
    lines += [f"/nailong {entry.usage}" for entry in _REGISTERED]
    lines.append("中文别名 / Chinese aliases: /奶龙 开启|关闭|阈值 0.85|动作 撤回|回复|都要|状态|帮助")
    return "\n".join(lines)


@subcommand("on", "开启", usage="on | 开启 — 在本群开启奶龙检测 / enable in this group")
async def _enable(call: Invocation) -> str:
    await call.runtime.store.update(call.event.group_id, enabled=True)
    return "已在本群开启奶龙检测 / Nailong detection is ON in this group."


@subcommand("off", "关闭", usage="off | 关闭 — 在本群关闭（不再下载图片）/ disable in this group")
async def _disable(call: Invocation) -> str:
    await call.runtime.store.update(call.event.group_id, enabled=False)
    return "已在本群关闭奶龙检测 / Nailong detection is OFF in this group."


@subcommand(
    "threshold", "阈值", usage="threshold 0.85 | 阈值 0.85 — 判定阈值，0 到 1 之间 / score needed for a hit"
)
async def _threshold(call: Invocation) -> str:
    usage = "用法 / usage: /nailong threshold 0.85（0 到 1 之间的小数 / a decimal within 0..1）"
    if len(call.args) != 1:
        return usage
    try:
        value = float(call.args[0])
    except ValueError:
        return f"阈值必须是数字 / threshold must be a number: {call.args[0]!r}\n{usage}"
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return f"阈值必须在 0 到 1 之间 / threshold must be within 0..1: {call.args[0]!r}\n{usage}"
    settings = await call.runtime.store.update(call.event.group_id, threshold=round(value, 4))
    return f"阈值已设为 / threshold set to {format_threshold(settings.threshold)}"


@subcommand(
    "action", "动作", usage="action recall|reply|both | 动作 撤回|回复|都要 — 命中后做什么 / what a hit does"
)
async def _action(call: Invocation) -> str:
    usage = "用法 / usage: /nailong action recall|reply|both（/奶龙 动作 撤回|回复|都要）"
    action = ACTION_NAMES.get(call.args[0].lower()) if len(call.args) == 1 else None
    if action is None:
        given = f": {call.args[0]!r}" if call.args else ""
        return f"未知的动作 / unknown action{given}\n{usage}"
    settings = await call.runtime.store.update(call.event.group_id, action=action)
    return f"动作已设为 / action set to {ACTION_LABELS[settings.action]}"


@subcommand("status", "状态", usage="status | 状态 — 查看本群设置和统计 / settings and counts")
async def _status(call: Invocation) -> str:
    runtime, group = call.runtime, call.event.group_id
    settings = runtime.store.get(group)
    info = runtime.classifier.info
    checked, hits = runtime.stats.checked[group], runtime.stats.hits[group]
    return "\n".join(
        [
            f"奶龙检测 / detection: {'已开启 (on)' if settings.enabled else '已关闭 (off)'}",
            f"阈值 / threshold: {format_threshold(settings.threshold)}",
            f"动作 / action: {ACTION_LABELS[settings.action]}",
            f"模型 / model: {info.name} {info.version}",
            f"本群自启动以来检查 {checked} 张图片，命中 {hits} 次 / "
            f"since start-up: {checked} images checked, {hits} hits",
        ]
    )


@subcommand("help", "帮助", usage="help | 帮助 — 显示本帮助 / this help")
async def _help(call: Invocation) -> str:
    return help_text()


nailong_command = on_command("nailong", aliases={"奶龙"}, priority=5, block=True, force_whitespace=True)


@nailong_command.handle()
async def _dispatch(bot: Bot, event: GroupMessageEvent, arg: Message = CommandArg()) -> None:
    runtime = get_runtime()
    if not await ADMIN(bot, event):
        await nailong_command.finish(REFUSAL)
    if runtime is None:
        await nailong_command.finish(
            "奶龙守卫未能启动，请查看日志 / The plugin failed to start; see the log."
        )
    words = arg.extract_plain_text().split()
    entry = SUBCOMMANDS.get(words[0].lower()) if words else SUBCOMMANDS["help"]
    if entry is None:
        await nailong_command.finish(f"未知的子命令 / unknown sub-command: {words[0]!r}\n{help_text()}")
    try:
        answer = await entry.handler(Invocation(bot, event, words[1:], runtime))
    except OSError as error:
        logger.error(f"保存群设置失败 / saving settings failed: group={event.group_id}: {error}")
        answer = "保存设置失败，设置未改变，请查看日志 / Saving failed, nothing changed; see the log."
    await nailong_command.finish(answer)
