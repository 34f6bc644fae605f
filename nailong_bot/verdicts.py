"""An operator's verdict on images the bot decided, from the chat command or the web console: the
one path to the corrections store, the decision cache, the per-group counts and the strikes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from nonebot.log import logger

from .corrections import Correction, Label
from .recent import RecentImage
from .runtime import Runtime
from .strikes import Strike

Changed = TypeVar("Changed")


@dataclass(frozen=True)
class Verdict:
    added: list[Correction]
    # Strikes taken back: the hits they counted were not nailong.
    forgiven: list[Strike]


async def change_corrections(runtime: Runtime, change: Callable[[], Changed]) -> Changed:
    """Run ``change`` (which adds or undoes corrections) in a thread, then forget cached decisions.
    Raises OSError when the corrections could not be saved."""
    try:
        return await asyncio.to_thread(change)
    finally:
        # Cached decisions may contradict the change, for this image or for near-copies cached
        # under other keys. Corrections are rare, so the whole cache goes: simpler than consulting
        # corrections before the cache, which a repost known by its file name passes with no bytes.
        runtime.cache.clear()


async def correct(
    runtime: Runtime, images: list[tuple[RecentImage, bytes]], label: Label, *, operator: int | str
) -> Verdict:
    """Record ``label`` for kept images (with their bytes). Of a message's several images, those the bot
    decided the other way are corrected (all of them if it decided none that way). A hit said not to be
    nailong takes back the strike its message cost the sender. ``operator``: the admin's QQ number, or
    "web" for the console. Raises OSError when saving fails."""
    contradicted = [(entry, data) for entry, data in images if entry.hit != (label == "nailong")] or images
    corrections = runtime.corrections

    def add() -> list[Correction]:
        return [
            corrections.add(
                data,
                label=label,
                group_id=entry.group_id,
                user_id=operator,
                score=entry.score,
                model_version=entry.model_version,
            )
            for entry, data in contradicted
        ]

    added = await change_corrections(runtime, add)
    for correction in added:
        runtime.stats.add(correction.group_id, corrections=1)
    forgiven = []
    if label == "other":
        for group_id in {entry.group_id for entry, _ in contradicted}:
            messages = {entry.message_id for entry, _ in contradicted if entry.group_id == group_id}
            forgiven += await runtime.strikes.remove(group_id, messages)
    logger.info(
        f"已记录纠错 / corrected as {label}: {[c.id for c in added]} group={images[0][0].group_id} "
        f"operator={operator} message={images[0][0].message_id} strikes taken back={len(forgiven)}"
    )
    return Verdict(added, forgiven)
