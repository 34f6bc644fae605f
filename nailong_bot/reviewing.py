"""The review band: an image the model is unsure of (its score in the group's [review floor, threshold))
gets no public action; it waits in the group's review queue (review.py) until an operator labels it in the
console (web/review.py). A label is a correction, made through verdicts.py like `/nailong wrong|miss`.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nonebot import get_bots
from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent
from nonebot.exception import AdapterException
from nonebot.log import logger

from . import verdicts
from .corrections import Correction, Label
from .images import CheckedImage
from .recent import RecentImage, make_thumbnail
from .review import Waiting
from .storage import GroupSettings

if TYPE_CHECKING:
    from .runtime import Runtime

# QQ lets a message be recalled for two minutes: a nailong labelled within them is recalled then.
RECALL_WINDOW = 120.0


async def hold_for_review(
    bot: Bot, event: GroupMessageEvent, checked: list[CheckedImage], settings: GroupSettings, runtime: Runtime
) -> None:
    """Queue the message's images whose model score is in the group's review band (a message with no
    hit: nothing was done in the group). A failed write is logged and costs only the review."""
    unsure = [
        image
        for image in checked
        if image.data is not None
        and image.decision.model_score is not None  # a correction decided: nothing to ask
        and settings.in_review_band(image.decision.score)
    ]
    if not unsure:
        return
    queue = runtime.review
    model_threshold = runtime.classifier.info.threshold

    def add(image: CheckedImage) -> bool:
        data = image.data
        assert data is not None
        sha256 = hashlib.sha256(data).hexdigest()
        if queue.get(sha256) is not None:  # posted again: it waits once
            return False
        entry = Waiting(
            sha256=sha256,
            group_id=event.group_id,
            message_id=event.message_id,
            user_id=event.user_id,
            self_id=bot.self_id,
            score=image.decision.score,
            threshold=settings.threshold,
            model_version=image.decision.model_version,
            model_threshold=model_threshold,
            # When it was posted (QQ's recall window counts from then), never later than now.
            time=min(float(event.time), queue.clock()),
            size=len(data),
        )
        return queue.add(entry, data, _thumbnail(image, runtime))

    for image in unsure:
        where = (
            f"group={event.group_id} message={event.message_id} user={event.user_id} "
            f"score={image.decision.score:.3f} band=[{settings.review_floor}, {settings.threshold})"
        )
        try:
            added = await asyncio.to_thread(add, image)
        except OSError as error:
            logger.warning(f"模型不确定，未处理；无法加入复核队列 / unsure, nothing done, could not queue it: {where}: {error}")
            continue
        if added:
            logger.info(f"模型不确定，未处理，等待复核 / unsure, nothing done, queued for review: {where}")
            await _notify_if_full(bot, event.group_id, runtime)
        else:
            logger.info(f"模型不确定，未处理（已在复核队列中或无法保存）/ unsure, nothing done (already waiting, or "
                        f"the queue cannot be saved): {where}")


def _thumbnail(image: CheckedImage, runtime: Runtime) -> bytes:
    """From the decision's preview; a decision from the cache has none, so the first frame is decoded
    again (under the decode budget)."""
    if image.decision.preview is not None:
        return make_thumbnail(image.decision.preview)
    assert image.data is not None
    with runtime.decode_budget.frames(image.data, max_frames=1, max_pixels=runtime.config.nailong_max_pixels) as (
        first,
    ):
        return make_thumbnail(first)


async def _notify_if_full(bot: Bot, group_id: int, runtime: Runtime) -> None:
    """A private message to each superuser when the group's queue reaches NAILONG_REVIEW_NOTIFY; never
    in the group."""
    limit = runtime.config.nailong_review_notify
    if not limit or runtime.review.count(group_id) != limit:
        return
    text = (
        f"群 {group_id} 有 {limit} 张图片等待复核，请在控制台 /nailong/review 标注 / {limit} images in group "
        f"{group_id} wait for review at /nailong/review in the console."
    )
    for superuser in bot.config.superusers:
        if not superuser.isdecimal():
            continue
        try:
            await bot.send_private_msg(user_id=int(superuser), message=text)
        except AdapterException as error:
            logger.warning(f"复核提醒发送失败 / review notice failed: superuser={superuser}: {error}")


# --- A label: a correction, a recall while QQ still allows one, the tally ---


@dataclass(frozen=True)
class Labelled:
    entry: Waiting
    corrections: list[Correction]
    # True/False: recalled or the recall failed; None: not tried (labelled other, or past the window).
    recalled: bool | None


async def label(runtime: Runtime, sha256: str, verdict: Label, *, operator: int | str) -> Labelled | None:
    """Label a waiting image (admin.label_review audits it). None when it no longer waits (labelled
    meanwhile, or evicted). Raises OSError (CannotSave included) when the correction cannot be saved; the
    image then still waits."""
    queue = runtime.review
    entry = queue.get(sha256)
    if entry is None:
        return None
    try:
        data = await asyncio.to_thread(queue.read, entry)
    except FileNotFoundError:
        return None
    recent = RecentImage(
        message_id=entry.message_id,
        group_id=entry.group_id,
        image_key=entry.sha256,
        sha256=entry.sha256,
        size=entry.size,
        score=entry.score,
        model_version=entry.model_version,
        hit=False,
        stored_at=entry.time,
    )
    corrected = await verdicts.correct(runtime, [(recent, data)], verdict, operator=operator)
    if await asyncio.to_thread(queue.resolve, sha256, verdict) is None:
        return None  # another label got there first; its correction stands as well
    recalled = None
    if verdict == "nailong" and queue.clock() - entry.time <= RECALL_WINDOW:
        recalled = await _recall(entry)
        runtime.stats.add(entry.group_id, recalls=int(recalled), failed_recalls=int(not recalled))
    return Labelled(entry, corrected.added, recalled)


async def _recall(entry: Waiting) -> bool:
    bot = get_bots().get(entry.self_id)
    if not isinstance(bot, Bot):
        return False
    try:
        await bot.delete_msg(message_id=entry.message_id)
    except AdapterException as error:
        logger.warning(f"复核后撤回失败 / recall after review failed: group={entry.group_id}: {error}")
        return False
    logger.info(f"复核为奶龙，已撤回 / reviewed as nailong, recalled: group={entry.group_id} message={entry.message_id}")
    return True
