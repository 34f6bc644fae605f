"""The review band: the queue on disk (bounded, once per image, kept across restarts, a bad file set
aside), the band in the image's path (nothing done in the group, queued once, the superusers told
privately), and `/nailong review` with the status line."""

from __future__ import annotations

import io
import json

from nonebug import App
from PIL import Image

from nailong_bot.review import ReviewQueue, Waiting
from nailong_bot.storage import REVIEW_OFF

from nailong_testkit import BLUE, SUPERUSER, YELLOW, group_event, image_segment, still
from nonebug_chat import ask, connect


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def waiting(n: int, group_id: int = 1, size: int = 10, score: float = 0.5) -> Waiting:
    return Waiting(
        sha256=f"{n:064x}", group_id=group_id, message_id=n, user_id=5, self_id="42", score=score, threshold=0.9,
        model_version="1", model_threshold=0.7, time=float(n), size=size,
    )  # fmt: skip


def test_the_queue_keeps_each_image_once_evicts_the_oldest_and_survives_a_restart(tmp_path) -> None:
    queue = ReviewQueue(tmp_path, max_per_group=3)
    assert queue.add(waiting(1), b"a", b"t")
    assert not queue.add(waiting(1), b"a", b"t")  # posted again: still once
    for n in (2, 3, 4):
        assert queue.add(waiting(n), b"b", b"t")
    assert queue.add(waiting(9, group_id=2), b"c", b"t")
    assert [e.message_id for e in queue.waiting(1)] == [4, 3, 2]  # newest first, the oldest evicted
    assert not (tmp_path / "images" / f"{1:064x}").exists()
    again = ReviewQueue(tmp_path, max_per_group=3)
    assert [e.message_id for e in again.waiting()] == [9, 4, 3, 2]
    assert again.read(again.get(f"{4:064x}")) == b"b" and again.read_thumbnail(f"{4:064x}") == b"t"


def test_the_queue_is_bounded_in_bytes(tmp_path) -> None:
    queue = ReviewQueue(tmp_path, max_bytes=25)
    for n in (1, 2, 3):
        queue.add(waiting(n, size=10), b"x" * 10, b"t")
    assert [e.message_id for e in queue.waiting()] == [3, 2]
    assert not queue.add(waiting(4, size=26), b"x" * 26, b"t")


def test_a_label_takes_the_image_off_and_is_tallied_per_model_version(tmp_path) -> None:
    queue = ReviewQueue(tmp_path)
    queue.add(waiting(1, score=0.8), b"a", b"t")  # the model (threshold 0.7) said nailong
    queue.add(waiting(2, score=0.3), b"b", b"t")  # and here it said other
    queue.resolve(f"{1:064x}", "other")
    queue.resolve(f"{2:064x}", "other")
    assert queue.resolve(f"{2:064x}", "other") is None
    assert len(queue) == 0 and not list((tmp_path / "images").iterdir())
    tally = ReviewQueue(tmp_path).tally()["1"]
    assert (tally.reviewed, tally.right, tally.called_nailong, tally.called_nailong_right) == (2, 1, 1, 0)


def test_a_corrupted_queue_is_set_aside(tmp_path) -> None:
    ReviewQueue(tmp_path).add(waiting(1), b"a", b"t")
    (tmp_path / "queue.json").write_text('{"waiting": [{"sha256": 1}], "tally": {}}')
    queue = ReviewQueue(tmp_path)
    assert len(queue) == 0 and list(tmp_path.glob("queue.json.corrupt-*"))
    assert not list((tmp_path / "images").iterdir())  # no entry refers to it any more


async def test_an_unsure_image_is_queued_with_nothing_done_in_the_group(app: App, start_guard, image_server) -> None:
    guard = await start_guard(nailong_threshold=0.999, nailong_review_floor=0.01, nailong_review_notify=1)
    url = image_server.add("unsure.jpg", still(YELLOW))
    notice = (
        "群 1 有 1 张图片等待复核，请在控制台 /nailong/review 标注 / 1 images in group 1 wait for review at "
        "/nailong/review in the console."
    )
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([image_segment(url)], message_id=71))
        # The only call: the superusers told in private, never the group.
        ctx.should_call_api("send_private_msg", {"user_id": SUPERUSER, "message": notice}, result={"message_id": 1})
    async with app.test_matcher() as ctx:  # posted again: queued once, no second notice
        ctx.receive_event(connect(ctx), group_event([image_segment(url)], message_id=72))
    blue = image_server.add("surely-other.jpg", still(BLUE))
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([image_segment(blue)], message_id=73))
    (entry,) = guard.review.waiting()
    assert (entry.group_id, entry.message_id, entry.user_id, entry.threshold) == (1, 71, 5, 0.999)
    assert 0.01 <= entry.score < 0.999 and guard.stats.over_days(1, 1).hits == 0
    assert guard.strikes.count(1, 5) == 0


async def test_review_command_and_status(app: App, guard) -> None:
    assert guard.store.get(1).review_floor == REVIEW_OFF  # the tiny model has no review floor
    assert await ask(app, "/奶龙 复核 0.2") == (
        "复核已设为：得分在 [0.2, 0.7) 的图片不处理，交给管理员在控制台 /nailong/review 复核，等待 0 张"
    )
    assert guard.store.get(1).review_floor == 0.2
    status = (await ask(app, "/nailong status")).splitlines()
    assert status[9] == "Review: scores in [0.2, 0.7) are not acted on but wait for review at /nailong/review: 0 waiting"
    for bad in ("0.7", "1", "-0.1", "nan", "abc"):
        assert (await ask(app, f"/奶龙 复核 {bad}")) == f"未更改：复核下限必须是 0 到本群阈值 0.7 之间的小数：{bad}"
    assert guard.store.get(1).review_floor == 0.2
    assert await ask(app, "/nailong review off") == "Review band set: off"
    assert json.loads(guard.store.path.read_text())["groups"]["1"]["review_floor"] == REVIEW_OFF
    (entry,) = [e for e in guard.audit.latest(10) if e["after"].get("review_floor") == REVIEW_OFF]
    assert entry["action"] == "group-settings" and entry["before"] == {"group_id": 1, "review_floor": 0.2}


async def test_members_cannot_set_the_review_band(app: App, guard) -> None:
    assert (await ask(app, "/nailong review 0.2", role="member")).startswith("Only the group owner")
    assert guard.store.get(1).review_floor == REVIEW_OFF


async def test_an_image_decided_from_the_cache_gets_its_thumbnail_made_again(start_guard) -> None:
    from nailong_bot.decision import Decision
    from nailong_bot.images import CheckedImage, ImageRef
    from nailong_bot.reviewing import _thumbnail

    guard = await start_guard()
    cached = Decision(0.5, source="cache", model_score=0.5)  # the cache keeps no preview
    thumbnail = _thumbnail(CheckedImage(ImageRef(file=None, url=None, key=None), cached, still(YELLOW)), guard)
    assert Image.open(io.BytesIO(thumbnail)).format == "JPEG"
