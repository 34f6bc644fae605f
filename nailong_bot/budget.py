"""One budget of decoded-image memory for everything in the plugin that decodes images: group
decisions, the HTTP API's classify (the same path), corrections and the console's thumbnails.

A file's bytes say little about its pixels (a 180 KB PNG can decode to 6000×6600), so what is
bounded is the memory the decoded pixels take. A decode waits until its pixels fit; it never goes
around the budget. One that fits goes ahead of one that does not yet, so a member's huge images wait
for room while ordinary stickers pass beside them. The decider's worker threads never wait: a decode
there that does not fit gives its thread back (:class:`NoRoom`) and waits on the event loop
(:meth:`DecodeBudget.reserve`), so the next sticker gets the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from nailong_vision.decode import decode_frames


class NoRoom(Exception):
    """A decode that was not to wait did not fit: ``amount`` bytes are wanted."""

    def __init__(self, amount: int) -> None:
        super().__init__(f"{amount} bytes of decode memory wanted")
        self.amount = amount


class DecodeBudget:
    def __init__(self, max_bytes: int | None) -> None:
        """``max_bytes``: decoded bytes held at once by all decodes together; None: no bound (tests,
        the library used on its own)."""
        self.max_bytes = max_bytes
        self._used = 0
        self._room = threading.Condition()
        # Event-loop waiters (see reserve), woken whenever room is given back.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def frames(
        self, data: bytes, *, wait: bool = True, reserved: int = 0, **options: object
    ) -> Iterator[list[Image.Image]]:
        """``decode_frames(data, **options)``, its pixels counted against the budget until the block
        ends (use the frames inside it). Without room it blocks the calling thread (call it from a
        worker thread), or with ``wait=False`` raises :class:`NoRoom`: then ``await reserve(amount)``
        and call again with ``reserved=`` what that took. Raises ImageDecodeError as decode_frames does."""
        taken = reserved

        def need(amount: int) -> None:
            nonlocal taken
            more = self._clamp(amount) - taken
            if more > 0:
                if not wait and not self._try_take(more):
                    raise NoRoom(amount)
                if wait:
                    self._take(more)
                taken += more

        try:
            yield decode_frames(data, reserve=need, **options)  # type: ignore[arg-type]
        finally:
            self._give_back(taken)

    async def reserve(self, amount: int) -> int:
        """Wait on the event loop until ``amount`` bytes fit, and take them; returns what was taken,
        to be passed on as ``frames(reserved=...)``, which gives it back."""
        amount = self._clamp(amount)
        loop = asyncio.get_running_loop()
        while not self._try_take(amount):
            woken = loop.create_future()
            with self._room:
                self._waiters.append((loop, woken))
            # Room given back between the failed try and the registration would not wake us.
            if self._try_take(amount):
                break
            await woken
        return amount

    def _clamp(self, amount: int) -> int:
        # More than the whole budget waits until it has all of it (the pixel cap keeps that rare).
        return 0 if self.max_bytes is None else min(amount, self.max_bytes)

    def _try_take(self, amount: int) -> bool:
        with self._room:
            if self.max_bytes is not None and self._used + amount > self.max_bytes:
                return False
            self._used += amount
            return True

    def _take(self, amount: int) -> None:
        with self._room:
            self._room.wait_for(lambda: self.max_bytes is None or self._used + amount <= self.max_bytes)
            self._used += amount

    def _give_back(self, amount: int) -> None:
        if not amount:
            return
        with self._room:
            self._used -= amount
            self._room.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, woken in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, woken)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
