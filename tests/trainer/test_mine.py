"""Hard-negative mining on tiny data: pool scores through the plugin's path, numbered sheets, and the
labelled round trip into an ImageFolder with a manifest (and back from the manifest)."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import tarfile

import numpy as np
import pytest
from PIL import Image

from tests.trainer.conftest import animated_gif, encode, nailong_like, other_like
from trainer.data import scan_imagefolder
from trainer.mine import (
    SHEET_COLUMNS,
    SHEET_ROWS,
    THUMB,
    build_imagefolder,
    default_family,
    mine_command,
    read_labelled,
    rebuild_imagefolder,
)
from trainer.scoring import load_scorer


def make_pool(root, count: int = 7, seed: int = 3):
    rng = np.random.default_rng(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(count):
        make = nailong_like if i % 2 else other_like
        (root / ("sub" if i % 3 == 0 else "") / f"img{i}.png").write_bytes(encode(make(rng)))
    (root / "copy-of-img1.png").write_bytes((root / "img1.png").read_bytes())  # an exact duplicate: scored once
    (root / "notes.txt").write_text("not an image")
    return root


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_labels(path, labels):
    rows = read_csv(path)
    for row in rows:
        row["label"] = labels(row)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_mining_scores_pool_images_like_the_plugin_and_writes_numbered_sheets(trained, tmp_path):
    _, _, model = trained
    pool = make_pool(tmp_path / "pool")
    summary = mine_command(str(model), [f"github:someone/stickers@abc={pool}"], str(tmp_path / "round"), top=5,
                           cache_dir=str(tmp_path / "cache"))

    scores = read_csv(tmp_path / "round" / "scores.csv")
    assert len(scores) == 7 == summary["scored"]  # the duplicate once, the text file not at all
    values = [float(row["score"]) for row in scores]
    assert values == sorted(values, reverse=True)
    scorer = load_scorer(model)
    for row in scores:
        expected = scorer.score_bytes((pool / row["source_path"]).read_bytes())[scorer.positive_index]
        assert float(row["score"]) == pytest.approx(expected, abs=1e-5)
        assert row["source_repo"] == "github:someone/stickers@abc"
        assert row["sha256"] == hashlib.sha256((pool / row["source_path"]).read_bytes()).hexdigest()

    to_label = read_csv(tmp_path / "round" / "to_label.csv")
    assert [row["number"] for row in to_label] == ["1", "2", "3", "4", "5"]
    assert [row["sha256"] for row in to_label] == [row["sha256"] for row in scores[:5]]
    assert all(row["label"] == "" for row in to_label)
    sheets = sorted((tmp_path / "round" / "sheets").glob("sheet-*.png"))
    assert [s.name for s in sheets] == ["sheet-001.png"]
    with Image.open(sheets[0]) as sheet:
        assert sheet.width == SHEET_COLUMNS * THUMB
        assert THUMB < sheet.height < SHEET_ROWS * THUMB  # one row of five thumbnails and its captions


def test_more_candidates_than_a_sheet_holds_go_on_numbered_sheets(trained, tmp_path):
    _, _, model = trained
    pool = make_pool(tmp_path / "pool", count=SHEET_COLUMNS * SHEET_ROWS + 3)
    mine_command(str(model), [str(pool)], str(tmp_path / "round"), top=100, cache_dir=str(tmp_path / "cache"))
    sheets = sorted(p.name for p in (tmp_path / "round" / "sheets").glob("*.png"))
    assert sheets == ["sheet-001.png", "sheet-002.png"]
    assert read_csv(tmp_path / "round" / "to_label.csv")[0]["source_repo"] == "pool"  # the folder's name


def test_labelled_csv_round_trip_into_an_imagefolder_and_back_from_its_manifest(trained, tmp_path):
    _, _, model = trained
    pool = make_pool(tmp_path / "pool")
    package = tmp_path / "stickers-1.0.0.tgz"
    with tarfile.open(package, "w:gz") as archive:
        for path in sorted(pool.rglob("*.png")):
            archive.add(path, arcname=f"package/{path.relative_to(pool).as_posix()}")
    round_dir, folder = tmp_path / "round", tmp_path / "mined"
    mine_command(str(model), [f"npm:{package}"], str(round_dir), top=6, cache_dir=str(tmp_path / "cache"))
    to_label = round_dir / "to_label.csv"

    with pytest.raises(ValueError, match="'1', '2'"):
        build_imagefolder(to_label, folder)  # nothing labelled yet: a clear error, nothing written
    assert not folder.exists()

    write_labels(to_label, lambda row: {"1": "nailong", "2": "skip"}.get(row["number"], "other"))
    assert build_imagefolder(to_label, folder) == {"added": 5, "nailong": 1, "other": 4}
    assert build_imagefolder(to_label, folder)["added"] == 0  # a second import adds nothing

    manifest = read_csv(folder / "MANIFEST.csv")
    assert len(manifest) == 5
    labelled = {row["sha256"]: row["label"] for row in read_labelled(to_label)}
    for row in manifest:
        data = (folder / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["original_sha256"]
        assert row["label"] == labelled[row["original_sha256"]] == row["file"].split("/")[0]
        assert row["source_repo"] == f"npm:{package}"
    records = scan_imagefolder(folder)
    assert sorted(r.label for r in records) == ["nailong", "other", "other", "other", "other"]
    assert all(r.source_repo == f"npm:{package}" for r in records)

    rebuilt = tmp_path / "rebuilt"
    assert rebuild_imagefolder(folder / "MANIFEST.csv", rebuilt, tmp_path / "cache2") == 5
    for row in manifest:
        assert (rebuilt / row["file"]).read_bytes() == (folder / row["file"]).read_bytes()


def test_rebuild_refuses_bytes_that_differ_from_the_manifest(tmp_path):
    image = encode(other_like(np.random.default_rng(0)))
    package = tmp_path / "p.tgz"
    with tarfile.open(package, "w:gz") as archive:
        info = tarfile.TarInfo("package/a.png")
        info.size = len(image)
        archive.addfile(info, io.BytesIO(image))
    manifest = tmp_path / "MANIFEST.csv"
    manifest.write_text("file,label,source_repo,source_path,original_sha256,score\n"
                        f"other/a.png,other,npm:{package},package/a.png,{'0' * 64},0.9\n", encoding="utf-8")
    with pytest.raises(ValueError, match="sha256"):
        rebuild_imagefolder(manifest, tmp_path / "out", tmp_path / "cache")


def make_series_repo(root):
    """A tiny git repository of two sticker series, one of them animated: (repo, commit)."""
    rng = np.random.default_rng(5)
    for series, count in (("packs/bear", 3), ("packs/duck", 2)):
        (root / series).mkdir(parents=True)
        for i in range(count):
            data = (animated_gif([other_like(rng), other_like(rng)]) if series.endswith("bear")
                    else encode(other_like(rng)))
            (root / series / f"{i}.{'gif' if series.endswith('bear') else 'png'}").write_bytes(data)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "series"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return root, commit


def test_families_and_animation_round_trip_from_pool_to_manifest_and_back_from_git(trained, tmp_path):
    _, _, model = trained
    repo, commit = make_series_repo(tmp_path / "stickers")
    source = f"github:someone/stickers@{commit}"
    round_dir, folder = tmp_path / "round", tmp_path / "mined"
    mine_command(str(model), [f"{source}={repo}"], str(round_dir), top=0, cache_dir=str(tmp_path / "cache"))

    to_label = read_csv(round_dir / "to_label.csv")
    assert len(to_label) == 5  # top=0: every image
    assert {(row["family"], row["animated"]) for row in to_label} == {("stickers/packs/bear", "1"),
                                                                      ("stickers/packs/duck", "0")}
    assert sorted(p.name for p in (round_dir / "families").glob("*.png")) == ["families-001.png"]

    # the labeller corrects a family where the folder is not one series
    write_labels(round_dir / "to_label.csv", lambda row: "other")
    rows = read_csv(round_dir / "to_label.csv")
    for row in rows:
        row["family"] = row["family"].replace("packs/duck", "duck-series")
    with open(round_dir / "to_label.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    build_imagefolder(round_dir / "to_label.csv", folder)
    manifest = read_csv(folder / "MANIFEST.csv")
    assert {(row["family"], row["animated"]) for row in manifest} == {("stickers/packs/bear", "1"),
                                                                      ("stickers/duck-series", "0")}

    rebuilt = tmp_path / "rebuilt"
    assert rebuild_imagefolder(folder / "MANIFEST.csv", rebuilt, tmp_path / "cache2",
                               git_dirs={"someone/stickers": str(repo / ".git")}) == 5
    assert read_csv(rebuilt / "MANIFEST.csv") == manifest  # families and animation survive the rebuild
    for row in manifest:
        assert hashlib.sha256((rebuilt / row["file"]).read_bytes()).hexdigest() == row["original_sha256"]
        assert row["source_repo"] == source
        with Image.open(rebuilt / row["file"]) as image:
            assert (getattr(image, "n_frames", 1) > 1) == (row["animated"] == "1")  # GIF bytes kept as they were


def test_a_manifest_from_before_families_rebuilds_with_folder_families_and_animation(tmp_path):
    rng = np.random.default_rng(1)
    frames = animated_gif([other_like(rng), other_like(rng)])
    package = tmp_path / "p.tgz"
    with tarfile.open(package, "w:gz") as archive:
        info = tarfile.TarInfo("package/cats/a.gif")
        info.size = len(frames)
        archive.addfile(info, io.BytesIO(frames))
    manifest = tmp_path / "MANIFEST.csv"
    manifest.write_text("file,label,source_repo,source_path,original_sha256,score\n"
                        f"other/a.gif,other,npm:{package},package/cats/a.gif,{hashlib.sha256(frames).hexdigest()},0.9\n",
                        encoding="utf-8")
    assert rebuild_imagefolder(manifest, tmp_path / "out", tmp_path / "cache") == 1
    (row,) = read_csv(tmp_path / "out" / "MANIFEST.csv")
    assert row["family"] == default_family(f"npm:{package}", "package/cats/a.gif") == "p.tgz/package/cats"
    assert row["animated"] == "1"


@pytest.mark.parametrize(("source", "path", "family"), [
    ("github:owner/stickers@abc", "packs/capoo/1.gif", "stickers/packs/capoo"),
    ("github:owner/stickers@abc", "top.png", "stickers"),
    ("npm:@lobehub/fluent-emoji-3d@1.1.0", "assets/cat.png", "fluent-emoji-3d/assets"),
    ("npm:openmoji@15.0.0", "color/618x618/1F600.png", "openmoji/color/618x618"),
    ("pool", "a/b.png", "pool/a"),
])
def test_default_family_is_the_source_name_and_the_image_folder(source, path, family):
    assert default_family(source, path) == family
