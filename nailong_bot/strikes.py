"""Strikes: each member's hits in each group over a rolling window (24 h by default), kept in
``strikes.json`` so a restart does not forgive anyone. A group's mute policy escalates on them, and a
correction (the hit was not nailong) takes its strike back.

Written after every change, once the bot has acted on it (hits are rare; the file holds only the
window's strikes), and at shutdown: a crash loses nothing that was answered. Not fsynced: losing the
last strike to a power cut costs one strike.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from nonebot.log import logger

from . import persist

STRIKES_FILE = "strikes.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Strike:
    group_id: int
    user_id: int
    message_id: int  # the message that was a hit: a correction of it finds its strike by this
    at: float  # wall-clock seconds
    muted: int  # seconds the member was muted for it (0: none)

    @classmethod
    def from_json(cls, raw: object) -> Strike:
        if not isinstance(raw, dict):
            raise ValueError(f"strike is not an object: {raw!r}")
        strike = cls(
            group_id=raw["group_id"], user_id=raw["user_id"], message_id=raw["message_id"],
            at=raw["at"], muted=raw.get("muted", 0),
        )  # fmt: skip
        numbers = (strike.group_id, strike.user_id, strike.message_id, strike.muted)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            raise ValueError(f"strike ids must be whole numbers: {raw!r}")
        if not isinstance(strike.at, (int, float)) or isinstance(strike.at, bool):
            raise ValueError(f"strike time must be a number: {raw!r}")
        return strike


class StrikeStore:
    def __init__(self, data_dir: Path, *, window: float, clock: Callable[[], float] = time.time) -> None:
        self.path = data_dir / STRIKES_FILE
        self.window = window
        self._clock = clock
        self._strikes: list[Strike] = []  # oldest first
        self._write_lock = asyncio.Lock()
        # Changes not yet written; a save finding none (a write that started after them wrote them) skips.
        self._unsaved = False
        # Why strikes cannot be saved (set by load); they are still counted in memory.
        self.save_error: str | None = None

    def load(self) -> None:
        """Read the file; a corrupted one is set aside (kept for inspection) and counting starts over."""
        self.save_error = persist.unwritable_reason(self.path.parent)
        if not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get("strikes"), list):
                raise ValueError("expected {'strikes': [...]}")
            self._strikes = sorted((Strike.from_json(entry) for entry in raw["strikes"]), key=lambda s: s.at)
        except OSError as error:
            self.save_error = persist.describe(error)
            logger.warning(f"无法读取记过，重新开始计数 / cannot read the strikes, counting starts over: {self.save_error}")
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
            kept_at = self.path if self.save_error else persist.set_aside(self.path)
            self._strikes = []
            logger.warning(
                f"记过文件已损坏，保留在 {kept_at}，重新开始计数 / strikes file corrupted ({error!r}); "
                f"kept at {kept_at}, counting starts over"
            )
        self._forget_old()

    def count(self, group_id: int, user_id: int) -> int:
        """The member's strikes in the group within the window."""
        oldest = self._clock() - self.window
        return sum(1 for s in self._strikes if s.group_id == group_id and s.user_id == user_id and s.at >= oldest)

    def top(self, group_id: int, limit: int = 5) -> list[tuple[int, int]]:
        """(member, strikes within the window) of the group's members with the most, most first."""
        oldest = self._clock() - self.window
        counts: dict[int, int] = {}
        for strike in self._strikes:
            if strike.group_id == group_id and strike.at >= oldest:
                counts[strike.user_id] = counts.get(strike.user_id, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def groups(self) -> set[int]:
        return {strike.group_id for strike in self._strikes}

    def add(self, group_id: int, user_id: int, message_id: int) -> int:
        """Count a hit (in memory: :meth:`save` writes it, after the bot has acted); returns which
        strike within the window it is (1: the first)."""
        self._forget_old()
        self._strikes.append(Strike(group_id, user_id, message_id, self._clock(), 0))
        self._unsaved = True
        return self.count(group_id, user_id)

    def note_mute(self, group_id: int, message_id: int, seconds: int) -> None:
        """Record that the strike of this message muted its sender for ``seconds`` (in memory)."""
        self._strikes = [
            Strike(s.group_id, s.user_id, s.message_id, s.at, seconds)
            if (s.group_id, s.message_id) == (group_id, message_id) else s
            for s in self._strikes
        ]  # fmt: skip
        self._unsaved = True

    async def remove(self, group_id: int, message_ids: set[int]) -> list[Strike]:
        """Take back the strikes these messages caused (a correction said they were not nailong)."""
        removed = [s for s in self._strikes if s.group_id == group_id and s.message_id in message_ids]
        if removed:
            self._strikes = [s for s in self._strikes if s not in removed]
            self._unsaved = True
            await self.save()
        return removed

    def _forget_old(self) -> None:
        oldest = self._clock() - self.window
        self._strikes = [s for s in self._strikes if s.at >= oldest]

    async def save(self) -> None:
        """Write the strikes if they changed; a failed write is logged (they are still counted in memory)."""
        if self.save_error is not None:
            return
        async with self._write_lock:
            if not self._unsaved:
                return
            self._unsaved = False
            snapshot = {"version": _FORMAT_VERSION, "strikes": [asdict(s) for s in self._strikes]}
            data = json.dumps(snapshot, ensure_ascii=False).encode("utf-8")
            try:
                await asyncio.to_thread(persist.write_atomically, self.path, data, durable=False)
            except OSError as error:
                self._unsaved = True
                logger.warning(f"无法保存记过 / could not save the strikes: {self.path}: {error}")
