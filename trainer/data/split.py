"""Split: near-duplicate groups and families stay on one side of the validation split."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ..config import TrainConfig
from .sources import ImageRecord


def near_duplicate_groups(hashes: list[int], families: list[str], max_distance: int) -> list[int]:
    """Group ids: images join a group when their pHashes differ by ≤ max_distance bits or they
    share a non-empty family key (union-find over both relations)."""
    parent = list(range(len(hashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    by_family: dict[str, int] = {}
    for i, family in enumerate(families):
        if family:
            union(i, by_family.setdefault(family, i))
    packed = np.array(hashes, dtype=np.uint64)
    for i in range(len(packed) - 1):
        distance = np.bitwise_count(packed[i + 1 :] ^ packed[i])
        for j in np.nonzero(distance <= max_distance)[0]:
            union(i, i + 1 + int(j))
    return [find(i) for i in range(len(hashes))]


def grouped_split(
    labels: list[str], groups: list[int], val_fraction: float, seed: int, forced_val: set[int] = frozenset(),
    forced_train: set[int] = frozenset(),
) -> np.ndarray:
    """Boolean mask of validation images. Whole groups go to one side; per label, groups are
    taken in a seeded random order until that label's validation share is reached (a group that
    would overshoot it by more than a quarter is skipped, so one huge family cannot swallow it).
    Groups of ``forced_train`` images stay in training, even when they also hold a ``forced_val`` one."""
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    is_val = np.zeros(len(labels), dtype=bool)
    pinned = {groups[i] for i in forced_train}
    for group in {groups[i] for i in forced_val} - pinned:
        is_val[members[group]] = True
    rng = np.random.default_rng(seed)
    group_label = {g: Counter(labels[i] for i in idx).most_common(1)[0][0] for g, idx in members.items()}
    for label, total in sorted(Counter(labels).items()):
        target = val_fraction * total
        taken = sum(1 for i in range(len(labels)) if is_val[i] and labels[i] == label)
        candidates = sorted(g for g, lab in group_label.items()
                            if lab == label and not is_val[members[g][0]] and g not in pinned)
        for group in rng.permutation(candidates):
            if taken >= target:
                break
            size = len(members[group])
            if taken + size > target * 1.25 + 1:
                continue
            is_val[members[group]] = True
            taken += size
    return is_val


def earlier_sides(records: list[ImageRecord], hashes: np.ndarray, label_names: list[str],
                  cfg: TrainConfig) -> tuple[set[int], set[int]]:
    """(validation, training) indices of the images of ``keep_split_of``'s data entries, on the sides a
    run on those entries alone gave them (same grouping, seed and fraction): a fine-tune from that run
    never validates on an image it was trained on. Those entries' images come first in ``records``."""
    earlier = [i for i, r in enumerate(records) if r.origin in cfg.keep_split_of]
    if earlier != list(range(len(earlier))):
        raise ValueError("keep_split_of must name the first entries of data / keep_split_of 须是 data 的前几项")
    groups = near_duplicate_groups([int(hashes[i]) for i in earlier], [records[i].family for i in earlier],
                                   cfg.group_distance)
    is_val = grouped_split([label_names[i] for i in earlier], groups, cfg.val_fraction, cfg.split_seed,
                           {i for i in earlier if any(n in records[i].family for n in cfg.holdout_families)})
    return set(np.nonzero(is_val)[0].tolist()), set(np.nonzero(~is_val)[0].tolist())


def family_folds(labels: list[str], groups: list[int], k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each image for leave-family-out runs: whole groups (families joined with their
    near-duplicates, :func:`near_duplicate_groups`) go to one fold, so no family is on both sides of any
    fold's split. Per label (a group's most common one), larger groups are placed first, each in the fold
    holding the fewest images of that label so far; ties in size are broken in a seeded random order."""
    if k < 2:
        raise ValueError(f"family folds need k ≥ 2: {k}")
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    group_label = {g: Counter(labels[i] for i in idx).most_common(1)[0][0] for g, idx in members.items()}
    rng = np.random.default_rng(seed)
    order = sorted(rng.permutation(sorted(members)).tolist(), key=lambda g: -len(members[g]))
    folds = np.zeros(len(groups), dtype=np.int64)
    sizes: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(k, dtype=np.int64))
    for group in order:
        per_fold = sizes[group_label[group]]
        fold = int(np.argmin(per_fold))
        folds[members[group]] = fold
        per_fold[fold] += len(members[group])
    return folds
