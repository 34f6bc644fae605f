"""Preprocess: RGB frames → the model's input tensor.

The one place that defines how pixels become model input. The trainer calls it to build its
validation data and writes the spec into the exported model's metadata; the plugin reads that
metadata back, so both always agree (tests/test_parity.py proves it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes input: up to ``frames`` frames (animated images sampled evenly, the
    batch is a hit when any frame is), each squash-resized to size×size, scaled to 0..1, normalised."""

    size: int = 224
    # Models exported before the frame count was written into the metadata were trained with 8.
    frames: int = 8
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1: {self.frames}")
        if self.resize not in RESAMPLE:
            raise ValueError(f"unknown resize method {self.resize!r}; expected one of {list(RESAMPLE)}")

    def to_metadata(self) -> dict[str, str]:
        return {
            "input_size": str(self.size),
            "frames": str(self.frames),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "resize": self.resize,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> PreprocessSpec:
        """Read the spec written by the trainer's export; missing keys fall back to the defaults."""
        default = cls()
        return cls(
            size=int(metadata.get("input_size", default.size)),
            frames=int(metadata.get("frames", default.frames)),
            mean=tuple(json.loads(metadata["mean"])) if "mean" in metadata else default.mean,
            std=tuple(json.loads(metadata["std"])) if "std" in metadata else default.std,
            resize=metadata.get("resize", default.resize),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def resize_rgb(image: Image.Image, size: int, resize: str = "bilinear") -> np.ndarray:
    """Squash an RGB image to size×size (memes put the subject anywhere, so nothing is cropped)."""
    return np.asarray(image.convert("RGB").resize((size, size), RESAMPLE[resize]), dtype=np.uint8)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 N×H×W×3 → float32 N×3×H×W, (pixels / 255 − mean) / std.

    Computed as pixels·a + b straight into the transposed output: one pass instead of five
    (0.09 ms instead of 1.2 ms for a 224-px image, a tenth of a small model's forward)."""
    std = np.asarray(spec.std, dtype=np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
    offset = (-np.asarray(spec.mean, dtype=np.float64) / std).astype(np.float32)[:, None, None]
    batch = np.empty((pixels.shape[0], 3, pixels.shape[1], pixels.shape[2]), dtype=np.float32)
    np.multiply(pixels.transpose(0, 3, 1, 2), scale, out=batch, casting="unsafe")
    batch += offset
    return batch


def preprocess(frames: list[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """RGB frames → one float32 batch ready for the classifier."""
    return normalize(np.stack([resize_rgb(f, spec.size, spec.resize) for f in frames]), spec)
