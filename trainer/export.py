"""Export: a checkpoint → the ONNX file the plugin loads, with everything it needs in metadata.

The recommended threshold is chosen on the checkpoint's validation scores for a nailong
precision target; onnxruntime is checked against PyTorch before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from nailong_vision.classifier import Classifier, softmax
from nailong_vision.preprocess import PreprocessSpec

from .config import config_from_dict
from .data import prepare_data, val_batches
from .loop import predict_validation
from .metrics import per_file_probs, summarize, threshold_for_precision
from .model import build_model

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
INT8_MAX_F1_DROP = 0.005


class ExportError(RuntimeError):
    """The exported model does not behave like the checkpoint."""


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """The model of a trainer checkpoint, in eval mode, and the checkpoint itself."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(checkpoint["config"]["model"], len(checkpoint["labels"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint


def to_onnx(model: torch.nn.Module, path: Path, size: int, opset: int) -> None:
    """ONNX with a dynamic batch axis; opset ≥ 20 lets onnxruntime fuse GELU."""
    if opset < 17:
        raise ValueError("opset must be ≥ 17")
    example = torch.randn(2, 3, size, size)
    torch.onnx.export(
        model, (example,), str(path), input_names=["input"], output_names=["logits"], opset_version=opset,
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), dynamo=True, external_data=False,
    )


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def check_parity(model: torch.nn.Module, path: Path, size: int, batch: int = 4) -> float:
    """Max |logit difference| between PyTorch and onnxruntime on one batch; raises if too large."""
    inputs = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(inputs).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"input": inputs.numpy()})[0]
    difference = float(np.max(np.abs(actual - expected)))
    if not difference <= PARITY_TOLERANCE:
        raise ExportError(f"onnxruntime differs from PyTorch by {difference:.2e} > {PARITY_TOLERANCE} / 导出模型与 PyTorch 不一致")
    return difference


def build_metadata(checkpoint: dict, threshold: float, metrics: dict, version: str) -> dict[str, str]:
    cfg = checkpoint["config"]
    spec = PreprocessSpec.from_metadata(checkpoint["spec"])
    return {
        "labels": json.dumps(checkpoint["labels"]),
        "positive_label": cfg.get("positive_label", "nailong"),
        **spec.to_metadata(),
        "threshold": f"{threshold:.4f}",
        "model_name": f"nailong-{cfg['model']}-{spec.size}",
        "version": version,
        "metrics": json.dumps(metrics),
        "data": json.dumps(checkpoint["data_summary"], ensure_ascii=False),
        "training": json.dumps({"step": checkpoint["state"]["step"], "seed": cfg["seed"],
                                "init_checkpoint": cfg.get("init_checkpoint"),
                                "pretrained": cfg.get("pretrained") and cfg.get("pretrained_source"),
                                "teacher": cfg.get("teacher") or None}),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def validation_scores(model: torch.nn.Module, checkpoint: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-file validation probabilities and targets: stored in a best.pt, else computed now
    from the checkpoint's own config (same grouped split, same plugin preprocessing)."""
    if "val_probs" in checkpoint:
        return checkpoint["val_probs"], checkpoint["val_targets"]
    cfg = config_from_dict(checkpoint["config"])
    data = prepare_data(cfg)
    return predict_validation(model, data, torch.device("cpu"), cfg), data.val_file_targets()


def recommended_threshold(checkpoint: dict, precision_target: float,
                          scores: tuple[np.ndarray, np.ndarray]) -> tuple[float, dict]:
    """Threshold for the precision target on the validation files, and the metrics there."""
    probs, targets = scores
    positive = checkpoint["labels"].index(checkpoint["config"].get("positive_label", "nailong"))
    threshold = threshold_for_precision(targets == positive, probs[:, positive], precision_target)
    metrics = summarize(probs, targets, checkpoint["labels"], positive, threshold)
    headline = {k: metrics[k] for k in ("accuracy", "macro_f1", "nailong_precision", "nailong_recall",
                                        "nailong_f1", "nailong_fpr", "nailong_best_f1",
                                        "nailong_best_f1_threshold", "average_precision")}
    headline["precision_target"] = precision_target
    headline["validation_images"] = int(len(targets))
    return threshold, headline


def export_command(checkpoint_path: str, out: str, opset: int = 20, precision_target: float | None = None,
                   int8: bool = False, version: str | None = None, wild_of: str | None = None) -> Path:
    started = time.perf_counter()
    model, checkpoint = load_checkpoint(checkpoint_path)
    target = precision_target if precision_target is not None else checkpoint["config"].get("precision_target", 0.99)
    threshold, metrics = recommended_threshold(checkpoint, target, validation_scores(model, checkpoint))
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    size = int(checkpoint["spec"]["input_size"])
    to_onnx(model, out_path, size, opset)
    difference = check_parity(model, out_path, size)
    version = version or datetime.now(timezone.utc).strftime("%Y.%m.%d")
    write_metadata(out_path, build_metadata(checkpoint, threshold, metrics, version))
    if wild_of:
        # The shipped threshold comes from images of sources never trained on, scored by the exported model.
        from .calibrate import calibrate_model
        from .config import load_config

        report = calibrate_model(out_path, load_config(wild_of), checkpoint)
        out_path.with_name(out_path.stem + ".calibration.json").write_text(
            json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    digest = sha256_file(out_path)
    out_path.with_name(out_path.name + ".sha256").write_text(digest + "\n")
    # Weights without optimizer state, for fine-tuning (`init_checkpoint=`) from the shipped model.
    torch.save({key: checkpoint[key] for key in ("model", "config", "labels", "spec", "data_summary", "state")},
               out_path.with_suffix(".pt"))
    log.info("exported %s (%.1f MB, max |Δlogit| %.1e, threshold %.4f, %.1fs)", out_path,
             out_path.stat().st_size / 1e6, difference, threshold, time.perf_counter() - started)
    if int8:
        export_int8(out_path, checkpoint)
    return out_path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_int8(fp32_path: Path, checkpoint: dict) -> Path | None:
    """A dynamically quantised copy, kept only if validation nailong F1 drops by ≤ 0.005."""
    from onnxruntime.quantization import quantize_dynamic

    int8_path = fp32_path.with_name(fp32_path.stem + ".int8.onnx")
    quantize_dynamic(str(fp32_path), str(int8_path))
    data = prepare_data(config_from_dict(checkpoint["config"]))
    positive = data.positive_index
    f1 = {}
    for path in (fp32_path, int8_path):
        classifier = Classifier(path, providers=["CPUExecutionProvider"], threads=0)
        frame_probs = np.concatenate([softmax(classifier.logits(b.numpy())) for b in val_batches(data, 64)])
        file_probs = per_file_probs(frame_probs, data.val_file, len(data.val_sources), positive)
        f1[path] = summarize(file_probs, data.val_file_targets(), data.labels, positive)["nailong_best_f1"]
    drop = f1[fp32_path] - f1[int8_path]
    if drop > INT8_MAX_F1_DROP:
        int8_path.unlink()
        log.warning("int8 copy dropped nailong F1 by %.4f > %.3f: not kept", drop, INT8_MAX_F1_DROP)
        return None
    log.info("int8 copy kept: %s (nailong F1 %.4f vs %.4f)", int8_path, f1[int8_path], f1[fp32_path])
    return int8_path
