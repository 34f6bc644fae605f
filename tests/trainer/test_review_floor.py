"""The review floor: the highest threshold at which the validation's nailong reach it 99 % of the time,
from the scores of a calibration, or from a model's own evaluation (its missed nailong with their scores)
for a model whose validation cannot be scored again; the weights and the threshold stay."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from trainer.thresholds import review_floor


def test_the_floor_keeps_the_recall_and_is_the_highest_that_does():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 300)
    floor = review_floor(scores, 0.99)
    assert np.mean(scores >= floor) >= 0.99
    assert np.mean(scores >= floor + 1e-4) < 0.99  # one step higher loses it


def test_the_shipped_models_floor_from_its_missed_nailong():
    # models/evaluation: 211 validation nailong, these 8 missed at 0.5113; two may stay under the floor.
    missed = [0.03082, 0.09239, 0.11472, 0.15005, 0.24838, 0.27412, 0.34729, 0.46461]
    assert review_floor(np.array(missed + [0.5113] * 203)) == 0.1147


def test_the_floor_needs_nailong_scores():
    with pytest.raises(ValueError):
        review_floor(np.array([]))


def test_review_floor_command_writes_it_from_the_models_evaluation(trained, image_root, tmp_path):
    from trainer.cli import main
    from trainer.export import sha256_file

    _, _, exported = trained
    model = tmp_path / "model.onnx"
    shutil.copyfile(exported, model)
    assert main(["evaluate", "--model", str(model), "--data", str(image_root), "--out", str(tmp_path / "eval")]) == 0
    before = onnx.load(str(model))
    assert main(["review-floor", "--model", str(model), "--evaluation", str(tmp_path / "eval")]) == 0

    after = onnx.load(str(model))
    metadata = {p.key: p.value for p in after.metadata_props}
    threshold = float(metadata["threshold"])
    assert metadata["threshold"] == {p.key: p.value for p in before.metadata_props}["threshold"]
    assert [t.raw_data for t in after.graph.initializer] == [t.raw_data for t in before.graph.initializer]
    assert (tmp_path / "model.onnx.sha256").read_text().strip() == sha256_file(model)
    report = json.loads((tmp_path / "eval" / "report.json").read_text(encoding="utf-8"))
    support = report["per_class"]["nailong"]["support"]
    floor = float(metadata["review_floor"])
    assert 0.0 <= floor <= threshold
    # At the floor at least 99 % of the nailong the evaluation counted reach it (all those above the threshold do).
    from trainer.scoring import load_scorer
    from trainer.data import scan_imagefolder

    scorer = load_scorer(model)
    nailong = [r for r in scan_imagefolder(str(image_root)) if r.label == "nailong"]
    scores = np.array([scorer.score_bytes(r.read())[scorer.positive_index] for r in nailong])
    assert len(scores) == support and np.mean(scores >= floor) >= 0.99
    assert "review_rule" in json.loads(metadata["calibration"])


def test_review_floor_refuses_another_models_evaluation(trained, image_root, tmp_path):
    from trainer.calibrate import review_floor_from_evaluation
    from trainer.cli import main

    _, _, exported = trained
    assert main(["evaluate", "--model", str(exported), "--data", str(image_root), "--out", str(tmp_path / "eval"),
                 "--threshold", "0.3"]) == 0
    with pytest.raises(ValueError, match="not the evaluation"):
        review_floor_from_evaluation(exported, tmp_path / "eval")
