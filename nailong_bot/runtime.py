"""What lives from start-up to shutdown: the models, the HTTP client, the cache, settings,
per-group counts, members' strikes, the recent images, the admins' corrections, the refreshes that learn
them and the audit log of changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from nonebot import get_driver
from nonebot.log import logger

from nailong_vision.classifier import Classifier

from .actions import WarningCooldown
from .audit import AUDIT_FILE, AuditLog
from .budget import DecodeBudget
from .cache import TTLCache
from .config import Config
from .corrections import Corrections
from .decision import Decider, Decision
from .fetch import Fetcher, IPAddress, is_public_address
from .models import Models
from .recent import ActedHits, RecentImages
from .refresh import Refresher
from .review import ReviewQueue
from .shares import SharedSlots
from .stats import GroupCounts
from .storage import Action, GroupSettings, MutePolicy, SettingsStore, default_review_floor
from .strikes import StrikeStore


@dataclass
class ApiShare:
    """What the HTTP API may use, apart from what group checking uses, so that API callers never
    starve the guard: its requests at once (one more is answered 429), a fetcher of its own (its own
    download slots; public addresses only unless NAILONG_API_ALLOW_PRIVATE_URLS) and one decision at
    a time (with two or more workers, group images always have a worker the API cannot take)."""

    requests: asyncio.Semaphore
    fetcher: Fetcher
    deciding: asyncio.Semaphore


@dataclass
class Runtime:
    config: Config
    decider: Decider
    fetcher: Fetcher
    cache: TTLCache[Decision]
    store: SettingsStore
    recent: RecentImages
    acted_hits: ActedHits
    corrections: Corrections
    # The decoded-image memory every decode in the plugin waits for.
    decode_budget: DecodeBudget
    # Bounds the images whose bytes are in and wait for or go through a decision (the fetcher bounds
    # those on their way in): with the fetch's limits, the image bytes held in memory. One group holds
    # at most half of them (shares.py).
    deciding: SharedSlots
    warning_cooldown: WarningCooldown
    stats: GroupCounts
    saving_stats: asyncio.Task[None]
    strikes: StrikeStore
    # Every change an operator made, in chat or the console (who, where, before and after): see admin.py.
    audit: AuditLog
    api: ApiShare
    models: Models
    refresher: Refresher
    auto_refresh: asyncio.Task[None]
    # Images the model was unsure of, waiting for an operator's label.
    review: ReviewQueue

    @property
    def classifier(self) -> Classifier:
        """The model in use now (a refresh or a rollback swaps it)."""
        return self.decider.classifier

    @property
    def model_version(self) -> str:
        return self.decider.classifier.info.version


_current: Runtime | None = None


def get_runtime() -> Runtime | None:
    """The running plugin's state, or None before start-up (or after a failed one)."""
    return _current


def _fetcher(
    config: Config,
    max_concurrent: int,
    *,
    local_image_dirs: Iterable[Path] | None = None,
    address_allowed: Callable[[IPAddress], bool] | None = None,
) -> Fetcher:
    """A downloader with the configured limits; the groups' and the API's differ in slots and in where they may
    fetch from (local folders for the groups, public addresses only for the API by default)."""
    return Fetcher(
        max_bytes=config.nailong_max_image_bytes,
        connect_timeout=config.nailong_connect_timeout,
        read_timeout=config.nailong_read_timeout,
        retries=config.nailong_fetch_retries,
        max_concurrent=max_concurrent,
        max_per_host=config.nailong_max_downloads_per_host,
        deadline=config.nailong_download_deadline,
        local_image_dirs=local_image_dirs,
        address_allowed=address_allowed,
    )


async def start(config: Config, data_dir: Path) -> Runtime:
    """Load the model and settings; raises ModelError with a clear message when the model is unusable."""
    global _current
    if _current is not None:
        await stop()
    models = Models(data_dir / "models", config)
    classifier = await asyncio.to_thread(models.load_in_use)
    info = classifier.info
    defaults = GroupSettings(
        enabled=config.nailong_default_enabled,
        threshold=info.threshold if config.nailong_threshold is None else config.nailong_threshold,
        action=Action.from_flags(config.nailong_recall, config.nailong_reply),
        exempt_admins=config.nailong_exempt_admins,
        mute=MutePolicy(after=config.nailong_mute_after, seconds=config.nailong_mute_seconds),
        reply_text=config.default_warning,
        review_floor=default_review_floor(config.nailong_review_floor, info.review_floor),
    )
    store = SettingsStore(data_dir, defaults)
    store.load()
    strikes = StrikeStore(data_dir, window=config.nailong_strike_window_hours * 3600)
    await asyncio.to_thread(strikes.load)
    stats = GroupCounts(data_dir)
    await asyncio.to_thread(stats.load)
    recent = await asyncio.to_thread(
        RecentImages,
        data_dir / "recent",
        max_images=config.nailong_recent_max_images,
        max_bytes=config.nailong_recent_max_bytes,
        max_age=config.nailong_recent_max_age_hours * 3600,
    )
    decode_budget = DecodeBudget(config.nailong_decode_memory_mb << 20)
    corrections = await asyncio.to_thread(
        Corrections,
        data_dir / "feedback",
        budget=decode_budget,
        agree_groups=config.nailong_corrections_agree_groups,
        max_bytes=config.nailong_feedback_max_mb << 20,
        # Read only to convert a corrections log written before scopes.
        superusers=get_driver().config.superusers,
    )
    audit = await asyncio.to_thread(
        AuditLog,
        data_dir / AUDIT_FILE,
        max_bytes=int(config.nailong_audit_max_mb * 2**20),
        keep=config.nailong_audit_keep,
    )
    review = await asyncio.to_thread(
        ReviewQueue,
        data_dir / "review",
        max_per_group=config.nailong_review_max_per_group,
        max_bytes=config.nailong_review_max_bytes,
    )
    _report_unsaved(store, recent, corrections, stats, strikes, audit, review)
    decider = Decider(
        classifier,
        workers=config.nailong_workers,
        max_frames=config.nailong_max_frames,
        max_pixels=config.nailong_max_pixels,
        budget=decode_budget,
    )
    cache: TTLCache[Decision] = TTLCache(config.nailong_cache_size, config.nailong_cache_ttl)
    models.attach(decider, store, cache)
    refresher = Refresher(config, data_dir, models, corrections, audit)
    _current = Runtime(
        config=config,
        decider=decider,
        fetcher=_fetcher(
            config, config.nailong_max_downloads, local_image_dirs=config.nailong_local_image_dirs
        ),
        cache=cache,
        store=store,
        recent=recent,
        acted_hits=ActedHits(),
        corrections=corrections,
        decode_budget=decode_budget,
        # One image in each worker and one queued behind it, so a worker never waits for the event loop;
        # a group's share is one per worker, so another group's image always finds a free slot.
        deciding=SharedSlots(2 * config.nailong_workers, share=config.nailong_workers),
        warning_cooldown=WarningCooldown(config.nailong_reply_cooldown),
        stats=stats,
        saving_stats=asyncio.create_task(stats.save_every()),
        strikes=strikes,
        audit=audit,
        api=ApiShare(
            requests=asyncio.Semaphore(config.nailong_api_max_requests),
            fetcher=_fetcher(
                config,
                config.nailong_api_max_requests,
                address_allowed=None if config.nailong_api_allow_private_urls else is_public_address,
            ),
            deciding=asyncio.Semaphore(1),
        ),
        models=models,
        refresher=refresher,
        auto_refresh=asyncio.create_task(refresher.auto_loop()),
        review=review,
    )
    logger.info(
        f"奶龙模型已加载 / model loaded: {info.name} v{info.version} ({info.path}), "
        f"labels={list(info.labels)}, input={info.spec.size}, frames={decider.frames}, "
        f"threshold={defaults.threshold}, review floor={defaults.review_floor}, providers={list(info.providers)}; settings in {store.path}, "
        f"{len(corrections)} corrections in {corrections.feedback_dir}"
    )
    return _current


def _report_unsaved(
    store: SettingsStore,
    recent: RecentImages,
    corrections: Corrections,
    stats: GroupCounts,
    strikes: StrikeStore,
    audit: AuditLog,
    review: ReviewQueue,
) -> None:
    """One line at start-up for what cannot be saved: the bot still guards, so say it loudly."""
    unsaved = [
        (zh, en, error)
        for zh, en, error in [
            ("群设置", "group settings", store.save_error),
            ("近期图片（纠错用）", "recent images (for corrections)", recent.save_error),
            ("纠错", "corrections", corrections.save_error),
            ("统计", "counts", stats.save_error),
            ("记过", "strikes", strikes.save_error),
            ("操作记录", "audit log", audit.save_error),
            ("复核队列", "review queue", review.save_error),
        ]
        if error is not None
    ]
    if unsaved:
        logger.error(
            f"无法保存{'、'.join(zh for zh, _, _ in unsaved)}：管理员的更改会被拒绝，仍按默认设置和已读取的内容检测 / "
            f"cannot save {', '.join(en for _, en, _ in unsaved)}: admins' changes will be refused, guarding "
            f"goes on with the defaults and what could be read. "
            f"{'; '.join(error for _, _, error in unsaved)}"
        )


async def stop() -> None:
    global _current
    if _current is None:
        return
    runtime, _current = _current, None
    runtime.saving_stats.cancel()
    runtime.auto_refresh.cancel()
    await runtime.refresher.stop()
    await runtime.stats.save()
    await runtime.strikes.save()
    await runtime.fetcher.aclose()
    await runtime.api.fetcher.aclose()
    runtime.decider.shutdown()
