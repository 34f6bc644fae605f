"""Distillation: teachers (our checkpoints or exported ONNX models) and the loss that matches them.

A teacher may expect other input than the student (EfficientNet-Lite: mean = std = 0.5, another size),
so each one gets the student's batch back in 0..1 pixels and re-normalises it with its own spec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nailong_vision.classifier import Classifier
from nailong_vision.preprocess import PreprocessSpec

from .checkpoint import load_model


class Teacher:
    """One teacher: a callable from the student's normalised batch to the teacher's logits."""

    def __init__(self, path: str | Path, labels: list[str], device: torch.device):
        path = Path(path)
        self.path, self.device = path, device
        if path.suffix == ".onnx":
            self.classifier = Classifier(path, providers=["CPUExecutionProvider"], threads=0)
            info = self.classifier.info
            self.spec, teacher_labels, self.model = info.spec, list(info.labels), None
        else:
            self.model, checkpoint = load_model(path)
            self.model.to(device)
            self.spec, teacher_labels = checkpoint.spec, checkpoint.labels
        if teacher_labels != labels:
            raise ValueError(f"teacher {path} has labels {teacher_labels}, the student {labels} / 教师模型的类别与学生不同")

    @torch.no_grad()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels``: the student's batch as 0..1 RGB [N, 3, H, W]."""
        if pixels.shape[-1] != self.spec.size:
            pixels = F.interpolate(pixels, size=(self.spec.size, self.spec.size), mode="bilinear",
                                   antialias=True, align_corners=False)
        mean = torch.tensor(self.spec.mean, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=pixels.device).view(1, 3, 1, 1)
        inputs = ((pixels - mean) / std).float()
        if self.model is not None:
            return self.model(inputs.to(self.device)).float()
        return torch.from_numpy(self.classifier.logits(np.ascontiguousarray(inputs.cpu().numpy()))).to(pixels.device)


class TeacherEnsemble:
    """The average of several teachers' probabilities."""

    def __init__(self, paths: list[str], labels: list[str], spec: PreprocessSpec, device: torch.device):
        self.members = [Teacher(path, labels, device) for path in paths]
        self.mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)

    def probs(self, student_inputs: torch.Tensor, temperature: float) -> torch.Tensor:
        pixels = (student_inputs.float() * self.std + self.mean).clamp(0, 1)
        return torch.stack([(m.logits(pixels) / temperature).softmax(1) for m in self.members]).mean(0)


def class_probabilities(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices → one-hot rows; an unlabelled image (index −1) gets a row of zeros."""
    labelled = targets >= 0
    return F.one_hot(targets.clamp(min=0), num_classes).float() * labelled[:, None]


def distillation_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher_probs: torch.Tensor | None,
                      weight: float, temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """(1 − weight) · cross-entropy on the labels + weight · T² · KL(teacher ‖ student at temperature T).

    ``targets`` are class indices (−1: unlabelled) or class probabilities (mixed images; a row of zeros:
    unlabelled); unlabelled rows get only the teacher's term. Without a teacher, plain cross-entropy.
    T² keeps the soft term's gradients the size of the hard term's (Hinton et al.)."""
    labelled = targets >= 0 if targets.dim() == 1 else targets.sum(1) > 0
    if labelled.any():
        hard = F.cross_entropy(student_logits[labelled].float(), targets[labelled], label_smoothing=label_smoothing)
    else:
        hard = student_logits.sum() * 0.0
    if teacher_probs is None:
        return hard
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    soft = F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature**2
    return (1 - weight) * hard + weight * soft
