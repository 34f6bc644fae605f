"""Slow and stuck sources cost their own images, never another group's decision."""

from __future__ import annotations

import asyncio
import threading

import pytest

from nailong_bot import fetch
from nailong_bot.fetch import FetchError, Fetcher
from nailong_bot.images import ImageRef
from nailong_bot.pipeline import check_message

from nailong_testkit import YELLOW, ImageServer, group_event, image_segment, still

# A guard for a hang, far above any decision: the assertions are about order, never about time.
HANG = 30


class RecordingBot:
    """Just what the image path asks of a bot: get_image's answer, and the actions it takes."""

    self_id = "42"

    def __init__(self, get_image: dict | None = None) -> None:
        self.answer = get_image or {}
        self.calls: list[tuple[str, object]] = []

    async def get_image(self, file: str) -> dict:
        return self.answer

    async def delete_msg(self, message_id: int) -> None:
        self.calls.append(("delete_msg", message_id))

    async def send_group_msg(self, group_id: int, message: object) -> dict:
        self.calls.append(("send_group_msg", group_id))
        return {"message_id": 1}

    def recalled(self) -> list[object]:
        return [message_id for action, message_id in self.calls if action == "delete_msg"]


class StuckReads:
    """Stands in for read_local_file: every read blocks, as a read() stuck in the kernel does, until
    the test lets them all return."""

    def __init__(self) -> None:
        self.started = 0
        self.go_on = threading.Event()

    def __call__(self, location: str, max_bytes: int, allowed_dirs: object) -> bytes:
        self.started += 1
        self.go_on.wait(HANG)
        return still(YELLOW)


@pytest.fixture
def stuck_reads(monkeypatch) -> StuckReads:
    stuck = StuckReads()
    monkeypatch.setattr(fetch, "read_local_file", stuck)
    yield stuck
    stuck.go_on.set()


async def wait_until(condition) -> None:
    for _ in range(HANG * 20):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never met")


async def test_stuck_local_reads_leave_other_groups_checked(start_guard, image_server, stuck_reads) -> None:
    guard = await start_guard(nailong_download_deadline=HANG)
    bot = RecordingBot(get_image={"file": "/var/lib/onebot/cache/A.jpg"})
    local = [
        asyncio.create_task(
            check_message(bot, group_event([image_segment(None, file=f"L{i}.image")], message_id=100 + i), guard)
        )
        for i in range(6)
    ]
    await wait_until(lambda: stuck_reads.started >= 4)  # every local reader is stuck
    url = image_server.add("while-reads-are-stuck.jpg", still(YELLOW, size=(33, 33)))
    event = group_event([image_segment(url)], group_id=2, message_id=200)
    assert await asyncio.wait_for(check_message(bot, event, guard), HANG) is not None
    assert bot.recalled() == [200] and not any(task.done() for task in local)
    # The reads return at last: their slots come back, and the two waiting images are read too.
    stuck_reads.go_on.set()
    await asyncio.wait_for(asyncio.gather(*local), HANG)
    assert stuck_reads.started == 6 and sorted(bot.recalled()) == [*range(100, 106), 200]


async def test_a_stuck_local_read_gives_up_and_blocks_no_exit(image_server, stuck_reads) -> None:
    client = Fetcher(
        max_bytes=1 << 20, connect_timeout=1, read_timeout=1, retries=0, max_concurrent=2, deadline=0.3
    )
    bot = RecordingBot(get_image={"file": "/var/lib/onebot/cache/B.jpg"})
    ref = ImageRef(file="B.image", url=None, key=None)
    deciding = asyncio.Semaphore(8)
    for _ in range(4):
        with pytest.raises(FetchError, match="took too long"):
            async with client.image_bytes(bot, ref, deciding):
                pass
    # Four reads are stuck: a fifth starts no thread, and downloads go on as before.
    with pytest.raises(FetchError, match="reads are stuck"):
        async with client.image_bytes(bot, ref, deciding):
            pass
    assert stuck_reads.started == 4
    readers = [thread for thread in threading.enumerate() if thread.name == "nailong-local-read"]
    assert len(readers) == 4 and all(thread.daemon for thread in readers)  # SIGTERM does not wait for them
    url = image_server.add("download-beside-stuck-reads.jpg", still(YELLOW))
    async with client.image_bytes(bot, ImageRef(file=None, url=url, key=None), deciding) as data:
        assert data == still(YELLOW)
    stuck_reads.go_on.set()
    client.deadline = HANG
    async with client.image_bytes(bot, ref, deciding) as data:
        assert data == still(YELLOW)
    assert stuck_reads.started == 5
    await client.aclose()


async def test_a_slow_server_does_not_delay_another_group(start_guard) -> None:
    guard = await start_guard(
        nailong_max_downloads=4, nailong_read_timeout=5, nailong_fetch_retries=2, nailong_download_deadline=HANG
    )
    bot = RecordingBot()
    with ImageServer() as server, ImageServer(host="127.0.0.2") as slow_server:
        slow_image = slow_server.add("slow.gif", still(YELLOW, "GIF", size=(4, 4)), "image/gif")
        # The slow host, at another address, sending the image a byte at a time.
        slow_url = slow_image.replace("/img/", "/trickle/") + "?every=0.1"
        slow = [
            asyncio.create_task(
                check_message(bot, group_event([image_segment(f"{slow_url}&n={i}")], message_id=300 + i), guard)
            )
            for i in range(6)
        ]
        await wait_until(lambda: slow_server.requests["/trickle/slow.gif"] >= 2)
        url = server.add("positive-elsewhere.jpg", still(YELLOW, size=(44, 44)))
        event = group_event([image_segment(url)], group_id=2, message_id=400)
        assert await asyncio.wait_for(check_message(bot, event, guard), HANG) is not None
        assert bot.recalled() == [400]
        # The slow host's images are still decided in the end.
        await asyncio.wait_for(asyncio.gather(*slow), HANG)
        assert sorted(bot.recalled()) == [*range(300, 306), 400]
        assert slow_server.requests["/trickle/slow.gif"] == 6


async def test_one_group_holds_at_most_its_share_of_the_slots() -> None:
    from nailong_bot.shares import SharedSlots

    slots = SharedSlots(4, share=2)
    for _ in range(2):
        await slots.acquire("A")
    more_a = [asyncio.create_task(slots.acquire("A")) for _ in range(3)]
    await asyncio.sleep(0)
    assert slots.held_by("A") == 2 and not any(task.done() for task in more_a)
    # B finds a free slot at once, however many of A's wait; so does a second image of B.
    await asyncio.wait_for(slots.acquire("B"), HANG)
    await asyncio.wait_for(slots.slot("B").acquire(), HANG)
    third_b = asyncio.create_task(slots.acquire("B"))
    slots.release("A")
    await asyncio.sleep(0)
    # The slot A gave back goes to A's longest waiter (B is at its share), never past the total.
    assert [task.done() for task in more_a] == [True, False, False] and not third_b.done()
    assert slots.held() == 4
    more_a[1].cancel()
    slots.release("B")
    await asyncio.sleep(0)
    assert third_b.done() and not more_a[2].done() and slots.held_by("B") == 2
    more_a[2].cancel()
    await asyncio.gather(*more_a[1:], return_exceptions=True)
    assert (slots.held_by("A"), slots.held_by("B")) == (2, 2)
