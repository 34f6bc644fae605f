"""Dataset: the prepared run (labels, the split, decoded pixels of both sides), the sampling weights,
and the augmented training batches and plugin-identical validation batches served from it."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from nailong_vision.frame_rule import flat_frames
from nailong_vision.preprocess import PreprocessSpec, normalize

from ..augment import augment
from ..config import TrainConfig
from ..model import preprocess_spec
from .cache import decode_all
from .sources import ImageRecord, excluded, load_records, resolve_labels, scan_unlabeled
from .split import earlier_sides, family_folds, grouped_split, near_duplicate_groups

log = logging.getLogger(__name__)

UNLABELED = -1  # the training target of an image only the teacher labels


def sampling_weights(
    frame_owner: np.ndarray, targets: np.ndarray, groups: list[int], group_balance: float,
    file_factor: np.ndarray | None = None,
) -> np.ndarray:
    """Sampling weight of each training frame: every class gets the same share; within a class a
    file weighs (size of its near-duplicate group) ** -group_balance, times its ``file_factor``
    (hard negatives drawn more often); a file's weight is split evenly among its frames.
    ``frame_owner`` maps each frame to its file."""
    files = sorted(set(frame_owner.tolist()))
    group_size = Counter(groups[f] for f in files)
    factor = np.ones(len(groups)) if file_factor is None else file_factor
    file_weight = {f: group_size[groups[f]] ** -group_balance * factor[f] for f in files}
    class_total: Counter[int] = Counter()
    for f, weight in file_weight.items():
        class_total[int(targets[f])] += weight
    frames_per_file = Counter(frame_owner.tolist())
    return np.array(
        [file_weight[f] / (class_total[int(targets[f])] * frames_per_file[f]) for f in frame_owner.tolist()],
        dtype=np.float64,
    )


def file_factors(records: list[ImageRecord], cfg: TrainConfig) -> np.ndarray:
    """Per-file sampling factor: ``tag_weights`` by MANIFEST tag times ``source_weights`` by source
    (a substring of the MANIFEST source or the data entry); 1 where none applies."""
    factors = np.ones(len(records))
    for i, record in enumerate(records):
        factors[i] *= cfg.tag_weights.get(record.tag, 1.0)
        for pattern, weight in cfg.source_weights.items():
            if pattern in record.provenance or pattern in record.origin:
                factors[i] *= weight
    return factors


@dataclass
class PreparedData:
    labels: list[str]
    spec: PreprocessSpec
    train_pixels: np.ndarray  # uint8 [N, C, C, 3]
    train_targets: np.ndarray  # int64 [N]
    train_weights: np.ndarray  # float64 [N], balances classes and counts each file once
    val_pixels: np.ndarray  # uint8 [M, S, S, 3]
    val_targets: np.ndarray  # int64 [M]
    val_file: np.ndarray  # int64 [M], which validation file each frame came from
    val_sources: list[str]
    summary: dict

    @property
    def positive_index(self) -> int:
        return self.labels.index("nailong") if "nailong" in self.labels else 0

    def val_flat(self, batch_size: int = 256) -> np.ndarray:
        """Which validation frames are blank, judged on the plugin's model input (``frame_rule.flat_frames``)."""
        return np.concatenate([flat_frames(batch.numpy()) for batch in val_batches(self, batch_size)])

    def val_file_targets(self) -> np.ndarray:
        targets = np.zeros(len(self.val_sources), dtype=np.int64)
        targets[self.val_file] = self.val_targets
        return targets


def prepare_data(cfg: TrainConfig) -> PreparedData:
    """Everything a run needs: labels, the grouped split and decoded pixels for both sides."""
    records = load_records(cfg)
    labels = resolve_labels(cfg, records)
    spec = preprocess_spec(cfg)
    arrays = decode_all(records, cfg, spec)
    records = [records[i] for i in arrays["ok"]]
    label_names = [r.label for r in records]
    groups = near_duplicate_groups([int(h) for h in arrays["hash"]], [r.family for r in records], cfg.group_distance)
    if cfg.family_folds:
        # Leave-family-out: one fold of whole families is the validation, the others train.
        is_val = family_folds(label_names, groups, cfg.family_folds, cfg.split_seed) == cfg.family_fold
    else:
        forced = {i for i, r in enumerate(records) if any(name in r.family for name in cfg.holdout_families)}
        forced_train: set[int] = set()
        if cfg.keep_split_of:
            earlier_val, forced_train = earlier_sides(records, arrays["hash"], label_names, cfg)
            forced |= earlier_val
        is_val = grouped_split(label_names, groups, cfg.val_fraction, cfg.split_seed, forced, forced_train)
    # Left out after the split, so an exclude list never moves other images between the sides.
    dropped = excluded(records, cfg)
    if dropped.any():
        log.info("left out %d excluded images", int(dropped.sum()))
    is_train, is_val = ~is_val & ~dropped, is_val & ~dropped
    targets = np.array([labels.index(name) for name in label_names], dtype=np.int64)

    train_rows = np.nonzero(is_train[arrays["train_owner"]])[0]
    train_owner = arrays["train_owner"][train_rows]
    val_rows = np.nonzero(is_val[arrays["eval_owner"]])[0]
    val_owner = arrays["eval_owner"][val_rows]
    val_files = np.nonzero(is_val)[0]
    file_position = {int(f): k for k, f in enumerate(val_files)}

    weights = sampling_weights(train_owner, targets, groups, cfg.group_balance, file_factors(records, cfg))
    group_sizes = Counter(groups)
    kept = [r for r, d in zip(records, dropped) if not d]
    summary = {
        "images": len(kept),
        "excluded": int(dropped.sum()),
        "labels": labels,
        "per_label": dict(Counter(r.label for r in kept)),
        "groups": len(group_sizes),
        "largest_groups": sorted(group_sizes.values(), reverse=True)[:5],
        "train_images": dict(Counter(n for n, t in zip(label_names, is_train) if t)),
        "val_images": dict(Counter(n for n, v in zip(label_names, is_val) if v)),
        "train_frames": int(len(train_rows)),
        "val_frames": int(len(val_rows)),
        "sources": {origin: dict(Counter(r.label for r in kept if r.origin == origin))
                    for origin in dict.fromkeys(r.origin for r in kept)},
        "split": (f"family fold {cfg.family_fold} of {cfg.family_folds} (pHash ≤ {cfg.group_distance} bits + family), "
                  f"seed {cfg.split_seed}" if cfg.family_folds else
                  f"grouped by pHash ≤ {cfg.group_distance} bits + family, seed {cfg.split_seed}, val {cfg.val_fraction}"),
    }
    train_pixels, train_targets = arrays["train_pixels"][train_rows], targets[train_owner]
    if cfg.unlabeled:
        # Added after the split and only to training: they never move a labelled image or enter validation.
        unlabeled = decode_all([r for root in cfg.unlabeled for r in scan_unlabeled(root)], cfg, spec)
        owners = unlabeled["train_owner"].tolist()
        frames_per_file = Counter(owners)
        train_pixels = np.concatenate([train_pixels, unlabeled["train_pixels"]])
        train_targets = np.concatenate([train_targets, np.full(len(owners), UNLABELED, dtype=np.int64)])
        weights = np.concatenate([weights, [cfg.unlabeled_weight / (len(frames_per_file) * frames_per_file[o])
                                            for o in owners]])
        summary["unlabeled_images"] = len(frames_per_file)
    return PreparedData(
        labels=labels,
        spec=spec,
        train_pixels=train_pixels,
        train_targets=train_targets,
        train_weights=weights,
        val_pixels=arrays["eval_pixels"][val_rows],
        val_targets=targets[val_owner],
        val_file=np.array([file_position[int(o)] for o in val_owner], dtype=np.int64),
        val_sources=[records[i].source for i in val_files],
        summary=summary,
    )


# ---------------------------------------------------------------- serving batches

class SampleStream(torch.utils.data.Sampler):
    """An endless, seeded stream of (frame index, augmentation seed) starting at any position.

    Each epoch draws ``len(weights)`` frames with the given weights (with replacement), from a
    generator seeded by (seed, epoch). A resumed run starts at the sample it stopped at and sees
    exactly the batches it would have seen. Under DDP each rank takes every world-th sample.
    """

    def __init__(self, weights: np.ndarray, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.probabilities = weights / weights.sum()
        self.seed, self.start, self.rank, self.world = seed, start, rank, world

    def __iter__(self):
        epoch_size = len(self.probabilities)
        position = self.start * self.world + self.rank
        while True:
            epoch, offset = divmod(position, epoch_size)
            order = np.random.default_rng([self.seed, epoch]).choice(
                epoch_size, size=epoch_size, p=self.probabilities
            )
            for index in range(offset, epoch_size, self.world):
                yield int(order[index]), (self.seed, epoch, index)
            position = (epoch + 1) * epoch_size + self.rank


class TrainSet(torch.utils.data.Dataset):
    """Augmented, normalised training views of the cached frames."""

    def __init__(self, data: PreparedData, cfg: TrainConfig):
        self.pixels, self.targets = data.train_pixels, data.train_targets
        self.positive = data.positive_index
        self.positive_rows = np.nonzero(self.targets == self.positive)[0]
        self.size, self.augment = data.spec.size, cfg.augment
        self.mean = torch.tensor(data.spec.mean).view(3, 1, 1)
        self.std = torch.tensor(data.spec.std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.targets)

    def _image(self, row: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.pixels[row])).permute(2, 0, 1).float() / 255.0

    def _random_positive(self, rng: np.random.Generator) -> torch.Tensor:
        return self._image(int(rng.choice(self.positive_rows)))

    def __getitem__(self, item):
        row, seed = item
        rng = np.random.default_rng(seed)
        target = int(self.targets[row])
        labelled = target != UNLABELED  # a paste must not give an unlabelled image a label
        paste_source = self._random_positive if len(self.positive_rows) and labelled else None
        image, positive = augment(
            self._image(row), target == self.positive, self.size, self.augment, rng, paste_source
        )
        if positive and labelled:
            target = self.positive
        return (image - self.mean) / self.std, target


def val_batches(data: PreparedData, batch_size: int):
    """Validation frames normalised by the plugin's own preprocessing, in batches."""
    for start in range(0, len(data.val_targets), batch_size):
        pixels = data.val_pixels[start : start + batch_size]
        yield torch.from_numpy(normalize(pixels, data.spec))
