"""`/nailong <sub-command>` (alias `/奶龙`) for group owners, admins and superusers: a thin adapter over
the admin core (admin.py). Each sub-command reads what was typed, calls the core, and renders its result
in the language of the command's name: `/奶龙` answers in Chinese, `/nailong` in English (i18n/).

Sub-commands are registered with :func:`subcommand`; adding one is a decorated function here and its
usage line in the catalogue's ``usage`` scope. Corrections (`wrong`, `miss`, `undo`) are sent as a reply
to the image's message or to the bot's warning about it; `wrong` without a reply means the group's latest
hit not corrected yet (a recalled message cannot be replied to).

What was typed is read by chat_input.py, which forgives phone keyboards (`／奶龙`, `、奶龙`, `/奶龙开启`,
`/NAILONG status`, an @-mention of the bot); a typo gets one line naming the closest sub-command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nonebot import get_driver, on_message
from nonebot.adapters.onebot.v11 import GROUP_ADMIN, GROUP_OWNER, Bot, GroupMessageEvent, Message
from nonebot.exception import AdapterException
from nonebot.log import logger
from nonebot.permission import SUPERUSER
from nonebot.rule import Rule
from nonebot.typing import T_State

from nailong_vision.handoff import image_id

from . import admin, chat_input
from .admin import Operator, Refused, SettingsChange
from .corrections import Corrections
from .describe import (
    action_label,
    clock_text,
    exempt_admins_text,
    format_threshold,
    lineage_text,
    mute_text,
    refresh_lines,
    review_text,
    source_text,
)
from .i18n import Lang, lang as wording
from .models import lineage
from .recent import RecentImage, RecentImages
from .runtime import Runtime, get_runtime
from .warning import PLACEHOLDERS

ADMIN = GROUP_ADMIN | GROUP_OWNER | SUPERUSER
CHINESE_NAME = "奶龙"
# Where the handler finds what chat_input read.
_TYPED = "nailong_typed"
# How long a correction waits for the images of a hit just acted on to be kept (normally milliseconds).
HIT_KEPT_TIMEOUT = 10.0
# How many of a group's kept hits `wrong` without a reply looks through for one not corrected yet.
_LOOKED_BACK = 50
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
    brief: bool  # in the short help


SUBCOMMANDS: dict[str, SubCommand] = {}
# In registration order, for the help text.
_REGISTERED: list[SubCommand] = []


def subcommand(
    *names: str, usage: str, superuser_only: bool = False, brief: bool = False
) -> Callable[[Handler], Handler]:
    """Register ``handler`` under every name in ``names`` (English and Chinese); ``usage``: its key in the
    catalogue's "usage" scope; ``brief``: listed in the short help, which stays within 8 lines."""

    def register(handler: Handler) -> Handler:
        entry = SubCommand(names, usage, handler, superuser_only, brief)
        _REGISTERED.append(entry)
        for name in names:
            SUBCOMMANDS[name.lower()] = entry
        return handler

    return register


def command_name(lang: Lang) -> str:
    return "/nailong" if lang.english else f"/{CHINESE_NAME}"


def _name(lang: Lang, usage: str) -> str:
    """A sub-command's name in ``lang`` (found by its usage key)."""
    english, chinese = next(entry.names for entry in _REGISTERED if entry.usage == usage)
    return english if lang.english else chinese


def help_text(lang: Lang | None = None, *, everything: bool = True) -> str:
    """The commands in one language (all of them, or the few a group needs first and where the rest
    are); without a language, all of them in both (the plugin's metadata)."""
    if lang is None:
        return help_text(wording("zh-CN")) + "\n\n" + help_text(wording("en-US"))
    name = command_name(lang)
    lines = [lang("chat", "help_heading")]
    lines += [f"{name} {lang('usage', entry.usage)}" for entry in _REGISTERED if everything or entry.brief]
    if not everything:
        lines.append(lang("chat", "help_more", command=f"{name} {_name(lang, 'help')} {lang('chat', 'all_word')}"))
    return "\n".join(lines)


@subcommand("on", "开启", usage="on", brief=True)
async def _enable(call: Invocation) -> str:
    await admin.set_enabled(call.runtime, call.operator, call.group_id, True)
    return call.say("enabled")


@subcommand("off", "关闭", usage="off", brief=True)
async def _disable(call: Invocation) -> str:
    await admin.set_enabled(call.runtime, call.operator, call.group_id, False)
    return call.say("disabled")


# What confirms a threshold below the safe floor (admin.SAFE_THRESHOLD_FLOOR), in either language.
CONFIRM_WORDS = ("confirm", "确认")


def _current(call: Invocation, name: str, value: str, usage: str | None = None) -> str:
    """A setting asked for with no value: what it is now, where that comes from, how to change it
    (``usage``: the sub-command's usage key, when it is not the setting's name)."""
    runtime, config = call.runtime, call.runtime.config
    # The threshold and the review floor default to the model's own values when `.env` sets none.
    from_model = {"threshold": config.nailong_threshold, "review_floor": config.nailong_review_floor}
    source = source_text(
        call.lang, name, overridden=name in runtime.store.overridden(call.group_id),
        from_model=name in from_model and from_model[name] is None,
    )  # fmt: skip
    return call.say("current", value=value, source=source) + "\n" + call.usage(usage or name)


@subcommand("threshold", "阈值", usage="threshold", brief=True)
async def _threshold(call: Invocation) -> str:
    if not call.args:
        return _current(call, "threshold", format_threshold(call.runtime.store.get(call.group_id).threshold))
    confirmed = len(call.args) == 2 and call.args[1].lower() in CONFIRM_WORDS
    if len(call.args) > 2 or (len(call.args) == 2 and not confirmed):
        return call.usage("threshold")
    try:
        change = await admin.set_threshold(
            call.runtime, call.operator, call.group_id, call.args[0], confirmed=confirmed
        )
    except Refused as refused:
        if refused.key != "threshold_below_floor":
            raise
        confirm = f"{command_name(call.lang)} {_name(call.lang, 'threshold')} {call.args[0]} {call.say('confirm_word')}"
        return call.lang("refused", refused.key, **refused.values) + "\n" + call.say("confirm_how", command=confirm)
    return call.say("threshold_set", value=format_threshold(change.after.threshold))


@subcommand("action", "动作", usage="action", brief=True)
async def _action(call: Invocation) -> str:
    if not call.args:
        return _current(call, "action", action_label(call.lang, call.runtime.store.get(call.group_id).action))
    if len(call.args) != 1:
        return call.usage("action")
    change = await admin.set_action(call.runtime, call.operator, call.group_id, call.args[0])
    return call.say("action_set", action=action_label(call.lang, change.after.action))


@subcommand("exempt-admins", "豁免管理", usage="exempt_admins")
async def _exempt_admins(call: Invocation) -> str:
    if not call.args:
        exempt = call.runtime.store.get(call.group_id).exempt_admins
        return _current(call, "exempt_admins", exempt_admins_text(call.lang, exempt))
    if len(call.args) != 1:
        return call.usage("exempt_admins")
    change = await admin.set_exempt_admins(call.runtime, call.operator, call.group_id, call.args[0])
    return call.say("exempt_set", what=exempt_admins_text(call.lang, change.after.exempt_admins))


def _mentioned(call: Invocation) -> list[str]:
    """The at-mentions' QQ numbers as the event carries them: the core checks them as typed ones."""
    return [str(seg.data.get("qq")) for seg in call.message if seg.type == "at"]


@subcommand("allow", "豁免", usage="allow")
async def _allow(call: Invocation) -> str:
    if not call.args and not _mentioned(call):
        return await _allow_list_now(call, "allow")
    change = await admin.allow(
        call.runtime, call.operator, call.group_id, mentioned=_mentioned(call), typed=" ".join(call.args)
    )
    return call.say("allowed", members=", ".join(map(str, change.named)), size=change.size)


@subcommand("disallow", "取消豁免", usage="disallow")
async def _disallow(call: Invocation) -> str:
    if not call.args and not _mentioned(call):
        return await _allow_list_now(call, "disallow")
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


async def _allow_list_now(call: Invocation, usage: str) -> str:
    """`allow` or `disallow` with nobody named: the list now, and how to name someone."""
    return await _allowed(call) + "\n" + call.usage(usage)


def _mute_now(call: Invocation, change: SettingsChange) -> str:
    runtime = call.runtime
    return mute_text(call.lang, change.after, runtime.strikes.window, runtime.config.nailong_mute_max_seconds)


@subcommand("mute", "禁言", usage="mute")
async def _mute(call: Invocation) -> str:
    if not call.args:
        runtime = call.runtime
        mute = mute_text(call.lang, runtime.store.get(call.group_id), runtime.strikes.window,
                         runtime.config.nailong_mute_max_seconds)  # fmt: skip
        return _current(call, "mute", mute)
    change = await admin.set_mute(call.runtime, call.operator, call.group_id, call.args)
    return call.say("mute_set", mute=_mute_now(call, change))


@subcommand("text", "文案", usage="text")
async def _text(call: Invocation) -> str:
    if not call.text:
        placeholders = call.lang("chat", "placeholders", names=" ".join(f"{{{name}}}" for name in PLACEHOLDERS))
        now = _current(call, "reply_text", call.runtime.store.get(call.group_id).reply_text, "text")
        return f"{now}\n{placeholders}"
    change = await admin.set_warning(call.runtime, call.operator, call.group_id, call.text)
    key = "warning_reset" if change.after.reply_text == call.runtime.store.defaults.reply_text else "warning_set"
    return call.say(key, text=change.after.reply_text)


@subcommand("review", "复核", usage="review")
async def _review(call: Invocation) -> str:
    waiting = await asyncio.to_thread(call.runtime.review.count, call.group_id)
    if not call.args:
        band = review_text(call.lang, call.runtime.store.get(call.group_id), waiting)
        return _current(call, "review_floor", band, "review")
    if len(call.args) != 1:
        return call.usage("review")
    change = await admin.set_review_floor(call.runtime, call.operator, call.group_id, call.args[0])
    return call.say("review_set", band=review_text(call.lang, change.after, waiting))


@subcommand("status", "状态", usage="status", brief=True)
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
    group's latest hit not corrected yet. Refused when there are none or none can be kept."""
    recent, group = call.runtime.recent, call.group_id
    if recent.save_error is not None:
        logger.error(f"近期图片无法保存 / recent images cannot be saved: {recent.save_error}")
        raise Refused("cannot_save")
    acted = call.runtime.acted_hits
    await acted.settled(group, timeout=HIT_KEPT_TIMEOUT)
    if call.event.reply is not None:
        entries = await asyncio.to_thread(recent.lookup, call.event.reply.message_id)
    elif latest_hit_without_reply:
        entries = await asyncio.to_thread(_latest_uncorrected_hit, call.runtime, group)
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


def _latest_uncorrected_hit(runtime: Runtime, group: int) -> list[RecentImage]:
    """The images of the group's newest hit not corrected yet: the one acted on last since start-up
    first (kept images finish in no fixed order), then the kept hits, newest first. Blocks on file I/O."""
    recent, corrections = runtime.recent, runtime.corrections
    latest = runtime.acted_hits.latest(group)
    candidates = [recent.lookup(latest)] if latest is not None else []
    for entries in candidates + recent.hits(group, _LOOKED_BACK):
        hits = [entry for entry in entries if entry.group_id == group and entry.hit]
        if hits and not all(_corrected(recent, corrections, entry, group) for entry in hits):
            return entries
    return []


def _corrected(recent: RecentImages, corrections: Corrections, entry: RecentImage, group: int) -> bool:
    """This hit's image was already said not to be nailong here (a correction of its exact bytes that
    decides it in this group)."""
    try:
        data = recent.read(entry)
    except FileNotFoundError:
        return False
    correction = corrections.lookup(None, image_id=image_id(data), group_id=group)
    return correction is not None and correction.label == "other"


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
        first = corrected.images[0]
        sender = first.sender_name or (str(first.sender) if first.sender is not None else "—")
        answer += "\n" + call.say("latest_hit", sender=sender, time=clock_text(first.stored_at))
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


@subcommand("wrong", "误判", usage="wrong", brief=True)
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


# What `help` takes for the whole list, in either language.
ALL_WORDS = ("all", "全部")


@subcommand("help", "帮助", usage="help")
async def _help(call: Invocation) -> str:
    return help_text(call.lang, everything=bool(call.args) and call.args[0].lower() in ALL_WORDS)


def _typed(event: GroupMessageEvent, state: T_State) -> bool:
    """The rule: this message is `/奶龙 …` or `/nailong …` as :mod:`chat_input` reads it (kept in the
    state for the handler)."""
    typed = chat_input.read(
        event.get_message(), to_me=event.to_me, starts=get_driver().config.command_start, names=SUBCOMMANDS
    )
    if typed is None:
        return False
    state[_TYPED] = typed
    return True


nailong_command = on_message(rule=Rule(_typed), priority=5, block=True)


def _typo_answer(lang: Lang, given: str) -> str:
    """One line for a sub-command that does not exist: the closest one, or where the list is."""
    names = [name for entry in _REGISTERED for name in entry.names]
    meant = chat_input.closest(given, names)
    if meant is None:
        shown = given[:_ECHOED] + ("…" if len(given) > _ECHOED else "")
        return lang("chat", "unknown_subcommand", given=shown, help=f"{command_name(lang)} {_name(lang, 'help')}")
    return lang("chat", "did_you_mean", command=f"{command_name(lang)} {_name(lang, SUBCOMMANDS[meant].usage)}")


@nailong_command.handle()
async def _dispatch(bot: Bot, event: GroupMessageEvent, state: T_State) -> None:
    typed: chat_input.Typed = state[_TYPED]
    lang = wording(typed.locale)
    runtime = get_runtime()
    if not await ADMIN(bot, event):
        await nailong_command.finish(lang("chat", "admins_only"))
    if runtime is None:
        await nailong_command.finish(lang("chat", "not_running"))
    words = typed.words
    entry = SUBCOMMANDS.get(words[0].lower()) if words else SUBCOMMANDS["help"]
    if entry is None:
        await nailong_command.finish(_typo_answer(lang, words[0]))
    superuser = await SUPERUSER(bot, event)
    if entry.superuser_only and not superuser:
        await nailong_command.finish(lang("chat", "superusers_only"))
    # The sub-command's own text as typed (a warning template keeps its spaces).
    name_and_text = typed.text.split(maxsplit=1)
    text = name_and_text[1] if len(name_and_text) > 1 else ""
    nickname = event.sender.card or event.sender.nickname
    operator = Operator.chat(event.user_id, event.group_id, nickname, superuser=superuser)
    try:
        answer = await entry.handler(Invocation(bot, event, words[1:], runtime, lang, operator, typed.arg, text))
    except Refused as refused:
        answer = lang("refused", refused.key, **refused.values)
        if refused.key in ("invalid", "unknown_action", "no_members"):
            answer += "\n" + lang("chat", "usage", usage=f"{command_name(lang)} {lang('usage', entry.usage)}")
    await nailong_command.finish(answer)
