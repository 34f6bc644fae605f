"""Merged-forward messages: the images inside them, read with OneBot v11 `get_forward_msg`, bounded in
depth, messages read and images, so that a forward cannot hide an image or flood the guard.

Forwards are looked up concurrently and each one's images handed on as soon as its answer arrives;
the caller bounds the whole lookup with one deadline per message, so a forward that never answers
delays nothing but itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from nonebot.adapters.onebot.v11 import Bot, Message, MessageSegment
from nonebot.compat import type_validate_python
from nonebot.exception import AdapterException
from nonebot.log import logger

from .images import ImageRef, image_refs, well_formed

# Lookups of one message waiting for their answer at once.
_CONCURRENT_LOOKUPS = 8
# The drivers close the OneBot connection on a WebSocket message over their limit (uvicorn's, for the
# reverse WebSocket of ~fastapi: 16 MiB; the websockets client's, for a forward WebSocket: 1 MiB):
# a huge get_forward_msg answer costs the connection.
WS_MESSAGE_LIMITS = (
    "反向 WebSocket（~fastapi）16 MiB，正向 WebSocket（~websockets）1 MiB / reverse WebSocket (~fastapi) 16 MiB, "
    "forward WebSocket (~websockets) 1 MiB"
)

# get_forward_msg calls waiting for their answer, per bot, and when a bot's latest lookup was given
# up (its answer may still come): see :func:`connection_lost`.
_in_flight: dict[str, int] = {}
_given_up_at: dict[str, float] = {}
# How long an answer given up on may still arrive.
_LATE_ANSWER_SECONDS = 60.0
_frame_limit_said = False


def forwards(message: Message) -> list[MessageSegment]:
    return [segment for segment in well_formed(message) if segment.type == "forward"]


async def forwarded_images(
    bot: Bot,
    message: Message,
    found: Callable[[list[ImageRef]], None],
    *,
    max_depth: int,
    max_nodes: int,
    max_images: int,
    where: str,
) -> None:
    """Hand the images of the forwards in ``message``, and of forwards inside them, to ``found``, each
    forward's as soon as it answers: up to ``max_depth`` levels, ``max_nodes`` messages read (no
    node past it is even parsed, as many forwards asked for at most) and ``max_images`` images.
    Never raises; cancel it to stop."""
    if max_depth == 0:  # the operator turned forwards off: nothing to say about each one
        return
    nodes_left, images_left, lookups_left = max_nodes, max_images, max_nodes
    over_limits = False
    slots = asyncio.Semaphore(_CONCURRENT_LOOKUPS)
    lookups: dict[asyncio.Task[list[Message]], int] = {}  # → the depth of what it answers

    def look_up(segment: MessageSegment, depth: int) -> None:
        nonlocal over_limits, lookups_left
        if depth > max_depth or lookups_left == 0:
            over_limits = True
            return
        lookups_left -= 1
        # One node past the limit is read, to tell a forward that was cut short.
        lookups[asyncio.create_task(_contents(bot, segment, slots, nodes_left + 1, where))] = depth

    for segment in forwards(message):
        look_up(segment, 1)
    try:
        while lookups:
            done, _ = await asyncio.wait(lookups, return_when=asyncio.FIRST_COMPLETED)
            for lookup in done:
                depth = lookups.pop(lookup)
                for content in lookup.result():
                    if nodes_left == 0 or images_left == 0:
                        over_limits = True
                        break
                    nodes_left -= 1
                    refs = image_refs(content)
                    over_limits |= len(refs) > images_left
                    refs = refs[:images_left]
                    images_left -= len(refs)
                    if refs:
                        found(refs)
                    for inner in forwards(content):
                        look_up(inner, depth + 1)
    finally:
        for lookup in lookups:
            lookup.cancel()
        if over_limits:
            checked = max_images - images_left
            logger.info(
                f"合并转发超出上限，只检查了其中 {checked} 张图片 / forward over its limits, {checked} of its "
                f"images checked: {where}"
            )


async def _contents(
    bot: Bot, segment: MessageSegment, slots: asyncio.Semaphore, max_nodes: int, where: str
) -> list[Message]:
    """The first ``max_nodes`` messages a forward segment holds: inline (some implementations send
    them with the event), or asked for with `get_forward_msg`."""
    inline = segment.data.get("content")
    if isinstance(inline, list):
        return _messages(inline, max_nodes, where)
    forward_id = segment.data.get("id")
    if not isinstance(forward_id, (str, int)) or forward_id == "":
        logger.warning(f"合并转发没有 id，已跳过 / forward without an id, skipped: {where}")
        return []
    async with slots:
        _in_flight[bot.self_id] = _in_flight.get(bot.self_id, 0) + 1
        try:
            answer = await bot.get_forward_msg(id=str(forward_id))
        except AdapterException as error:
            logger.warning(f"get_forward_msg 调用失败，已跳过 / get_forward_msg failed, skipped: {where}: {error}")
            return []
        except asyncio.CancelledError:
            _given_up_at[bot.self_id] = time.monotonic()
            raise
        finally:
            _in_flight[bot.self_id] -= 1
    # OneBot v11 answers {"message": [node segments]}; go-cqhttp, NapCat and others {"messages": [...]}.
    nodes = (answer.get("message") or answer.get("messages")) if isinstance(answer, dict) else None
    if not isinstance(nodes, list):
        logger.warning(f"get_forward_msg 的回答无法识别，已跳过 / get_forward_msg answer not understood: {where}")
        return []
    return _messages(nodes, max_nodes, where)


def _messages(nodes: list, max_nodes: int, where: str) -> list[Message]:
    """Each node's content, for the first ``max_nodes`` nodes: a node segment's `data.content`, or a
    node object's `content` or `message`, as a segment array or a CQ-code string. A node or segment
    of any other shape is left out, with a warning; the rest are still read."""
    messages, malformed = [], 0
    for node in nodes[:max_nodes]:
        data = (node.get("data") if node.get("type") == "node" else node) if isinstance(node, dict) else None
        content: Any = data.get("content", data.get("message")) if isinstance(data, dict) else None
        try:
            message = type_validate_python(Message, content)
        except ValueError:
            malformed += 1
            continue
        kept = well_formed(message)
        malformed += len(message) - len(kept)
        messages.append(kept)
    if malformed:
        logger.warning(
            f"合并转发里有 {malformed} 个格式不对的消息或消息段，已跳过，其余照常检查 / {malformed} malformed "
            f"nodes or segments in a forward skipped, the rest checked: {where}"
        )
    return messages


def connection_lost(self_id: str) -> None:
    """Called when a bot disconnects: with a forward's answer on its way, it was most likely over
    the WebSocket frame limit. Said once: the limit is the driver's, and documented."""
    global _frame_limit_said
    given_up_lately = time.monotonic() - _given_up_at.get(self_id, -math.inf) < _LATE_ANSWER_SECONDS
    if (_in_flight.get(self_id) or given_up_lately) and not _frame_limit_said:
        _frame_limit_said = True
        logger.warning(
            f"OneBot 连接在等待 get_forward_msg 的回答时断开：回答很可能超过了 WebSocket 单条消息的上限（驱动的限制，"
            f"也保护内存）。OneBot 实现会重连，这条合并转发不再检查，同一条消息里其他图片照常检查 / the OneBot "
            f"connection dropped while a get_forward_msg answer was awaited: the answer was most likely over the "
            f"WebSocket frame limit (the driver's; it also protects memory). The OneBot implementation reconnects; "
            f"that forward goes unchecked, the message's other images are checked as usual. {WS_MESSAGE_LIMITS}"
        )
