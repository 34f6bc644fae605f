"""Issue 15's data side: a package-provided data source (read from a local package file), wild sources held
out whole, hard negatives sampled more often, the earlier split kept, and the wild-set threshold rule."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import tarfile

import numpy as np
import pytest
import yaml

from tests.trainer.conftest import encode, make_imagefolder, nailong_like, other_like, tiny_config
from trainer.data import sources as data_sources
from trainer.thresholds import wild_threshold
from trainer.data import (
    fetch_package,
    file_factors,
    load_records,
    parse_package_source,
    prepare_data,
    sampling_weights,
    scan_source,
    wild_records,
)


def make_package(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def emoji_package(tmp_path):
    rng = np.random.default_rng(5)
    return make_package(tmp_path / "emoji-3d-1.0.0.tgz", {
        "package/package.json": b'{"name": "emoji-3d", "version": "1.0.0"}',
        "package/README.md": b"# emoji",
        "package/assets/1f600.webp": encode(other_like(rng), "WEBP"),
        "package/assets/1f425.png": encode(other_like(rng)),
        "package/assets/animals/1f986.png": encode(other_like(rng)),
    })


def test_a_package_source_is_read_from_a_local_package_file(tmp_path, emoji_package):
    cfg = tiny_config(tmp_path, tmp_path)
    records = scan_source(f"npm:{emoji_package}", cfg)
    assert [r.label for r in records] == ["other"] * 3  # a package is negatives unless it says otherwise
    assert sorted(r.provenance for r in records) == [
        f"npm:{emoji_package} package/assets/1f425.png", f"npm:{emoji_package} package/assets/1f600.webp",
        f"npm:{emoji_package} package/assets/animals/1f986.png"]
    assert all(r.source_repo == f"npm:{emoji_package}" for r in records)
    unpacked = {p.name for p in (tmp_path / "cache" / "packages").rglob("*") if p.is_file()}
    assert unpacked == {"1f600.webp", "1f425.png", "1f986.png", ".complete"}  # images only, in the cache dir
    assert [r.label for r in scan_source(f"npm:{emoji_package}#nailong", cfg)] == ["nailong"] * 3


def test_a_registry_package_is_fetched_by_name_and_version_with_npm_pack(tmp_path, emoji_package, monkeypatch):
    calls = []

    def fake_npm(command, **kwargs):
        calls.append(command)
        destination = command[command.index("--pack-destination") + 1]
        (tmp_path / "cache" / "packages").mkdir(parents=True, exist_ok=True)
        (data_sources.Path(destination) / "lobehub-fluent-emoji-3d-1.1.0.tgz").write_bytes(emoji_package.read_bytes())
        return subprocess.CompletedProcess(command, 0, json.dumps([{"filename": "lobehub-fluent-emoji-3d-1.1.0.tgz"}]), "")

    monkeypatch.setattr(data_sources.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(data_sources.subprocess, "run", fake_npm)
    root = fetch_package("@lobehub/fluent-emoji-3d@1.1.0", tmp_path / "cache")
    assert calls == [["npm", "pack", "@lobehub/fluent-emoji-3d@1.1.0", "--pack-destination",
                      str(tmp_path / "cache" / "packages"), "--json"]]
    assert (root / "package" / "assets" / "1f425.png").is_file()
    assert fetch_package("@lobehub/fluent-emoji-3d@1.1.0", tmp_path / "cache") == root
    assert len(calls) == 1  # unpacked once, then read from the cache


def test_a_package_source_must_pin_its_version_and_exist(tmp_path):
    for entry in ("npm:openmoji", "npm:@lobehub/fluent-emoji-3d", "npm:openmoji@"):
        with pytest.raises(ValueError, match="version"):
            parse_package_source(entry)
    assert parse_package_source("npm:openmoji@17.0.0") == ("openmoji@17.0.0", "other")
    with pytest.raises(FileNotFoundError):
        fetch_package(str(tmp_path / "missing.tgz"), tmp_path / "cache")


def test_a_package_cannot_write_outside_its_cache_folder(tmp_path):
    package = make_package(tmp_path / "evil.tgz", {"package/ok.png": encode(other_like(np.random.default_rng(0))),
                                                    "../../escaped.png": b"x"})
    with pytest.raises(tarfile.FilterError):
        fetch_package(str(package), tmp_path / "cache")
    assert not list(tmp_path.rglob("escaped.png"))


def add_manifest(root, rows):
    with open(root / "MANIFEST.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "label", "source_repo", "source_path", "tag"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def negatives_root(tmp_path):
    """A negatives folder: a wild source (4 images, 2 hard) and a training source (6 images, 3 hard)."""
    root = tmp_path / "negatives"
    (root / "other").mkdir(parents=True)
    rng = np.random.default_rng(9)
    rows = []
    for i in range(10):
        name = f"other/n{i}.png"
        (root / name).write_bytes(encode(other_like(rng) if i % 3 else nailong_like(rng).convert("L").convert("RGB")))
        rows.append({"file": name, "label": "other", "source_repo": "wild/stickers" if i < 4 else "train/emoji",
                     "source_path": f"set{i}/n{i}.png", "tag": "hard" if i % 2 else "sticker"})
    add_manifest(root, rows)
    return root


def test_wild_sources_are_never_trained_or_validated_on(tmp_path, image_root, negatives_root, emoji_package):
    cfg = tiny_config(tmp_path, image_root, f"data=['{image_root}', '{negatives_root}', 'npm:{emoji_package}']",
                      "wild_sources=[wild/stickers]")
    data = prepare_data(cfg)
    wild = wild_records(cfg)
    assert sorted(r.source for r in wild) == [str(negatives_root / f"other/n{i}.png") for i in range(4)]
    assert [r.tag for r in wild] == ["sticker", "hard", "sticker", "hard"]
    seen = set(data.val_sources) | {r.source for r in load_records(cfg)}
    assert not seen & {r.source for r in wild}
    assert data.summary["images"] == len(load_records(cfg)) == 28 + 6 + 3

    with pytest.raises(ValueError, match="wild"):
        wild_records(tiny_config(tmp_path, image_root, "wild_sources=[nowhere/at-all]"))


def test_hard_negatives_are_drawn_more_often(tmp_path, image_root, negatives_root):
    base = [f"data=['{image_root}', '{negatives_root}']"]
    cfg = tiny_config(tmp_path, image_root, *base, "tag_weights={hard: 3.0}", "source_weights={'train/emoji': 0.5}")
    records = load_records(cfg)
    factors = file_factors(records, cfg)
    by_name = {r.source.rsplit("/", 1)[-1]: f for r, f in zip(records, factors)}
    assert [by_name[f"n{i}.png"] for i in range(10)] == [1, 3, 1, 3, 0.5, 1.5, 0.5, 1.5, 0.5, 1.5]
    assert by_name["nailong00.png"] == by_name["other00.png"] == 1
    targets = np.array([r.label == "other" for r in records], dtype=np.int64)
    owners = np.arange(len(records))
    weights = sampling_weights(owners, targets, list(range(len(records))), 0.0, factors)
    hard, sticker = (next(i for i, r in enumerate(records) if r.source.endswith(n)) for n in ("n5.png", "n4.png"))
    assert weights[hard] == pytest.approx(3 * weights[sticker])
    # Classes keep their shares: the factors move weight only within a class.
    assert weights[targets == 0].sum() == pytest.approx(weights[targets == 1].sum()) == pytest.approx(1.0)
    plain = prepare_data(tiny_config(tmp_path, image_root, *base))
    weighted = prepare_data(cfg)
    assert not np.allclose(plain.train_weights, weighted.train_weights)


def test_earlier_data_keep_their_sides_when_new_data_join(tmp_path, image_root, negatives_root):
    alone = prepare_data(tiny_config(tmp_path, image_root, "val_fraction=0.3"))
    joined = prepare_data(tiny_config(tmp_path, image_root, f"data=['{image_root}', '{negatives_root}']",
                                      "val_fraction=0.3", f"keep_split_of=['{image_root}']"))
    earlier = {s for s in joined.val_sources if s.startswith(str(image_root))}
    assert earlier == set(alone.val_sources)
    with pytest.raises(ValueError, match="keep_split_of"):
        prepare_data(tiny_config(tmp_path, image_root, f"data=['{negatives_root}', '{image_root}']",
                                 f"keep_split_of=['{image_root}']"))


def test_the_corrections_folder_stays_a_valid_data_source(tmp_path, image_root):
    corrections = tmp_path / "feedback"
    make_imagefolder(corrections, per_class=2, seed=4)
    (corrections / "corrections.csv").write_text("time,action,id,label\n", encoding="utf-8")
    (corrections / ".retired" / "other").mkdir(parents=True)
    (corrections / ".retired" / "other" / "undone.png").write_bytes(encode(other_like(np.random.default_rng(1))))
    cfg = tiny_config(tmp_path, image_root, f"data=['{image_root}', '{corrections}']", "wild_sources=[x/y]")
    sources = [r.source for r in load_records(cfg)]
    assert sum(s.startswith(str(corrections)) for s in sources) == 8
    assert not any(".retired" in s for s in sources)


@pytest.mark.parametrize(("top", "max_fpr", "expected"), [
    # 1,000 negatives, 0.5 %: five may reach the threshold; the sixth-highest score (0.7) must not.
    ([0.99, 0.98, 0.97, 0.96, 0.95, 0.7], 0.005, 0.7001),
    ([0.99, 0.98, 0.97, 0.96, 0.95, 0.69995], 0.005, 0.7000),
    ([0.99, 0.98, 0.97, 0.96, 0.95, 0.95, 0.95], 0.005, 0.9501),  # a tie at the limit: both stay under
    ([0.99], 0.0, 0.9901),
])
def test_the_wild_threshold_is_the_lowest_with_its_false_positive_rate_within_the_limit(top, max_fpr, expected):
    scores = np.concatenate([top, np.linspace(0.0, 0.5, 1000 - len(top))])
    threshold = wild_threshold(scores, max_fpr)
    assert threshold == pytest.approx(expected)
    assert np.mean(scores >= threshold) <= max_fpr
    assert np.mean(scores >= threshold - 1e-4) > max_fpr  # one step lower is over the limit


def test_the_wild_threshold_needs_negatives():
    with pytest.raises(ValueError):
        wild_threshold(np.array([]), 0.005)


def test_export_sets_the_threshold_on_the_wild_set(trained, tmp_path, image_root, negatives_root, caplog):
    import logging

    import onnx

    from trainer.calibrate import score_records
    from trainer.thresholds import review_floor
    from trainer.checkpoint import Checkpoint
    from trainer.export import export_command, sha256_file
    from trainer.scoring import load_scorer

    cfg, best, _ = trained
    wild_cfg = tiny_config(tmp_path, image_root, f"data=['{image_root}', '{negatives_root}']",
                           "wild_sources=[wild/stickers]", "wild_max_fpr=0.25")
    config_path = tmp_path / "wild.yaml"
    config_path.write_text(yaml.safe_dump(json.loads(json.dumps(wild_cfg.to_dict()))), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="trainer.export"):
        out = export_command(str(best), str(tmp_path / "model.onnx"), version="test", wild_of=str(config_path))

    scorer = load_scorer(out)
    _, scores = score_records(scorer, wild_records(wild_cfg))
    assert scorer.threshold == pytest.approx(wild_threshold(scores, 0.25))
    # The export's last line names the threshold the model ships with, not the precision target's.
    assert f"threshold {scorer.threshold:.4f}" in caplog.records[-1].getMessage()
    assert np.mean(scores >= scorer.threshold) <= 0.25
    assert (tmp_path / "model.onnx.sha256").read_text().strip() == sha256_file(out)
    report = json.loads((tmp_path / "model.calibration.json").read_text(encoding="utf-8"))
    assert report["wild"]["other"] == 4 and report["wild"]["hard"]["other"] == 2
    assert set(report["wild"]["by_source"]) == {"wild/stickers"}
    # The review floor: the highest threshold at which the validation's nailong reach it 99 % of the time.
    validation = Checkpoint.load(best).validation
    nailong_scores = validation.probs[validation.targets == 0, 0]
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    floor = min(review_floor(nailong_scores), scorer.threshold)
    assert float(metadata["review_floor"]) == pytest.approx(floor) and report["review_floor"] == pytest.approx(floor)


def test_evaluate_reports_the_wild_set_by_source_and_tag_with_a_sheet_of_mistakes(trained, tmp_path, image_root,
                                                                                    negatives_root):
    from trainer.cli import main

    _, _, model = trained
    wild_cfg = tiny_config(tmp_path, image_root, f"data=['{image_root}', '{negatives_root}']",
                           "wild_sources=[wild/stickers]")
    config_path = tmp_path / "wild.yaml"
    config_path.write_text(yaml.safe_dump(json.loads(json.dumps(wild_cfg.to_dict()))), encoding="utf-8")
    out = tmp_path / "wild"
    # At threshold 0 every wild image is flagged: all four are false positives, each on the sheet.
    assert main(["evaluate", "--model", str(model), "--wild-of", str(config_path), "--out", str(out),
                 "--threshold", "0"]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["images"] == 4
    assert report["per_source_repo"]["wild/stickers"]["false_positives"] == 4
    assert {tag: row["images"] for tag, row in report["per_tag"].items()} == {"hard": 2, "sticker": 2}
    with open(out / "mistakes" / "mistakes.csv", encoding="utf-8") as handle:
        mistakes = list(csv.DictReader(handle))
    assert sorted(row["number"] for row in mistakes) == ["1", "2", "3", "4"]
    assert {row["tag"] for row in mistakes} == {"hard", "sticker"}
    assert {row["folder"] for row in mistakes} == {str(negatives_root)}  # where each came from, beside its source
    assert (out / "mistakes" / "sheet-001.png").stat().st_size > 0
    assert "按标签 / By tag" in (out / "report.md").read_text(encoding="utf-8")


def test_the_validation_hard_negatives_can_raise_the_threshold(tmp_path, image_root, negatives_root):
    from trainer.thresholds import validation_hard_threshold
    from trainer.checkpoint import Validation

    cfg = tiny_config(tmp_path, image_root, f"data=['{negatives_root}']", "val_hard_max_fpr=0.0")
    labels = ["nailong", "other"]
    sources = [str(negatives_root / f"other/n{i}.png") for i in range(10)]
    nailong_scores = np.linspace(0.05, 0.95, 10)  # n9 (hard, 0.95) is the highest-scoring hard negative
    validation = Validation(probs=np.stack([nailong_scores, 1 - nailong_scores], axis=1),
                            targets=np.ones(10, dtype=int), sources=sources, metrics={})
    assert validation_hard_threshold(validation, labels, cfg, "nailong") == pytest.approx(0.9501)
    validation.targets = np.zeros(10, dtype=int)  # no hard negative left: a clear error
    with pytest.raises(ValueError, match="hard"):
        validation_hard_threshold(validation, labels, cfg, "nailong")
