"""Per-group counts by day: today and 7-day windows, old days dropped, saved and read back, a corrupted
file set aside, a failed write tried again."""

from __future__ import annotations

import json

from nailong_bot.stats import KEEP_DAYS, Counts, GroupCounts

DAY = 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # some day in 2027, local time

    def __call__(self) -> float:
        return self.now


def test_today_and_the_last_seven_days(tmp_path) -> None:
    clock = Clock()
    counts = GroupCounts(tmp_path, clock=clock)
    counts.add(1, checked=3, hits=1, recalls=1)
    clock.now += 3 * DAY
    counts.add(1, checked=2, failed_recalls=1)
    counts.add(2, corrections=1)
    assert counts.over_days(1, 1) == Counts(checked=2, failed_recalls=1)
    assert counts.over_days(1, 7) == Counts(checked=5, hits=1, recalls=1, failed_recalls=1)
    clock.now += 5 * DAY
    assert counts.over_days(1, 7) == Counts(checked=2, failed_recalls=1)  # the first day fell out
    assert counts.groups() == {1, 2}


def test_counts_by_day_for_a_group_and_for_all_groups(tmp_path) -> None:
    clock = Clock()
    counts = GroupCounts(tmp_path, clock=clock)
    counts.add(1, checked=3, hits=1)
    clock.now += 2 * DAY
    counts.add(1, checked=2, hits=2)
    counts.add(2, checked=4, hits=1)
    one, every = counts.by_day(1, days=4), counts.by_day(days=4)
    assert [day.isoformat() for day, _ in one] == [day.isoformat() for day, _ in every]
    assert [(b - a).days for (a, _), (b, _) in zip(one, one[1:])] == [1, 1, 1]  # oldest first, no day missing
    assert [c.hits for _, c in one] == [0, 1, 0, 2]
    assert [c.hits for _, c in every] == [0, 1, 0, 3] and every[-1][1].checked == 6
    assert len(counts.by_day(1)) == KEEP_DAYS


def test_days_older_than_kept_are_dropped(tmp_path) -> None:
    clock = Clock()
    counts = GroupCounts(tmp_path, clock=clock)
    counts.add(1, checked=1)
    clock.now += KEEP_DAYS * DAY
    counts.add(3, checked=1)
    assert counts.groups() == {3}


async def test_saved_and_read_back(tmp_path) -> None:
    clock = Clock()
    counts = GroupCounts(tmp_path, clock=clock)
    counts.add(1, checked=4, hits=2)
    await counts.save()
    again = GroupCounts(tmp_path, clock=clock)
    again.load()
    assert again.over_days(1, 1) == Counts(checked=4, hits=2)


async def test_a_failed_write_is_tried_again(tmp_path, caplog_loguru) -> None:
    counts = GroupCounts(tmp_path)
    counts.add(1, checked=1)
    (tmp_path / "stats.json.tmp").mkdir()  # the write cannot open its temporary file
    await counts.save()
    assert not (tmp_path / "stats.json").exists()
    assert any("无法保存统计 / could not save the counts" in line for line in caplog_loguru)
    (tmp_path / "stats.json.tmp").rmdir()
    await counts.save()
    assert json.loads((tmp_path / "stats.json").read_text())["days"]


def test_a_corrupted_file_is_set_aside(tmp_path, caplog_loguru) -> None:
    (tmp_path / "stats.json").write_text('{"days": {"2026-11-26": {"1": {"checked": -3}}}}')
    counts = GroupCounts(tmp_path)
    counts.load()
    assert counts.groups() == set()
    assert [p.name.startswith("stats.json.corrupt-") for p in tmp_path.iterdir()] == [True]
    assert any("统计文件已损坏" in line for line in caplog_loguru)
