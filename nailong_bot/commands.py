"""`/nailong <sub-command>` (alias `/奶龙`) for group owners, admins and superusers: a thin adapter over
the admin core (admin.py). Each sub-command reads what was typed, calls the core, and renders its result
in the language of the command's name: `/奶龙` answers in Chinese, `/nailong` in English (i18n/).

Sub-commands are registered with :func:`subcommand`; adding one is a decorated function here and its
usage line in the catalogue's ``usage`` scope. Corrections (`wrong`, `miss`, `undo`) are sent as a reply
to the image's message or to the bot's warning about it; `wrong` without a reply means the group's latest
hit (a recalled message cannot be replied to).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nonebot import on_command
from nonebot.adapters.onebot.v11 import GROUP_ADMIN, GROUP_OWNER, Bot, GroupMessageEvent, Message
from nonebot.exception import AdapterException
from nonebot.log import logger
from nonebot.params import CommandArg, RawCommand
from nonebot.permission import SUPERUSER

from . import admin
from .admin import Operator, Refused, SettingsChange
from .describe import (
    action_label,
    exempt_admins_text,
    format_threshold,
    lineage_text,
    mute_text,
    refresh_lines,
    review_text,
)
from .i18n import Lang, lang as wording
from .models import lineage
from .recent import RecentImage
from .runtime import Runtime, get_runtime
from .warning import PLACEHOLDERS

ADMIN = GROUP_ADMIN | GROUP_OWNER | SUPERUSER
CHINESE_NAME = "奶龙"
# How long a correction waits for the images of a hit just acted on to be kept (normally milliseconds).
HIT_KEPT_TIMEOUT = 10.0
# What of an unknown sub-command is echoed back.
_ECHOED = 32


@dataclass(frozen=True)
class Invocation:
    bot: Bot
    event: GroupMessageEvent
    args: list[str]
    runtime: Runtime
    lang: Lang
    operator: Operator
    # The whole argument (at-mentions included) and its text after the sub-command's name, as typed.
    message: Message = field(default_factory=Message)
    text: str = ""

    @property
    def group_id(self) -> int:
        return self.event.group_id

    def say(self, key: str, /, **values: object) -> str:
        return self.lang("chat", key, **values)

    def usage(self, name: str) -> str:
        return self.say("usage", usage=f"{command_name(self.lang)} {self.lang('usage', name)}")


Handler = Callable[[Invocation], Awaitable[str]]


@dataclass(frozen=True)
class SubCommand:
    names: tuple[str, ...]  # English first, then Chinese
    usage: str  # its key in the catalogue's "usage" scope
    handler: Handler
    superuser_only: bool


SUBCOMMANDS: dict[str, SubCommand] = {}
# In registration order, for the help text.
_REGISTERED: list[SubCommand] = []


def subcommand(*names: str, usage: str, superuser_only: bool = False) -> Callable[[Handler], Handler]:
    """Register ``handler`` under every name in ``names`` (English and Chinese); ``usage``: its key in the
    catalogue's "usage" scope."""

    def register(handler: Handler) -> Handler:
        entry = SubCommand(names, usage, handler, superuser_only)
        _REGISTERED.append(entry)
        for name in names:
            SUBCOMMANDS[name.lower()] = entry
        return handler

    return register


def command_name(lang: Lang) -> str:
    return "/nailong" if lang.english else f"/{CHINESE_NAME}"


def help_text(lang: Lang | None = None) -> str:
    """The commands in one language; without one, in both (the plugin's metadata)."""
    if lang is None:
        return help_text(wording("zh-CN")) + "\n\n" + help_text(wording("en-US"))
    name = command_name(lang)
    lines = [lang("chat", "help_heading")]
    lines += [f"{name} {lang('usage', entry.usage)}" for entry in _REGISTERED]
    return "\n".join(lines)


@subcommand("on", "开启", usage="on")
async def _enable(call: Invocation) -> str:
    await admin.set_enabled(call.runtime, call.operator, call.group_id, True)
    return call.say("enabled")


@subcommand("off", "关闭", usage="off")
async def _disable(call: Invocation) -> str:
    await admin.set_enabled(call.runtime, call.operator, call.group_id, False)
    return call.say("disabled")


@subcommand("threshold", "阈值", usage="threshold")
async def _threshold(call: Invocation) -> str:
    if len(call.args) != 1:
        return call.usage("threshold")
    change = await admin.set_threshold(call.runtime, call.operator, call.group_id, call.args[0])
    return call.say("threshold_set", value=format_threshold(change.after.threshold))


@subcommand("action", "动作", usage="action")
async def _action(call: Invocation) -> str:
    if len(call.args) != 1:
        return call.usage("action")
    change = await admin.set_action(call.runtime, call.operator, call.group_id, call.args[0])
    return call.say("action_set", action=action_label(call.lang, change.after.action))


@subcommand("exempt-admins", "豁免管理", usage="exempt_admins")
async def _exempt_admins(call: Invocation) -> str:
    if len(call.args) != 1:
        return call.usage("exempt_admins")
    change = await admin.set_exempt_admins(call.runtime, call.operator, call.group_id, call.args[0])
    return call.say("exempt_set", what=exempt_admins_text(call.lang, change.after.exempt_admins))


def _mentioned(call: Invocation) -> list[str]:
    """The at-mentions' QQ numbers as the event carries them: the core checks them as typed ones."""
    return [str(seg.data.get("qq")) for seg in call.message if seg.type == "at"]


@subcommand("allow", "豁免", usage="allow")
async def _allow(call: Invocation) -> str:
    change = await admin.allow(
        call.runtime, call.operator, call.group_id, mentioned=_mentioned(call), typed=" ".join(call.args)
    )
    return call.say("allowed", members=", ".join(map(str, change.named)), size=change.size)


@subcommand("disallow", "取消豁免", usage="disallow")
async def _disallow(call: Invocation) -> str:
    change = await admin.disallow(
        call.runtime, call.operator, call.group_id, mentioned=_mentioned(call), typed=" ".join(call.args)
    )
    return call.say("disallowed", members=", ".join(map(str, change.changed)), size=change.size)


@subcommand("allowed", "豁免名单", usage="allowed")
async def _allowed(call: Invocation) -> str:
    allowed = sorted(call.runtime.store.get(call.group_id).allowed)
    if not allowed:
        return call.say("allow_list_empty")
    return call.say("allow_list", size=len(allowed), members=", ".join(map(str, allowed)))


def _mute_now(call: Invocation, change: SettingsChange) -> str:
    runtime = call.runtime
    return mute_text(call.lang, change.after, runtime.strikes.window, runtime.config.nailong_mute_max_seconds)


@subcommand("mute", "禁言", usage="mute")
async def _mute(call: Invocation) -> str:
    if not call.args:
        return call.usage("mute")
    change = await admin.set_mute(call.runtime, call.operator, call.group_id, call.args)
    return call.say("mute_set", mute=_mute_now(call, change))


@subcommand("text", "文案", usage="text")
async def _text(call: Invocation) -> str:
    if not call.text:
        placeholders = call.lang("chat", "placeholders", names=" ".join(f"{{{name}}}" for name in PLACEHOLDERS))
        return f"{call.usage('text')}\n{placeholders}"
    change = await admin.set_warning(call.runtime, call.operator, call.group_id, call.text)
    key = "warning_reset" if change.after.reply_text == call.runtime.store.defaults.reply_text else "warning_set"
    return call.say(key, text=change.after.reply_text)


@subcommand("review", "复核", usage="review")
async def _review(call: Invocation) -> str:
    if len(call.args) != 1:
        return call.usage("review")
    change = await admin.set_review_floor(call.runtime, call.operator, call.group_id, call.args[0])
    waiting = await asyncio.to_thread(call.runtime.review.count, call.group_id)
    return call.say("review_set", band=review_text(call.lang, change.after, waiting))


@subcommand("status", "状态", usage="status")
async def _status(call: Invocation) -> str:
    runtime, group, lang = call.runtime, call.group_id, call.lang
    settings = runtime.store.get(group)
    info = runtime.classifier.info
    today, week = runtime.stats.over_days(group, 1), runtime.stats.over_days(group, 7)
    allowed = sorted(settings.allowed)
    top = runtime.strikes.top(group, 3)
    mute = mute_text(lang, settings, runtime.strikes.window, runtime.config.nailong_mute_max_seconds)
    lines = [
        call.say("status_detection", state=lang("settings", "on" if settings.enabled else "off")),
        call.say("status_threshold", value=format_threshold(settings.threshold)),
        call.say("status_action", action=action_label(lang, settings.action)),
        call.say("status_model", name=info.name, version=info.version),
        call.say("status_counts", today_checked=today.checked, today_hits=today.hits, week_checked=week.checked,
                 week_hits=week.hits),
        call.say("status_exempt", what=exempt_admins_text(lang, settings.exempt_admins),
                 allowed=", ".join(map(str, allowed)) if allowed else lang("settings", "none")),
        call.say("status_mute", mute=mute),
        call.say("status_warning", text=settings.reply_text),
        call.say("status_exempt_counts", exempt=today.exempt, observed=today.observed),
        call.say("status_review", band=review_text(lang, settings, runtime.review.count(group))),
    ]  # fmt: skip
    if top:
        lines.append(call.say("status_top", top=", ".join(f"{user} ×{count}" for user, count in top)))
    if any(store.save_error for store in (runtime.store, runtime.recent, runtime.corrections, runtime.strikes)):
        lines.append(call.say("status_unwritable"))
    return "\n".join(lines)


async def _replied_images(
    call: Invocation, *, latest_hit_without_reply: bool = False
) -> list[tuple[RecentImage, bytes]]:
    """This group's kept images of the message the command replies to (the image's own message or
    the bot's warning about it), with their bytes; without a reply, when allowed, those of the
    group's latest hit. Refused when there are none or none can be kept."""
    recent, group = call.runtime.recent, call.group_id
    if recent.save_error is not None:
        logger.error(f"近期图片无法保存 / recent images cannot be saved: {recent.save_error}")
        raise Refused("cannot_save")
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
            raise Refused("no_recent_hit")
    else:
        raise Refused("reply_needed")
    entries = [entry for entry in entries if entry.group_id == group]
    if not entries:
        raise Refused("image_not_kept")
    try:
        return list(zip(entries, await asyncio.to_thread(lambda: [recent.read(e) for e in entries])))
    except FileNotFoundError:
        raise Refused("image_gone") from None


async def _correct(call: Invocation, label: str, *, latest_hit_without_reply: bool = False) -> str:
    images = await _replied_images(call, latest_hit_without_reply=latest_hit_without_reply)
    corrected = await admin.correct(call.runtime, call.operator, images, label)  # type: ignore[arg-type]
    meaning = call.say(f"corrected_{label}")
    if len(corrected.added) == 1:
        answer = call.say("recorded", meaning=meaning)
    else:
        answer = call.say("recorded_many", n=len(corrected.added), meaning=meaning)
    answer += "\n" + _where_it_applies(call, corrected.added)
    if call.event.reply is None:
        answer += "\n" + call.say("latest_hit", message_id=corrected.images[0].message_id)
    for forgiven in corrected.forgiven:
        answer += "\n" + call.say("strike_taken_back", user=forgiven.strike.user_id, left=forgiven.left)
        if forgiven.strike.muted:
            answer += await _unmute(call, forgiven.strike.user_id)
    return answer


def _where_it_applies(call: Invocation, added: list) -> str:
    if not any(c.everywhere for c in added):
        return call.say("applies_in_group")
    agreed = next((c.confirmed_by for c in added if c.confirmed_by.startswith("groups:")), None)
    if agreed is None:
        return call.say("applies_everywhere")
    return call.say("applies_agreed", n=len(agreed.removeprefix("groups:").split(",")))


async def _unmute(call: Invocation, user_id: int) -> str:
    """Lift the mute a strike that was taken back caused (a group action, not the bot's state); the
    answer's words about it."""
    try:
        await call.bot.set_group_ban(group_id=call.group_id, user_id=user_id, duration=0)
    except AdapterException as error:
        logger.warning(f"解除禁言失败 / unmute failed: group={call.group_id} user={user_id}: {error}")
        return call.say("unmute_failed")
    return call.say("unmuted")


@subcommand("wrong", "误判", usage="wrong")
async def _wrong(call: Invocation) -> str:
    return await _correct(call, "other", latest_hit_without_reply=True)


@subcommand("miss", "漏判", usage="miss")
async def _miss(call: Invocation) -> str:
    return await _correct(call, "nailong")


@subcommand("undo", "撤销", usage="undo", superuser_only=True)
async def _undo(call: Invocation) -> str:
    await admin.undo(call.runtime, call.operator, await _replied_images(call))
    return call.say("undone")


@subcommand("confirm", "确认", usage="confirm", superuser_only=True)
async def _confirm(call: Invocation) -> str:
    if call.args:
        confirmed = await admin.confirm_id(call.runtime, call.operator, call.args[0])
    else:
        confirmed = await admin.confirm_images(call.runtime, call.operator, await _replied_images(call))
    return call.say("confirmed", n=len(confirmed.corrections))


@subcommand("feedback", "反馈", usage="feedback", superuser_only=True)
async def _feedback(call: Invocation) -> str:
    corrections = call.runtime.corrections
    counts = await asyncio.to_thread(corrections.counts)
    waiting = len(await asyncio.to_thread(corrections.pending, len(corrections)))
    # The folder itself goes to the log: no server path in a group.
    logger.info(f"纠错目录 / corrections folder: {corrections.feedback_dir.absolute()}")
    return call.say("feedback", nailong=counts["nailong"], other=counts["other"], waiting=waiting)


# --- The model learns the corrections: what runs, a refresh, a rollback (see refresh.py) ---


@subcommand("model", "模型", usage="model", superuser_only=True)
async def _model(call: Invocation) -> str:
    runtime, lang = call.runtime, call.lang
    info, models, refresher = runtime.classifier.info, runtime.models, runtime.refresher
    lines = [
        call.say("model_in_use", name=info.name, version=info.version, made=info.metadata.get("created_at", "—")),
        call.say("model_lineage", lineage=lineage_text(lang, lineage(info))),
    ]
    corrections = await asyncio.to_thread(refresher.corrections_since_model)
    lines.append(call.say("model_corrections_since", n=corrections))
    if refresher.running_trigger is not None:
        lines.append(call.say("model_refresh_running", trigger=refresher.running_trigger))
    if refresher.last is not None:
        lines += refresh_lines(lang, refresher.last, info.version)
    if await asyncio.to_thread(models.can_roll_back):
        lines.append(call.say("model_can_roll_back", command=command_name(lang)))
    config = runtime.config
    if config.nailong_auto_refresh:
        lines.append(call.say("model_auto_on", n=config.nailong_auto_refresh_corrections,
                              hours=f"{config.nailong_auto_refresh_interval_hours:g}"))  # fmt: skip
    else:
        lines.append(call.say("model_auto_off"))
    return "\n".join(lines)


@subcommand("refresh", "更新", usage="refresh", superuser_only=True)
async def _refresh(call: Invocation) -> str:
    started = admin.start_refresh(call.runtime, call.operator)
    if started.already_running:
        # Its result is posted once, where it was started.
        return call.say("refresh_already_running")
    await call.bot.send(call.event, call.say("refresh_started", minutes=started.budget_seconds // 60))
    # Shielded: this command's handler going away must not stop the refresh.
    record = await asyncio.shield(started.task)
    return "\n".join(refresh_lines(call.lang, record, call.runtime.model_version, "done"))


@subcommand("rollback", "回退", usage="rollback", superuser_only=True)
async def _rollback(call: Invocation) -> str:
    rolled = await admin.rollback(call.runtime, call.operator)
    return call.say("rolled_back", left=rolled.left.version, now=rolled.now.version)


@subcommand("help", "帮助", usage="help")
async def _help(call: Invocation) -> str:
    return help_text(call.lang)


nailong_command = on_command("nailong", aliases={CHINESE_NAME}, priority=5, block=True, force_whitespace=True)


@nailong_command.handle()
async def _dispatch(
    bot: Bot, event: GroupMessageEvent, arg: Message = CommandArg(), raw: str = RawCommand()
) -> None:
    lang = wording("zh-CN" if CHINESE_NAME in raw else "en-US")
    runtime = get_runtime()
    if not await ADMIN(bot, event):
        await nailong_command.finish(lang("chat", "admins_only"))
    if runtime is None:
        await nailong_command.finish(lang("chat", "not_running"))
    words = arg.extract_plain_text().split()
    entry = SUBCOMMANDS.get(words[0].lower()) if words else SUBCOMMANDS["help"]
    if entry is None:
        given = words[0][:_ECHOED] + ("…" if len(words[0]) > _ECHOED else "")
        await nailong_command.finish(lang("chat", "unknown_subcommand", given=given) + "\n" + help_text(lang))
    superuser = await SUPERUSER(bot, event)
    if entry.superuser_only and not superuser:
        await nailong_command.finish(lang("chat", "superusers_only"))
    # The sub-command's own text as typed (a warning template keeps its spaces).
    name_and_text = arg.extract_plain_text().strip().split(maxsplit=1)
    text = name_and_text[1] if len(name_and_text) > 1 else ""
    nickname = event.sender.card or event.sender.nickname
    operator = Operator.chat(event.user_id, event.group_id, nickname, superuser=superuser)
    try:
        answer = await entry.handler(Invocation(bot, event, words[1:], runtime, lang, operator, arg, text))
    except Refused as refused:
        answer = lang("refused", refused.key, **refused.values)
        if refused.key in ("invalid", "unknown_action", "no_members"):
            answer += "\n" + lang("chat", "usage", usage=f"{command_name(lang)} {lang('usage', entry.usage)}")
    await nailong_command.finish(answer)
