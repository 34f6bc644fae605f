from __future__ import annotations

import asyncio
import os

import pytest
from nonebot.log import logger

from nailong_bot.recent import IMAGES_DIR, INDEX_FILE, ActedHits, RecentImages


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def blob(n: int, size: int = 1000) -> bytes:
    """Distinct bytes of a given size (the store never decodes them)."""
    return n.to_bytes(4, "big") * (size // 4)


def remember(store: RecentImages, message_id: int, data: bytes, *, key: str = "a", hit: bool = True) -> None:
    store.remember(message_id, 42, data, image_key=key, score=0.9 if hit else 0.1, model_version="v1", hit=hit)


def stored_files(store: RecentImages) -> list[str]:
    return sorted(path.name for path in (store.directory / IMAGES_DIR).iterdir())


def test_lookup_by_image_message_and_by_warning(tmp_path):
    store = RecentImages(tmp_path)
    remember(store, 1, blob(1), key="first")
    remember(store, 1, blob(2), key="second", hit=False)
    remember(store, 2, blob(3))
    store.link_reply(99, 1)

    by_message = store.lookup(1)
    assert [(e.image_key, e.hit, e.group_id, e.model_version) for e in by_message] == [
        ("first", True, 42, "v1"),
        ("second", False, 42, "v1"),
    ]
    assert store.lookup(99) == by_message
    assert [store.read(e) for e in by_message] == [blob(1), blob(2)]
    assert store.lookup(12345) == []


def test_same_bytes_are_stored_once(tmp_path):
    store = RecentImages(tmp_path)
    remember(store, 1, blob(7))
    remember(store, 2, blob(7))
    assert len(store) == 2
    assert len(stored_files(store)) == 1
    assert store.total_bytes == len(blob(7))


def test_remembering_the_same_image_of_a_message_again_replaces_it(tmp_path):
    store = RecentImages(tmp_path)
    remember(store, 1, blob(1), hit=True)
    remember(store, 1, blob(2), hit=False)
    assert [(e.hit, store.read(e)) for e in store.lookup(1)] == [(False, blob(2))]
    assert len(stored_files(store)) == 1


def test_a_repost_without_bytes_shares_the_latest_copy_with_its_key(tmp_path):
    clock = Clock()
    store = RecentImages(tmp_path, max_images=2, clock=clock)
    remember(store, 1, blob(1), key="md5:x")
    clock.now += 10
    assert store.remember_repost(2, 43, image_key="md5:x", hit=False)
    (repost,) = store.lookup(2)
    assert (repost.group_id, repost.hit, repost.score, repost.stored_at) == (43, False, 0.9, clock.now)
    assert store.read(repost) == blob(1)
    assert not store.remember_repost(3, 43, image_key="md5:unknown", hit=True)

    remember(store, 3, blob(3))  # the first message goes; its file stays for the repost
    assert store.lookup(1) == [] and store.read(store.lookup(2)[0]) == blob(1)
    assert len(stored_files(store)) == 2


def test_count_limit_evicts_oldest_and_deletes_their_files(tmp_path):
    store = RecentImages(tmp_path, max_images=3)
    for message_id in range(5):
        remember(store, message_id, blob(message_id))
    assert len(store) == 3
    assert store.lookup(0) == store.lookup(1) == []
    assert [len(store.lookup(m)) for m in (2, 3, 4)] == [1, 1, 1]
    assert len(stored_files(store)) == 3


def test_byte_limit_evicts_oldest(tmp_path):
    store = RecentImages(tmp_path, max_bytes=2500)
    for message_id in range(4):
        remember(store, message_id, blob(message_id, size=1000))
    assert store.total_bytes <= 2500
    assert [bool(store.lookup(m)) for m in range(4)] == [False, False, True, True]
    assert len(stored_files(store)) == 2


def test_an_image_larger_than_the_byte_limit_is_not_stored(tmp_path):
    store = RecentImages(tmp_path, max_bytes=500)
    remember(store, 1, blob(1, size=1000))
    assert len(store) == 0
    assert stored_files(store) == []


def test_age_limit(tmp_path):
    clock = Clock()
    store = RecentImages(tmp_path, max_age=3600, clock=clock)
    remember(store, 1, blob(1))
    store.link_reply(99, 1)
    clock.now += 1800
    remember(store, 2, blob(2))
    clock.now += 1801

    # Expired entries are invisible at once and their files go at the next write.
    assert store.lookup(1) == store.lookup(99) == []
    assert len(store.lookup(2)) == 1
    remember(store, 3, blob(3))
    assert len(store) == 2
    assert len(stored_files(store)) == 2


def test_index_survives_a_restart_and_warning_links_follow_eviction(tmp_path):
    clock = Clock()
    store = RecentImages(tmp_path, max_images=2, clock=clock)
    remember(store, 1, blob(1))
    store.link_reply(91, 1)
    remember(store, 2, blob(2))
    store.link_reply(92, 2)

    reopened = RecentImages(tmp_path, max_images=2, clock=clock)
    assert reopened.lookup(91) == store.lookup(1)
    assert reopened.read(reopened.lookup(92)[0]) == blob(2)

    remember(reopened, 3, blob(3))  # evicts message 1, and with it the link from warning 91
    again = RecentImages(tmp_path, max_images=2, clock=clock)
    assert again.lookup(91) == []
    assert again.lookup(92) == reopened.lookup(2) and again.lookup(3) == reopened.lookup(3)


def test_the_journal_stays_small_and_replays_to_the_same_store(tmp_path):
    clock = Clock()
    store = RecentImages(tmp_path, max_images=10, clock=clock)
    for message_id in range(300):
        remember(store, message_id, blob(message_id % 25), key=str(message_id % 3))
        if message_id % 7 == 0:
            store.link_reply(10_000 + message_id, message_id)
        clock.now += 1
    lines = (tmp_path / INDEX_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 64 + 1  # compacted, not one line per image ever seen
    reopened = RecentImages(tmp_path, max_images=10, clock=clock)
    assert [reopened.lookup(m) for m in range(300)] == [store.lookup(m) for m in range(300)]
    assert reopened.lookup(10_294) == store.lookup(294) != []
    assert stored_files(reopened) == stored_files(store)


def test_a_half_written_last_line_keeps_the_images_before_it(tmp_path):
    store = RecentImages(tmp_path)
    remember(store, 1, blob(1))
    remember(store, 2, blob(2))
    with (tmp_path / INDEX_FILE).open("a", encoding="utf-8") as journal:
        journal.write('{"image": {"message_id": 3, "gro')  # the bot died mid-write

    reopened = RecentImages(tmp_path)
    assert [len(reopened.lookup(m)) for m in (1, 2, 3)] == [1, 1, 0]
    assert len(list(tmp_path.glob(f"{INDEX_FILE}.corrupt-*"))) == 1
    remember(reopened, 4, blob(4))
    assert len(RecentImages(tmp_path).lookup(4)) == 1


def test_smaller_limits_after_a_restart_apply_at_once(tmp_path):
    store = RecentImages(tmp_path)
    for message_id in range(4):
        remember(store, message_id, blob(message_id))
    reopened = RecentImages(tmp_path, max_images=1)
    assert len(reopened) == 1 and reopened.lookup(3)
    assert len(stored_files(reopened)) == 1


@pytest.mark.parametrize("garbage", ['{"image": {', '{"image": {"message_id": 1}}', "[]", "\x00\xff"])
def test_a_corrupt_index_is_set_aside_and_the_store_starts_empty(tmp_path, garbage):
    store = RecentImages(tmp_path)
    remember(store, 1, blob(1))
    (tmp_path / INDEX_FILE).write_text(garbage, encoding="utf-8")

    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        reopened = RecentImages(tmp_path)
    finally:
        logger.remove(sink)

    assert len(reopened) == 0
    assert stored_files(reopened) == []  # files of the lost index do not linger outside the byte bound
    aside = [name for name in os.listdir(tmp_path) if name.startswith(f"{INDEX_FILE}.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_text(encoding="utf-8") == garbage
    assert any("recent-images index corrupted" in message for message in messages)
    remember(reopened, 2, blob(2))
    assert len(RecentImages(tmp_path).lookup(2)) == 1


async def test_a_correction_waits_for_the_hit_being_kept_in_its_group() -> None:
    # `/nailong wrong` right after a recall, while the hit's images still queue for the disk, must find that
    # hit and not the group's previous one (seen in the end-to-end refresh test under load).
    hits = ActedHits()
    kept: list[str] = []

    async def act_then_keep() -> None:
        with hits.acting(group_id=1, message_id=7):
            await asyncio.sleep(0.2)  # the write queued behind others
            kept.append("hit")

    acting = asyncio.create_task(act_then_keep())
    await asyncio.sleep(0)
    await asyncio.wait_for(hits.settled(2, timeout=5), 0.05)  # another group's hit keeps nobody waiting
    assert kept == []
    await hits.settled(1, timeout=5)
    assert kept == ["hit"]
    await acting
    await asyncio.wait_for(hits.settled(1, timeout=5), 0.05)  # nothing left to wait for
    assert hits.latest(1) == 7 and hits.latest(2) is None


async def test_the_latest_hit_is_the_last_acted_on_not_the_last_kept() -> None:
    # Keeping finishes in no fixed order: a hit acted on earlier may be kept after a later one.
    hits = ActedHits()
    first_kept = asyncio.Event()

    async def hit(message_id: int, keep_after: asyncio.Event | None) -> None:
        with hits.acting(group_id=1, message_id=message_id):
            if keep_after is not None:
                await keep_after.wait()
            else:
                first_kept.set()

    earlier = asyncio.create_task(hit(9057, keep_after=first_kept))
    await asyncio.sleep(0)
    later = asyncio.create_task(hit(9060, keep_after=None))
    await asyncio.gather(earlier, later)
    assert hits.latest(1) == 9060


async def test_a_hit_that_is_never_kept_delays_a_correction_only_until_the_timeout() -> None:
    hits = ActedHits()
    release = asyncio.Event()

    async def stuck() -> None:
        with hits.acting(group_id=1, message_id=7):
            await release.wait()

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    await asyncio.wait_for(hits.settled(1, timeout=0.1), 2)
    release.set()
    await task
