"""Score image files the way the plugin does: its decoder, its preprocessing, its frame rule (and, for a
model that names a second stage, its cascade).

Works for an exported ONNX model (through the plugin's own Classifier) and for a training
checkpoint (through PyTorch), so ``evaluate`` can compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nailong_vision.classifier import CascadeSpec, Classifier, softmax
from nailong_vision.decode import decode_frames
from nailong_vision.frame_rule import DEFAULT_RULE, FrameRule, flat_frames
from nailong_vision.frame_rule import parse as parse_frame_rule
from nailong_vision.preprocess import PreprocessSpec, preprocess


@dataclass
class Scorer:
    labels: list[str]
    positive_index: int
    spec: PreprocessSpec
    threshold: float
    name: str
    forward: object  # float32 NCHW batch → logits
    rule: FrameRule = DEFAULT_RULE
    cascade: CascadeSpec | None = None
    second: Scorer | None = None  # the cascade's second stage

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(self.forward(batch), dtype=np.float64))

    def verdict(self, probs: np.ndarray, threshold: float) -> str:
        """The positive label at or above the threshold, else the likeliest other label."""
        if probs[self.positive_index] >= threshold:
            return self.labels[self.positive_index]
        others = probs.copy()
        others[self.positive_index] = -1.0
        return self.labels[int(others.argmax())]

    def decode(self, data: bytes) -> list[Image.Image]:
        """The frames the plugin samples and decodes."""
        return decode_frames(data, max_frames=self.spec.frames, draft_size=self.spec.size)

    def frame_probs(self, frames: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of each frame ([F, C]), by this model alone, and which frames are blank."""
        batch = preprocess(frames, self.spec)
        return self.probabilities(batch), flat_frames(batch)

    def image_probs(self, frames: list[Image.Image]) -> np.ndarray:
        """The image's class probabilities by this model alone and its frame rule (blank frames left out)."""
        probs, flat = self.frame_probs(frames)
        return self.rule.combine(probs, self.positive_index, flat)

    def score_frames(self, frames: list[Image.Image]) -> np.ndarray:
        """The image's class probabilities: this model's; inside a cascade's uncertain band, the second's."""
        probs = self.image_probs(frames)
        if self.second is not None and self.cascade.uncertain(probs[self.positive_index]):
            return self.second.image_probs(frames)
        return probs

    def score_bytes(self, data: bytes) -> np.ndarray:
        return self.score_frames(self.decode(data))


def onnx_scorer(classifier: Classifier) -> Scorer:
    info = classifier.info
    second = onnx_scorer(classifier.second) if classifier.second is not None else None
    return Scorer(list(info.labels), info.positive_index, info.spec, info.threshold, f"{info.name} {info.version}",
                  classifier.logits, info.frame_rule, classifier.cascade, second)


def load_scorer(path: str | Path) -> Scorer:
    path = Path(path)
    if path.suffix == ".onnx":
        return onnx_scorer(Classifier(path, providers=["CPUExecutionProvider"], threads=0))
    import torch

    from .checkpoint import load_model
    from .loop import validation_scores
    from .thresholds import recommended_threshold

    model, checkpoint = load_model(path)
    threshold, _ = recommended_threshold(checkpoint, checkpoint.config.precision_target,
                                         validation_scores(model, checkpoint))

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return Scorer(checkpoint.labels, checkpoint.positive_index, checkpoint.spec, threshold,
                  f"{path.name} step {checkpoint.step}", forward, parse_frame_rule(checkpoint.config.frame_rule))
