"""Decide: image bytes → P(nailong), the one step every image goes through.

Overrides run on the decoded frames before the model; the first one that returns a decision wins.
That is the hook for admins' corrections (looked up by perceptual hash) and similar rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

from PIL import Image

from nailong_vision.classifier import Classifier
from nailong_vision.decode import decode_frames
from nailong_vision.preprocess import preprocess


@dataclass(frozen=True)
class Decision:
    # P(nailong); for an animated image the highest over its sampled frames.
    score: float
    # Who decided: "model", "cache", or the name an override gives itself.
    source: str
    # What the model said, kept through the cache; None when an override decided without the model.
    model_score: float | None = None
    # Frames decoded and looked at (an animated image's sampled frames).
    frames: int = 0
    # The version of the model in use when it was decided: the cache keeps decisions per version.
    model_version: str = ""


# (image bytes, decoded RGB frames) → a decision, or None to let the next step decide.
# Called in the decider's worker thread, so it may do CPU work and must be thread-safe.
Override = Callable[[bytes, list[Image.Image]], Decision | None]


class Decider:
    """Decodes and classifies in a bounded pool of worker threads, never on the event loop."""

    def __init__(
        self, classifier: Classifier, *, workers: int, max_frames: int | None, max_pixels: int
    ) -> None:
        """``max_frames``: the operator's cap on the frames the model's spec asks for (None: no cap).
        ``classifier`` may be replaced by one with the same input spec (the models' hot swap)."""
        self.classifier = classifier
        self.overrides: list[Override] = []
        spec = classifier.info.spec
        self.frames = spec.frames if max_frames is None else min(max_frames, spec.frames)
        self._decode = partial(
            decode_frames, max_frames=self.frames, max_pixels=max_pixels, draft_size=spec.size
        )
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nailong")

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def decide(self, data: bytes) -> Decision:
        """Raises :class:`~nailong_vision.decode.ImageDecodeError` for bytes that are not a usable image."""
        # One hand-off per image: with a model of a few milliseconds, each extra trip between the
        # event loop and a worker thread shows in the decision latency.
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._decide, data)

    def _decide(self, data: bytes) -> Decision:
        # Read once: an image being decided while the model is swapped finishes on the one it started with.
        classifier = self.classifier
        version = classifier.info.version
        frames = self._decode(data)
        for override in self.overrides:
            decision = override(data, frames)
            if decision is not None:
                return replace(decision, frames=len(frames), model_version=version)
        batch = preprocess(frames, classifier.info.spec)
        score = float(classifier.nailong_scores(batch).max())
        return Decision(score=score, source="model", model_score=score, frames=len(frames), model_version=version)
