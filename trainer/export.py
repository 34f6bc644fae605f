"""Export: a checkpoint → the ONNX file the plugin loads, with everything it needs in metadata.

The recommended threshold is chosen on the checkpoint's validation scores for a nailong
precision target; onnxruntime is checked against PyTorch before anything is written.
"""

from __future__ import annotations

import dataclasses
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

from nailong_vision import frame_rule
from nailong_vision.classifier import Classifier, softmax

from .calibrate import calibrate_model
from .checkpoint import Checkpoint, load_model
from .config import load_config
from .data import prepare_data, val_batches
from .loop import validation_scores
from .metrics import per_file_probs, summarize
from .thresholds import recommended_threshold

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
INT8_MAX_F1_DROP = 0.005


class ExportError(RuntimeError):
    """The exported model does not behave like the checkpoint."""


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


def build_metadata(checkpoint: Checkpoint, threshold: float, metrics: dict, version: str) -> dict[str, str]:
    cfg, spec = checkpoint.config, checkpoint.spec
    metadata = {
        "labels": json.dumps(checkpoint.labels),
        "positive_label": checkpoint.positive_label,
        **spec.to_metadata(),
        frame_rule.METADATA_KEY: frame_rule.parse(cfg.frame_rule).name,
        "threshold": f"{threshold:.4f}",
        "model_name": f"nailong-{cfg.model}-{spec.size}",
        "version": version,
        "metrics": json.dumps(metrics),
        "data": json.dumps(checkpoint.data_summary, ensure_ascii=False),
        "training": json.dumps({"step": checkpoint.step, "seed": cfg.seed, "init_checkpoint": cfg.init_checkpoint,
                                "pretrained": cfg.pretrained and cfg.pretrained_source, "teacher": cfg.teacher or None}),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if checkpoint.lineage is not None:
        metadata["lineage"] = json.dumps(checkpoint.lineage, ensure_ascii=False)
    return metadata


def export_onnx(model: torch.nn.Module, checkpoint: Checkpoint, out_path: Path, metadata: dict[str, str],
                opset: int = 20) -> float:
    """``model.onnx`` with its metadata, ``model.onnx.sha256`` and ``model.pt`` (weights without optimizer
    state, for fine-tuning with ``init_checkpoint=`` or ``refresh``); returns the parity check's max |Δlogit|."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    to_onnx(model, out_path, checkpoint.spec.size, opset)
    difference = check_parity(model, out_path, checkpoint.spec.size)
    write_metadata(out_path, metadata)
    write_checksum(out_path)
    checkpoint.save(out_path.with_suffix(".pt"), resume=False)
    return difference


def export_command(checkpoint_path: str, out: str, opset: int = 20, precision_target: float | None = None,
                   int8: bool = False, version: str | None = None, wild_of: str | None = None) -> Path:
    started = time.perf_counter()
    model, checkpoint = load_model(checkpoint_path)
    target = precision_target if precision_target is not None else checkpoint.config.precision_target
    threshold, metrics = recommended_threshold(checkpoint, target, validation_scores(model, checkpoint))
    out_path = Path(out)
    version = version or datetime.now(timezone.utc).strftime("%Y.%m.%d")
    # The exported checkpoint carries no validation scores: they belong to the run, not to the model.
    exported = dataclasses.replace(checkpoint, validation=None, resume={}, extra={})
    difference = export_onnx(model, exported, out_path, build_metadata(checkpoint, threshold, metrics, version), opset)
    if wild_of:
        # The shipped threshold comes from images of sources never trained on, scored by the exported model.
        report = calibrate_model(out_path, load_config(wild_of), checkpoint)
        out_path.with_name(out_path.stem + ".calibration.json").write_text(
            json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        write_checksum(out_path)  # calibration rewrote the threshold in the metadata
        threshold = report["wild"]["threshold"]
    log.info("exported %s (%.1f MB, max |Δlogit| %.1e, threshold %.4f, %.1fs)", out_path,
             out_path.stat().st_size / 1e6, difference, threshold, time.perf_counter() - started)
    if int8:
        export_int8(out_path, checkpoint)
    return out_path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksum(path: Path) -> None:
    """``<model>.sha256``, which the plugin checks before loading the model."""
    path.with_name(path.name + ".sha256").write_text(sha256_file(path) + "\n")


def export_int8(fp32_path: Path, checkpoint: Checkpoint) -> Path | None:
    """A dynamically quantised copy, kept only if validation nailong F1 drops by ≤ 0.005."""
    from onnxruntime.quantization import quantize_dynamic

    int8_path = fp32_path.with_name(fp32_path.stem + ".int8.onnx")
    quantize_dynamic(str(fp32_path), str(int8_path))
    data = prepare_data(checkpoint.config)
    positive = data.positive_index
    f1 = {}
    for path in (fp32_path, int8_path):
        classifier = Classifier(path, providers=["CPUExecutionProvider"], threads=0)
        frame_probs = np.concatenate([softmax(classifier.logits(b.numpy())) for b in val_batches(data, 64)])
        file_probs = per_file_probs(frame_probs, data.val_file, len(data.val_sources), positive,
                                    classifier.info.frame_rule, flat=data.val_flat())
        f1[path] = summarize(file_probs, data.val_file_targets(), data.labels, positive)["nailong_best_f1"]
    drop = f1[fp32_path] - f1[int8_path]
    if drop > INT8_MAX_F1_DROP:
        int8_path.unlink()
        log.warning("int8 copy dropped nailong F1 by %.4f > %.3f: not kept", drop, INT8_MAX_F1_DROP)
        return None
    log.info("int8 copy kept: %s (nailong F1 %.4f vs %.4f)", int8_path, f1[int8_path], f1[fp32_path])
    return int8_path
