"""Act on a hit: recall the message, mute the sender, reply with the group's warning, as configured."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent, MessageSegment
from nonebot.exception import AdapterException
from nonebot.log import logger

from .i18n import Lang
from .images import CheckedImage
from .storage import GroupSettings
from .warning import placeholders_in, render, strike_note


class WarningCooldown:
    """At most one warning per group every ``seconds`` (0: no limit). In a flood the recalls go on, but
    the bot does not flood the group with warnings of its own."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last_warned: dict[int, float] = {}

    def claim(self, group_id: int) -> bool:
        """True, and the cooldown starts over, when the group may be warned now."""
        now = self._clock()
        last = self._last_warned.get(group_id)
        if self.seconds > 0 and last is not None and now - last < self.seconds:
            return False
        self._last_warned[group_id] = now
        return True


@dataclass(frozen=True)
class ActOutcome:
    # None: the group's action does not recall.
    recalled: bool | None
    # The warning's message id, if one was sent (replies to it can then find the image).
    warning_id: int | None
    # Seconds the sender was muted for (0: not muted).
    muted: int = 0


async def act(
    bot: Bot,
    event: GroupMessageEvent,
    hit: CheckedImage,
    *,
    settings: GroupSettings,
    strike: int,
    mute_seconds: int,
    strike_window: float,
    cooldown: WarningCooldown,
    lang: Lang,
) -> ActOutcome:
    """Recall, mute, then warn (the warning can then say what happened), as the group's settings say.
    ``strike``: which of the sender's strikes this hit is; ``mute_seconds``: the mute it earns (0: none);
    ``lang``: the group's language, for the strike note.
    Never raises for a failed action: it is logged, and a failed recall falls back to a reply."""
    where = (
        f"group={event.group_id} message={event.message_id} user={event.user_id} "
        f"score={hit.decision.score:.3f} strike={strike}"
    )
    reply = settings.action.replies
    warning_id = recalled = None
    muted = 0
    if settings.action.recalls:
        try:
            await bot.delete_msg(message_id=event.message_id)
            recalled = True
            logger.info(f"已撤回奶龙图片 / recalled: {where}")
        except AdapterException as error:
            # Usually the bot is not a group admin; a reply still warns the group.
            recalled = False
            logger.warning(f"撤回失败，改为回复 / recall failed, replying instead: {where}: {error}")
            reply = True
    if mute_seconds > 0:
        try:
            await bot.set_group_ban(group_id=event.group_id, user_id=event.user_id, duration=mute_seconds)
            muted = mute_seconds
            logger.info(f"已禁言 {mute_seconds} 秒 / muted for {mute_seconds}s: {where}")
        except AdapterException as error:
            logger.warning(f"禁言失败 / mute failed: {where}: {error}")
    if reply and not cooldown.claim(event.group_id):
        logger.info(f"警告冷却中，本次不回复 / warning skipped, group cooling down: {where}")
        reply = False
    if reply:
        message = render(settings.reply_text, user_id=event.user_id, score=hit.decision.score, strikes=strike)
        if not recalled:
            # Quoted only while it can be seen: a recalled message shows as nothing, so the @ says who.
            message = MessageSegment.reply(event.message_id) + message
        # The group's own warning may say which strike it is; then it is not said twice.
        if settings.mute.mutes and "strikes" not in placeholders_in(settings.reply_text):
            note = strike_note(
                lang, strike, window_seconds=strike_window, mute_after=settings.mute.after, muted_seconds=muted
            )
            message += MessageSegment.text(note)
        try:
            sent = await bot.send_group_msg(group_id=event.group_id, message=message)
            warning_id = sent.get("message_id") if isinstance(sent, dict) else None
        except AdapterException as error:
            logger.warning(f"回复失败 / reply failed: {where}: {error}")
    return ActOutcome(recalled=recalled, warning_id=warning_id, muted=muted)
