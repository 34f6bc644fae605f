"""Slots shared by the groups, so that one group's flood never holds up another: a group holds at most
its share of them, and a slot given back goes to the longest waiter whose group is under its share.

Used for the download slots and the decision slots of group images (runtime.py). With a share of half
the decision slots, a member posting 16 huge images in group A occupies half of them (one image
decoding, one waiting for decode memory); the rest of A's images wait their turn holding nothing, and
a nailong in group B finds a free slot at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class _Waiter:
    group: Hashable
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SharedSlots:
    def __init__(self, total: int, share: int) -> None:
        """``total`` slots; one group holds at most ``share`` of them. The group None (not a group's
        image) is bounded by ``total`` alone."""
        self.total = total
        self.share = share
        self._held: Counter[Hashable] = Counter()
        self._waiters: list[_Waiter] = []

    def held(self) -> int:
        """Slots held, by all groups together."""
        return sum(self._held.values())

    def held_by(self, group: Hashable) -> int:
        return self._held[group]

    def _may_take(self, group: Hashable) -> bool:
        within_share = group is None or self._held[group] < self.share
        return within_share and self.held() < self.total

    def _grant(self) -> None:
        for waiter in list(self._waiters):
            if not self._may_take(waiter.group):
                continue
            self._waiters.remove(waiter)
            self._held[waiter.group] += 1
            waiter.granted.set_result(None)

    async def acquire(self, group: Hashable) -> None:
        waiter = _Waiter(group)
        self._waiters.append(waiter)
        self._grant()
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.granted.done() and not waiter.granted.cancelled():
                self.release(group)  # granted just as it was cancelled
            raise

    def release(self, group: Hashable) -> None:
        self._held[group] -= 1
        if not self._held[group]:
            del self._held[group]
        self._grant()

    def slot(self, group: Hashable) -> GroupSlot:
        """The slots as ``group`` takes them: ``acquire()`` and ``release()``, like a semaphore."""
        return GroupSlot(self, group)


@dataclass(frozen=True)
class GroupSlot:
    slots: SharedSlots
    group: Hashable

    async def acquire(self) -> None:
        await self.slots.acquire(self.group)

    def release(self) -> None:
        self.slots.release(self.group)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
