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
    """Run ``change`` (which adds, confirms or undoes corrections) in a thread. The decision cache is
    left alone: it holds only what the model said, and corrections are applied after it, per group.
    Raises OSError when the corrections could not be saved (FolderFull at the feedback folder's cap)."""
    return await asyncio.to_thread(change)


async def correct(
    runtime: Runtime,
    images: list[tuple[RecentImage, bytes]],
    label: Label,
    *,
    operator: int | str,
    everywhere: bool = False,
) -> Verdict:
    """Record ``label`` for kept images (with their bytes). Of a message's several images, those the bot
    decided the other way are corrected (all of them if it decided none that way). A hit said not to be
    nailong takes back the strike its message cost the sender. ``operator``: the admin's QQ number, or
    "web[:<name>]" for the console. The correction applies in the image's group only, unless
    ``everywhere`` (a superuser's word) or admins of enough groups agree. Raises OSError when saving fails."""
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
                everywhere=everywhere,
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
        f"operator={operator} message={images[0][0].message_id} strikes taken back={len(forgiven)} "
        f"everywhere={[c.everywhere for c in added]}"
    )
    return Verdict(added, forgiven)


async def confirm(
    runtime: Runtime, targets: list[tuple[int, str]], *, operator: int | str, where: int = 0
) -> list[Correction]:
    """A superuser's (or the console's) confirmation: each group-scoped correction (group, id) in
    ``targets`` applies in every group from now on, and the refresh learns it. Those no longer waiting
    are skipped. ``where``: the group the confirmation was sent in (0: the console). Raises OSError when
    saving fails."""
    corrections = runtime.corrections

    def confirm_all() -> list[Correction]:
        confirmed = (corrections.confirm(group, id, operator=operator, where=where) for group, id in targets)
        return [correction for correction in confirmed if correction is not None]

    confirmed = await change_corrections(runtime, confirm_all)
    logger.info(f"纠错已确认，对所有群生效 / corrections confirmed, now everywhere: {[c.id for c in confirmed]} "
                f"operator={operator}")
    return confirmed


async def pending_for(runtime: Runtime, images: list[tuple[RecentImage, bytes]], group_id: int) -> list[tuple[int, str]]:
    """The group-scoped corrections that decide these kept images in ``group_id``: what a confirmation
    sent as a reply to them confirms."""
    corrections = runtime.corrections

    def deciding() -> list[Correction | None]:
        return [corrections.deciding(data, group_id) for _, data in images]

    found = await asyncio.to_thread(deciding)
    return list(dict.fromkeys((c.group_id, c.id) for c in found if c is not None and not c.everywhere))
