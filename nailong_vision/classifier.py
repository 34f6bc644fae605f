"""Classify: one onnxruntime session, created at start-up and reused, scoring P(nailong) per image.

Everything about the input (size, mean/std, resize) and output (labels, positive label,
recommended threshold, review floor, how an animation's frames make its score) is read from the model
file's metadata, written by the trainer's export. A model without metadata falls back to the defaults of
the original export script: 224×224, ImageNet mean/std, bilinear, label 0 = nailong, threshold 0.5,
an animation scored by its highest frame.

A model may name a second, larger one in its metadata (``cascade``): the first decides the images it
is sure of, the second scores only those whose first score falls inside the uncertain band.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from . import frame_rule
from .frame_rule import FrameRule
from .handoff import MODEL_FILE
from .preprocess import PreprocessSpec, preprocess

POSITIVE_LABEL = "nailong"
DEFAULT_THRESHOLD = 0.5
# Label orders of the two model kinds when the metadata does not name them (label 0 = nailong).
DEFAULT_LABELS = {2: ("nailong", "other"), 5: ("nailong", "emoji", "anime", "others", "long")}
CASCADE_KEY = "cascade"


class ModelError(RuntimeError):
    """The model cannot be used; the message says what to do about it."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    version: str
    labels: tuple[str, ...]
    positive_index: int
    threshold: float
    spec: PreprocessSpec
    providers: tuple[str, ...]
    # The lower end of the review band (validation recall ≈ 0.99, written by the trainer's calibration);
    # None for a model calibrated before the band existed.
    review_floor: float | None = None
    # Every metadata_props entry as written by the export (metrics, data, created_at, ...), for display.
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)
    frame_rule: FrameRule = frame_rule.DEFAULT_RULE


@dataclass(frozen=True)
class CascadeSpec:
    """The second stage a model names: its file (beside the first) and the band of first-stage scores,
    ``low ≤ score < high``, in which the second model's score is the image's."""

    model: str
    low: float
    high: float

    @classmethod
    def from_metadata(cls, text: str) -> CascadeSpec:
        value = json.loads(text)
        low, high = (float(bound) for bound in value["band"])
        model = str(value["model"])
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"cascade band must be 0 ≤ low < high ≤ 1: {value['band']}")
        if Path(model).name != model:
            raise ValueError(f"the second model must be a file beside the first: {model!r}")
        return cls(model, low, high)

    def uncertain(self, score: float) -> bool:
        return self.low <= score < self.high


def bundled_model_path() -> Path:
    """The model shipped in the installed plugin (`nailong_bot/models/`), else the checkout's `models/`."""
    root = Path(__file__).resolve().parent.parent
    installed = root / "nailong_bot" / "models" / MODEL_FILE
    return installed if installed.exists() else root / "models" / MODEL_FILE


def checksum_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".sha256")


def verify_checksum(model_path: Path, *, required: bool) -> None:
    """Compare the model with its `<model>.sha256` (hex digest, optionally followed by a name)."""
    sidecar = checksum_path(model_path)
    if not sidecar.exists():
        if required:
            raise ModelError(f"模型校验文件缺失 / checksum file missing: {sidecar}")
        return
    expected = sidecar.read_text(encoding="utf-8").split()[0].lower() if sidecar.stat().st_size else ""
    digest = hashlib.sha256()
    with model_path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelError(
            f"模型文件校验失败（文件损坏或不完整），请重新下载/安装 / model checksum mismatch "
            f"(corrupted or partial file): {model_path} sha256={digest.hexdigest()} expected={expected}"
        )


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads must not spin on a CPU shared with the bot and other plugins.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _read_info(path: Path, session: ort.InferenceSession) -> ModelInfo:
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    input_shape = session.get_inputs()[0].shape
    if "input_size" not in metadata and isinstance(input_shape[-1], int):
        metadata["input_size"] = str(input_shape[-1])
    num_classes = session.get_outputs()[0].shape[-1]
    try:
        spec = PreprocessSpec.from_metadata(metadata)
        labels = tuple(json.loads(metadata["labels"])) if "labels" in metadata else None
        threshold = float(metadata.get("threshold", DEFAULT_THRESHOLD))
        rule = frame_rule.from_metadata(metadata)
        review_floor = float(metadata["review_floor"]) if "review_floor" in metadata else None
    except (ValueError, TypeError, KeyError) as error:
        raise ModelError(f"模型元数据无法解析 / unreadable model metadata in {path}: {error}") from error
    if labels is None:
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ModelError(f"无法确定模型的类别 / cannot tell the classes of {path}: output shape {num_classes}")
        labels = DEFAULT_LABELS.get(num_classes, (POSITIVE_LABEL, *(f"class{i}" for i in range(1, num_classes))))
    if isinstance(num_classes, int) and num_classes != len(labels):
        raise ModelError(f"模型输出 {num_classes} 类，但元数据有 {len(labels)} 个标签 / labels do not match outputs: {path}")
    positive = metadata.get("positive_label", POSITIVE_LABEL)
    if positive not in labels:
        raise ModelError(f"标签中没有 {positive!r} / positive label {positive!r} not in labels {labels}: {path}")
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"模型推荐阈值不在 0..1 之间 / recommended threshold {threshold} outside 0..1: {path}")
    if review_floor is not None and not 0.0 <= review_floor <= threshold:
        raise ModelError(
            f"模型的复核下限不在 0 和阈值之间 / review floor {review_floor} outside 0..threshold {threshold}: {path}"
        )
    return ModelInfo(
        path=path,
        name=metadata.get("model_name", path.stem),
        version=metadata.get("version", "unknown"),
        labels=labels,
        positive_index=labels.index(positive),
        threshold=threshold,
        spec=spec,
        providers=tuple(session.get_providers()),
        review_floor=review_floor,
        metadata=metadata,
        frame_rule=rule,
    )


class Classifier:
    """Scores batches of preprocessed frames. ``session.run`` is thread-safe and releases the GIL."""

    def __init__(self, path: Path, *, providers: list[str] | None = None, threads: int = 1,
                 as_second_stage: bool = False) -> None:
        """``as_second_stage``: the model is a cascade's second stage, and may not name another."""
        if not path.is_file():
            raise ModelError(
                f"找不到模型文件 / model file not found: {path}. "
                "设置 NAILONG_MODEL_PATH 或重新安装插件 / set NAILONG_MODEL_PATH or reinstall the plugin."
            )
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=_session_options(threads), providers=providers or default_providers()
            )
        except Exception as error:  # onnxruntime raises its own untyped errors for unreadable files
            raise ModelError(f"无法读取模型 / cannot load model {path}: {error}") from error
        self.info = _read_info(path, self._session)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        if CASCADE_KEY in self.info.metadata and as_second_stage:
            raise ModelError(f"级联的第二个模型不能再级联 / the second model of a cascade names a third: {path}")
        self.cascade, self.second = _second_stage(path, self.info, providers, threads)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs for a float32 NCHW batch."""
        (logits,) = self._session.run([self._output], {self._input: batch})
        return logits

    def nailong_scores(self, batch: np.ndarray) -> np.ndarray:
        """P(nailong) for each row of a float32 NCHW batch."""
        return softmax(self.logits(batch).astype(np.float64))[:, self.info.positive_index]

    def first_stage_score(self, frames: list[Image.Image]) -> float:
        """P(nailong) of an image from its decoded frames, by this model alone and its frame rule (which
        leaves blank frames out)."""
        batch = preprocess(frames, self.info.spec)
        return self.info.frame_rule.score(self.nailong_scores(batch), frame_rule.flat_frames(batch))

    def image_score(self, frames: list[Image.Image]) -> float:
        """P(nailong) of an image from its decoded frames: this model's, or, inside a cascade's
        uncertain band, the second model's."""
        score = self.first_stage_score(frames)
        if self.second is not None and self.cascade.uncertain(score):
            return self.second.first_stage_score(frames)
        return score

    def warm_up(self) -> None:
        """One forward at start-up (each stage's), so the first real image does not pay for allocations."""
        for stage in (self, self.second):
            if stage is not None:
                size = stage.info.spec.size
                stage.nailong_scores(np.zeros((1, 3, size, size), dtype=np.float32))


def _second_stage(path: Path, info: ModelInfo, providers: list[str] | None,
                  threads: int) -> tuple[CascadeSpec | None, Classifier | None]:
    """The cascade a model's metadata names, its second model loaded (checksum required), or (None, None)."""
    if CASCADE_KEY not in info.metadata:
        return None, None
    try:
        cascade = CascadeSpec.from_metadata(info.metadata[CASCADE_KEY])
    except (ValueError, TypeError, KeyError) as error:
        raise ModelError(f"级联元数据无法解析 / unreadable cascade metadata in {path}: {error}") from error
    second_path = path.with_name(cascade.model)
    if second_path.is_file():
        verify_checksum(second_path, required=True)
    second = Classifier(second_path, providers=providers, threads=threads, as_second_stage=True)
    if second.info.labels != info.labels or second.info.positive_index != info.positive_index:
        raise ModelError(f"级联的两个模型类别不同 / the cascade's models have different labels: {second_path}")
    return cascade, second
