"""`/nailong <sub-command>` (alias `/奶龙`) for group owners, admins and superusers.

Sub-commands are registered with :func:`subcommand`; adding one is a decorated function here.
Corrections (`wrong`, `miss`, `undo`) are sent as a reply to the image's message or to the bot's
warning about it; `wrong` without a reply means the group's latest hit (a recalled message cannot be
replied to).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from nonebot import on_command
from nonebot.adapters.onebot.v11 import GROUP_ADMIN, GROUP_OWNER, Bot, GroupMessageEvent, Message
from nonebot.exception import AdapterException
from nonebot.log import logger
from nonebot.params import CommandArg
from nonebot.permission import SUPERUSER

from nailong_vision.classifier import ModelError

from . import verdicts
from .corrections import Correction, FolderFull, Label
from .models import lineage, lineage_text
from .persist import CannotSave
from .recent import RecentImage
from .refresh import OUTCOME_NAMES, RefreshRecord, gate_lines
from .runtime import Runtime, get_runtime
from .setting_input import (
    MAX_ALLOWED,
    InvalidSetting,
    check_template,
    parse_members,
    parse_mute,
    parse_switch,
    parse_threshold,
)
from .storage import Action, GroupSettings
from .warning import PLACEHOLDERS, format_duration

ADMIN = GROUP_ADMIN | GROUP_OWNER | SUPERUSER
ACTION_NAMES = {
    "recall": Action.RECALL, "撤回": Action.RECALL,
    "reply": Action.REPLY, "回复": Action.REPLY,
    "both": Action.BOTH, "都要": Action.BOTH,
    "observe": Action.OBSERVE, "观察": Action.OBSERVE,
}  # fmt: skip
ACTION_LABELS = {
    Action.RECALL: "撤回 (recall)",
    Action.REPLY: "回复警告 (reply)",
    Action.BOTH: "撤回并回复 (both)",
    Action.LOG: "仅记录日志 (log only)",
    Action.OBSERVE: "观察：只统计，不处理 (observe: counted, nothing done)",
}
REFUSAL = (
    "只有群主、管理员和超级用户可以使用这个命令 / Only the group owner, admins and superusers can use this."
)
SUPERUSER_REFUSAL = "只有超级用户可以使用这个命令 / Only superusers can use this."
# What a correction to each label means, for the confirmation.
CORRECTED = {
    "other": ("这不是奶龙，以后相同的图片不再处理", "not nailong; from now on such images are let through"),
    "nailong": ("这是奶龙，以后相同的图片都会处理", "nailong; from now on such images are acted on"),
}
# Where a correction applies, the answer's second line.
IN_THIS_GROUP = (
    "只在本群生效；超级用户确认后（/奶龙 确认）对所有群生效 / In this group only; in every group once a superuser "
    "confirms it (/nailong confirm)."
)
EVERYWHERE = "对所有群生效 / In every group."
AGREED = "{} 个群的管理员意见一致，对所有群生效 / Admins of {} groups agree: in every group."
_CORRECTION_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Invocation:
    bot: Bot
    event: GroupMessageEvent
    args: list[str]
    runtime: Runtime
    # The whole argument (at-mentions included) and its text after the sub-command's name, as typed.
    message: Message = field(default_factory=Message)
    text: str = ""


Handler = Callable[[Invocation], Awaitable[str]]
Changed = TypeVar("Changed")


@dataclass(frozen=True)
class SubCommand:
    names: tuple[str, ...]
    usage: str
    handler: Handler
    superuser_only: bool


class CommandFailed(Exception):
    """Ends a sub-command with a one-line explanation (its message) instead of an answer."""


SUBCOMMANDS: dict[str, SubCommand] = {}
# In registration order, for the help text.
_REGISTERED: list[SubCommand] = []


def subcommand(*names: str, usage: str, superuser_only: bool = False) -> Callable[[Handler], Handler]:
    """Register ``handler`` under every name in ``names`` (English and Chinese)."""

    def register(handler: Handler) -> Handler:
        entry = SubCommand(names, usage, handler, superuser_only)
        _REGISTERED.append(entry)
        for name in names:
            SUBCOMMANDS[name.lower()] = entry
        return handler

    return register


def format_threshold(value: float) -> str:
    """0.85 → "0.85", 0.99999 → "0.99999", 0 → "0.0": a plain decimal, never scientific notation."""
    text = f"{value:.10f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def help_text() -> str:
    lines = ["奶龙守卫命令（群主/管理员/超级用户可用）/ nailong guard commands:"]
    lines += [f"/nailong {entry.usage}" for entry in _REGISTERED]
    lines.append(
        "中文别名 / Chinese aliases: /奶龙 开启|关闭|阈值 0.85|动作 撤回|回复|都要|观察|豁免管理 开|关|豁免 @成员|"
        "取消豁免 @成员|豁免名单|禁言 3 10分钟|禁言 关|文案 …|文案 重置|状态|误判|漏判|撤销|反馈|帮助"
    )
    lines.append("模型更新（仅超级用户）/ model refresh (superusers): /奶龙 模型|更新|回退")
    return "\n".join(lines)


async def _change(call: Invocation, **changes: object) -> GroupSettings:
    """Change this group's settings, logged with the admin's QQ number."""
    return await call.runtime.store.change(call.event.group_id, call.event.user_id, **changes)


@subcommand("on", "开启", usage="on | 开启 — 在本群开启奶龙检测 / enable in this group")
async def _enable(call: Invocation) -> str:
    await _change(call, enabled=True)
    return "已在本群开启奶龙检测 / Nailong detection is ON in this group."


@subcommand("off", "关闭", usage="off | 关闭 — 在本群关闭（不再下载图片）/ disable in this group")
async def _disable(call: Invocation) -> str:
    await _change(call, enabled=False)
    return "已在本群关闭奶龙检测 / Nailong detection is OFF in this group."


@subcommand(
    "threshold", "阈值", usage="threshold 0.85 | 阈值 0.85 — 判定阈值，0 到 1 之间 / score needed for a hit"
)
async def _threshold(call: Invocation) -> str:
    usage = "用法 / usage: /nailong threshold 0.85（0 到 1 之间、小于 1 的小数 / a decimal within 0..1, below 1）"
    if len(call.args) != 1:
        return usage
    try:
        value = parse_threshold(call.args[0])
    except InvalidSetting as error:
        return f"{error}\n{usage}"
    settings = await _change(call, threshold=value)
    return f"阈值已设为 / threshold set to {format_threshold(settings.threshold)}"


@subcommand(
    "action",
    "动作",
    usage="action recall|reply|both|observe | 动作 撤回|回复|都要|观察 — 命中后做什么；观察：只统计不处理，"
    "先试用 / what a hit does; observe: a trial, counted, nothing done",
)
async def _action(call: Invocation) -> str:
    usage = "用法 / usage: /nailong action recall|reply|both|observe（/奶龙 动作 撤回|回复|都要|观察）"
    action = ACTION_NAMES.get(call.args[0].lower()) if len(call.args) == 1 else None
    if action is None:
        given = f": {call.args[0]!r}" if call.args else ""
        return f"未知的动作 / unknown action{given}\n{usage}"
    settings = await _change(call, action=action)
    return f"动作已设为 / action set to {ACTION_LABELS[settings.action]}"


def describe_exempt_admins(exempt: bool) -> str:
    if exempt:
        return "群主、管理员和超级用户免检 (owner, admins and superusers are exempt)"
    return "群主、管理员和超级用户也检查 (owner, admins and superusers are checked too)"


def describe_mute(settings: GroupSettings, window_seconds: float, cap_seconds: int) -> str:
    policy = settings.mute
    if not policy.mutes:
        return "不禁言 (off)"
    zh, en = format_duration(policy.seconds)
    cap_zh, cap_en = format_duration(cap_seconds)
    hours = f"{window_seconds / 3600:g}"
    return (
        f"{hours} 小时内第 {policy.after} 次起禁言 {zh}，之后每次加倍，最多 {cap_zh} / from strike {policy.after} "
        f"within {hours} h: muted for {en}, doubled each further strike, at most {cap_en}"
    )


@subcommand(
    "exempt-admins",
    "豁免管理",
    usage="exempt-admins on|off | 豁免管理 开|关 — 群主、管理员和超级用户的图片是否免检 / whether the owner, "
    "admins and superusers are exempt",
)
async def _exempt_admins(call: Invocation) -> str:
    usage = "用法 / usage: /nailong exempt-admins on|off（/奶龙 豁免管理 开|关）"
    if len(call.args) != 1:
        return usage
    try:
        exempt = parse_switch(call.args[0])
    except InvalidSetting as error:
        return f"{error}\n{usage}"
    settings = await _change(call, exempt_admins=exempt)
    return f"已设置 / set: {describe_exempt_admins(settings.exempt_admins)}"


def _members(call: Invocation, usage: str) -> tuple[int, ...]:
    """The members named by at-mentions and QQ numbers in the command."""
    mentioned = {int(seg.data["qq"]) for seg in call.message if seg.type == "at" and str(seg.data["qq"]).isdecimal()}
    try:
        typed = parse_members(" ".join(call.args))
    except InvalidSetting as error:
        raise CommandFailed(f"{error}\n{usage}") from None
    members = tuple(sorted(mentioned | set(typed)))
    if not members:
        raise CommandFailed(usage)
    return members


@subcommand(
    "allow", "豁免", usage="allow @成员|QQ号 | 豁免 @成员 — 这些成员的图片不检查 / never check these members' images"
)
async def _allow(call: Invocation) -> str:
    members = _members(call, "用法 / usage: /nailong allow @成员 或 QQ 号（/奶龙 豁免 @成员）")
    changed = tuple(sorted(call.runtime.store.get(call.event.group_id).allowed | set(members)))
    if len(changed) > MAX_ALLOWED:
        raise CommandFailed(f"豁免名单最多 {MAX_ALLOWED} 人 / at most {MAX_ALLOWED} members on the allow-list")
    await _change(call, allowed=changed)
    return (
        f"已豁免 / now exempt: {', '.join(map(str, members))}（名单共 {len(changed)} 人 / {len(changed)} on the list）"
    )


@subcommand(
    "disallow", "取消豁免", usage="disallow @成员|QQ号 | 取消豁免 @成员 — 移出豁免名单 / take off the allow-list"
)
async def _disallow(call: Invocation) -> str:
    members = _members(call, "用法 / usage: /nailong disallow @成员 或 QQ 号（/奶龙 取消豁免 @成员）")
    allowed = call.runtime.store.get(call.event.group_id).allowed
    if not allowed & set(members):
        return f"不在豁免名单上 / not on the allow-list: {', '.join(map(str, members))}"
    remaining = tuple(sorted(allowed - set(members)))
    await _change(call, allowed=remaining)
    removed = sorted(allowed & set(members))
    return (
        f"已取消豁免 / no longer exempt: {', '.join(map(str, removed))}（名单共 {len(remaining)} 人 / "
        f"{len(remaining)} on the list）"
    )


@subcommand("allowed", "豁免名单", usage="allowed | 豁免名单 — 查看豁免名单 / the allow-list")
async def _allowed(call: Invocation) -> str:
    allowed = sorted(call.runtime.store.get(call.event.group_id).allowed)
    if not allowed:
        return "豁免名单为空 / The allow-list is empty."
    return f"豁免名单（{len(allowed)} 人）/ allow-list ({len(allowed)}): {', '.join(map(str, allowed))}"


@subcommand(
    "mute",
    "禁言",
    usage="mute 3 10m | 禁言 3 10分钟 — 24 小时内第 3 次起禁言 10 分钟，之后每次加倍；mute off | 禁言 关 — 不禁言 / "
    "mute from the 3rd strike within 24 h for 10 minutes, doubling; off: never",
)
async def _mute(call: Invocation) -> str:
    usage = "用法 / usage: /nailong mute 3 10m | /nailong mute off（/奶龙 禁言 3 10分钟 | /奶龙 禁言 关）"
    try:
        policy = parse_mute(call.args)
    except InvalidSetting as error:
        return f"{error}\n{usage}"
    settings = await _change(call, mute=policy)
    runtime = call.runtime
    described = describe_mute(settings, runtime.strikes.window, runtime.config.nailong_mute_max_seconds)
    return f"禁言已设为 / mute set: {described}"


@subcommand(
    "text",
    "文案",
    usage="text <内容> | 文案 <内容> — 本群的警告，可用 {user}（@发送者）{score} {strikes}；text reset | 文案 重置 — "
    "恢复默认 / this group's warning with {user} {score} {strikes}; reset: the default",
)
async def _text(call: Invocation) -> str:
    usage = (
        "用法 / usage: /nailong text {user} 请不要发奶龙，这是第 {strikes} 次 | /nailong text reset"
        "（/奶龙 文案 … | /奶龙 文案 重置）\n占位符 / placeholders: "
        + "；".join(f"{{{name}}} {meaning}" for name, meaning in PLACEHOLDERS.items())
    )
    if not call.text:
        return usage
    if call.text.lower() in ("reset", "重置", "默认"):
        settings = await _change(call, reply_text=None)
        return f"警告已恢复默认 / warning reset to the default: {settings.reply_text}"
    try:
        template = check_template(call.text)
    except InvalidSetting as error:
        return f"警告未更改 / warning unchanged: {error}\n{usage}"
    await _change(call, reply_text=template)
    return f"警告已设为 / warning set to: {template}"


@subcommand("status", "状态", usage="status | 状态 — 查看本群设置和统计 / settings and counts")
async def _status(call: Invocation) -> str:
    runtime, group = call.runtime, call.event.group_id
    settings = runtime.store.get(group)
    info = runtime.classifier.info
    today, week = runtime.stats.over_days(group, 1), runtime.stats.over_days(group, 7)
    allowed = sorted(settings.allowed)
    top = runtime.strikes.top(group, 3)
    lines = [
        f"奶龙检测 / detection: {'已开启 (on)' if settings.enabled else '已关闭 (off)'}",
        f"阈值 / threshold: {format_threshold(settings.threshold)}",
        f"动作 / action: {ACTION_LABELS[settings.action]}",
        f"模型 / model: {info.name} {info.version}",
        f"本群今天检查 {today.checked} 张图片，命中 {today.hits} 次；近 7 天检查 {week.checked} 张，"
        f"命中 {week.hits} 次 / today: {today.checked} images checked, {today.hits} hits; "
        f"last 7 days: {week.checked} checked, {week.hits} hits",
        f"免检 / exempt: {describe_exempt_admins(settings.exempt_admins)}；豁免名单 / allow-list: "
        + (", ".join(map(str, allowed)) if allowed else "无 (none)"),
        f"禁言 / mute: {describe_mute(settings, runtime.strikes.window, runtime.config.nailong_mute_max_seconds)}",
        f"警告 / warning: {settings.reply_text}",
        f"今天免检图片 {today.exempt} 张，观察模式命中 {today.observed} 次 / today: {today.exempt} images of exempt "
        f"senders, {today.observed} hits observed",
    ]
    if top:
        lines.append("记过最多 / most strikes: " + ", ".join(f"{user} ×{count}" for user, count in top))
    if any(store.save_error for store in (runtime.store, runtime.recent, runtime.corrections, runtime.strikes)):
        lines.append(
            "数据目录不可写，更改无法保存（见日志）/ The data folder cannot be written: changes cannot be saved."
        )
    return "\n".join(lines)


# How long a correction waits for the images of a hit just acted on to be kept (normally milliseconds).
HIT_KEPT_TIMEOUT = 10.0


async def _replied_images(
    call: Invocation, *, latest_hit_without_reply: bool = False
) -> list[tuple[RecentImage, bytes]]:
    """This group's kept images of the message the command replies to (the image's own message or
    the bot's warning about it), with their bytes; without a reply, when allowed, those of the
    group's latest hit. Raises CommandFailed when there are none, CannotSave when no image can be kept."""
    recent, group = call.runtime.recent, call.event.group_id
    if recent.save_error is not None:
        raise CannotSave(f"近期图片 / recent images: {recent.save_error}")
    acted = call.runtime.acted_hits
    await acted.settled(group, timeout=HIT_KEPT_TIMEOUT)
    if call.event.reply is not None:
        entries = await asyncio.to_thread(recent.lookup, call.event.reply.message_id)
    elif latest_hit_without_reply:
        latest = acted.latest(group)
        if latest is not None:
            entries = await asyncio.to_thread(recent.lookup, latest)
        else:  # none acted on since start-up: the last one kept
            entries = await asyncio.to_thread(recent.latest_hit, group)
        if not entries:
            raise CommandFailed(
                "本群最近没有被判定为奶龙的图片；也可以回复图片消息或机器人的警告 / No image in this group "
                "was taken for nailong lately; or send this as a reply to the image's message or the bot's warning."
            )
    else:
        raise CommandFailed(
            "请回复图片消息或机器人的警告来使用这个命令 / Send this as a reply to the image's message "
            "or to the bot's warning."
        )
    entries = [entry for entry in entries if entry.group_id == group]
    if not entries:
        raise CommandFailed(
            "找不到这条消息里检查过的图片（只保留最近的图片）/ No checked image of that message is kept "
            "(only recent ones are)."
        )
    try:
        return list(zip(entries, await asyncio.to_thread(lambda: [recent.read(e) for e in entries])))
    except FileNotFoundError:
        raise CommandFailed("这张图片已从近期记录中清除 / That image was dropped from the recent images.") from None


async def _change_corrections(call: Invocation, change: Callable[[], Awaitable[Changed]]) -> Changed:
    """Await a change of the corrections; a failed save ends the command with a one-line answer."""
    try:
        return await change()
    except FolderFull as error:
        logger.error(f"纠错目录已满 / feedback folder full: group={call.event.group_id}: {error}")
        raise CommandFailed(
            "纠错目录已满，未记录；请联系机器人的管理者 / The corrections folder is full: nothing recorded; tell the "
            "bot's operator."
        ) from error
    except OSError as error:
        logger.error(f"保存纠错失败 / saving a correction failed: group={call.event.group_id}: {error}")
        raise CommandFailed("保存纠错失败，请查看日志 / Saving the correction failed; see the log.") from error


async def _correct(call: Invocation, label: Label, *, latest_hit_without_reply: bool = False) -> str:
    images = await _replied_images(call, latest_hit_without_reply=latest_hit_without_reply)
    event = call.event
    everywhere = await SUPERUSER(call.bot, event)
    verdict = await _change_corrections(
        call, lambda: verdicts.correct(call.runtime, images, label, operator=event.user_id, everywhere=everywhere)
    )
    added = verdict.added
    message_id = images[0][0].message_id
    zh, en = CORRECTED[label]
    if len(added) == 1:
        answer = f"已记录：{zh} / Recorded: {en}."
    else:
        answer = f"已记录 {len(added)} 张图片：{zh} / Recorded {len(added)} images: {en}."
    answer += "\n" + _scope_line(added)
    if event.reply is None:
        answer += f"\n（本群最近一次命中，消息 {message_id} / this group's latest hit, message {message_id}）"
    for strike in verdict.forgiven:
        left = call.runtime.strikes.count(strike.group_id, strike.user_id)
        answer += (
            f"\n已撤销成员 {strike.user_id} 的这次记过（还剩 {left} 次）/ strike taken back from member "
            f"{strike.user_id} ({left} left)"
        )
        if strike.muted:
            answer += await _unmute(call, strike.user_id)
    return answer


def _scope_line(added: list[Correction]) -> str:
    if not any(c.everywhere for c in added):
        return IN_THIS_GROUP
    agreed = next((c.confirmed_by for c in added if c.confirmed_by.startswith("groups:")), None)
    if agreed is None:
        return EVERYWHERE
    groups = len(agreed.removeprefix("groups:").split(","))
    return AGREED.format(groups, groups)


async def _unmute(call: Invocation, user_id: int) -> str:
    """Lift the mute a strike that was taken back caused; the answer's line about it."""
    try:
        await call.bot.set_group_ban(group_id=call.event.group_id, user_id=user_id, duration=0)
    except AdapterException as error:
        logger.warning(f"解除禁言失败 / unmute failed: group={call.event.group_id} user={user_id}: {error}")
        return "，解除禁言失败（见日志）/ lifting the mute failed (see the log)"
    return "，已解除禁言 / mute lifted"


@subcommand(
    "wrong",
    "误判",
    usage="wrong | 误判 — 回复误判的图片或机器人的警告（不回复：本群最近一次命中）：这不是奶龙，撤销这次记过 / "
    "reply (or nothing: the group's latest hit): this was not nailong, its strike is taken back",
)
async def _wrong(call: Invocation) -> str:
    return await _correct(call, "other", latest_hit_without_reply=True)


@subcommand("miss", "漏判", usage="miss | 漏判 — 回复漏掉的图片：这是奶龙 / reply: this was nailong")
async def _miss(call: Invocation) -> str:
    return await _correct(call, "nailong")


@subcommand(
    "undo",
    "撤销",
    usage="undo | 撤销 — 回复图片或警告，撤销对它的纠错（仅超级用户）/ reply: undo its correction (superusers)",
    superuser_only=True,
)
async def _undo(call: Invocation) -> str:
    images = await _replied_images(call)
    corrections, event = call.runtime.corrections, call.event

    def undo() -> list[Correction]:
        return [c for _, data in images for c in corrections.undo(data, group_id=event.group_id, user_id=event.user_id)]

    undone = await _change_corrections(call, lambda: verdicts.change_corrections(call.runtime, undo))
    if not undone:
        return "这张图片没有纠错记录 / That image has no correction."
    logger.info(
        f"已撤销纠错 / corrections undone: {[c.id for c in undone]} group={event.group_id} user={event.user_id}"
    )
    return "已撤销纠错，重新由模型判断 / Correction undone: the model decides again."


@subcommand(
    "confirm",
    "确认",
    usage="confirm | 确认 — 回复图片或警告（或写控制台里的纠错编号），让群里的纠错对所有群生效（仅超级用户）/ reply "
    "(or give a correction's id from the console): a group's correction applies in every group (superusers)",
    superuser_only=True,
)
async def _confirm(call: Invocation) -> str:
    runtime, event = call.runtime, call.event
    if call.args:
        if not _CORRECTION_ID.fullmatch(call.args[0]):
            raise CommandFailed("纠错编号是 16 位十六进制数 / A correction's id is 16 hex digits.")
        pending = await asyncio.to_thread(runtime.corrections.pending, len(runtime.corrections))
        waiting = [c for c in pending if c.id == call.args[0]]
        if len({c.label for c in waiting}) > 1:
            raise CommandFailed(
                "各群对这张图片的纠错不一致，请在控制台确认其中一条 / Groups disagree on that image: confirm one of "
                "them in the console."
            )
        targets = [(c.group_id, c.id) for c in waiting]
    else:
        targets = await verdicts.pending_for(runtime, await _replied_images(call), event.group_id)
    confirmed = await _change_corrections(
        call, lambda: verdicts.confirm(runtime, targets, operator=event.user_id, where=event.group_id)
    )
    if not confirmed:
        return "没有等待确认的纠错 / No correction waits for a confirmation there."
    return f"已确认 {len(confirmed)} 条纠错，现在对所有群生效 / Confirmed {len(confirmed)}: now in every group."


@subcommand(
    "feedback",
    "反馈",
    usage="feedback | 反馈 — 纠错数据的数量和目录（仅超级用户）/ corrections saved for retraining (superusers)",
    superuser_only=True,
)
async def _feedback(call: Invocation) -> str:
    corrections = call.runtime.corrections
    counts = await asyncio.to_thread(corrections.counts)
    waiting = len(await asyncio.to_thread(corrections.pending, len(corrections)))
    return "\n".join(
        [
            f"纠错图片 / corrected images: 是奶龙 (nailong) {counts['nailong']}，不是奶龙 (other) {counts['other']}",
            f"只在一个群生效、等待确认 / in one group only, waiting for a confirmation: {waiting}",
            f"目录 / folder: {corrections.feedback_dir.absolute()}",
            "重新训练时把这个目录加入 trainer 配置的 data: 列表 / To retrain, add this folder to the "
            "trainer config's data: list.",
        ]
    )


# --- The model learns the corrections: what runs, a refresh, a rollback (see refresh.py) ---


def refresh_lines(record: RefreshRecord, heading: str = "上次更新 / last refresh") -> list[str]:
    """A finished refresh: its outcome and message, then the gate's numbers."""
    started = datetime.fromtimestamp(record.started_at).strftime("%Y-%m-%d %H:%M")
    lines = [f"{heading}: {started}（{record.trigger}）{OUTCOME_NAMES[record.outcome]}", record.message]
    return lines + (gate_lines(record.gate) if record.gate else [])


@subcommand(
    "model", "模型", usage="model | 模型 — 当前模型、来历和上次更新（仅超级用户）/ the model in use, its lineage, "
    "the last refresh (superusers)", superuser_only=True
)
async def _model(call: Invocation) -> str:
    runtime = call.runtime
    info, models, refresher = runtime.classifier.info, runtime.models, runtime.refresher
    lines = [f"当前模型 / model in use: {info.name} {info.version}（{info.metadata.get('created_at', '—')}）"]
    if (origin := lineage(info)) is not None:
        lines.append(f"来历 / lineage: {lineage_text(origin)}")
    else:
        where = "NAILONG_MODEL_PATH" if runtime.config.nailong_model_path else "内置 / bundled"
        lines.append(f"来历 / lineage: 基础模型 / the base model ({where}: {models.base})")
    corrections = await asyncio.to_thread(refresher.corrections_since_model)
    lines.append(f"此后新增纠错 / corrections since it was made: {corrections}")
    if refresher.running_trigger is not None:
        lines.append(f"正在更新 / a refresh is running ({refresher.running_trigger})")
    if refresher.last is not None:
        lines += refresh_lines(refresher.last)
    pointer = await asyncio.to_thread(models.read_pointer)
    if pointer.previous:
        lines.append("可用 /nailong rollback 回退到上一个模型 / /nailong rollback returns to the one before")
    config = runtime.config
    lines.append(
        f"自动更新 / automatic refresh: 每 {config.nailong_auto_refresh_corrections} 条新纠错，最多每 "
        f"{config.nailong_auto_refresh_interval_hours:g} 小时一次 / after {config.nailong_auto_refresh_corrections} "
        f"new corrections, at most every {config.nailong_auto_refresh_interval_hours:g} h"
        if config.nailong_auto_refresh
        else "自动更新 / automatic refresh: 关闭 / off (NAILONG_AUTO_REFRESH)"
    )
    return "\n".join(lines)


@subcommand(
    "refresh", "更新", usage="refresh | 更新 — 用纠错重新训练模型，通过检查后自动启用（仅超级用户）/ retrain on the "
    "corrections, swap in if the gate passes (superusers)", superuser_only=True
)
async def _refresh(call: Invocation) -> str:
    refresher = call.runtime.refresher
    reason = refresher.unavailable()
    if reason is not None:
        return reason
    already = refresher.running is not None and not refresher.running.done()
    task = refresher.start(f"chat:{call.event.group_id}:{call.event.user_id}")
    budget = call.runtime.config.nailong_refresh_budget_seconds
    await call.bot.send(
        call.event,
        "已有一次更新在进行，完成后回复结果 / A refresh is already running; its result will follow."
        if already
        else f"开始更新模型（约 {budget // 60} 分钟，机器人照常工作），完成后回复结果 / Refresh started (about "
        f"{budget // 60} min; the bot keeps guarding); the result will follow.",
    )
    # Shielded: this command's handler going away must not stop the refresh.
    return "\n".join(refresh_lines(await asyncio.shield(task), "更新结束 / refresh done"))


@subcommand(
    "rollback", "回退", usage="rollback | 回退 — 换回上一个模型（仅超级用户）/ return to the model before (superusers)",
    superuser_only=True,
)
async def _rollback(call: Invocation) -> str:
    try:
        left, now = await call.runtime.models.rollback()
    except ModelError as error:
        raise CommandFailed(f"未回退 / not rolled back: {error}") from error
    logger.info(f"模型已回退 / model rolled back: {left.version} → {now.version} user={call.event.user_id}")
    return f"已回退 / rolled back: {left.version} → {now.version}"


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
    if entry.superuser_only and not await SUPERUSER(bot, event):
        await nailong_command.finish(SUPERUSER_REFUSAL)
    # The sub-command's own text as typed (a warning template keeps its spaces).
    name_and_text = arg.extract_plain_text().strip().split(maxsplit=1)
    text = name_and_text[1] if len(name_and_text) > 1 else ""
    try:
        answer = await entry.handler(Invocation(bot, event, words[1:], runtime, arg, text))
    except CommandFailed as failure:
        answer = str(failure)
    except CannotSave as error:
        answer = (
            f"无法保存，未做任何更改（数据目录不可写，请联系机器人的管理者）/ Cannot save, nothing changed "
            f"(the data folder cannot be written; tell the bot's operator): {error}"
        )
    except OSError as error:
        logger.error(f"保存群设置失败 / saving settings failed: group={event.group_id}: {error}")
        answer = "保存设置失败，设置未改变，请查看日志 / Saving failed, nothing changed; see the log."
    await nailong_command.finish(answer)
