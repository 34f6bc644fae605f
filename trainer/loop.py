"""The training loop: plain PyTorch, step-based, resumable. Read it top to bottom.

One "step" is one optimizer update of ``batch_size × gradient_accumulation_steps`` samples (per
GPU under DDP); the learning-rate schedule moves once per step, never per micro-batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from nailong_vision.frame_rule import flat_frames
from nailong_vision.frame_rule import parse as parse_frame_rule

from .augment import mix
from .checkpoint import Checkpoint, Validation
from .config import TrainConfig
from .data import PreparedData, SampleStream, TrainSet, prepare_data, val_batches
from .distill import TeacherEnsemble, class_probabilities, distillation_loss
from .metrics import per_file_probs, summarize
from .model import build_initialised_model, parameter_groups

log = logging.getLogger(__name__)


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_lr at lr_decay_iters."""
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    if step >= cfg.lr_decay_iters:
        return cfg.min_lr
    progress = (step - cfg.warmup_iters) / max(1, cfg.lr_decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over :func:`~trainer.model.parameter_groups`: decay on weights only, the backbone at
    ``backbone_lr_scale`` of the head's rate (applied by :func:`set_learning_rate`)."""
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay, cfg.backbone_lr_scale), lr=cfg.learning_rate,
                             betas=tuple(cfg.betas), eps=cfg.eps, fused=fused)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, frozen_backbone: bool = False) -> None:
    """This step's rate on every group: the head at ``lr``, the backbone at ``lr × lr_scale`` (0 while frozen)."""
    for group in optimizer.param_groups:
        group["lr"] = 0.0 if frozen_backbone and group["backbone"] else lr * group["lr_scale"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.is_initialized():
        name = f"cuda:{local_rank}"
    return torch.device(name)


def amp_context(device: torch.device, cfg: TrainConfig):
    if not cfg.enable_amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if cfg.amp_dtype == "float16" and device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_train_mode(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Training mode, with BatchNorm left on its running statistics when ``freeze_batchnorm``."""
    model.train()
    if cfg.freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


@torch.no_grad()
def predict_validation(model: torch.nn.Module, data: PreparedData, device: torch.device, cfg: TrainConfig) -> np.ndarray:
    """P(class) per validation file, frames decoded and preprocessed exactly like the plugin."""
    was_training = model.training
    model.eval()
    probs, flat = [], []
    for batch in val_batches(data, cfg.batch_size * 2):
        flat.append(flat_frames(batch.numpy()))
        with amp_context(device, cfg):
            logits = model(batch.to(device).contiguous(memory_format=torch.channels_last))
        probs.append(logits.float().softmax(1).cpu().numpy())
    model.train(was_training)
    return per_file_probs(np.concatenate(probs), data.val_file, len(data.val_sources), data.positive_index,
                          parse_frame_rule(cfg.frame_rule), flat=np.concatenate(flat))


def validation_scores(model: torch.nn.Module, checkpoint: Checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """Per-file validation probabilities and targets: stored in a best.pt, else computed now
    from the checkpoint's own config (same grouped split, same plugin preprocessing)."""
    if checkpoint.validation is not None:
        return checkpoint.validation.probs, checkpoint.validation.targets
    data = prepare_data(checkpoint.config)
    return predict_validation(model, data, torch.device("cpu"), checkpoint.config), data.val_file_targets()



@dataclass
class RunState:
    step: int = 0
    best_metric: float = -1.0
    best_step: int = 0


def save_checkpoint(path: Path, model, optimizer, scaler, state: RunState, cfg: TrainConfig,
                    data: PreparedData, extra: dict | None = None) -> None:
    """Everything needed to resume bit-for-bit, and to export without the data at hand."""
    extra = dict(extra or {})
    validation = None
    if "val_probs" in extra:
        validation = Validation(extra.pop("val_probs"), extra.pop("val_targets"), extra.pop("val_sources"),
                                extra.pop("val_metrics"))
    Checkpoint(
        weights=model.state_dict(), config=cfg, labels=data.labels, spec=data.spec, data_summary=data.summary,
        state=vars(state), validation=validation,
        resume={"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state()}, extra=extra,
    ).save(path)


def train(cfg: TrainConfig, data: PreparedData | None = None, on_eval=None) -> RunState:
    """Run (or resume) training; ``on_eval(step, metrics)`` is called after each validation
    (the search uses it to report to optuna and to prune)."""
    if cfg.unlabeled and not cfg.teacher:
        raise ValueError("unlabeled images need a teacher to label them / 无标注图片需要 teacher: 教师模型")
    # ---- processes and devices (torchrun sets RANK/WORLD_SIZE/LOCAL_RANK for DDP)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    is_main = rank == 0
    device = pick_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = cfg.enable_cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(cfg.seed + rank)

    # ---- data (under DDP rank 0 decodes into the shared cache first; the others then read it)
    if distributed and not is_main:
        dist.barrier()
    data = data or prepare_data(cfg)
    if distributed and is_main:
        dist.barrier()
    if is_main:
        log.info("data: %s", data.summary)
    train_set = TrainSet(data, cfg)

    # ---- model, optimizer, AMP
    model = build_initialised_model(cfg, len(data.labels))
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, fused=device.type == "cuda")
    teacher = TeacherEnsemble(cfg.teacher, data.labels, data.spec, device) if cfg.teacher else None
    # A GradScaler only matters for float16; bf16 has the range of float32.
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.enable_amp and cfg.amp_dtype == "float16"
                                  and device.type == "cuda")

    # ---- resume
    state, saved = RunState(), None
    checkpoint_dir = Path(cfg.checkpoint_dir)
    last_path, best_path = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    if last_path.exists():
        saved = Checkpoint.load(last_path, map_location=device)
        model.load_state_dict(saved.weights)
        optimizer.load_state_dict(saved.resume["optimizer"])
        scaler.load_state_dict(saved.resume["scaler"])
        state = RunState(**saved.state)
        if is_main:
            log.info("resumed from %s at step %d (best nailong F1 %.4f)", last_path, state.step, state.best_metric)

    raw_model = model
    if cfg.enable_compile:
        model = torch.compile(model)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    samples_per_step = cfg.batch_size * cfg.gradient_accumulation_steps
    stream = SampleStream(data.train_weights, cfg.seed, start=state.step * samples_per_step, rank=rank, world=world)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=cfg.batch_size, sampler=stream, num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=cfg.num_workers > 0,
    )
    batches = iter(loader)
    if saved is not None:
        # Restored after the loader is started: starting it draws from torch's RNG, which the
        # uninterrupted run did before its first step, not at this point.
        set_rng_state(saved.resume["rng"])
    writer = SummaryWriter(cfg.tensorboard_dir, purge_step=state.step) if is_main else None
    progress = tqdm(total=cfg.max_steps, initial=state.step, disable=not is_main, desc="train", dynamic_ncols=True)

    def checkpoint(path: Path, extra: dict | None = None) -> None:
        if is_main:
            save_checkpoint(path, raw_model, optimizer, scaler, state, cfg, data, extra)

    # ---- the loop
    set_train_mode(model, cfg)
    seen_since_log, clock = 0, time.perf_counter()
    try:
        while state.step < cfg.max_steps:
            lr = get_lr(state.step, cfg)
            # While the backbone is frozen its learning rate is 0: weights fixed, BatchNorm statistics adapt.
            set_learning_rate(optimizer, lr, frozen_backbone=state.step < cfg.freeze_backbone_steps)
            for micro in range(cfg.gradient_accumulation_steps):
                images, targets = next(batches)
                images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                targets = targets.to(device, non_blocking=True)
                # Seeded by position, so a resumed run mixes exactly as the uninterrupted one.
                mix_rng = np.random.default_rng([cfg.seed, state.step, micro, rank])
                if mix_rng.random() < cfg.augment.mix:
                    images, targets = mix(images, class_probabilities(targets, len(data.labels)), mix_rng)
                teacher_probs = teacher.probs(images, cfg.distill_temperature) if teacher else None
                last_micro = micro == cfg.gradient_accumulation_steps - 1
                sync = contextlib.nullcontext() if (last_micro or not distributed) else model.no_sync()
                with sync, amp_context(device, cfg):
                    loss = distillation_loss(model(images), targets, teacher_probs, cfg.distill_weight,
                                             cfg.distill_temperature, cfg.label_smoothing)
                    loss = loss / cfg.gradient_accumulation_steps
                scaler.scale(loss).backward()
                seen_since_log += len(targets)
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            progress.update(1)

            if is_main and (state.step % 10 == 0 or state.step == cfg.max_steps):
                elapsed = time.perf_counter() - clock
                images_per_second = seen_since_log * world / elapsed
                step_loss = loss.item() * cfg.gradient_accumulation_steps
                writer.add_scalar("train/loss", step_loss, state.step)
                writer.add_scalar("train/lr", lr, state.step)
                writer.add_scalar("train/grad_norm", float(grad_norm), state.step)
                writer.add_scalar("train/images_per_second", images_per_second, state.step)
                progress.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", ips=f"{images_per_second:.0f}")
                seen_since_log, clock = 0, time.perf_counter()

            if is_main and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
                file_probs = predict_validation(raw_model, data, device, cfg)
                metrics = summarize(file_probs, data.val_file_targets(), data.labels, data.positive_index)
                for key in ("accuracy", "macro_f1", "nailong_precision", "nailong_recall", "nailong_f1",
                            "nailong_fpr", "nailong_best_f1", "average_precision"):
                    writer.add_scalar(f"val/{key}", metrics[key], state.step)
                log.info("step %d val: acc %.4f macroF1 %.4f nailong P %.4f R %.4f F1 %.4f FPR %.4f | "
                         "best-threshold F1 %.4f AP %.4f", state.step, metrics["accuracy"], metrics["macro_f1"],
                         metrics["nailong_precision"], metrics["nailong_recall"], metrics["nailong_f1"],
                         metrics["nailong_fpr"], metrics["nailong_best_f1"], metrics["average_precision"])
                # "Best" is one primary metric: nailong F1 at its best threshold, since the plugin acts
                # at a tuned threshold, not at 0.5. Ties keep the earlier checkpoint.
                if metrics["nailong_best_f1"] > state.best_metric:
                    state.best_metric, state.best_step = metrics["nailong_best_f1"], state.step
                    checkpoint(best_path, {"val_metrics": metrics, "val_probs": file_probs,
                                           "val_targets": data.val_file_targets(),
                                           "val_sources": data.val_sources})
                    log.info("new best nailong F1 %.4f at step %d → %s", state.best_metric, state.step, best_path)
                set_train_mode(model, cfg)  # predict_validation put the whole model back in train mode
                log_examples(writer, data, file_probs, state.step)
                writer.flush()
                if on_eval is not None:
                    on_eval(state.step, metrics)

            if state.step % cfg.save_every == 0 or state.step == cfg.max_steps:
                checkpoint(last_path)
    except KeyboardInterrupt:
        checkpoint(last_path)
        log.warning("interrupted at step %d; saved %s — run the same command again to resume", state.step, last_path)
        raise
    finally:
        progress.close()
        if writer:
            writer.close()
        if distributed:
            dist.destroy_process_group()
    return state


def log_examples(writer: SummaryWriter, data: PreparedData, file_probs: np.ndarray, step: int, count: int = 8) -> None:
    """A few validation images (first frame) with P(nailong) and the true label, for TensorBoard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    files = rng.choice(len(data.val_sources), size=min(count, len(data.val_sources)), replace=False)
    first_frame = {int(f): i for i, f in reversed(list(enumerate(data.val_file)))}
    targets = data.val_file_targets()
    figure, axes = plt.subplots(1, len(files), figsize=(2 * len(files), 2.4), squeeze=False)
    for axis, file in zip(axes[0], files):
        axis.imshow(data.val_pixels[first_frame[int(file)]])
        axis.set_title(f"P={file_probs[file, data.positive_index]:.2f}\n{data.labels[targets[file]]}", fontsize=8)
        axis.axis("off")
    writer.add_figure("val/examples", figure, step)
    plt.close(figure)
