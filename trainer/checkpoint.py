"""Checkpoint: what a trainer ``.pt`` file holds — weights, config, labels, preprocessing — as one typed object.

Every part of the trainer that reads or writes a checkpoint goes through here (the loop, features, export,
distillation teachers, scoring, refresh). The file stays a plain ``torch.save`` dict with the keys below,
so checkpoints written before this module (the shipped ``models/nailong.pt``) load unchanged.

    model, config, labels, spec, data_summary, state      always
    val_probs, val_targets, val_sources, val_metrics      a best.pt: validation scores, for export's threshold
    lineage                                               a refreshed model: where it came from (see refresh)
    optimizer, scaler, rng                                a last.pt: what resuming a run needs
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nailong_vision.preprocess import PreprocessSpec

from .config import TrainConfig, config_from_dict
from .model import build_model

_VALIDATION_KEYS = ("val_probs", "val_targets", "val_sources", "val_metrics")
_RESUME_KEYS = ("optimizer", "scaler", "rng")


@dataclass
class Validation:
    """Per-file validation scores of the model at the checkpoint's step (what export picks a threshold on)."""

    probs: np.ndarray  # float [files, classes]
    targets: np.ndarray  # int [files]
    sources: list[str]
    metrics: dict


@dataclass
class Checkpoint:
    weights: dict[str, torch.Tensor]
    config: TrainConfig
    labels: list[str]
    spec: PreprocessSpec
    data_summary: dict
    state: dict  # the run's step, best metric and best step (loop.RunState as a dict)
    validation: Validation | None = None
    lineage: dict | None = None
    # Optimizer, GradScaler and RNG states: present in a last.pt, never in an exported nailong.pt.
    resume: dict = field(default_factory=dict)
    # Anything else a writer added (e.g. the linear probe's settings): kept as it was.
    extra: dict = field(default_factory=dict)

    @property
    def positive_label(self) -> str:
        return self.config.positive_label

    @property
    def positive_index(self) -> int:
        return self.labels.index(self.positive_label)

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))

    def build_model(self) -> torch.nn.Module:
        """The network with these weights, in eval mode, on the CPU."""
        model = build_model(self.config.model, len(self.labels))
        model.load_state_dict(self.weights)
        return model.eval()

    def to_payload(self, *, resume: bool = True) -> dict:
        payload = {
            "model": self.weights,
            "config": self.config.to_dict(),
            "labels": list(self.labels),
            "spec": self.spec.to_metadata(),
            "data_summary": self.data_summary,
            "state": dict(self.state),
            **self.extra,
        }
        if self.validation is not None:
            payload.update(val_probs=self.validation.probs, val_targets=self.validation.targets,
                           val_sources=self.validation.sources, val_metrics=self.validation.metrics)
        if self.lineage is not None:
            payload["lineage"] = self.lineage
        if resume:
            payload.update(self.resume)
        return payload

    @classmethod
    def from_payload(cls, payload: dict) -> Checkpoint:
        validation = None
        if "val_probs" in payload:
            validation = Validation(payload["val_probs"], payload["val_targets"], list(payload.get("val_sources", [])),
                                    payload.get("val_metrics", {}))
        known = {"model", "config", "labels", "spec", "data_summary", "state", "lineage", *_VALIDATION_KEYS, *_RESUME_KEYS}
        return cls(
            weights=payload["model"],
            config=config_from_dict(payload["config"]),
            labels=list(payload["labels"]),
            spec=PreprocessSpec.from_metadata(payload["spec"]),
            data_summary=payload.get("data_summary", {}),
            state=dict(payload.get("state", {})),
            validation=validation,
            lineage=payload.get("lineage"),
            resume={key: payload[key] for key in _RESUME_KEYS if key in payload},
            extra={key: value for key, value in payload.items() if key not in known},
        )

    def save(self, path: str | Path, *, resume: bool = True) -> None:
        """Write atomically: a crash never leaves a half-written checkpoint. ``resume=False`` leaves out
        the optimizer state (an exported model's checkpoint: weights for the next fine-tune)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        torch.save(self.to_payload(resume=resume), partial)
        partial.replace(path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        return cls.from_payload(torch.load(path, map_location=map_location, weights_only=False))


def load_model(path: str | Path) -> tuple[torch.nn.Module, Checkpoint]:
    """The model of a checkpoint file (eval mode, CPU) and the checkpoint."""
    checkpoint = Checkpoint.load(path)
    return checkpoint.build_model(), checkpoint
