"""One budget of decoded-image memory for everything in the plugin that decodes images: group
decisions, the HTTP API's classify (the same path), corrections and the console's thumbnails.

A file's bytes say little about its pixels (a 180 KB PNG can decode to 6000×6600), so what is
bounded is the memory the decoded pixels take. A decode waits until its pixels fit; it never goes
around the budget. One that fits goes ahead of one that does not yet, so a member's huge images wait
for room while ordinary stickers pass beside them. The decider's worker threads never wait: a decode
there that does not fit gives its thread back (:class:`NoRoom`) and waits on the event loop
(:meth:`DecodeBudget.reserve`), so the next sticker gets the thread.

Fair between groups: a decode that would take its group past half the budget waits while another
group's decode waits (a near-cap image takes most of the budget, so one group's flood of them decodes
one at a time and another group's image goes next). Room given back goes to the waiter whose group
was served longest ago. Decodes that are no group's (the API, corrections, thumbnails) count as one
group of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from nailong_vision.decode import decode_frames


class NoRoom(Exception):
    """A decode that was not to wait did not fit: ``amount`` bytes are wanted."""

    def __init__(self, amount: int) -> None:
        super().__init__(f"{amount} bytes of decode memory wanted")
        self.amount = amount


@dataclass(eq=False)
class _Waiter:
    group: Hashable
    amount: int
    wake: Callable[[], None]  # called (under the lock) once the amount is taken for it
    granted: bool = False


class DecodeBudget:
    def __init__(self, max_bytes: int | None) -> None:
        """``max_bytes``: decoded bytes held at once by all decodes together; None: no bound (tests,
        the library used on its own)."""
        self.max_bytes = max_bytes
        self._used = 0
        self._by_group: Counter[Hashable] = Counter()
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []
        # When each group was last given room (a counter, not a clock): the longest unserved goes first.
        self._served: dict[Hashable, int] = {}
        self._turns = itertools.count(1)

    @property
    def used(self) -> int:
        return self._used

    def used_by(self, group: Hashable) -> int:
        return self._by_group[group]

    @contextmanager
    def frames(
        self, data: bytes, *, wait: bool = True, reserved: int = 0, group: Hashable = None, **options: object
    ) -> Iterator[list[Image.Image]]:
        """``decode_frames(data, **options)``, its pixels counted against the budget (as ``group``'s)
        until the block ends (use the frames inside it). Without room it blocks the calling thread
        (call it from a worker thread), or with ``wait=False`` raises :class:`NoRoom`: then ``await
        reserve(amount, group)`` and call again with ``reserved=`` what that took. Raises
        ImageDecodeError as decode_frames does."""
        taken = reserved

        def need(amount: int) -> None:
            nonlocal taken
            more = self._clamp(amount) - taken
            if more > 0:
                if not wait and not self._try_take(more, group):
                    raise NoRoom(amount)
                if wait:
                    self._take(more, group)
                taken += more

        try:
            yield decode_frames(data, reserve=need, **options)  # type: ignore[arg-type]
        finally:
            self._give_back(taken, group)

    async def reserve(self, amount: int, group: Hashable = None) -> int:
        """Wait on the event loop until ``amount`` bytes fit (and it is ``group``'s turn), and take
        them; returns what was taken, to be passed on as ``frames(reserved=...)``, which gives it back."""
        amount = self._clamp(amount)
        loop = asyncio.get_running_loop()
        granted = loop.create_future()

        def wake() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, granted)

        waiter = _Waiter(group, amount, wake)
        with self._lock:
            if self._may_take(amount, group):
                self._grant_now(amount, group)
                return amount
            self._waiters.append(waiter)
        try:
            await granted
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    self._grant_waiters()  # one held back for it may go now
            if waiter.granted:
                self._give_back(amount, group)
            raise
        return amount

    def _clamp(self, amount: int) -> int:
        # More than the whole budget waits until it has all of it (the pixel cap keeps that rare).
        return 0 if self.max_bytes is None else min(amount, self.max_bytes)

    def _fits(self, amount: int) -> bool:
        return self.max_bytes is None or self._used + amount <= self.max_bytes

    def _within_share(self, amount: int, group: Hashable) -> bool:
        return self.max_bytes is None or self._by_group[group] + amount <= self.max_bytes // 2

    def _may_take(self, amount: int, group: Hashable) -> bool:
        """Under the lock: whether a decode arriving now takes ``amount`` at once. Past its group's half
        only while no other group waits; within it, whenever it fits (a small image passes a large one)."""
        if not self._fits(amount):
            return False
        return self._within_share(amount, group) or not any(w.group != group for w in self._waiters)

    def _grant_now(self, amount: int, group: Hashable) -> None:
        self._used += amount
        self._by_group[group] += amount
        self._served[group] = next(self._turns)

    def _grant_waiters(self) -> None:
        """Under the lock: give room to the waiters it now fits, the group served longest ago first. One
        within its group's half goes whenever it fits; one past it only while no other group's waiter
        within its half waits, and not past another group's such waiter still waiting for room (so
        two groups' large images alternate)."""
        passed_over: set[Hashable] = set()  # groups with a large waiter that did not fit
        for waiter in sorted(self._waiters, key=lambda w: self._served.get(w.group, 0)):
            within = self._within_share(waiter.amount, waiter.group)
            if not within:
                others_within = any(
                    w.group != waiter.group and self._within_share(w.amount, w.group) for w in self._waiters
                )
                if others_within or passed_over - {waiter.group} or not self._fits(waiter.amount):
                    passed_over.add(waiter.group)
                    continue
            elif not self._fits(waiter.amount):
                continue
            self._waiters.remove(waiter)
            self._grant_now(waiter.amount, waiter.group)
            waiter.granted = True
            waiter.wake()

    def _try_take(self, amount: int, group: Hashable) -> bool:
        with self._lock:
            if not self._may_take(amount, group):
                return False
            self._grant_now(amount, group)
            return True

    def _take(self, amount: int, group: Hashable) -> None:
        """Block the calling thread until ``amount`` is taken for ``group``."""
        granted = threading.Event()
        with self._lock:
            if self._may_take(amount, group):
                self._grant_now(amount, group)
                return
            self._waiters.append(_Waiter(group, amount, granted.set))
        granted.wait()

    def _give_back(self, amount: int, group: Hashable) -> None:
        if not amount:
            return
        with self._lock:
            self._used -= amount
            self._by_group[group] -= amount
            if not self._by_group[group]:
                del self._by_group[group]
            self._grant_waiters()


def _wake(granted: asyncio.Future[None]) -> None:
    if not granted.done():
        granted.set_result(None)
