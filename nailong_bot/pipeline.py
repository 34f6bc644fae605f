"""The path of an image: group message → image bytes (cache first) → decision → action."""

from __future__ import annotations

import asyncio
import base64
import binascii

from nonebot import on_message
from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent
from nonebot.exception import AdapterException
from nonebot.log import logger

from nailong_vision.decode import ImageDecodeError

from .actions import act
from .cache import content_key
from .decision import Decision
from .fetch import FetchError
from .images import CheckedImage, ImageRef, image_refs
from .runtime import Runtime, get_runtime


async def _image_bytes(bot: Bot, ref: ImageRef, runtime: Runtime) -> bytes:
    if ref.url:
        return await runtime.fetcher.fetch(ref.url)
    if ref.file and ref.file.startswith("base64://"):
        return _decode_base64(ref.file.removeprefix("base64://"), runtime.config.nailong_max_image_bytes)
    if not ref.file:
        raise FetchError("image segment without url or file / 图片消息没有地址")
    # No url in the segment: ask the OneBot implementation where the image is.
    found = await bot.get_image(file=ref.file)
    if found.get("url"):
        return await runtime.fetcher.fetch(found["url"])
    if found.get("base64"):
        return _decode_base64(found["base64"], runtime.config.nailong_max_image_bytes)
    raise FetchError(f"get_image returned no url / get_image 没有返回地址: {ref.file}")


def _decode_base64(text: str, max_bytes: int) -> bytes:
    if len(text) * 3 // 4 > max_bytes:
        raise FetchError(f"too large / 文件过大: > {max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise FetchError("bad base64 image / base64 图片无效") from error


async def check_image(
    bot: Bot, event: GroupMessageEvent, ref: ImageRef, runtime: Runtime
) -> CheckedImage | None:
    """Decide one image; None (logged) when it cannot be fetched or decoded. Never raises."""
    if ref.key and (cached := runtime.cache.get(ref.key)):
        return CheckedImage(ref, Decision(cached.score, "cache"), None)
    where = f"group={event.group_id} message={event.message_id} file={ref.file or ref.url}"
    try:
        async with runtime.in_flight:
            data = await _image_bytes(bot, ref, runtime)
            key = content_key(data)
            cached = runtime.cache.get(key)
            decision = Decision(cached.score, "cache") if cached else await runtime.decider.decide(data)
            runtime.cache.put(key, decision)
    except FetchError as error:
        logger.warning(f"图片下载失败，已跳过 / image download failed, skipped: {where}: {error.reason}")
        return None
    except ImageDecodeError as error:
        logger.warning(f"图片无法解码，已跳过 / image not decodable, skipped: {where}: {error}")
        return None
    except AdapterException as error:
        logger.warning(f"get_image 调用失败，已跳过 / get_image failed, skipped: {where}: {error}")
        return None
    except Exception:  # a bug must cost one image, never the bot
        logger.exception(f"检查图片时出错 / unexpected error while checking an image: {where}")
        return None
    if ref.key:
        runtime.cache.put(ref.key, decision)
    return CheckedImage(ref, decision, data)


async def check_message(bot: Bot, event: GroupMessageEvent, runtime: Runtime) -> CheckedImage | None:
    """Check every image of a message and act once if any is a hit; returns the hit, if any."""
    refs = image_refs(event.message)
    checked = [c for c in await asyncio.gather(*(check_image(bot, event, r, runtime) for r in refs)) if c]
    settings = runtime.store.get(event.group_id)
    runtime.stats.checked[event.group_id] += len(checked)
    hit = max(checked, key=lambda c: c.decision.score, default=None)
    if hit is None or hit.decision.score < settings.threshold:
        return None
    runtime.stats.hits[event.group_id] += 1
    logger.warning(
        f"发现奶龙图片 / nailong image: group={event.group_id} message={event.message_id} "
        f"user={event.user_id} score={hit.decision.score:.3f} threshold={settings.threshold} "
        f"source={hit.decision.source} action={settings.action.value}"
    )
    config = runtime.config
    await act(
        bot,
        event,
        hit,
        settings=settings,
        reply_text=config.nailong_reply_text,
        mute_seconds=config.nailong_mute_seconds,
    )
    return hit


async def _should_check(bot: Bot, event: GroupMessageEvent) -> bool:
    runtime = get_runtime()
    return (
        runtime is not None
        and str(event.user_id) != bot.self_id
        and runtime.store.is_enabled(event.group_id)
        and bool(image_refs(event.message))
    )


# Priority 1 without blocking: judged before other plugins react, and they still see the message.
image_guard = on_message(rule=_should_check, priority=1, block=False)


@image_guard.handle()
async def _guard(bot: Bot, event: GroupMessageEvent) -> None:
    runtime = get_runtime()
    if runtime is not None:
        await check_message(bot, event, runtime)
