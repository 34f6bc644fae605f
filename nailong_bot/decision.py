"""Decide: image bytes → P(nailong), the one step every image goes through.

Only the model decides here. Admins' corrections depend on the group, so they are applied after the
decision cache (``Corrections.apply``), on the image identity every decision carries.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from nailong_vision.classifier import Classifier
from nailong_vision.phash import frame_hash

from .budget import DecodeBudget, NoRoom

# The first frame is handed on at most about this large, for the console's thumbnail (made after
# acting, off the decision's path).
PREVIEW_SIZE = 480


@dataclass(frozen=True)
class Decision:
    # P(nailong); for an animated image its sampled frames' by the model's frame rule (the highest by default).
    score: float
    # Who decided: "model", "cache", or what was applied after the cache (a correction).
    source: str
    # What the model said, kept through the cache.
    model_score: float | None = None
    # Frames decoded and looked at (an animated image's sampled frames).
    frames: int = 0
    # The version of the model in use when it was decided: the cache keeps decisions per version.
    model_version: str = ""
    # The image's identity, for the corrections applied after the cache: the first 16 hex digits of its
    # sha256 (set where the bytes are hashed for the cache), and its first frame's pHash (None: flat).
    image_id: str = ""
    phash: int | None = None
    # The first frame, small (PREVIEW_SIZE), for the thumbnail; never cached, not part of the decision.
    preview: Image.Image | None = field(default=None, compare=False, repr=False)


class Decider:
    """Decodes and classifies in a bounded pool of worker threads, never on the event loop, each
    decode under the plugin's decode budget."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        workers: int,
        max_frames: int | None,
        max_pixels: int,
        budget: DecodeBudget | None = None,
    ) -> None:
        """``max_frames``: the operator's cap on the frames the model's spec asks for (None: no cap).
        ``budget``: the decode budget shared with the rest of the plugin (None: unbounded).
        ``classifier`` may be replaced by one with the same input spec (the models' hot swap)."""
        self.classifier = classifier
        spec = classifier.info.spec
        self.frames = spec.frames if max_frames is None else min(max_frames, spec.frames)
        self.max_pixels = max_pixels
        self._budget = budget or DecodeBudget(None)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nailong")

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def decide(self, data: bytes, group: int | None = None) -> Decision:
        """Raises :class:`~nailong_vision.decode.ImageDecodeError` for bytes that are not a usable image
        (:class:`~nailong_vision.decode.ImageTooLarge` above ``max_pixels``). ``group``: whose share of
        the decode budget it takes (None: no group's, e.g. the API)."""
        # One hand-off per image: with a model of a few milliseconds, each extra trip between the
        # event loop and a worker thread shows in the decision latency. Only an image that finds no
        # room in the decode budget makes a second one, after waiting here rather than in a worker.
        loop, reserved = asyncio.get_running_loop(), 0
        while True:
            try:
                return await loop.run_in_executor(self._executor, self._decide, data, reserved, group)
            except NoRoom as no_room:
                reserved = await self._budget.reserve(no_room.amount, group)

    def _decide(self, data: bytes, reserved: int, group: int | None) -> Decision:
        # Read once: an image being decided while the model is swapped finishes on the one it started with.
        classifier = self.classifier
        with self._budget.frames(
            data,
            wait=False,
            reserved=reserved,
            group=group,
            max_frames=self.frames,
            max_pixels=self.max_pixels,
            draft_size=classifier.info.spec.size,
        ) as frames:
            score = classifier.image_score(frames)
            return Decision(
                score=score,
                source="model",
                model_score=score,
                frames=len(frames),
                model_version=classifier.info.version,
                phash=frame_hash(frames[0]),
                preview=_preview(frames[0]),
            )


def _preview(frame: Image.Image) -> Image.Image:
    factor = max(frame.size) // PREVIEW_SIZE
    return frame.reduce(factor) if factor > 1 else frame
