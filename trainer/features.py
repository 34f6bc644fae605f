"""Frozen features: a pretrained backbone's pooled features, cached on disk, and a linear head fitted on
them in seconds on the CPU — for fast experiments, for a teacher, and as the head a fine-tune starts from.

The result is an ordinary trainer checkpoint (backbone + fitted head, validation scores included), so
``export``, ``evaluate``, ``teacher:`` and ``init_checkpoint:`` all take it as they take a trained one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nailong_vision.frame_rule import parse as parse_frame_rule

from .config import TrainConfig
from .data import PreparedData, prepare_data
from .loop import RunState, save_checkpoint
from .metrics import per_file_probs, summarize
from .model import build_initialised_model

log = logging.getLogger(__name__)

FEATURE_TOLERANCE = 1e-4


class PooledFeatures(torch.nn.Module):
    """The backbone up to what the classifier head sees (pooled, pre-logits)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


def onnx_features(model: torch.nn.Module, size: int, directory: Path):
    """The feature extractor as an onnxruntime function (several times faster than eager PyTorch on a CPU),
    checked against PyTorch before use."""
    import onnxruntime as ort

    from .export import to_onnx

    extractor = PooledFeatures(model).eval()
    path = directory / "features.onnx"
    to_onnx(extractor, path, size, opset=20)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = extractor(probe).numpy()
    difference = float(np.max(np.abs(session.run(None, {"input": probe.numpy()})[0] - expected)))
    if not difference <= FEATURE_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
        raise RuntimeError(f"onnxruntime features differ from PyTorch by {difference:.2e}")
    return lambda batch: session.run(None, {"input": batch.numpy()})[0]


@torch.no_grad()
def extract_features(model: torch.nn.Module, pixels: np.ndarray, data: PreparedData, batch_size: int = 64,
                     forward=None) -> np.ndarray:
    """Pooled features [N, D] (what the classifier head sees) of uint8 frames [N, H, W, 3], resized to the
    model's size and normalised; ``forward`` (e.g. from ``onnx_features``) replaces the eager model."""
    mean = torch.tensor(data.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.spec.std).view(1, 3, 1, 1)
    size = data.spec.size
    forward = forward or (lambda batch: PooledFeatures(model)(batch).numpy())
    chunks = []
    for start in tqdm(range(0, len(pixels), batch_size), desc="features", leave=False):
        batch = torch.from_numpy(np.ascontiguousarray(pixels[start : start + batch_size])).permute(0, 3, 1, 2).float() / 255
        if batch.shape[-1] != size:  # training frames are cached a little larger, for random crops
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        chunks.append(forward(((batch - mean) / std).contiguous()))
    return np.concatenate(chunks).astype(np.float32)


def _cache_path(cfg: TrainConfig, data: PreparedData) -> Path:
    key = json.dumps([cfg.model, cfg.pretrained, cfg.pretrained_source, cfg.pretrained_file, cfg.init_checkpoint,
                      data.spec.as_dict(), data.summary, data.val_sources], sort_keys=True, default=str)
    return Path(cfg.cache_dir) / f"features-{cfg.model}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def cached_features(cfg: TrainConfig, data: PreparedData, model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(training features, validation features), computed once per model, data and split."""
    path = _cache_path(cfg, data)
    if path.exists():
        log.info("using feature cache %s", path)
        with np.load(path) as stored:
            return stored["train"], stored["val"]
    model.eval()
    if cfg.device in ("cpu", "auto") and not torch.cuda.is_available():
        with tempfile.TemporaryDirectory() as directory:
            forward = onnx_features(model, data.spec.size, Path(directory))
            train = extract_features(model, data.train_pixels, data, forward=forward)
            val = extract_features(model, data.val_pixels, data, forward=forward)
    else:
        train = extract_features(model, data.train_pixels, data)
        val = extract_features(model, data.val_pixels, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npz")
    np.savez(partial, train=train, val=val)
    partial.replace(path)
    log.info("cached %d + %d features of size %d in %s", len(train), len(val), train.shape[1], path)
    return train, val


def fit_linear_head(features: np.ndarray, targets: np.ndarray, weights: np.ndarray, num_classes: int,
                    l2: float = 1e-3, iterations: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted multinomial logistic regression (L-BFGS, full batch): returns (weight [C, D], bias [C])."""
    x = torch.from_numpy(features).double()
    y = torch.from_numpy(targets).long()
    w = torch.from_numpy(weights / weights.sum()).double()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (F.cross_entropy(x @ weight.T + bias, y, reduction="none") * w).sum() + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().float(), bias.detach().float()


def run_features(cfg: TrainConfig, l2: float = 1e-3, data: PreparedData | None = None) -> dict:
    """Fit a head on frozen features; write ``checkpoint_dir/best.pt`` and return the validation metrics."""
    torch.manual_seed(cfg.seed)
    data = data or prepare_data(cfg)
    model = build_initialised_model(cfg, len(data.labels))
    train_features, val_features = cached_features(cfg, data, model)
    labelled = data.train_targets >= 0  # a linear probe learns from labels only
    weight, bias = fit_linear_head(train_features[labelled], data.train_targets[labelled],
                                   data.train_weights[labelled], len(data.labels), l2)
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    frame_probs = (torch.from_numpy(val_features) @ weight.T + bias).softmax(1).numpy()
    file_probs = per_file_probs(frame_probs, data.val_file, len(data.val_sources), data.positive_index,
                                parse_frame_rule(cfg.frame_rule), flat=data.val_flat())
    metrics = summarize(file_probs, data.val_file_targets(), data.labels, data.positive_index)
    log.info("frozen %s features, linear head (l2 %g): nailong best-threshold F1 %.4f AP %.4f", cfg.model, l2,
             metrics["nailong_best_f1"], metrics["average_precision"])
    optimizer = torch.optim.AdamW(model.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(Path(cfg.checkpoint_dir) / "best.pt", model, optimizer, scaler, RunState(), cfg, data,
                    {"val_metrics": metrics, "val_probs": file_probs, "val_targets": data.val_file_targets(),
                     "val_sources": data.val_sources, "frozen_features": {"l2": l2}})
    return metrics
