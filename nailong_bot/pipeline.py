"""The path of an image: group message (exempt senders stop here) → image bytes (cache first) →
decision → action (strikes, escalating mutes) or, when the model is unsure, the review queue; and the
decided images kept a while, so admins can correct the bot by replying to the message or warning."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from collections.abc import Callable
from dataclasses import replace

from nonebot import on_message
from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent
from nonebot.exception import AdapterException
from nonebot.log import logger

from nailong_vision.decode import ImageDecodeError, ImageTooLarge

from .actions import act
from .cache import content_key, versioned_key
from .decision import Decision
from .exempt import exemption
from .fetch import FetchError
from .forward import forwarded_images, forwards
from .i18n import lang as wording
from .images import CheckedImage, ImageRef, image_refs
from .reviewing import hold_for_review
from .runtime import Runtime, get_runtime
from .storage import Action, GroupSettings


async def decide_bytes(data: bytes, runtime: Runtime, generation: int, group: int | None = None) -> Decision:
    """The model's decision on an image's bytes: the cache by content, else the decider (in ``group``'s
    share of the decode budget), cached under ``generation`` (read before the image was fetched). The
    corrections are not in it: the caller applies those of its group (``Corrections.apply``). Raises
    ImageDecodeError. Also the HTTP API's path (no group), so both decide an image the same way."""
    key = content_key(data)
    cached = runtime.cache.get(versioned_key(runtime.model_version, key))
    if cached is not None:
        decision = replace(cached, source="cache")
    else:
        decision = replace(await runtime.decider.decide(data, group), image_id=key.removeprefix("sha256:")[:16])
    runtime.cache.put(versioned_key(decision.model_version, key), replace(decision, preview=None), generation)
    return decision


async def check_image(
    bot: Bot, event: GroupMessageEvent, ref: ImageRef, runtime: Runtime
) -> CheckedImage | None:
    """Decide one image, with the corrections that apply in the event's group; None (logged) when it
    cannot be fetched or decoded. Never raises."""
    corrections, group_id = runtime.corrections, event.group_id
    if ref.key and (cached := runtime.cache.get(versioned_key(runtime.model_version, ref.key))):
        return CheckedImage(ref, corrections.apply(replace(cached, source="cache"), group_id), None)
    where = f"group={event.group_id} message={event.message_id} file={ref.file or ref.url}"
    # A model swapped in while this image is decided clears the cache; this decision must not refill it.
    generation = runtime.cache.generation
    try:
        # The slot for deciding is taken once the bytes are in: a slow source never holds one. Downloads,
        # decision slots and decode memory are each shared fairly between groups (shares.py, budget.py).
        group = event.group_id
        async with runtime.fetcher.image_bytes(bot, ref, hold=runtime.deciding.slot(group), group=group) as data:
            decision = await decide_bytes(data, runtime, generation, group)
    except FetchError as error:
        logger.warning(f"图片下载失败，已跳过 / image download failed, skipped: {where}: {error.reason}")
        return None
    except ImageTooLarge as error:
        logger.warning(
            f"图片像素超过上限 NAILONG_MAX_PIXELS，未检查 / image over the pixel cap NAILONG_MAX_PIXELS, not "
            f"checked: {where}: {error}"
        )
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
        runtime.cache.put(versioned_key(decision.model_version, ref.key), replace(decision, preview=None), generation)
    return CheckedImage(ref, corrections.apply(decision, group_id), data)


# Put in a message's queue of decided images when its forwards' lookup has ended.
_LOOKED_UP = object()


async def check_message(bot: Bot, event: GroupMessageEvent, runtime: Runtime) -> CheckedImage | None:
    """Check every image of a message, those inside forwarded messages too, and act once on the message
    as soon as one is a hit; returns that hit, if any.

    The message's own images are checked at once. Forwards are looked up beside them, under one
    deadline, and the images of each checked as soon as it answers. After a hit no more forwards are
    looked up; the images already being checked are still decided (for the counts and corrections)."""
    settings = runtime.store.get(event.group_id)
    where = f"group={event.group_id} message={event.message_id}"
    # Each check's result, and _LOOKED_UP once the lookup has ended (every check it started is counted
    # by then, so the loop below knows when all are in).
    decided: asyncio.Queue[CheckedImage | None | object] = asyncio.Queue()
    checks: list[asyncio.Task[None]] = []

    async def check(ref: ImageRef) -> None:
        await decided.put(await check_image(bot, event, ref, runtime))

    def start_checks(refs: list[ImageRef]) -> None:
        checks.extend(asyncio.create_task(check(ref)) for ref in refs)

    start_checks(image_refs(event.message))
    lookup = asyncio.create_task(_look_up_forwards(bot, event, start_checks, runtime, where))
    lookup.add_done_callback(lambda _: decided.put_nowait(_LOOKED_UP))
    checked: list[CheckedImage] = []
    hit, warning_id, received = None, None, 0
    # From a hit until its images are kept, a correction in this group waits for them.
    with ExitStack() as acting:
        try:
            while received < len(checks) + 1:
                image = await decided.get()
                received += 1
                if not isinstance(image, CheckedImage):
                    continue
                checked.append(image)
                if hit is None and image.decision.score >= settings.threshold:
                    hit = image
                    acting.enter_context(runtime.acted_hits.acting(event.group_id, event.message_id))
                    lookup.cancel()
                    warning_id = await _act(bot, event, hit, settings, runtime)
        finally:
            for task in [lookup, *checks]:
                task.cancel()
        runtime.stats.add(event.group_id, checked=len(checked), hits=int(hit is not None))
        await _remember(event, checked, settings.threshold, warning_id, runtime)
        if hit is None:
            # Unsure is not a hit: nothing in the group; the images in its review band wait for an admin.
            await hold_for_review(bot, event, checked, settings, runtime)
    # After the images are kept: a correction replying to the warning finds them without waiting for this.
    await runtime.strikes.save()
    return hit


async def _look_up_forwards(
    bot: Bot, event: GroupMessageEvent, found: Callable[[list[ImageRef]], None], runtime: Runtime, where: str
) -> None:
    """Hand the images inside the message's forwards to ``found`` as they arrive, until the deadline."""
    config = runtime.config
    if not forwards(event.message):
        return
    try:
        await asyncio.wait_for(
            forwarded_images(
                bot,
                event.message,
                found,
                max_depth=config.nailong_forward_max_depth,
                max_nodes=config.nailong_forward_max_nodes,
                max_images=config.nailong_forward_max_images,
                where=where,
            ),
            config.nailong_forward_deadline,
        )
    except TimeoutError:
        logger.warning(
            f"合并转发没能在 {config.nailong_forward_deadline:g} 秒内查完，其余的未检查 / forwards not looked up "
            f"within {config.nailong_forward_deadline:g} s, the rest unchecked: {where}"
        )


async def _act(
    bot: Bot, event: GroupMessageEvent, hit: CheckedImage, settings: GroupSettings, runtime: Runtime
) -> int | None:
    """Act on the message for its hit, as the group's settings say, counting the sender's strike (saved
    by the caller); returns the warning's message id, if one was sent."""
    logger.warning(
        f"发现奶龙图片 / nailong image: group={event.group_id} message={event.message_id} "
        f"user={event.user_id} score={hit.decision.score:.3f} threshold={settings.threshold} "
        f"source={hit.decision.source} action={settings.action.value}"
    )
    if settings.action is Action.OBSERVE:
        # The trial (the line above says action=observe): counted and shown in the console, nothing done.
        runtime.stats.add(event.group_id, observed=1)
        return None
    strikes = runtime.strikes
    strike = strikes.add(event.group_id, event.user_id, event.message_id)
    outcome = await act(
        bot,
        event,
        hit,
        settings=settings,
        strike=strike,
        mute_seconds=settings.mute.duration(strike, runtime.config.nailong_mute_max_seconds),
        strike_window=strikes.window,
        cooldown=runtime.warning_cooldown,
        lang=wording(runtime.config.nailong_language),
    )
    if outcome.recalled is not None:
        recalled = int(outcome.recalled)
        runtime.stats.add(event.group_id, recalls=recalled, failed_recalls=1 - recalled)
    if outcome.muted:
        strikes.note_mute(event.group_id, event.message_id, outcome.muted)
    return outcome.warning_id


async def _remember(
    event: GroupMessageEvent,
    checked: list[CheckedImage],
    threshold: float,
    warning_id: int | None,
    runtime: Runtime,
) -> None:
    """Keep the decided images for corrections; called after acting, so it never delays a recall.
    A failed write is logged: it costs the chance to correct this message, nothing else."""
    recent = runtime.recent
    sender = {"sender": event.user_id, "sender_name": event.sender.card or event.sender.nickname}

    def remember_all() -> None:
        for image in checked:
            hit = image.decision.score >= threshold
            if image.data is not None:
                recent.remember(
                    event.message_id,
                    event.group_id,
                    image.data,
                    image_key=image.ref.key or content_key(image.data),
                    score=image.decision.model_score,
                    model_version=image.decision.model_version,
                    hit=hit,
                    preview=image.decision.preview,
                    **sender,
                )
            elif image.ref.key is not None:
                recent.remember_repost(event.message_id, event.group_id, image_key=image.ref.key, hit=hit, **sender)
        if warning_id is not None:
            recent.link_reply(warning_id, event.message_id)

    try:
        await asyncio.to_thread(remember_all)
    except OSError as error:
        logger.warning(
            f"无法保存近期图片，这条消息将无法纠错 / could not keep the recent images, this message cannot "
            f"be corrected: group={event.group_id} message={event.message_id}: {error}"
        )


async def _should_check(bot: Bot, event: GroupMessageEvent) -> bool:
    runtime = get_runtime()
    return (
        runtime is not None
        and str(event.user_id) != bot.self_id
        and runtime.store.is_enabled(event.group_id)
        and bool(image_refs(event.message) or forwards(event.message))
    )


# Priority 1 without blocking: judged before other plugins react, and they still see the message.
image_guard = on_message(rule=_should_check, priority=1, block=False)


@image_guard.handle()
async def _guard(bot: Bot, event: GroupMessageEvent) -> None:
    runtime = get_runtime()
    if runtime is None:
        return
    if (exempt := await exemption(bot, event, runtime.store.get(event.group_id))) is not None:
        # Counted, never fetched: a forward counts as one.
        runtime.stats.add(event.group_id, exempt=len(image_refs(event.message)) + len(forwards(event.message)))
        logger.debug(f"发送者免检 / sender exempt ({exempt}): group={event.group_id} message={event.message_id}")
        return
    await check_message(bot, event, runtime)
