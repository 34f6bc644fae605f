"""Hard-negative mining on tiny data: pool scores through the plugin's path, numbered sheets, and the
labelled round trip into an ImageFolder with a manifest (and back from the manifest)."""

from __future__ import annotations

import csv
import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from tests.trainer.conftest import encode, nailong_like, other_like
from trainer.data import scan_imagefolder
from trainer.mine import (
    SHEET_COLUMNS,
    SHEET_ROWS,
    THUMB,
    build_imagefolder,
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
