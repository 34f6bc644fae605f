"""Distillation: the loss, teachers that expect other input, and a run that learns from a teacher."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.data import UNLABELED, TrainSet, prepare_data
from trainer.distill import Teacher, TeacherEnsemble, class_probabilities, distillation_loss
from trainer.checkpoint import load_model
from trainer.loop import train
from trainer.model import preprocess_spec

from .conftest import tiny_config


def test_without_a_teacher_the_loss_is_cross_entropy():
    logits, targets = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    assert torch.allclose(distillation_loss(logits, targets, None, 0.7, 2.0), F.cross_entropy(logits, targets))


def test_a_student_that_matches_its_teacher_pays_only_the_label_term():
    logits, targets = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    temperature = 2.0
    teacher_probs = (logits / temperature).softmax(1)
    loss = distillation_loss(logits, targets, teacher_probs, 0.25, temperature)
    assert torch.allclose(loss, 0.75 * F.cross_entropy(logits, targets), atol=1e-6)


def test_soft_term_is_the_kl_divergence_scaled_by_t_squared():
    student, teacher_logits = torch.tensor([[2.0, -1.0]]), torch.tensor([[-1.0, 1.0]])
    temperature = 3.0
    p = (teacher_logits / temperature).softmax(1)
    q = (student / temperature).softmax(1)
    expected = float((p * (p / q).log()).sum()) * temperature**2
    loss = distillation_loss(student, torch.tensor([0]), p, 1.0, temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_soft_targets_of_mixed_images_are_accepted():
    logits = torch.randn(3, 2)
    mixed = torch.tensor([[0.3, 0.7], [1.0, 0.0], [0.5, 0.5]])
    expected = -(mixed * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(distillation_loss(logits, mixed, None, 0.5, 1.0), expected)


def test_a_teacher_with_its_own_normalisation_sees_the_same_pixels(trained, tmp_path, image_root):
    cfg, best, onnx_path = trained
    model, checkpoint = load_model(best)
    labels = checkpoint.labels
    # The student normalises with mean = std = 0.5 at 48 px; the teacher wants ImageNet statistics at 32 px.
    student_spec = preprocess_spec(tiny_config(tmp_path, image_root, "model=tf_efficientnet_lite0",
                                               "normalization=model", "image_size=48"))
    pixels = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    student_inputs = (pixels - 0.5) / 0.5
    resized = F.interpolate(pixels, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((resized - mean) / std).softmax(1)
    for path in (best, onnx_path):  # a checkpoint and the exported model agree
        ensemble = TeacherEnsemble([str(path)], labels, student_spec, torch.device("cpu"))
        assert torch.allclose(ensemble.probs(student_inputs, 1.0), expected, atol=1e-4), path


def test_teachers_with_other_labels_are_refused(trained):
    _, best, _ = trained
    with pytest.raises(ValueError, match="labels"):
        Teacher(best, ["nailong", "emoji", "other"], torch.device("cpu"))


def test_a_run_with_a_teacher_mixing_and_unlabelled_images_trains_and_resumes_like_an_uninterrupted_one(trained, tmp_path, image_root):
    _, best, onnx_path = trained
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    (unlabelled / "x.png").write_bytes((image_root / "nailong" / "nailong01.png").read_bytes())
    distill = [f"teacher=['{best}', '{onnx_path}']", "distill_weight=0.7", "distill_temperature=2.0",
               f"unlabeled=['{unlabelled}']",
               "augment.mix=0.5", "augment.rotate90=0.5", "max_steps=4", "eval_every=2", "save_every=2"]
    straight = tiny_config(tmp_path / "a", image_root, *distill)
    state = train(straight)
    assert state.step == 4 and math.isfinite(state.best_metric)
    interrupted = tiny_config(tmp_path / "b", image_root, *distill[:-3], "max_steps=2", "eval_every=2", "save_every=2")
    train(interrupted)
    train(tiny_config(tmp_path / "b", image_root, *distill))
    a = torch.load(tmp_path / "a" / "ckpt" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "ckpt" / "last.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert np.isfinite([float(v.float().sum()) for v in a.values()]).all()


def test_unlabelled_rows_get_only_the_teachers_term():
    logits = torch.randn(4, 2)
    targets = torch.tensor([0, -1, 1, -1])
    teacher_probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    soft = F.kl_div(logits.log_softmax(1), teacher_probs, reduction="batchmean")
    expected = 0.5 * F.cross_entropy(logits[[0, 2]], targets[[0, 2]]) + 0.5 * soft
    assert torch.allclose(distillation_loss(logits, targets, teacher_probs, 0.5, 1.0), expected, atol=1e-6)
    # The same images as class probabilities (after mixing): a row of zeros is unlabelled.
    probabilities = class_probabilities(targets, 2)
    assert probabilities.tolist() == [[1, 0], [0, 0], [0, 1], [0, 0]]
    assert torch.allclose(distillation_loss(logits, probabilities, teacher_probs, 0.5, 1.0), expected, atol=1e-6)


def test_unlabelled_folders_join_training_only_and_are_never_labelled(tmp_path, image_root):
    unlabelled = tmp_path / "unlabelled" / "any" / "layout"
    unlabelled.mkdir(parents=True)
    for name in ("nailong00.png", "other00.png", "other-anim.gif"):
        folder = "nailong" if name.startswith("nailong") else "other"
        (unlabelled / name).write_bytes((image_root / folder / name).read_bytes())
    plain = prepare_data(tiny_config(tmp_path, image_root))
    cfg = tiny_config(tmp_path, image_root, f"unlabeled=['{tmp_path / 'unlabelled'}']", "unlabeled_weight=0.5",
                      "augment.paste_nailong=1.0")
    data = prepare_data(cfg)
    assert data.val_sources == plain.val_sources and np.array_equal(data.val_pixels, plain.val_pixels)
    is_unlabelled = data.train_targets == UNLABELED
    assert is_unlabelled.sum() == len(data.train_targets) - len(plain.train_targets) > 3  # the GIF adds frames
    assert data.train_weights[is_unlabelled].sum() == pytest.approx(0.5)
    assert data.summary["unlabeled_images"] == 3
    train_set = TrainSet(data, cfg)
    row = int(np.nonzero(is_unlabelled)[0][0])
    assert all(train_set[(row, (0, 0, seed))][1] == UNLABELED for seed in range(5))  # pastes give no label
    with pytest.raises(ValueError, match="teacher"):
        train(cfg)
