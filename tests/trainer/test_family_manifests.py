"""The committed family manifests (issue 22) keep their promises: the held-out families are in no other manifest,
no image is listed twice, every row says its family and whether it is animated, a later round's hardest images
belong to families already mined, and the source-disjoint nailong come from sources no other manifest names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainer.config import load_config
from trainer.data import ImageRecord
from trainer.data.sources import cap_families
from trainer.mine import MANIFEST_COLUMNS, read_manifest

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
HELD_OUT = ("family-wild", "family-wild-r2", "family-wild-r3")
TRAINABLE = ("family-yardstick", "family-negatives", "family-negatives-r2")
HARDEST = "family-hard-r2"  # more images of TRAINABLE's round-1 families
FAMILY_SETS = HELD_OUT + TRAINABLE + (HARDEST,)


@pytest.fixture(scope="module")
def manifests():
    return {name: read_manifest(DATASETS / name / "MANIFEST.csv") for name in FAMILY_SETS}


def test_family_manifests_have_every_column_filled(manifests):
    for name, rows in manifests.items():
        header = list(rows[0])
        assert header[:len(MANIFEST_COLUMNS)] == MANIFEST_COLUMNS, name
        for row in rows:
            assert row["family"].count("/") >= 1 and row["animated"] in ("0", "1"), (name, row["file"])
            assert row["label"] in ("nailong", "other") and row["file"].startswith(f"{row['label']}/"), (name, row)
            assert len(row["original_sha256"]) == 64 and row["source_repo"].startswith(("github:", "npm:")), (name, row)


def test_held_out_families_and_images_are_in_no_other_manifest(manifests):
    families = {name: {row["family"] for row in rows} for name, rows in manifests.items()}
    images = {name: [row["original_sha256"] for row in rows] for name, rows in manifests.items()}
    for name in FAMILY_SETS:
        assert len(images[name]) == len(set(images[name])), f"{name} lists an image twice"
        for other in FAMILY_SETS:
            if other != name and HARDEST not in (name, other):
                assert not families[name] & families[other], (name, other)
                assert not set(images[name]) & set(images[other]), (name, other)
    for name in HELD_OUT:
        assert not families[name] & families[HARDEST] and not set(images[name]) & set(images[HARDEST]), name


def test_a_later_rounds_hardest_images_are_those_round_one_left_out_of_its_families(manifests):
    round_one = ("family-yardstick", "family-negatives")
    earlier = {row["family"] for name in round_one for row in manifests[name]}
    assert manifests[HARDEST] and {row["family"] for row in manifests[HARDEST]} <= earlier
    records = [ImageRecord(f"{name}/{row['file']}", row["label"], f"family:{row['family']}", origin=name)
               for name in round_one for row in manifests[name]]
    cap = load_config(str(DATASETS.parent / "configs" / "lite0-families-r1.yaml"), []).family_cap
    sampled = {Path(r.source).name for r in cap_families(records, cap)}
    assert not sampled & {Path(row["file"]).name for row in manifests[HARDEST]}


def test_source_disjoint_nailong_come_from_sources_no_other_manifest_names():
    disjoint = read_manifest(DATASETS / "nailong-disjoint" / "MANIFEST.csv")
    assert sum(row["label"] == "nailong" for row in disjoint) >= 100

    def repos(rows):
        return {part.removeprefix("github:").split("@")[0] for row in rows for part in row["source_repo"].split(";")}

    others = repos([row for path in DATASETS.glob("*/MANIFEST.csv") if path.parent.name != "nailong-disjoint"
                    for row in read_manifest(path)])
    assert not repos(disjoint) & others


def test_no_training_config_trains_or_validates_on_a_held_out_set():
    evaluation_only = HELD_OUT + ("nailong-disjoint",)
    for path in sorted((DATASETS.parent / "configs").glob("*.yaml")):
        values = yaml.safe_load(path.read_text(encoding="utf-8"))  # space.yaml is a search space, not a config
        named = {Path(entry).name for entry in values.get("data", []) + values.get("unlabeled", [])}
        assert not named & set(evaluation_only), (path.name, named & set(evaluation_only))


def test_the_held_out_set_is_large_enough_to_choose_a_threshold_on(manifests):
    wild = manifests["family-wild"]
    assert len({row["family"] for row in wild}) >= 40 and len(wild) >= 1500


def test_manifests_from_before_families_still_load_with_folder_families():
    rows = read_manifest(DATASETS / "nailong-mined" / "MANIFEST.csv")
    assert rows and all(row["family"] and row["animated"] == "" for row in rows)
