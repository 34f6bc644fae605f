"""Strikes: each member's hits in each group over a rolling window (24 h by default), kept on disk so a
restart does not forgive anyone. A group's mute policy escalates on them, and a correction (the hit was
not nailong) takes its strike back.

On disk: ``strikes.json``, a snapshot, and ``strikes.journal``, one JSON line for each change since it
(a strike added, its mute noted, strikes taken back). A change costs one short line appended, whatever
the number of strikes (rewriting the whole file took 300 ms at 30,000 of them); once the journal has as
many lines as there are strikes (at least 1,000) the snapshot is rewritten and the journal emptied, in
a worker thread. Loading replays the journal over the snapshot; replaying a line twice changes nothing,
so a crash between the two steps of that rewrite loses nothing.

Saved after every message acted on (saves that meet while one is written go out as one append) and
at shutdown: a crash loses nothing that was answered. Never fsynced: losing the last strike to a power
cut costs one strike. In memory the strikes are kept oldest first, with each member's count, so a hit
costs the same at 30,000 strikes as at one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from nonebot.log import logger

from . import persist

STRIKES_FILE = "strikes.json"
JOURNAL_FILE = "strikes.journal"
_FORMAT_VERSION = 1
# The journal is folded into the snapshot once it has this many lines, or as many as there are strikes.
_MIN_JOURNAL_LINES = 1000


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
        self.journal_path = data_dir / JOURNAL_FILE
        self.window = window
        self._clock = clock
        self._strikes: deque[Strike] = deque()  # oldest first
        self._counts: Counter[tuple[int, int]] = Counter()  # (group, member) → strikes in the deque
        self._write_lock = asyncio.Lock()
        # Journal lines of changes not yet written; a save takes all there are.
        self._unsaved: list[str] = []
        self._journal_lines = 0  # lines in the journal file
        # Why strikes cannot be saved (set by load); they are still counted in memory.
        self.save_error: str | None = None

    def load(self) -> None:
        """Read the snapshot and replay the journal over it. A corrupted snapshot is set aside (kept for
        inspection) and counting starts over from the journal; a journal line that cannot be read (cut
        short by a crash) is skipped."""
        self.save_error = persist.unwritable_reason(self.path.parent)
        try:
            strikes = {(s.group_id, s.message_id): s for s in self._read_snapshot()}
            journal = self.journal_path.read_bytes().splitlines() if self.journal_path.exists() else []
        except OSError as error:
            self.save_error = persist.describe(error)
            logger.warning(f"无法读取记过，重新开始计数 / cannot read the strikes, counting starts over: {self.save_error}")
            return
        skipped = 0
        for line in journal:
            try:
                _replay(strikes, json.loads(line))
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                skipped += 1
        if skipped:
            logger.warning(f"记过日志有 {skipped} 行无法读取，已跳过 / {skipped} unreadable strike journal lines skipped")
        self._journal_lines = len(journal)
        self._set(sorted(strikes.values(), key=lambda s: s.at))
        self._forget_old()

    def _read_snapshot(self) -> list[Strike]:
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get("strikes"), list):
                raise ValueError("expected {'strikes': [...]}")
            return [Strike.from_json(entry) for entry in raw["strikes"]]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
            kept_at = self.path if self.save_error else persist.set_aside(self.path)
            logger.warning(
                f"记过文件已损坏，保留在 {kept_at}，重新开始计数 / strikes file corrupted ({error!r}); "
                f"kept at {kept_at}, counting starts over"
            )
            return []

    def _set(self, strikes: Iterable[Strike]) -> None:
        self._strikes = deque(strikes)
        self._counts = Counter((s.group_id, s.user_id) for s in self._strikes)

    def count(self, group_id: int, user_id: int) -> int:
        """The member's strikes in the group within the window."""
        self._forget_old()
        return self._counts[group_id, user_id]

    def top(self, group_id: int, limit: int = 5) -> list[tuple[int, int]]:
        """(member, strikes within the window) of the group's members with the most, most first."""
        self._forget_old()
        counts = [(user, n) for (group, user), n in self._counts.items() if group == group_id and n]
        return sorted(counts, key=lambda item: (-item[1], item[0]))[:limit]

    def groups(self) -> set[int]:
        return {group for (group, _), n in self._counts.items() if n}

    def add(self, group_id: int, user_id: int, message_id: int) -> int:
        """Count a hit (in memory: :meth:`save` writes it, after the bot has acted); returns which
        strike within the window it is (1: the first)."""
        strike = Strike(group_id, user_id, message_id, self._clock(), 0)
        self._strikes.append(strike)
        self._counts[group_id, user_id] += 1
        self._unsaved.append(_line({"add": _as_json(strike)}))
        return self.count(group_id, user_id)

    def note_mute(self, group_id: int, message_id: int, seconds: int) -> None:
        """Record that the strike of this message muted its sender for ``seconds`` (in memory)."""
        # Newest first: the strike was just added.
        for index in range(len(self._strikes) - 1, -1, -1):
            strike = self._strikes[index]
            if (strike.group_id, strike.message_id) == (group_id, message_id):
                self._strikes[index] = replace(strike, muted=seconds)
                self._unsaved.append(_line({"mute": {"group_id": group_id, "message_id": message_id,
                                                     "seconds": seconds}}))  # fmt: skip
                return

    async def remove(self, group_id: int, message_ids: set[int]) -> list[Strike]:
        """Take back the strikes these messages caused (a correction said they were not nailong)."""
        removed = [s for s in self._strikes if s.group_id == group_id and s.message_id in message_ids]
        if removed:
            self._set(s for s in self._strikes if s not in removed)
            ids = sorted({s.message_id for s in removed})
            self._unsaved.append(_line({"remove": {"group_id": group_id, "message_ids": ids}}))
            await self.save()
        return removed

    def _forget_old(self) -> None:
        oldest = self._clock() - self.window
        while self._strikes and self._strikes[0].at < oldest:
            strike = self._strikes.popleft()
            self._counts[strike.group_id, strike.user_id] -= 1
            if not self._counts[strike.group_id, strike.user_id]:
                del self._counts[strike.group_id, strike.user_id]

    async def save(self) -> None:
        """Write the changes since the last save (one append; now and then the whole snapshot, in a
        worker thread). A failed write is logged and tried again at the next save (the strikes are
        still counted in memory)."""
        if self.save_error is not None:
            return
        async with self._write_lock:
            if not self._unsaved:
                return
            lines, self._unsaved = self._unsaved, []
            fold = self._journal_lines + len(lines) >= max(_MIN_JOURNAL_LINES, len(self._strikes))
            try:
                if fold:
                    self._forget_old()
                    await asyncio.to_thread(self._write_snapshot, list(self._strikes))
                    self._journal_lines = 0
                else:
                    await asyncio.to_thread(persist.append, self.journal_path, "".join(lines), durable=False)
                    self._journal_lines += len(lines)
            except OSError as error:
                self._unsaved[:0] = lines
                logger.warning(f"无法保存记过 / could not save the strikes: {self.path}: {error}")

    def _write_snapshot(self, strikes: list[Strike]) -> None:
        """The whole snapshot, then an empty journal: replaying the old journal over the new snapshot
        (a crash between the two) changes nothing."""
        snapshot = {"version": _FORMAT_VERSION, "strikes": [_as_json(s) for s in strikes]}
        persist.write_atomically(self.path, json.dumps(snapshot, ensure_ascii=False).encode("utf-8"), durable=False)
        persist.write_atomically(self.journal_path, b"", durable=False)


def _as_json(strike: Strike) -> dict:
    # By hand: dataclasses.asdict deep-copies, three times slower over 30,000 strikes.
    return {"group_id": strike.group_id, "user_id": strike.user_id, "message_id": strike.message_id,
            "at": strike.at, "muted": strike.muted}  # fmt: skip


def _line(change: dict) -> str:
    return json.dumps(change, ensure_ascii=False) + "\n"


def _replay(strikes: dict[tuple[int, int], Strike], change: object) -> None:
    """Apply one journal line's change to ``strikes`` (by group and message); a change already there
    (replayed twice) changes nothing."""
    if not isinstance(change, dict):
        raise ValueError(f"journal line is not an object: {change!r}")
    if "add" in change:
        strike = Strike.from_json(change["add"])
        strikes.setdefault((strike.group_id, strike.message_id), strike)
    elif "mute" in change:
        mute = change["mute"]
        key, seconds = (mute["group_id"], mute["message_id"]), mute["seconds"]
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise ValueError(f"mute seconds must be a whole number: {mute!r}")
        if key in strikes:
            strikes[key] = replace(strikes[key], muted=seconds)
    elif "remove" in change:
        group_id, message_ids = change["remove"]["group_id"], change["remove"]["message_ids"]
        for message_id in message_ids:
            strikes.pop((group_id, message_id), None)
    else:
        raise ValueError(f"unknown journal change: {change!r}")
