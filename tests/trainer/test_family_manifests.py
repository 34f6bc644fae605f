"""The committed family manifests (issue 22) keep their promises: the held-out families are in no other manifest,
no image is listed twice, and every row says its family and whether it is animated."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.mine import MANIFEST_COLUMNS, read_manifest

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
FAMILY_SETS = ("family-wild", "family-yardstick", "family-negatives")


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
            if other != name:
                assert not families[name] & families[other], (name, other)
                assert not set(images[name]) & set(images[other]), (name, other)


def test_the_held_out_set_is_large_enough_to_choose_a_threshold_on(manifests):
    wild = manifests["family-wild"]
    assert len({row["family"] for row in wild}) >= 40 and len(wild) >= 1500


def test_manifests_from_before_families_still_load_with_folder_families():
    rows = read_manifest(DATASETS / "nailong-mined" / "MANIFEST.csv")
    assert rows and all(row["family"] and row["animated"] == "" for row in rows)
