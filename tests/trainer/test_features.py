"""Frozen-feature mode: features cached once, a linear head fitted on them, an ordinary checkpoint out."""

import numpy as np
import torch

from trainer import features
from trainer.data import prepare_data
from trainer.checkpoint import load_model
from trainer.export import export_command
from trainer.loop import predict_validation

from .conftest import tiny_config


def test_features_are_cached_and_the_checkpoint_scores_like_its_fitted_head(tmp_path, image_root, monkeypatch):
    cfg = tiny_config(tmp_path, image_root)
    metrics = features.run_features(cfg)
    assert 0.0 <= metrics["average_precision"] <= 1.0
    assert len(list((tmp_path / "cache").glob("features-convnext_atto-*.npz"))) == 1

    checkpoint_path = tmp_path / "ckpt" / "best.pt"
    model, checkpoint = load_model(checkpoint_path)
    data = prepare_data(cfg)
    # The saved network (backbone + fitted head) gives the validation scores the head was judged on.
    network_probs = predict_validation(model, data, torch.device("cpu"), cfg)
    assert np.allclose(network_probs, checkpoint.validation.probs, atol=1e-4)

    # A second run reads the cache instead of running the backbone again.
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert features.run_features(cfg)["average_precision"] == metrics["average_precision"]
    export_command(str(checkpoint_path), str(tmp_path / "probe.onnx"), version="probe")
    assert (tmp_path / "probe.onnx").exists()


def test_linear_head_separates_separable_features():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, size=200)
    points = rng.normal(size=(200, 8)).astype(np.float32)
    points[:, 0] += np.where(targets == 0, 3.0, -3.0)
    weight, bias = features.fit_linear_head(points, targets, np.ones(200), 2)
    predictions = (torch.from_numpy(points) @ weight.T + bias).argmax(1).numpy()
    assert (predictions == targets).mean() > 0.97

