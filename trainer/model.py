"""Model: a timm network, started from scratch, from ImageNet weights or from one of our checkpoints."""

from __future__ import annotations

import logging

import timm
import torch

from nailong_vision.preprocess import RESAMPLE, PreprocessSpec

from .config import TrainConfig
from .pretrained import load_package_weights

log = logging.getLogger(__name__)


def build_model(name: str, num_classes: int, drop_path_rate: float = 0.0) -> torch.nn.Module:
    """The bare architecture (random weights): what a checkpoint's state dict loads into."""
    return timm.create_model(name, pretrained=False, num_classes=num_classes, drop_path_rate=drop_path_rate)


def build_initialised_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The model a run starts from, initialised as the config says (see ``TrainConfig.pretrained``)."""
    if cfg.pretrained and cfg.pretrained_source == "package":
        model = build_model(cfg.model, num_classes, cfg.drop_path_rate)
        load_package_weights(model, cfg.model)
        log.info("initialised %s from the packaged ImageNet weights", cfg.model)
    elif cfg.pretrained and cfg.pretrained_source == "timm":
        overlay = {"file": cfg.pretrained_file} if cfg.pretrained_file else None
        model = timm.create_model(cfg.model, pretrained=True, num_classes=num_classes,
                                  drop_path_rate=cfg.drop_path_rate, pretrained_cfg_overlay=overlay)
    elif cfg.pretrained:
        raise ValueError(f"pretrained_source must be timm or package, got {cfg.pretrained_source!r}")
    else:
        model = build_model(cfg.model, num_classes, cfg.drop_path_rate)
    if cfg.init_checkpoint:
        load_weights(model, cfg.init_checkpoint)
    return model


def preprocess_spec(cfg: TrainConfig) -> PreprocessSpec:
    """How images become this model's input; written into the exported model for the plugin."""
    if cfg.normalization == "imagenet":
        return PreprocessSpec(size=cfg.image_size, frames=cfg.eval_frames)
    if cfg.normalization == "model":
        pretrained_cfg = timm.get_pretrained_cfg(cfg.model).to_dict()
        resize = pretrained_cfg.get("interpolation", "bilinear")
        return PreprocessSpec(size=cfg.image_size, mean=tuple(pretrained_cfg["mean"]), std=tuple(pretrained_cfg["std"]),
                              resize=resize if resize in RESAMPLE else "bilinear", frames=cfg.eval_frames)
    raise ValueError(f"normalization must be imagenet or model, got {cfg.normalization!r}")


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


def head_parameters(model: torch.nn.Module) -> set[int]:
    """ids of the classifier head's parameters (timm models name their head)."""
    return {id(p) for p in model.get_classifier().parameters()}


def parameter_groups(model: torch.nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on weight matrices and convolutions only, never on norms and biases; the
    backbone's groups carry ``lr_scale`` (layer-wise learning rate), the head's 1."""
    head = head_parameters(model)
    groups: dict[tuple[bool, bool], list] = {(d, h): [] for d in (True, False) for h in (True, False)}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups[(parameter.ndim >= 2, id(parameter) in head)].append(parameter)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "backbone": not is_head,
             "lr_scale": 1.0 if is_head else backbone_lr_scale}
            for (decay, is_head), params in groups.items() if params]
