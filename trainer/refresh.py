"""refresh: the current model learns its admins' corrections, a gate checks it, and it is exported beside
its checkpoint for the bot to swap in (and for the next refresh to start from).

    python -m trainer refresh --base models/ --feedback <data_dir>/feedback --recent <data_dir>/recent --out DIR

The whole network is fine-tuned from the base checkpoint, BatchNorm frozen, on batches of a few augmented
views of the corrections (hard labels: the admins' word) and a larger replay that keeps everything else
where it was: the bot's recent images with the base model's soft prediction *on the same view* as the
target (function matching), and the training folders with their labels where a config names them. A time
budget bounds the run: one step is timed, the step count is planned from what is left of the budget after
the gate and the export. Interrupted (SIGTERM, Ctrl-C), it saves its progress in ``DIR/.refresh/``; the same
command resumes it.

Exit codes (``nailong_vision.handoff.ExitCode``): 0 the gate passed, 3 it failed (the candidate is left in
DIR, gate.json says why), 2 bad input, 1 anything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nailong_vision.classifier import CASCADE_KEY, Classifier, ModelError
from nailong_vision.decode import ImageDecodeError
from nailong_vision.frame_rule import flat_frames
from nailong_vision.frame_rule import parse as parse_frame_rule
from nailong_vision.handoff import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    ChangedImage,
    GateChecks,
    GateReport,
    image_id,
    same_image,
)
from nailong_vision.phash import frame_hash
from nailong_vision.preprocess import normalize

from .augment import augment
from .checkpoint import Checkpoint
from .config import TrainConfig, load_config
from .data import UNLABELED, DecodedImage, PreparedData, decode_record, load_records, prepare_data
from .evaluate import in_subset
from .export import build_metadata, export_onnx, sha256_file
from .feedback import CorrectionFile, FeedbackError, read_corrections, read_recent
from .gate import check_agreement, check_corrections, check_validation, reasons_for, summary, write_report
from .loop import build_optimizer, get_lr, pick_device, predict_validation, set_learning_rate, set_train_mode
from .metrics import headline_metrics, per_file_probs
from .model import preprocess_spec

log = logging.getLogger(__name__)

STATE_DIR = ".refresh"
PROGRESS_FILE = "progress.pt"
CHANGED_DIR = "changed"
TRAIN_FRAMES = 4
MAX_CHANGED_SAVED = 200
MIN_TRAINING_SHARE = 0.5
FINAL_LR_SHARE = 0.1  # the schedule ends at a tenth of the peak rate


class RefreshInputError(ValueError):
    """The inputs cannot make a refresh (exit code 2); the message says what to do."""


class RefreshInterrupted(RuntimeError):
    """Stopped by a signal; progress is saved and the same command resumes."""


@dataclass
class RefreshSettings:
    """How a refresh trains. The defaults are what measured best on the shipped Lite0 (see the README)."""

    budget_seconds: float = 600.0  # the whole run: reading, training, gate, export
    max_steps: int = 160  # a cap for fast machines (CUDA): more steps drift further from the base
    # Views of the corrections in each batch, every correction in turn (see correction_items): a few labels teach a
    # family through many augmented views of each, not through one view of four of them now and then.
    corrections_per_batch: int = 8
    replay_per_batch: int = 20
    backbone_lr: float = 3e-5
    head_lr: float = 1e-4
    warmup_steps: int = 5
    weight_decay: float = 0.0  # decay would pull the weights away from the base, not towards it
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    agreement_target: float = 0.98
    validation_tolerance: float = 0.01
    save_every_seconds: float = 60.0


@dataclass
class Pool:
    """Decoded images of one kind: what training crops are cut from and what the gate scores."""

    names: list[str]  # where each came from, for the report
    images: list[DecodedImage]
    targets: np.ndarray  # class index (corrections), or UNLABELED (recent images)
    # Each image's identity as the bot knows it: its id and its first frame's pHash (None: too flat).
    ids: list[str] = field(default_factory=list)
    hashes: list[int | None] = field(default_factory=list)
    # P(positive) by the base model where the bot recorded it (recent images it decided); NaN elsewhere.
    base_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Inputs:
    base: Checkpoint
    base_version: str
    base_lineage: dict
    base_metadata: dict
    threshold: float
    corrections: list[CorrectionFile]
    corrected: Pool
    recent: Pool
    config: TrainConfig | None
    folders: PreparedData | None
    fingerprint: str = ""


@dataclass
class Progress:
    """What resuming needs, saved in ``out/.refresh/progress.pt``."""

    fingerprint: str
    planned_steps: int = 0
    step: int = 0
    weights: dict | None = None
    optimizer: dict | None = None
    before: dict = field(default_factory=dict)  # the base model's scores: corrected, recent, validation
    seconds: float = 0.0  # spent in earlier, interrupted attempts
    step_seconds: float = 0.0


# ---------------------------------------------------------------- inputs

def read_inputs(base_dir: Path, feedback_dir: Path, recent_dir: Path | None, config_path: str | None) -> Inputs:
    checkpoint_path, onnx_path = base_dir / CHECKPOINT_FILE, base_dir / MODEL_FILE
    for path in (checkpoint_path, onnx_path):
        if not path.is_file():
            raise RefreshInputError(f"基础模型目录缺少 {path.name} / base model folder lacks {path}")
    try:
        info = Classifier(onnx_path, providers=["CPUExecutionProvider"], threads=1).info
    except ModelError as error:
        raise RefreshInputError(str(error)) from error
    if CASCADE_KEY in info.metadata:
        # The refresh fine-tunes the first model alone while the threshold it keeps was set on the cascade's
        # scores: the result would act on the first model's scores at a threshold chosen for others.
        raise RefreshInputError(f"{onnx_path} 是级联模型，不能自动更新：更新只训练第一个模型，而阈值是按级联的分数定的 / "
                                f"is a cascade: a refresh retrains its first model alone, and the threshold was set on "
                                f"the cascade's scores; refresh the first model on its own, then rebuild the cascade")
    base = Checkpoint.load(checkpoint_path)
    if list(info.labels) != base.labels or info.spec != base.spec:
        raise RefreshInputError(f"{onnx_path} 与 {checkpoint_path} 不是同一个模型 / are not the same model "
                                f"(labels {info.labels} vs {base.labels}, preprocessing {info.spec} vs {base.spec})")
    try:
        corrections = read_corrections(feedback_dir)
    except FeedbackError as error:
        raise RefreshInputError(str(error)) from error
    if not corrections:
        raise RefreshInputError(f"没有纠错，无需更新 / no corrections to learn from in {feedback_dir}")
    unknown = {c.label for c in corrections} - set(base.labels)
    if unknown:
        raise RefreshInputError(f"纠错标签 {sorted(unknown)} 不在模型的类别中 / labels not in the model: {base.labels}")
    corrected = decode_pool([str(c.path) for c in corrections], base,
                            [base.labels.index(c.label) for c in corrections], strict=True)
    recent = Pool([], [], np.empty(0, dtype=np.int64))
    if recent_dir is not None:
        try:
            recent_files = read_recent(recent_dir)
        except FeedbackError as error:
            raise RefreshInputError(str(error)) from error
        recent = decode_pool([str(entry.path) for entry in recent_files], base, None)
        # The bot's own scores by this very model spare scoring the images again.
        recorded = {str(e.path): e.score for e in recent_files if e.model_version == info.version and e.score is not None}
        recent.base_scores = np.array([recorded.get(name, np.nan) for name in recent.names])
        recent = uncorrected(recent, corrections)
    config, folders = None, None
    if config_path is not None:
        try:
            config = load_config(config_path)
            if preprocess_spec(config) != base.spec:
                raise RefreshInputError(f"{config_path} 的预处理与基础模型不同 / preprocessing differs from the base "
                                        f"model's: {preprocess_spec(config)} vs {base.spec}")
            folders = prepare_data(config)
        except (OSError, ValueError) as error:
            raise RefreshInputError(f"训练配置无法使用 / cannot use {config_path}: {error}") from error
        if folders.labels != base.labels:
            raise RefreshInputError(f"{config_path} 的类别 {folders.labels} 与模型 {base.labels} 不同 / labels differ")
    if not len(recent) and folders is None:
        raise RefreshInputError("没有可回放的图片：请给出 --recent（机器人的近期图片）或 --config（训练数据）/ nothing to "
                                "replay: give --recent (the bot's recent images) or --config (training folders)")
    lineage = json.loads(info.metadata.get("lineage", "null")) or {}
    return Inputs(base, info.version, lineage, dict(info.metadata), info.threshold, corrections, corrected, recent,
                  config, folders)


def decode_pool(paths: list[str], base: Checkpoint, targets: list[int] | None, strict: bool = False) -> Pool:
    """Decode files the way the plugin does; unreadable ones are an error (``strict``) or skipped."""
    names, images, kept_targets, ids, hashes = [], [], [], [], []
    for k, path in enumerate(paths):
        try:
            data = Path(path).read_bytes()
            image = decode_record(data, base.spec, base.spec.frames, TRAIN_FRAMES)
        except (ImageDecodeError, OSError) as error:
            if strict:
                raise RefreshInputError(f"无法读取纠错图片 / cannot read corrected image {path}: {error}") from error
            log.warning("skipped unreadable image %s: %s", path, error)
            continue
        names.append(path)
        images.append(image)
        kept_targets.append(UNLABELED if targets is None else targets[k])
        ids.append(image_id(data))
        # The first frame as the model sees it: squashed, which a 32×32 pHash does itself.
        hashes.append(frame_hash(Image.fromarray(image.eval_frames[0])))
    return Pool(names, images, np.array(kept_targets, dtype=np.int64), ids, hashes)


def uncorrected(pool: Pool, corrections: list[CorrectionFile]) -> Pool:
    """The images no correction decides, as the bot tells (the same bytes, or within its pHash distance)."""
    keep = [k for k, (id_, hash_) in enumerate(zip(pool.ids, pool.hashes))
            if not any(same_image(id_, hash_, c.id, c.phash) for c in corrections)]
    return Pool([pool.names[k] for k in keep], [pool.images[k] for k in keep], pool.targets[keep],
                [pool.ids[k] for k in keep], [pool.hashes[k] for k in keep],
                None if pool.base_scores is None else pool.base_scores[keep])


def fingerprint(inputs: Inputs, base_dir: Path, settings: RefreshSettings) -> str:
    """What decides a run's result: a saved progress with another fingerprint is not resumed."""
    digest = hashlib.sha256(sha256_file(base_dir / CHECKPOINT_FILE).encode())
    for correction in inputs.corrections:
        digest.update(f"{correction.id}:{correction.label}\n".encode())
    for name in inputs.recent.names:
        digest.update(f"{Path(name).name}\n".encode())
    if inputs.config is not None:
        digest.update(json.dumps(inputs.config.to_dict(), sort_keys=True, default=str).encode())
    digest.update(json.dumps({k: v for k, v in dataclasses.asdict(settings).items()
                              if k not in ("budget_seconds", "threads", "device", "save_every_seconds")}).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- scoring (as the plugin scores)

@torch.no_grad()
def score_images(model: torch.nn.Module, images: list[DecodedImage], base: Checkpoint, device: torch.device,
                 batch: int = 64) -> np.ndarray:
    """P(positive) per image from its frames by the model's frame rule, preprocessed like the plugin."""
    if not images:
        return np.empty(0)
    frames = np.concatenate([image.eval_frames for image in images])
    owner = np.concatenate([np.full(len(image.eval_frames), k) for k, image in enumerate(images)])
    probs, flat = [], []
    for start in range(0, len(frames), batch):
        inputs = normalize(frames[start : start + batch], base.spec)
        flat.append(flat_frames(inputs))
        probs.append(model(torch.from_numpy(inputs).to(device)).float().softmax(1).cpu().numpy())
    rule = parse_frame_rule(base.config.frame_rule)
    return per_file_probs(np.concatenate(probs), owner, len(images), base.positive_index, rule,
                          flat=np.concatenate(flat))[:, base.positive_index]


def score_pool(model: torch.nn.Module, pool: Pool, base: Checkpoint, device: torch.device,
               recorded: np.ndarray | None = None) -> np.ndarray:
    """P(positive) per image of the pool; where ``recorded`` holds a score (not NaN) it is used as it is."""
    scores = np.full(len(pool), np.nan) if recorded is None else recorded.astype(np.float64).copy()
    missing = np.nonzero(np.isnan(scores))[0]
    scores[missing] = score_images(model, [pool.images[k] for k in missing], base, device)
    return scores


def score_all(model: torch.nn.Module, inputs: Inputs, device: torch.device, *, base: bool = False) -> dict[str, np.ndarray]:
    """P(positive) of the corrected, the recent and the validation images (and all validation probabilities).
    ``base``: this is the base model, whose scores the bot recorded for many recent images."""
    model.eval()
    scores = {"corrected": score_pool(model, inputs.corrected, inputs.base, device),
              "recent": score_pool(model, inputs.recent, inputs.base, device,
                                   inputs.recent.base_scores if base else None),
              "validation": np.empty(0), "validation_probs": np.empty((0, len(inputs.base.labels)))}
    if inputs.folders is not None:
        probs = predict_validation(model, inputs.folders, device, inputs.config)
        scores.update(validation=probs[:, inputs.base.positive_index], validation_probs=probs)
    return scores


# ---------------------------------------------------------------- batches

class BatchMaker:
    """Step ``s``'s batch depends only on (seed, s): a resumed run trains on the very same batches."""

    def __init__(self, inputs: Inputs, settings: RefreshSettings, recent_hits: np.ndarray):
        """``recent_hits``: which recent images the base model acts on. Half the recent views come from
        them: in a group's stream they are a tenth or less, and the corrections (mostly "other") would
        otherwise pull the whole model away from nailong — recall is what replay must protect most."""
        self.inputs, self.settings = inputs, settings
        self.recent_groups = [group for group in (np.nonzero(recent_hits)[0], np.nonzero(~recent_hits)[0]) if len(group)]
        base = inputs.base
        # Pasting nailong into a corrected "other" image would contradict the admin; mixing blurs their word.
        self.augment = dataclasses.replace(base.config.augment, paste_nailong=0.0, mix=0.0)
        self.size = base.spec.size
        self.mean = torch.tensor(base.spec.mean).view(3, 1, 1)
        self.std = torch.tensor(base.spec.std).view(3, 1, 1)
        folders = inputs.folders
        if folders is not None:
            labelled = folders.train_targets != UNLABELED
            weights = np.where(labelled, folders.train_weights, 0.0)
            self.folder_probabilities = weights / weights.sum()
        replay = settings.replay_per_batch
        if len(inputs.recent) and folders is not None:
            self.recent_count, self.folder_count = replay - replay // 2, replay // 2
        elif len(inputs.recent):
            self.recent_count, self.folder_count = replay, 0
        else:
            self.recent_count, self.folder_count = 0, replay

    def view(self, pixels: np.ndarray, positive: bool, rng: np.random.Generator) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 255.0
        image, _ = augment(image, positive, self.size, self.augment, rng, None)
        return (image - self.mean) / self.std

    def pool_view(self, pool: Pool, rng: np.random.Generator, items: np.ndarray | None = None) -> tuple[torch.Tensor, int]:
        item = int(rng.integers(len(pool))) if items is None else int(items[rng.integers(len(items))])
        frames = pool.images[item].train_frames
        target = int(pool.targets[item])
        return self.view(frames[int(rng.integers(len(frames)))], target == self.inputs.base.positive_index, rng), target

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(views, hard targets, corrections in it, recent images in it): corrections first, then the
        recent images (targets UNLABELED: the base model labels them), then the folders' images."""
        rng = np.random.default_rng([self.settings.seed, step])
        views, targets = [], []
        for item in correction_items(len(self.inputs.corrected), self.settings.corrections_per_batch, step,
                                     self.settings.seed):
            view, target = self.pool_view(self.inputs.corrected, rng, np.array([item]))
            views.append(view)
            targets.append(target)
        for slot in range(self.recent_count):
            view, _ = self.pool_view(self.inputs.recent, rng, self.recent_groups[slot % len(self.recent_groups)])
            views.append(view)
            targets.append(UNLABELED)
        folders = self.inputs.folders
        for _ in range(self.folder_count):
            row = int(rng.choice(len(folders.train_targets), p=self.folder_probabilities))
            target = int(folders.train_targets[row])
            views.append(self.view(folders.train_pixels[row], target == folders.positive_index, rng))
            targets.append(target)
        return torch.stack(views), torch.tensor(targets), self.settings.corrections_per_batch, self.recent_count


def correction_items(count: int, per_batch: int, step: int, seed: int) -> list[int]:
    """Which of ``count`` corrections step ``step``'s ``per_batch`` views show: all of them in turn, in an
    order shuffled once per run, so that each label gets the same share of views step after step (drawn at
    random, one of five would often go unseen for several of the few steps a busy box allows)."""
    order = np.random.default_rng([seed]).permutation(count)
    return [int(order[(step * per_batch + slot) % count]) for slot in range(per_batch)]


def refresh_loss(logits: torch.Tensor, targets: torch.Tensor, base_probs: torch.Tensor | None) -> torch.Tensor:
    """Mean over the batch of: cross-entropy on labelled views (corrections, folder images), and
    KL(base ‖ model) on the recent images' views, whose only target is the base model's prediction."""
    labelled = targets != UNLABELED
    total = F.cross_entropy(logits[labelled].float(), targets[labelled], reduction="sum")
    if base_probs is not None and (~labelled).any():
        log_probs = F.log_softmax(logits[~labelled].float(), dim=1)
        total = total + F.kl_div(log_probs, base_probs, reduction="sum")
    return total / len(targets)


# ---------------------------------------------------------------- the plan

def plan_steps(budget_seconds: float, spent_seconds: float, step_seconds: float, reserve_seconds: float,
               max_steps: int) -> int:
    """Steps that fit in what is left of the budget once the gate and the export are paid for. Training
    always gets at least half the budget: on a box so busy that reading and scoring eat the rest, a run
    that overshoots is more use than one that learns nothing."""
    left = max(budget_seconds - spent_seconds - reserve_seconds, MIN_TRAINING_SHARE * budget_seconds)
    return max(1, min(max_steps, math.floor(left / max(step_seconds, 1e-6))))


def optimisation(settings: RefreshSettings, total_steps: int) -> TrainConfig:
    """The refresh's optimiser and schedule in ``train``'s terms: the head at ``head_lr``, the backbone at
    ``backbone_lr``; linear warmup, then cosine decay to a tenth at the last step."""
    return TrainConfig(learning_rate=settings.head_lr, backbone_lr_scale=settings.backbone_lr / settings.head_lr,
                       weight_decay=settings.weight_decay, warmup_iters=settings.warmup_steps,
                       lr_decay_iters=total_steps, min_lr=settings.head_lr * FINAL_LR_SHARE)


def next_version(base_version: str) -> str:
    """``2026.11.26.3`` → ``2026.11.26.3+r1``; ``2026.11.26.3+r1`` → ``2026.11.26.3+r2``."""
    match = re.fullmatch(r"(.*)\+r(\d+)", base_version)
    return f"{match[1]}+r{int(match[2]) + 1}" if match else f"{base_version}+r1"


# ---------------------------------------------------------------- the run

def refresh(base_dir: str | Path, feedback_dir: str | Path, out_dir: str | Path, recent_dir: str | Path | None = None,
            config_path: str | None = None, settings: RefreshSettings | None = None) -> GateReport:
    """Run (or resume) a refresh; returns the gate's report, also written to ``out_dir``."""
    started = time.perf_counter()
    settings = settings or RefreshSettings()
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise RefreshInputError("没有可用的 CUDA / CUDA is not available: use --device auto or cpu")
    device = pick_device(settings.device, 0)
    inputs = read_inputs(base_dir, Path(feedback_dir), None if recent_dir is None else Path(recent_dir), config_path)
    inputs.fingerprint = fingerprint(inputs, base_dir, settings)
    log.info("更新模型 / refresh %s: %d corrections, %d recent images, %s; device %s", inputs.base_version,
             len(inputs.corrections), len(inputs.recent),
             f"folders {inputs.config.data}" if inputs.config else "no training folders", device)

    progress_path = out_dir / STATE_DIR / PROGRESS_FILE
    progress = load_progress(progress_path, inputs.fingerprint)
    base_model = inputs.base.build_model().to(device)
    for parameter in base_model.parameters():
        parameter.requires_grad_(False)
    model = inputs.base.build_model().to(device)
    if progress.weights is not None:
        model.load_state_dict(progress.weights)
        log.info("从第 %d 步继续 / resuming at step %d of %d", progress.step, progress.step, progress.planned_steps)
    optimizer = build_optimizer(model, optimisation(settings, settings.max_steps))
    if progress.optimizer is not None:
        optimizer.load_state_dict(progress.optimizer)

    spent_before = progress.seconds
    last_save = time.perf_counter()

    def save() -> None:
        progress.weights, progress.optimizer = model.state_dict(), optimizer.state_dict()
        progress.seconds = spent_before + time.perf_counter() - started
        save_progress(progress_path, progress)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM (the bot stopping its subprocess) saves progress like Ctrl-C; only the main thread may set handlers.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, stop) if in_main_thread else None
    try:
        if not progress.before:
            scoring_started = time.perf_counter()
            progress.before = score_all(base_model, inputs, device, base=True)
            progress.before["seconds"] = time.perf_counter() - scoring_started
            recorded = inputs.recent.base_scores
            progress.before["frames"] = frames(inputs) - (0 if recorded is None else sum(
                len(image.eval_frames) for image, score in zip(inputs.recent.images, recorded) if not np.isnan(score)))
            log.info("当前模型的判断用时 %.0f 秒 / scored the base model in %.0f s", progress.before["seconds"],
                     progress.before["seconds"])
            save()  # a resumed run need not score the base model again
        before = progress.before
        make_batch = BatchMaker(inputs, settings, before["recent"] >= inputs.threshold)
        set_train_mode_frozen_bn(model)
        while progress.planned_steps == 0 or progress.step < progress.planned_steps:
            step_started = time.perf_counter()
            train_step(model, base_model, optimizer, make_batch, progress, settings, device)
            if progress.planned_steps == 0 and progress.step >= 2:
                # The first step pays for warming up; the second is what a step costs.
                progress.step_seconds = time.perf_counter() - step_started
                reserve = scoring_reserve(inputs, before) + export_reserve(settings.budget_seconds)
                spent = spent_before + time.perf_counter() - started
                progress.planned_steps = max(progress.step, plan_steps(
                    settings.budget_seconds, spent, progress.step_seconds, reserve, settings.max_steps))
                log.info("一步 %.2f 秒，计划 %d 步 / %.2f s a step: %d steps planned", progress.step_seconds,
                         progress.planned_steps, progress.step_seconds, progress.planned_steps)
            if time.perf_counter() - last_save > settings.save_every_seconds:
                save()
                last_save = time.perf_counter()
            if progress.step % 10 == 0:
                log.info("step %d/%d", progress.step, progress.planned_steps)
    except KeyboardInterrupt:
        save()
        raise RefreshInterrupted(f"已中断，进度保存在 {progress_path}，再次运行同一命令即可继续 / interrupted at step "
                                 f"{progress.step}; progress saved in {progress_path}: run the same command to resume")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)

    after = score_all(model, inputs, device)
    report = gate(inputs, before, after, settings, out_dir)
    report.steps = progress.step
    report.details["settings"] = dataclasses.asdict(settings)
    report.details["step_seconds"] = progress.step_seconds
    report.details["replay"] = {"recent": len(inputs.recent), "recent_per_batch": make_batch.recent_count,
                                "folders": inputs.config.data if inputs.config else [],
                                "folder_images_per_batch": make_batch.folder_count}
    write_candidate(model.cpu().eval(), inputs, report, out_dir, after, spent_before + time.perf_counter() - started)
    progress_path.unlink(missing_ok=True)
    return report


def set_train_mode_frozen_bn(model: torch.nn.Module) -> None:
    """Train mode with BatchNorm on its running statistics: a batch of 24 memes is no estimate of them."""
    set_train_mode(model, TrainConfig(freeze_batchnorm=True))


def train_step(model, base_model, optimizer, make_batch: BatchMaker, progress: Progress, settings: RefreshSettings,
               device: torch.device) -> None:
    total = progress.planned_steps or settings.max_steps
    set_learning_rate(optimizer, get_lr(progress.step, optimisation(settings, total)))
    views, targets, corrections, recent = make_batch(progress.step)
    views, targets = views.to(device), targets.to(device)
    base_probs = None
    if recent:
        with torch.no_grad():
            base_probs = base_model(views[corrections : corrections + recent]).float().softmax(1)
    loss = refresh_loss(model(views), targets, base_probs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
    optimizer.step()
    progress.step += 1


def frames(inputs: Inputs) -> int:
    """Frames the gate scores with the candidate: every corrected, recent and validation image's."""
    pools = sum(len(image.eval_frames) for pool in (inputs.corrected, inputs.recent) for image in pool.images)
    return pools + (len(inputs.folders.val_targets) if inputs.folders is not None else 0)


def scoring_reserve(inputs: Inputs, before: dict) -> float:
    """Time to score the candidate, at the base model's pace: it scored fewer frames where the bot had
    recorded its scores, the candidate scores them all."""
    return before["seconds"] / max(1, before["frames"]) * frames(inputs)


def export_reserve(budget_seconds: float) -> float:
    """Time kept for the export (the ONNX conversion and its parity check) out of the budget."""
    return min(60.0, 0.1 * budget_seconds)


def load_progress(path: Path, fingerprint_: str) -> Progress:
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved.get("fingerprint") == fingerprint_:
            return Progress(**saved)
        log.info("输入已变化，重新开始 / inputs changed since %s was saved: starting over", path)
    return Progress(fingerprint=fingerprint_)


def save_progress(path: Path, progress: Progress) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    torch.save(dataclasses.asdict(progress), partial)
    partial.replace(path)


# ---------------------------------------------------------------- gate and export

def gate(inputs: Inputs, before: dict, after: dict, settings: RefreshSettings, out_dir: Path) -> GateReport:
    threshold, base = inputs.threshold, inputs.base
    checks = GateChecks(
        corrections=check_corrections([c.label for c in inputs.corrections], after["corrected"], threshold,
                                      base.positive_label, [c.id for c in inputs.corrections]),
        agreement=check_agreement(before["recent"] if len(inputs.recent) else before["validation"],
                                  after["recent"] if len(inputs.recent) else after["validation"],
                                  threshold, settings.agreement_target),
        validation=None,
    )
    details: dict = {"threshold": threshold, "agreement_on": "recent" if len(inputs.recent) else "validation"}
    if inputs.folders is not None:
        is_positive = inputs.folders.val_file_targets() == inputs.folders.positive_index
        checks.validation = check_validation(is_positive, before["validation"], after["validation"], threshold,
                                                settings.validation_tolerance)
        details["subsets"] = subset_recalls(inputs, is_positive, before["validation"], after["validation"])
    reasons = reasons_for(checks)
    report = GateReport(passed=not reasons, version=next_version(inputs.base_version), base_version=inputs.base_version,
                        corrections=len(inputs.corrections), reasons=reasons, checks=checks, changed=[], details=details)
    report.changed = save_changed(inputs, before, after, out_dir)
    return report


def subset_recalls(inputs: Inputs, is_positive: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict:
    """Nailong recall of the config's report subsets (e.g. AI-rendered nailong), before and after."""
    records = {r.source: r for r in load_records(inputs.config)}
    subsets = {}
    for name, patterns in inputs.config.report_subsets.items():
        members = np.array([in_subset(records[s], patterns) for s in inputs.folders.val_sources], dtype=bool)
        positive = members & is_positive
        if positive.any():
            subsets[name] = {"nailong": int(positive.sum()),
                             "recall_before": float((before[positive] >= inputs.threshold).mean()),
                             "recall_after": float((after[positive] >= inputs.threshold).mean())}
    return subsets


def save_changed(inputs: Inputs, before: dict, after: dict, out_dir: Path) -> list[ChangedImage]:
    """Copy the images whose decision changed into ``out/changed/`` (corrections first) and list them."""
    folder = out_dir / CHANGED_DIR
    shutil.rmtree(folder, ignore_errors=True)
    sources = [("correction", inputs.corrected.names), ("recent", inputs.recent.names),
               ("validation", inputs.folders.val_sources if inputs.folders is not None else [])]
    changed = []
    for (kind, names), key in zip(sources, ("corrected", "recent", "validation")):
        flipped = (before[key] >= inputs.threshold) != (after[key] >= inputs.threshold)
        for k in np.nonzero(flipped)[0]:
            if len(changed) >= MAX_CHANGED_SAVED:
                break
            source = Path(names[k])
            # The recent store names its files by hash alone: give the copy an extension a viewer knows.
            suffix = "" if source.suffix else f".{image_format(source)}"
            name = f"{kind}-{len(changed):03d}-{source.name}{suffix}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, folder / name)
            changed.append(ChangedImage(file=f"{CHANGED_DIR}/{name}", before=float(before[key][k]),
                                        after=float(after[key][k]), source=kind))
    return changed


def image_format(path: Path) -> str:
    try:
        with Image.open(path) as image:
            return (image.format or "bin").lower()
    except OSError:
        return "bin"


def write_candidate(model: torch.nn.Module, inputs: Inputs, report: GateReport, out_dir: Path, after: dict,
                    seconds: float) -> None:
    """``nailong.onnx`` (+ lineage), its ``.sha256``, ``nailong.pt`` for the next refresh, ``gate.json``/``gate.md``."""
    base = inputs.base
    lineage = {
        "base_version": inputs.base_lineage.get("base_version", inputs.base_version),
        "parent_version": inputs.base_version,
        "refresh": inputs.base_lineage.get("refresh", 0) + 1,
        "corrections": len(inputs.corrections),
        "gate": summary(report),
        "steps": report.steps,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    checkpoint = dataclasses.replace(base, weights=model.state_dict(), lineage=lineage, validation=None, resume={},
                                     extra={})
    # Validation numbers only where this model was validated (the base model's are not its own).
    metrics = {}
    if inputs.folders is not None:
        # At the threshold it keeps (the base model's).
        base_metrics = json.loads(inputs.base_metadata.get("metrics", "{}"))
        metrics = headline_metrics(after["validation_probs"], inputs.folders.val_file_targets(), base.labels,
                                   base.positive_index, inputs.threshold,
                                   base_metrics.get("precision_target", base.config.precision_target))
    metadata = build_metadata(checkpoint, inputs.threshold, metrics, report.version)
    if "review_floor" in inputs.base_metadata:  # the review band stays the base model's, as its threshold does
        metadata["review_floor"] = inputs.base_metadata["review_floor"]
    export_onnx(model, checkpoint, out_dir / MODEL_FILE, metadata)
    report.seconds = seconds
    write_report(report, out_dir)
    log.info("%s：%s / gate %s — corrections %d/%d, agreement %.2f%%; %s", report.version,
             "通过" if report.passed else "未通过", "passed" if report.passed else "failed",
             report.checks.corrections.agreed, report.checks.corrections.total,
             100 * report.checks.agreement.rate, out_dir)
