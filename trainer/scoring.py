"""Score image files the way the plugin does: its decoder, its preprocessing, any-frame-hit.

Works for an exported ONNX model (through the plugin's own Classifier) and for a training
checkpoint (through PyTorch), so ``evaluate`` can compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nailong_vision.classifier import Classifier, softmax
from nailong_vision.decode import decode_frames
from nailong_vision.preprocess import PreprocessSpec, preprocess


@dataclass
class Scorer:
    labels: list[str]
    positive_index: int
    spec: PreprocessSpec
    threshold: float
    name: str
    forward: object  # float32 NCHW batch → logits

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(self.forward(batch), dtype=np.float64))

    def verdict(self, probs: np.ndarray, threshold: float) -> str:
        """The positive label at or above the threshold, else the likeliest other label."""
        if probs[self.positive_index] >= threshold:
            return self.labels[self.positive_index]
        others = probs.copy()
        others[self.positive_index] = -1.0
        return self.labels[int(others.argmax())]

    def score_bytes(self, data: bytes) -> np.ndarray:
        """Class probabilities of the frame most likely to be nailong (the plugin hits on any frame)."""
        frames = decode_frames(data, max_frames=self.spec.frames, draft_size=self.spec.size)
        probs = self.probabilities(preprocess(frames, self.spec))
        return probs[int(np.argmax(probs[:, self.positive_index]))]


def load_scorer(path: str | Path) -> Scorer:
    path = Path(path)
    if path.suffix == ".onnx":
        classifier = Classifier(path, providers=["CPUExecutionProvider"], threads=0)
        info = classifier.info
        return Scorer(list(info.labels), info.positive_index, info.spec, info.threshold, f"{info.name} {info.version}",
                      classifier.logits)
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
                  f"{path.name} step {checkpoint.step}", forward)
