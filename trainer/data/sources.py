"""Sources: find labelled images — data folders with their MANIFEST, package-provided sets, Hugging Face
rows — as records that know their label, family, provenance and tag."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import TrainConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".avif"}


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


class DataMissing(FileNotFoundError):
    """A data folder the config names is not on this machine: the CLI says so in one message, no traceback."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            f"找不到数据目录 / data folder not found: {root}\n"
            "  配置的 data: 列出了它。共享数据集应在项目旁边的 ../shared/datasets/；datasets/ 下只有清单的数据，"
            "先用 python -m trainer mine --rebuild datasets/<名字>/MANIFEST.csv --out <目录> 重建。\n"
            "  The config's data: lists it. Shared datasets live beside the checkout in ../shared/datasets/; "
            "folders kept as manifests under datasets/ are rebuilt first with trainer mine --rebuild."
        )
        self.root = root


def scan_imagefolder(root: str | Path, repo_families: list[str] = (),
                     search_query_families: list[str] = ()) -> list[ImageRecord]:
    """Images under ``root/<label>/``; a ``MANIFEST.csv`` (file, source_repo, source_path) adds family
    keys and provenance. The family is the manifest's ``family`` column where it has one (a sticker
    series labelled by hand); else every image of a repository in ``repo_families`` is one family, so is
    every image of one search query under a label in ``search_query_families``, and otherwise it is read
    from the source path (:func:`family_from_source_path`)."""
    root = Path(root)
    if not root.is_dir():
        raise DataMissing(root)
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
                families[row["file"]] = (f"family:{row['family']}" if row.get("family")
                                         else f"repo:{repo}" if whole_repo
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
        raise DataMissing(root)
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
    return cap_families(records, cfg.family_cap) if cfg.family_cap else records


def cap_families(records: list[ImageRecord], cap: int) -> list[ImageRecord]:
    """At most ``cap`` images of each family a MANIFEST names (``family:…``) from each data folder; the kept ones
    are those whose file names hash lowest, so the choice is stable across runs and independent of order. Per
    folder, because a later mining round's folder holds the family's hardest images, picked to come on top of
    the first round's sample."""
    by_family: dict[tuple[str, str], list[ImageRecord]] = {}
    for record in records:
        if record.family.startswith("family:"):
            by_family.setdefault((record.origin, record.family), []).append(record)
    dropped = {id(r) for members in by_family.values() if len(members) > cap
               for r in sorted(members, key=lambda r: hashlib.sha1(Path(r.source).name.encode()).digest())[cap:]}
    return [r for r in records if id(r) not in dropped]


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

