"""Talking to the plugin through nonebug: a bot to receive events, and a command that returns the answer."""

from __future__ import annotations

from nonebot.adapters.onebot.v11 import Adapter, Bot, Message, MessageSegment
from nonebug import App

from nailong_testkit import group_event, image_segment, text_segment

WARNING = "检测到奶龙图片"


def connect(ctx) -> Bot:
    return ctx.create_bot(base=Bot, adapter=ctx.create_adapter(base=Adapter), self_id="42")


async def ask(
    app: App,
    text: str,
    *,
    reply_to: int | None = None,
    role: str = "admin",
    user_id: int = 5,
    group_id: int = 1,
    mentions: tuple[int, ...] = (),
    to_me: bool = False,
) -> str:
    """Send a command (as a reply to message ``reply_to``, followed by at-mentions of ``mentions``; ``to_me``
    as the adapter marks a message it removed a leading @ of the bot from) and return the bot's answer."""
    from nailong_bot.commands import nailong_command

    segments = [text_segment(text)] + [{"type": "at", "data": {"qq": str(qq)}} for qq in mentions]
    event = group_event(segments, role=role, user_id=user_id, group_id=group_id, reply_to=reply_to)
    event.to_me = to_me
    answers: list[str] = []
    async with app.test_matcher(nailong_command) as ctx:
        bot = connect(ctx)
        ctx.receive_event(bot, event)

        async def capture(event, message, **kwargs):
            answers.append(str(message))

        bot.send = capture  # type: ignore[method-assign]
        ctx.should_finished(nailong_command)
    (answer,) = answers
    return answer


async def post(
    app: App, url: str, *, message_id: int, acted_on: bool, group_id: int = 1, file: str | None = None
) -> None:
    """Post one image; when it is acted on, the bot's warning gets message id ``message_id + 1000``."""
    event = group_event([image_segment(url, file=file)], group_id=group_id, message_id=message_id)
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), event)
        if acted_on:
            ctx.should_call_api("delete_msg", {"message_id": message_id}, result=None)
            warning = Message([MessageSegment.at(5), MessageSegment.text(" " + WARNING)])
            ctx.should_call_api(
                "send_group_msg",
                {"group_id": group_id, "message": warning},
                result={"message_id": message_id + 1000},
            )
