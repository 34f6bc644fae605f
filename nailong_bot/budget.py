"""One budget of decoded-image memory for everything in the plugin that decodes images: group
decisions, the HTTP API's classify (the same path), corrections and the console's thumbnails.

A file's bytes say little about its pixels (a 180 KB PNG can decode to 6000×6600), so what is
bounded is the memory the decoded pixels take. A decode waits, in its worker thread, until its
pixels fit; it never goes around the budget. One that fits goes ahead of one that does not yet, so a
member's huge images wait for room while ordinary stickers pass beside them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from nonebot.log import logger
from PIL import Image

from nailong_vision.decode import decode_frames


class DecodeBudget:
    def __init__(self, max_bytes: int | None) -> None:
        """``max_bytes``: decoded bytes held at once by all decodes together; None: no bound (tests,
        the library used on its own)."""
        self.max_bytes = max_bytes
        self._used = 0
        self._room = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def frames(self, data: bytes, **options: object) -> Iterator[list[Image.Image]]:
        """``decode_frames(data, **options)``, its pixels counted against the budget until the block
        ends (use the frames inside it). Blocks the calling thread while there is no room: call it
        from a worker thread. Raises ImageDecodeError as decode_frames does."""
        taken = 0

        def reserve(amount: int) -> None:
            nonlocal taken
            taken = self._take(amount)

        try:
            yield decode_frames(data, reserve=reserve, **options)  # type: ignore[arg-type]
        finally:
            self._give_back(taken)

    def _take(self, amount: int) -> int:
        if self.max_bytes is None:
            return 0
        # More than the whole budget waits until it has all of it (the pixel cap keeps that rare).
        amount = min(amount, self.max_bytes)
        with self._room:
            if self._used + amount > self.max_bytes:
                logger.debug(
                    f"解码内存已满，等待 / decode memory full, waiting: {amount >> 20} MiB wanted, "
                    f"{self._used >> 20} of {self.max_bytes >> 20} MiB in use"
                )
            self._room.wait_for(lambda: self._used + amount <= self.max_bytes)
            self._used += amount
        return amount

    def _give_back(self, amount: int) -> None:
        if amount:
            with self._room:
                self._used -= amount
                self._room.notify_all()
