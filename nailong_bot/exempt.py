"""Who the guard leaves alone in a group: the owner, admins and superusers (unless the group turned
that off with `/nailong exempt-admins off`) and the members on its allow-list. Their images are not
even downloaded. The role comes with the event (``sender.role``): no API call per message."""

from __future__ import annotations

from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent
from nonebot.permission import SUPERUSER

from .storage import GroupSettings


async def exemption(bot: Bot, event: GroupMessageEvent, settings: GroupSettings) -> str | None:
    """Why the sender is exempt ("allowed", "owner", "admin", "superuser"), or None when they are checked."""
    if event.user_id in settings.allowed:
        return "allowed"
    if not settings.exempt_admins:
        return None
    if event.sender.role in ("owner", "admin"):
        return event.sender.role
    return "superuser" if await SUPERUSER(bot, event) else None
