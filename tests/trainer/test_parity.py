"""The plugin and the trainer must feed the model identical inputs and get identical scores."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nailong_vision.classifier import Classifier
from nailong_vision.decode import decode_frames
from nailong_vision.preprocess import preprocess
from trainer.data import prepare_data, scan_imagefolder, val_batches
from trainer.checkpoint import load_model
from trainer.export import write_metadata
from trainer.loop import predict_validation


def test_validation_inputs_equal_the_plugins_preprocessing(trained):
    cfg, _, _ = trained
    data = prepare_data(cfg)
    inputs = torch.cat(list(val_batches(data, 64))).numpy()
    for file_index, source in enumerate(data.val_sources):
        frames = decode_frames(open(source, "rb").read(), max_frames=cfg.eval_frames, draft_size=cfg.image_size)
        plugin_input = preprocess(frames, data.spec)
        assert np.array_equal(plugin_input, inputs[data.val_file == file_index]), source


def test_animated_image_is_validated_on_the_frames_the_plugin_samples(trained):
    cfg, _, _ = trained
    data = prepare_data(cfg)
    animated = [s for s in data.val_sources if s.endswith(".gif")] or [
        r.source for r in scan_imagefolder(cfg.data[0]) if r.source.endswith(".gif")]
    frames = decode_frames(open(animated[0], "rb").read(), max_frames=cfg.eval_frames)
    assert len(frames) == min(5, cfg.eval_frames)


def test_plugin_scores_equal_the_trainers_validation_scores(trained):
    cfg, best, onnx_path = trained
    data = prepare_data(cfg)
    model, _ = load_model(best)
    trainer_probs = predict_validation(model, data, torch.device("cpu"), cfg)[:, data.positive_index]
    classifier = Classifier(onnx_path, providers=["CPUExecutionProvider"])
    assert classifier.info.spec == data.spec
    assert list(classifier.info.labels) == data.labels
    for file_index, source in enumerate(data.val_sources):
        frames = decode_frames(open(source, "rb").read(), max_frames=cfg.eval_frames, draft_size=cfg.image_size)
        plugin_score = classifier.nailong_scores(preprocess(frames, classifier.info.spec)).max()
        assert abs(plugin_score - trainer_probs[file_index]) < 1e-4, source


@pytest.mark.parametrize("rule", ["mean", "k_of_n:2", "trimmed_mean:0.25"])
def test_plugin_and_trainer_apply_the_same_frame_rule(trained, tmp_path, rule):
    """With the rule written into the model, the plugin's image score equals the trainer's validation score
    under the same config key."""
    cfg, best, onnx_path = trained
    data = prepare_data(cfg)
    model, _ = load_model(best)
    trainer_probs = predict_validation(model, data, torch.device("cpu"), dataclasses.replace(cfg, frame_rule=rule))
    ruled = tmp_path / "ruled.onnx"
    shutil.copy(onnx_path, ruled)
    write_metadata(ruled, {**Classifier(onnx_path).info.metadata, "frame_rule": rule})
    classifier = Classifier(ruled, providers=["CPUExecutionProvider"])
    assert classifier.info.frame_rule.name == rule
    for file_index, source in enumerate(data.val_sources):
        frames = decode_frames(open(source, "rb").read(), max_frames=cfg.eval_frames, draft_size=cfg.image_size)
        assert classifier.image_score(frames) == pytest.approx(trainer_probs[file_index, data.positive_index],
                                                               abs=1e-4), source


def test_plugin_and_trainer_leave_out_the_same_blank_frames(trained, tmp_path):
    """Blank frames (every other validation frame made solid white) count for nothing on both sides: a
    file whose frames are all blank scores 0, the others by their remaining frames."""
    cfg, best, onnx_path = trained
    data = prepare_data(cfg)
    pixels = data.val_pixels.copy()
    pixels[::2] = 255
    blanked = dataclasses.replace(data, val_pixels=pixels)
    model, _ = load_model(best)
    rule = "k_of_n:2"
    trainer_probs = predict_validation(model, blanked, torch.device("cpu"), dataclasses.replace(cfg, frame_rule=rule))
    ruled = tmp_path / "ruled.onnx"
    shutil.copy(onnx_path, ruled)
    write_metadata(ruled, {**Classifier(onnx_path).info.metadata, "frame_rule": rule})
    classifier = Classifier(ruled, providers=["CPUExecutionProvider"])
    all_blank = 0
    for file_index in range(len(data.val_sources)):
        frames = pixels[data.val_file == file_index]
        score = classifier.image_score([Image.fromarray(frame) for frame in frames])
        assert score == pytest.approx(trainer_probs[file_index, data.positive_index], abs=1e-4)
        blank = bool((frames == 255).all())
        assert score == 0.0 or not blank
        all_blank += blank
    assert all_blank and all_blank < len(data.val_sources)
