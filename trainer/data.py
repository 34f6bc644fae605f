"""Data: find labelled images, split them by near-duplicate group, decode once into a cache,
and serve augmented training batches and plugin-identical validation images.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
import shutil
import subprocess
import tarfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nailong_vision.decode import ImageDecodeError, decode_frames, sample_frame_indices
from nailong_vision.phash import phash
from nailong_vision.preprocess import PreprocessSpec, normalize, resize_rgb

from .augment import augment
from .config import TrainConfig
from .model import preprocess_spec

log = logging.getLogger(__name__)

UNLABELED = -1  # the training target of an image only the teacher labels
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".avif"}
# Training crops come from a slightly larger cached copy so the crop still has detail.
CACHE_SCALE = 1.15


@dataclass
class ImageRecord:
    """One labelled image: where its bytes are, its label and the family it belongs to."""

    source: str  # file path, or "<dataset>#<row>" for Hugging Face rows
    label: str
    family: str = ""  # images of one family (clip, sticker series) stay on one side of the split
    data: bytes | None = field(default=None, repr=False)  # bytes for rows that have no file
    origin: str = ""  # the data folder or dataset it came from, for the data summary
    provenance: str = ""  # MANIFEST "source_repo source_path", for report subsets by source
    tag: str = ""  # MANIFEST "tag" (hard, sticker, emoji …): sampling weights and report slices

    @property
    def source_repo(self) -> str:
        """The first repository or package the MANIFEST names for this image ("" without one)."""
        return self.provenance.split(" ", 1)[0].split(";")[0]

    def read(self) -> bytes:
        return self.data if self.data is not None else Path(self.source).read_bytes()


# ---------------------------------------------------------------- sources

_FRAME_SUFFIX = re.compile(r"(_frame)?_\d+$")
# Image-search downloads are named <engine><query id>-<n>: one query is one character or sticker set.
_SEARCH_QUERY = re.compile(r"(baidu|google|sohu)(\d+)-\d+")


def family_from_source_path(source_path: str, by_search_query: bool = False) -> str:
    """A family key from a MANIFEST ``source_path``: a sticker collection's folder (…BQB) is one
    family, so is, with ``by_search_query``, one image-search query (``baidu540324-23`` →
    ``search:baidu540324``); otherwise the file stem without its frame number (``clip_frame_12`` → ``clip``)."""
    first = source_path.split(";")[0]
    parent, _, name = first.rpartition("/")
    folder = parent.rpartition("/")[2]
    if "BQB" in folder:
        return f"collection:{folder}"
    stem = name.rsplit(".", 1)[0]
    query = _SEARCH_QUERY.fullmatch(stem) if by_search_query else None
    if query:
        return f"search:{query[1]}{query[2]}"
    return f"clip:{_FRAME_SUFFIX.sub('', stem)}"


def scan_imagefolder(root: str | Path, repo_families: list[str] = (),
                     search_query_families: list[str] = ()) -> list[ImageRecord]:
    """Images under ``root/<label>/``; a ``MANIFEST.csv`` (file, source_repo, source_path) adds family
    keys — every image of a repository in ``repo_families`` is one family, so is every image of one
    search query under a label in ``search_query_families`` — and provenance."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found / 找不到数据目录: {root}")
    families: dict[str, str] = {}
    provenance: dict[str, str] = {}
    tags: dict[str, str] = {}
    manifest = root / "MANIFEST.csv"
    if manifest.exists():
        with manifest.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                repo = row.get("source_repo", "").split(";")[0]
                whole_repo = repo in repo_families
                by_query = row.get("label", row["file"].split("/")[0]) in search_query_families
                families[row["file"]] = (f"repo:{repo}" if whole_repo
                                         else family_from_source_path(row.get("source_path", ""), by_query))
                provenance[row["file"]] = f"{row.get('source_repo', '')} {row.get('source_path', '')}"
                tags[row["file"]] = row.get("tag") or ""
    records = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(label_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                relative = path.relative_to(root).as_posix()
                records.append(ImageRecord(str(path), label_dir.name, families.get(relative, ""), origin=str(root),
                                           provenance=provenance.get(relative, ""), tag=tags.get(relative, "")))
    if not records:
        raise ValueError(f"no images found in / 目录里没有图片: {root} (expected {root}/<label>/*.jpg)")
    return records


def scan_unlabeled(root: str | Path) -> list[ImageRecord]:
    """Every image under ``root``, in any folder layout, without a label (distillation inputs)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found / 找不到数据目录: {root}")
    records = [ImageRecord(str(path), "", origin=str(root)) for path in sorted(root.rglob("*"))
               if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]
    if not records:
        raise ValueError(f"no images found in / 目录里没有图片: {root}")
    return records


def load_hf_records(name: str, data_dir: str | None = None, split: str = "train") -> list[ImageRecord]:
    """Rows of a Hugging Face image-classification dataset (``image`` + ``label`` columns), e.g.
    ``refoundd/NailongClassification``; ``name="imagefolder", data_dir=…`` reads a local folder."""
    import datasets

    dataset = datasets.load_dataset(name, data_dir=data_dir, split=split)
    # Keep the raw bytes: images are decoded by our own decoder, like the plugin does.
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    names = dataset.features["label"].names
    records = []
    for row_index, row in enumerate(dataset):
        image = row["image"]
        data = image["bytes"] if image.get("bytes") else Path(image["path"]).read_bytes()
        records.append(ImageRecord(f"{name}#{row_index}", names[row["label"]], data=data, origin=name))
    return records


# ---------------------------------------------------------------- package-provided sources

PACKAGE_PREFIX = "npm:"
PACKAGE_DEFAULT_LABEL = "other"  # an emoji or sticker package holds no nailong unless it says so


def parse_package_source(entry: str) -> tuple[str, str]:
    """``npm:NAME@VERSION[#LABEL]`` → (package spec, label); a local ``npm:…/file.tgz`` stands for a
    package file already at hand. A registry package must pin its version, so a run can be repeated."""
    spec, _, label = entry[len(PACKAGE_PREFIX):].partition("#")
    label = label or PACKAGE_DEFAULT_LABEL
    if spec.endswith(".tgz"):
        return spec, label
    name, at, version = spec.rpartition("@")
    if not at or not name or not version or name.endswith("/"):
        raise ValueError(f"a package source needs an exact version / 数据包需写明版本: {entry!r} "
                         f"(e.g. npm:openmoji@17.0.0)")
    return spec, label


def fetch_package(spec: str, cache_dir: str | Path) -> Path:
    """The package's files, unpacked once under ``cache_dir/packages/``: ``npm pack NAME@VERSION``
    downloads the tarball the registry serves (a local ``.tgz`` is used as it is)."""
    packages = Path(cache_dir) / "packages"
    local = Path(spec) if spec.endswith(".tgz") else None
    if local is not None and not local.is_file():
        raise FileNotFoundError(f"package file not found / 找不到数据包文件: {spec}")
    key = f"{local.stem}-{hashlib.sha256(local.read_bytes()).hexdigest()[:12]}" if local else re.sub(r"[^\w.-]+", "_", spec)
    unpacked = packages / key
    if (unpacked / ".complete").exists():
        return unpacked
    packages.mkdir(parents=True, exist_ok=True)
    if local is None:
        if shutil.which("npm") is None:
            raise RuntimeError(f"npm is needed to fetch {spec} / 需要 npm 才能下载数据包")
        done = subprocess.run(["npm", "pack", spec, "--pack-destination", str(packages), "--json"],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"npm pack {spec} failed / 下载数据包失败: {done.stderr.strip()[-500:]}")
        local = packages / json.loads(done.stdout)[0]["filename"]
    partial = unpacked.with_name(unpacked.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(local) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES]
        archive.extractall(partial, members=members, filter="data")  # "data": no paths outside, no links
    shutil.rmtree(unpacked, ignore_errors=True)
    partial.rename(unpacked)
    (unpacked / ".complete").write_text(spec + "\n", encoding="utf-8")
    return unpacked


def scan_package(entry: str, cache_dir: str | Path) -> list[ImageRecord]:
    """The images of a package source (``npm:NAME@VERSION[#LABEL]``), all under one label; provenance
    is the package and the path inside it, as in a data folder's MANIFEST."""
    spec, label = parse_package_source(entry)
    root = fetch_package(spec, cache_dir)
    records = [ImageRecord(str(path), label, origin=entry, provenance=f"npm:{spec} {path.relative_to(root).as_posix()}")
               for path in sorted(root.rglob("*")) if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    if not records:
        raise ValueError(f"no images in package / 数据包里没有图片: {spec}")
    return records


def scan_source(entry: str, cfg: TrainConfig) -> list[ImageRecord]:
    """One ``data:`` entry: an ImageFolder (also the admins' corrections folder) or a package source."""
    if entry.startswith(PACKAGE_PREFIX):
        return scan_package(entry, cfg.cache_dir)
    return scan_imagefolder(entry, cfg.repo_families, cfg.search_query_families)


def is_wild(record: ImageRecord, cfg: TrainConfig) -> bool:
    """Whether the image comes from a source held out whole for calibration (``wild_sources``)."""
    return record.source_repo in cfg.wild_sources


def load_all_records(cfg: TrainConfig) -> list[ImageRecord]:
    records = []
    for entry in cfg.data:
        records.extend(scan_source(entry, cfg))
    if cfg.hf_dataset:
        records.extend(load_hf_records(cfg.hf_dataset, cfg.hf_data_dir))
    return records


def load_records(cfg: TrainConfig) -> list[ImageRecord]:
    """The images a run trains and validates on: every data source minus the wild sources."""
    return [r for r in load_all_records(cfg) if not is_wild(r, cfg)]


def wild_records(cfg: TrainConfig) -> list[ImageRecord]:
    """The wild set: images of the ``wild_sources``, never trained or validated on, for calibration."""
    records = [r for r in load_all_records(cfg) if is_wild(r, cfg)]
    if cfg.wild_sources and not records:
        raise ValueError(f"no images of the wild sources / 没有找到留出来源的图片: {cfg.wild_sources}")
    return records


def excluded(records: list[ImageRecord], cfg: TrainConfig) -> np.ndarray:
    """Which records the config's ``exclude`` list leaves out (paths ending like an entry)."""
    return np.array([any(r.source.endswith(name) for name in cfg.exclude) for r in records], dtype=bool)


def resolve_labels(cfg: TrainConfig, records: list[ImageRecord]) -> list[str]:
    """The class list: as configured, else the positive label first and the rest sorted."""
    present = sorted({r.label for r in records})
    if cfg.labels:
        missing = set(present) - set(cfg.labels)
        if missing:
            raise ValueError(f"labels {sorted(missing)} are in the data but not in config.labels")
        labels = list(cfg.labels)
    else:
        labels = [cfg.positive_label] + [name for name in present if name != cfg.positive_label]
    if cfg.positive_label not in labels:
        raise ValueError(f"positive label {cfg.positive_label!r} not among labels {labels}")
    return labels


# ---------------------------------------------------------------- decoding

@dataclass
class DecodedImage:
    """An image decoded the way the plugin decodes it: the frames it samples, at model size."""

    eval_frames: np.ndarray  # uint8 [F, S, S, 3], exactly what the plugin feeds the model
    train_frames: np.ndarray  # uint8 [F', C, C, 3], larger copies for random crops
    hash: int


def decode_record(data: bytes, spec: PreprocessSpec, eval_frames: int, train_frames: int) -> DecodedImage:
    frames = decode_frames(data, max_frames=eval_frames, draft_size=spec.size)
    cache_size = math.ceil(spec.size * CACHE_SCALE)
    train_pick = sample_frame_indices(len(frames), train_frames)
    return DecodedImage(
        eval_frames=np.stack([resize_rgb(f, spec.size, spec.resize) for f in frames]),
        train_frames=np.stack([resize_rgb(frames[i], cache_size, spec.resize) for i in train_pick]),
        hash=phash(frames[0]),
    )


def _decode_job(args) -> DecodedImage | str:
    record, spec, eval_frames, train_frames = args
    try:
        return decode_record(record.read(), spec, eval_frames, train_frames)
    except (ImageDecodeError, OSError) as error:
        return f"{record.source}: {error}"


# ---------------------------------------------------------------- the split

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


# ---------------------------------------------------------------- prepared data

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

    def val_file_targets(self) -> np.ndarray:
        targets = np.zeros(len(self.val_sources), dtype=np.int64)
        targets[self.val_file] = self.val_targets
        return targets


def _cache_key(records: list[ImageRecord], cfg: TrainConfig, spec: PreprocessSpec) -> str:
    digest = hashlib.sha256()
    for record in records:
        stat = Path(record.source).stat() if record.data is None else None
        digest.update(f"{record.source}|{record.label}|{stat.st_size if stat else len(record.data)}\n".encode())
    digest.update(json.dumps([spec.as_dict(), cfg.eval_frames, cfg.train_frames, CACHE_SCALE]).encode())
    return digest.hexdigest()[:16]


def decode_all(records: list[ImageRecord], cfg: TrainConfig, spec: PreprocessSpec) -> dict:
    """Decode every record once (in worker processes) into arrays cached on disk."""
    cache = Path(cfg.cache_dir) / f"decoded-{_cache_key(records, cfg, spec)}.npz"
    if cache.exists():
        log.info("using decoded cache %s", cache)
        with np.load(cache) as stored:
            return {key: stored[key] for key in stored.files}
    log.info("decoding %d images into %s (once)", len(records), cache)
    jobs = [(record, spec, cfg.eval_frames, cfg.train_frames) for record in records]
    workers = max(1, cfg.num_workers)
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_decode_job, jobs, chunksize=16))
    ok = [i for i, r in enumerate(results) if isinstance(r, DecodedImage)]
    for failure in (r for r in results if isinstance(r, str)):
        log.warning("skipped undecodable image: %s", failure)
    decoded = [results[i] for i in ok]
    arrays = {
        "ok": np.array(ok, dtype=np.int64),
        "hash": np.array([d.hash for d in decoded], dtype=np.uint64),
        "eval_pixels": np.concatenate([d.eval_frames for d in decoded]),
        "eval_owner": np.concatenate([np.full(len(d.eval_frames), k) for k, d in enumerate(decoded)]),
        "train_pixels": np.concatenate([d.train_frames for d in decoded]),
        "train_owner": np.concatenate([np.full(len(d.train_frames), k) for k, d in enumerate(decoded)]),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".tmp.npz")
    np.savez(partial, **arrays)
    partial.replace(cache)
    return arrays


def prepare_data(cfg: TrainConfig) -> PreparedData:
    """Everything a run needs: labels, the grouped split and decoded pixels for both sides."""
    records = load_records(cfg)
    labels = resolve_labels(cfg, records)
    spec = preprocess_spec(cfg)
    arrays = decode_all(records, cfg, spec)
    records = [records[i] for i in arrays["ok"]]
    label_names = [r.label for r in records]
    groups = near_duplicate_groups([int(h) for h in arrays["hash"]], [r.family for r in records], cfg.group_distance)
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
        "split": f"grouped by pHash ≤ {cfg.group_distance} bits + family, seed {cfg.split_seed}, val {cfg.val_fraction}",
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
