"""Model: a timm ConvNeXt, optionally started from pretrained weights or one of our checkpoints."""

from __future__ import annotations

import logging

import timm
import torch

log = logging.getLogger(__name__)


def build_model(name: str, num_classes: int, pretrained: bool = False, drop_path_rate: float = 0.0,
                init_checkpoint: str | None = None) -> torch.nn.Module:
    model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, drop_path_rate=drop_path_rate)
    if init_checkpoint:
        load_weights(model, init_checkpoint)
    return model


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load a trainer checkpoint or a bare state dict; a classifier head of another shape (a
    different label set) is left freshly initialised."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("model", state)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(fitting))
    missing = sorted(set(own) - set(fitting))
    if not fitting:
        raise ValueError(f"{path} holds no weights that fit {type(model).__name__}")
    model.load_state_dict(fitting, strict=False)
    log.info("initialised from %s (%d tensors; skipped %s; fresh %s)", path, len(fitting), skipped, missing)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and convolutions only, never on norms and biases."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
