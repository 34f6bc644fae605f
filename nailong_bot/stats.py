"""Per-group counts by day (images checked, hits, recalls, failed recalls, corrections, images of
exempt senders, hits in observe mode), kept in ``stats.json`` so a restart does not reset them.

Counting happens on the event loop and only touches memory; the file is written every few seconds
(when something changed) and at shutdown, so a crash loses at most those last seconds of counts and
no image waits for a disk write.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta
from pathlib import Path

from nonebot.log import logger

from . import persist

STATS_FILE = "stats.json"
_FORMAT_VERSION = 1
# Days of counts kept; older days are dropped when a new day starts.
KEEP_DAYS = 31
SAVE_INTERVAL = 5.0


@dataclass
class Counts:
    checked: int = 0
    hits: int = 0
    recalls: int = 0
    failed_recalls: int = 0
    corrections: int = 0
    # Images of exempt senders (owner, admins, superusers, the allow-list): not downloaded, not checked.
    exempt: int = 0
    # Hits in observe mode (the trial): counted in hits too, nothing was done.
    observed: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for name in COUNT_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @classmethod
    def from_json(cls, raw: object) -> Counts:
        if not isinstance(raw, dict):
            raise ValueError(f"counts are not an object: {raw!r}")
        values = {name: raw.get(name, 0) for name in COUNT_NAMES}
        if not all(isinstance(value, int) and value >= 0 for value in values.values()):
            raise ValueError(f"counts must be whole numbers ≥ 0: {raw!r}")
        return cls(**values)


COUNT_NAMES = tuple(f.name for f in fields(Counts))


class GroupCounts:
    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = data_dir / STATS_FILE
        self._clock = clock
        self._days: dict[str, dict[int, Counts]] = {}  # local ISO date → group → counts
        self._dirty = False
        self.save_error: str | None = None  # why the counts cannot be written (they are still kept in memory)

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock()).date()

    def add(self, group_id: int, **increments: int) -> None:
        """Count today for ``group_id``, e.g. ``add(123, checked=2, hits=1)``."""
        today = self._today().isoformat()
        if today not in self._days:
            oldest_kept = (self._today() - timedelta(days=KEEP_DAYS - 1)).isoformat()
            self._days = {day: groups for day, groups in self._days.items() if day >= oldest_kept}
            self._days[today] = {}
        counts = self._days[today].setdefault(group_id, Counts())
        counts += Counts(**increments)
        self._dirty = True

    def over_days(self, group_id: int, days: int) -> Counts:
        """The group's counts over the last ``days`` days, today included (1: today)."""
        since = (self._today() - timedelta(days=days - 1)).isoformat()
        total = Counts()
        for day, groups in self._days.items():
            if day >= since and group_id in groups:
                total += groups[group_id]
        return total

    def by_day(self, group_id: int | None = None, days: int = KEEP_DAYS) -> list[tuple[date, Counts]]:
        """Each of the last ``days`` days (oldest first, today last) with its counts: one group's, or
        every group's together when ``group_id`` is None. A day with nothing counted has zeros."""
        today = self._today()
        daily = []
        for back in range(days - 1, -1, -1):
            day = today - timedelta(days=back)
            total = Counts()
            for group, counts in self._days.get(day.isoformat(), {}).items():
                if group_id is None or group == group_id:
                    total += counts
            daily.append((day, total))
        return daily

    def groups(self) -> set[int]:
        return {group for groups in self._days.values() for group in groups}

    def load(self) -> None:
        """Read the file; a corrupted one is set aside (kept for inspection) and counting starts over.
        In a folder that cannot be written, counting goes on in memory (``save_error`` says why)."""
        self.save_error = persist.unwritable_reason(self.path.parent)
        if not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get("days"), dict):
                raise ValueError("expected {'days': {...}}")
            self._days = {
                date.fromisoformat(day).isoformat(): {
                    int(group): Counts.from_json(counts) for group, counts in groups.items()
                }
                for day, groups in raw["days"].items()
            }
        except OSError as error:
            self.save_error = persist.describe(error)
            logger.warning(f"无法读取统计，重新开始计数 / cannot read the counts, counting starts over: {self.save_error}")
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as error:
            kept_at = self.path if self.save_error else persist.set_aside(self.path)
            self._days = {}
            logger.warning(
                f"统计文件已损坏，保留在 {kept_at}，重新开始计数 / counts file corrupted ({error}); "
                f"kept at {kept_at}, counting starts over"
            )

    async def save(self) -> None:
        """Write the counts if they changed; a failed write is logged and tried again next time."""
        if not self._dirty or self.save_error is not None:
            return
        snapshot = {
            "version": _FORMAT_VERSION,
            "days": {
                day: {str(group): asdict(counts) for group, counts in groups.items()}
                for day, groups in self._days.items()
            },
        }
        self._dirty = False
        try:
            data = json.dumps(snapshot, ensure_ascii=False).encode("utf-8")
            await asyncio.to_thread(persist.write_atomically, self.path, data, durable=False)
        except OSError as error:
            self._dirty = True
            logger.warning(f"无法保存统计 / could not save the counts: {self.path}: {error}")

    async def save_every(self, seconds: float = SAVE_INTERVAL) -> None:
        """Save periodically until cancelled (the runtime's task)."""
        while True:
            await asyncio.sleep(seconds)
            await self.save()

