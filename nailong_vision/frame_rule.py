"""Frame rule: the sampled frames' P(nailong) → one score for the image. The plugin and the trainer both
score animations through here, so a model is calibrated with the rule it runs with.

Every rule is a weighting of the frames ordered by P(nailong), so it applies to the frames' whole class
probabilities as well (the trainer's reports) and a still image (one frame) keeps its own score under all:

- ``max``: the highest frame — one nailong-ish frame of a bear's dance acts (the rule of every model
  exported without the ``frame_rule`` metadata key);
- ``mean``: the mean of the frames;
- ``trimmed_mean:T``: the mean after dropping the highest and the lowest ``floor(T·n)`` frames;
- ``k_of_n:K``: the K-th highest frame (the image is a hit when K frames are), all frames' minimum when
  fewer than K were sampled.

Every rule first drops the blank frames (``flat_frames``): a frame with no content — a solid colour, or a
fully transparent one composited on white — carries no evidence of nailong, yet the models score one
(the bundled model gives a white frame 0.65, above its threshold), so a blank image or an animation that
starts or ends on an empty frame would act. An image whose frames are all blank scores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METADATA_KEY = "frame_rule"
KINDS = ("max", "mean", "trimmed_mean", "k_of_n")
# A frame is blank when every channel of its model input spreads less than this (standard deviation in
# normalised units; one grey level is ≈ 0.008–0.017 of them). A solid frame is exactly 0 (JPEG included), so
# this only leaves room for rounding: an image with a faint mark of a grey level or two is content.
FLAT_STD = 0.001


def flat_frames(batch: np.ndarray) -> np.ndarray:
    """Which frames of a model input batch (N×C×H×W, as ``preprocess`` makes it) are blank."""
    batch = np.asarray(batch)
    spread = batch.reshape(batch.shape[0], batch.shape[1], -1).std(axis=2, dtype=np.float64)
    return (spread < FLAT_STD).all(axis=1)


@dataclass(frozen=True)
class FrameRule:
    kind: str = "max"
    parameter: float = 0.0  # trimmed_mean: the share trimmed at each end; k_of_n: K

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown frame rule {self.kind!r}; expected one of {list(KINDS)} / 未知的帧规则")
        if self.kind == "trimmed_mean" and not 0.0 <= self.parameter < 0.5:
            raise ValueError(f"trimmed_mean needs a share in [0, 0.5): {self.parameter}")
        if self.kind == "k_of_n" and (self.parameter < 1 or self.parameter != int(self.parameter)):
            raise ValueError(f"k_of_n needs a whole K ≥ 1: {self.parameter}")

    @property
    def name(self) -> str:
        """The rule as written in the metadata (``parse`` reads it back)."""
        if self.kind == "trimmed_mean":
            return f"trimmed_mean:{self.parameter:g}"
        if self.kind == "k_of_n":
            return f"k_of_n:{int(self.parameter)}"
        return self.kind

    def weights(self, scores: np.ndarray, flat: np.ndarray | None = None) -> np.ndarray:
        """How much each frame counts, from the frames' P(nailong): non-negative, summing to 1 over the
        frames that are not ``flat`` (blank frames count 0; all zeros when every frame is blank)."""
        if len(scores) == 0:
            raise ValueError("no frames to score / 没有帧")
        weights = np.zeros(len(scores), dtype=np.float64)
        content = np.ones(len(scores), dtype=bool) if flat is None else ~np.asarray(flat, dtype=bool)
        if content.any():
            weights[content] = self._weights(np.asarray(scores, dtype=np.float64)[content])
        return weights

    def _weights(self, scores: np.ndarray) -> np.ndarray:
        n = len(scores)
        order = np.argsort(-scores, kind="stable")  # highest first
        weights = np.zeros(n, dtype=np.float64)
        if self.kind == "max":
            weights[order[0]] = 1.0
        elif self.kind == "mean":
            weights[:] = 1.0 / n
        elif self.kind == "trimmed_mean":
            cut = math.floor(self.parameter * n)
            kept = order[cut:n - cut]
            weights[kept] = 1.0 / len(kept)
        else:
            weights[order[min(int(self.parameter), n) - 1]] = 1.0
        return weights

    def score(self, scores: np.ndarray, flat: np.ndarray | None = None) -> float:
        """The image's P(nailong) from its frames' (0 when every frame is ``flat``)."""
        scores = np.asarray(scores, dtype=np.float64)
        return float(self.weights(scores, flat) @ scores)

    def combine(self, frame_probs: np.ndarray, positive: int, flat: np.ndarray | None = None) -> np.ndarray:
        """The image's class probabilities from its frames' ([F, C] → [C]), weighted as its P(nailong) is;
        when every frame is ``flat``: P(nailong) 0, the rest shared as the frames' other classes are."""
        frame_probs = np.asarray(frame_probs, dtype=np.float64)
        weights = self.weights(frame_probs[:, positive], flat)
        if weights.any():
            return weights @ frame_probs
        others = frame_probs.mean(axis=0)
        others[positive] = 0.0
        if others.sum() == 0.0:  # the frames gave nailong everything: the other labels share alike
            others = np.ones_like(others)
            others[positive] = 0.0
        return others / others.sum()


DEFAULT_RULE = FrameRule("max")


def parse(text: str) -> FrameRule:
    """``max`` · ``mean`` · ``trimmed_mean:0.25`` · ``k_of_n:2`` → the rule; raises ValueError otherwise."""
    kind, _, parameter = text.strip().partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown frame rule {text!r}; expected one of {list(KINDS)} / 未知的帧规则")
    if kind in ("max", "mean"):
        if parameter:
            raise ValueError(f"{kind} takes no parameter: {text!r}")
        return FrameRule(kind)
    if not parameter:
        raise ValueError(f"{kind} needs a parameter, e.g. trimmed_mean:0.25 or k_of_n:2 / 帧规则缺少参数")
    return FrameRule(kind, float(parameter))


def from_metadata(metadata: dict[str, str]) -> FrameRule:
    """The rule an exported model was calibrated with; today's (``max``) for a model without the key."""
    return parse(metadata[METADATA_KEY]) if METADATA_KEY in metadata else DEFAULT_RULE
