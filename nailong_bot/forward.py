"""Merged-forward messages: the images inside them, read with OneBot v11 `get_forward_msg`, bounded in
depth, messages read and images, so that a forward cannot hide an image or flood the guard."""

from __future__ import annotations

from collections import deque

from nonebot.adapters.onebot.v11 import Bot, Message, MessageSegment
from nonebot.compat import type_validate_python
from nonebot.exception import AdapterException
from nonebot.log import logger

from .images import ImageRef, image_refs


def forwards(message: Message) -> list[MessageSegment]:
    return [segment for segment in message if segment.type == "forward"]


async def forwarded_images(
    bot: Bot, message: Message, *, max_depth: int, max_nodes: int, max_images: int, where: str
) -> list[ImageRef]:
    """The images of the forwards in ``message`` and of forwards inside them, breadth first, up to
    ``max_depth`` levels, ``max_nodes`` messages read and ``max_images`` images. Never raises."""
    if max_depth == 0:  # the operator turned forwards off: nothing to say about each one
        return []
    found: list[ImageRef] = []
    nodes_read = 0
    over_limits = False
    pending = deque((segment, 1) for segment in forwards(message))
    while pending and not over_limits:
        segment, depth = pending.popleft()
        if depth > max_depth or len(found) >= max_images:
            over_limits = True
            break
        for content in await _contents(bot, segment, where):
            if nodes_read >= max_nodes:
                over_limits = True
                break
            nodes_read += 1
            found += image_refs(content)
            pending.extend((inner, depth + 1) for inner in forwards(content))
    if over_limits or len(found) > max_images:
        logger.info(
            f"合并转发超出上限，只检查了其中 {min(len(found), max_images)} 张图片 / forward over its limits, "
            f"{min(len(found), max_images)} of its images checked: {where}"
        )
    return found[:max_images]


async def _contents(bot: Bot, segment: MessageSegment, where: str) -> list[Message]:
    """The messages a forward segment holds: inline (some implementations send them with the event),
    or asked for with `get_forward_msg`."""
    inline = segment.data.get("content")
    if isinstance(inline, list):
        return _messages(inline)
    forward_id = segment.data.get("id")
    if not isinstance(forward_id, (str, int)) or forward_id == "":
        logger.warning(f"合并转发没有 id，已跳过 / forward without an id, skipped: {where}")
        return []
    try:
        answer = await bot.get_forward_msg(id=str(forward_id))
    except AdapterException as error:
        logger.warning(f"get_forward_msg 调用失败，已跳过 / get_forward_msg failed, skipped: {where}: {error}")
        return []
    # OneBot v11 answers {"message": [node segments]}; go-cqhttp, NapCat and others {"messages": [...]}.
    nodes = (answer.get("message") or answer.get("messages")) if isinstance(answer, dict) else None
    if not isinstance(nodes, list):
        logger.warning(f"get_forward_msg 的回答无法识别，已跳过 / get_forward_msg answer not understood: {where}")
        return []
    return _messages(nodes)


def _messages(nodes: list) -> list[Message]:
    """Each node's content: a node segment's `data.content`, or a node object's `content` or `message`,
    as a segment array or a CQ-code string. Anything else is left out."""
    messages = []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        data = node.get("data") if node.get("type") == "node" else node
        content = data.get("content", data.get("message")) if isinstance(data, dict) else None
        try:
            messages.append(type_validate_python(Message, content))
        except ValueError:
            continue
    return messages
