import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nailong_vision.preprocess import PreprocessSpec
from trainer.checkpoint import Checkpoint, load_model
from trainer.export import ExportError, check_parity, to_onnx
from trainer.model import build_model


def test_export_writes_the_metadata_the_plugin_reads(trained):
    cfg, best, onnx_path = trained
    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(metadata["labels"]) == ["nailong", "other"]
    assert metadata["positive_label"] == "nailong"
    assert PreprocessSpec.from_metadata(metadata) == PreprocessSpec(size=32, frames=cfg.eval_frames)
    assert 0.0 <= float(metadata["threshold"]) <= 1.0
    assert metadata["model_name"] == "nailong-convnext_atto-32"
    assert metadata["version"] == "test"
    assert {"nailong_f1", "nailong_precision", "precision_target"} <= set(json.loads(metadata["metrics"]))
    assert json.loads(metadata["data"])["images"] > 0
    assert "created_at" in metadata
    assert (onnx_path.parent / "model.onnx.sha256").read_text().strip().isalnum()


def test_exported_model_matches_pytorch_with_a_dynamic_batch(trained):
    _, best, onnx_path = trained
    model, _ = load_model(best)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        inputs = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            expected = model(inputs).numpy()
        actual = session.run(None, {"input": inputs.numpy()})[0]
        assert actual.shape == (batch, 2)
        assert np.max(np.abs(actual - expected)) <= 1e-4


def test_parity_check_fails_loudly_for_a_different_model(tmp_path):
    exported = build_model("convnext_atto", 2).eval()
    to_onnx(exported, tmp_path / "m.onnx", 32, 20)
    other = build_model("convnext_atto", 2).eval()
    with pytest.raises(ExportError, match="differs"):
        check_parity(other, tmp_path / "m.onnx", 32)
    with pytest.raises(ValueError, match="opset"):
        to_onnx(exported, tmp_path / "old.onnx", 32, 13)


def test_export_of_a_last_checkpoint_scores_validation_itself(trained, tmp_path):
    from trainer.export import export_command

    cfg, best, _ = trained
    out = export_command(f"{cfg.checkpoint_dir}/last.pt", str(tmp_path / "last.onnx"), version="last")
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    metrics = json.loads(metadata["metrics"])
    assert metrics["validation_images"] == len(torch.load(best, weights_only=False)["val_targets"])
    assert 0.0 <= float(metadata["threshold"]) <= 1.0


@pytest.mark.parametrize("allowed_drop, kept", [(1.0, True), (-1.0, False)])
def test_int8_copy_is_kept_only_within_the_f1_budget(trained, tmp_path, monkeypatch, allowed_drop, kept):
    import shutil

    from nailong_vision.classifier import Classifier
    from trainer import export

    _, best, onnx_path = trained
    fp32 = tmp_path / "model.onnx"
    shutil.copy(onnx_path, fp32)
    monkeypatch.setattr(export, "INT8_MAX_F1_DROP", allowed_drop)
    result = export.export_int8(fp32, Checkpoint.load(best))
    int8 = tmp_path / "model.int8.onnx"
    assert (result == int8) is kept and int8.exists() is kept
    if kept:
        assert Classifier(int8, providers=["CPUExecutionProvider"]).nailong_scores(
            np.zeros((1, 3, 32, 32), dtype=np.float32)).shape == (1,)
