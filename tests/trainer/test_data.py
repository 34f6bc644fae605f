import csv
import io
import itertools

import numpy as np
import pytest
from PIL import Image

from nailong_vision.phash import phash
from trainer.data import (
    SampleStream,
    family_from_source_path,
    grouped_split,
    load_hf_records,
    near_duplicate_groups,
    prepare_data,
    sampling_weights,
    scan_imagefolder,
)

from .conftest import encode, make_imagefolder, nailong_like, other_like, tiny_config


def test_scan_imagefolder_labels_and_manifest_families(tmp_path):
    root = make_imagefolder(tmp_path / "data", per_class=2)
    with (root / "MANIFEST.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "source_path"])
        writer.writerow(["nailong/nailong00.png", "nailong", "repo/train_positive/clipA_frame_3.jpg"])
        writer.writerow(["nailong/nailong01.png", "nailong", "repo/train_positive/clipA_frame_7.jpg"])
        writer.writerow(["other/other00.png", "other", "ChineseBQB/031Penguin_沙雕企鹅🐧BQB/a.gif"])
    records = {r.source.rsplit("/", 1)[1]: r for r in scan_imagefolder(root)}
    assert {r.label for r in records.values()} == {"nailong", "other"}
    assert records["nailong00.png"].family == records["nailong01.png"].family == "clip:clipA"
    assert records["other00.png"].family == "collection:031Penguin_沙雕企鹅🐧BQB"
    assert records["other01.png"].family == ""


def test_family_from_source_path_strips_frame_numbers():
    assert family_from_source_path("d/A0D4_40.jpg;x/A0D4_40.jpg") == "clip:A0D4"
    assert family_from_source_path("d/7316_frame_10.jpg") == "clip:7316"
    assert family_from_source_path("d/26bdf266-6dbb.jpg") == "clip:26bdf266-6dbb"


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="找不到数据目录"):
        scan_imagefolder(tmp_path / "nope")
    (tmp_path / "empty" / "nailong").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        scan_imagefolder(tmp_path / "empty")


def test_near_duplicates_share_a_group_and_a_side():
    rng = np.random.default_rng(0)
    originals = [nailong_like(rng) for _ in range(6)] + [other_like(rng) for _ in range(6)]
    images, owners = [], []
    for index, original in enumerate(originals):
        resized = original.resize((70, 70))
        reencoded = Image.open(io.BytesIO(encode(original, "JPEG", quality=60)))
        for variant in (original, resized, reencoded):
            images.append(variant)
            owners.append(index)
    groups = near_duplicate_groups([phash(i) for i in images], [""] * len(images), max_distance=6)
    for index in range(len(originals)):
        assert len({g for g, o in zip(groups, owners) if o == index}) == 1
    labels = ["nailong" if o < 6 else "other" for o in owners]
    for seed in range(5):
        is_val = grouped_split(labels, groups, 0.34, seed)
        for index in range(len(originals)):
            assert len({v for v, o in zip(is_val, owners) if o == index}) == 1
        assert 0 < is_val.sum() < len(labels)


def test_family_keys_join_groups_and_forced_validation():
    groups = near_duplicate_groups([0, 2**63, 2**40 + 7, 12345], ["clip:a", "clip:a", "", ""], max_distance=2)
    assert groups[0] == groups[1] != groups[2]
    is_val = grouped_split(["x"] * 4, groups, 0.0, 0, forced_val={0})
    assert is_val.tolist() == [True, True, False, False]


def test_split_is_seeded():
    labels = ["nailong"] * 20 + ["other"] * 20
    groups = list(range(40))
    assert np.array_equal(grouped_split(labels, groups, 0.25, 7), grouped_split(labels, groups, 0.25, 7))
    assert grouped_split(labels, groups, 0.25, 7).sum() == 10


def test_prepare_data_decodes_frames_like_the_plugin(tmp_path, image_root):
    data = prepare_data(tiny_config(tmp_path, image_root))
    assert data.labels == ["nailong", "other"]
    assert data.val_pixels.shape[1:] == (32, 32, 3)
    assert data.train_pixels.shape[1:] == (37, 37, 3)
    assert len(data.train_targets) == len(data.train_weights)
    # The animated GIF contributes several frames to whichever side it landed on.
    summary = data.summary
    assert summary["train_frames"] + summary["val_frames"] > summary["images"]
    # Classes are balanced: each class carries the same total sampling weight.
    weights = {label: data.train_weights[data.train_targets == k].sum() for k, label in enumerate(data.labels)}
    assert weights["nailong"] == pytest.approx(weights["other"])
    # The decoded cache is reused by the next run.
    assert len(list((tmp_path / "cache").glob("decoded-*.npz"))) == 1
    again = prepare_data(tiny_config(tmp_path, image_root))
    assert np.array_equal(again.val_pixels, data.val_pixels)


def test_sample_stream_resumes_where_it_stopped():
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    full = list(itertools.islice(iter(SampleStream(weights, seed=3)), 23))
    resumed = list(itertools.islice(iter(SampleStream(weights, seed=3, start=9)), 14))
    assert resumed == full[9:]
    ranks = [list(itertools.islice(iter(SampleStream(weights, 3, start=0, rank=r, world=2)), 6)) for r in (0, 1)]
    assert [item for pair in zip(*ranks) for item in pair] == full[:12]


def test_huggingface_imagefolder_path(tmp_path, image_root):
    records = load_hf_records("imagefolder", data_dir=str(image_root))
    assert {r.label for r in records} == {"nailong", "other"}
    assert len(records) == len(scan_imagefolder(image_root))
    assert all(r.data for r in records)
    cfg = tiny_config(tmp_path, image_root, "data=[]", "hf_dataset=imagefolder", f"hf_data_dir={image_root}")
    data = prepare_data(cfg)
    assert data.summary["images"] == len(records)


def test_excluded_files_are_left_out_without_moving_the_split(tmp_path, image_root):
    names = ("nailong03.png", "other07.png")
    everything = prepare_data(tiny_config(tmp_path, image_root))
    kept = prepare_data(tiny_config(tmp_path, image_root, "exclude=['nailong/nailong03.png', 'other07.png']"))
    assert kept.summary["excluded"] == 2
    assert kept.summary["images"] == everything.summary["images"] - 2
    assert len(kept.train_targets) + len(kept.val_sources) < len(everything.train_targets) + len(everything.val_sources)
    assert not any(s.endswith(names) for s in kept.val_sources)
    # Leaving files out must not reshuffle the others: validation is the same minus the excluded ones.
    assert kept.val_sources == [s for s in everything.val_sources if not s.endswith(names)]


def test_a_new_training_seed_keeps_the_validation_split(tmp_path, image_root):
    first = prepare_data(tiny_config(tmp_path, image_root, "seed=1"))
    second = prepare_data(tiny_config(tmp_path, image_root, "seed=2"))
    assert first.val_sources == second.val_sources
    moved = prepare_data(tiny_config(tmp_path, image_root, "split_seed=99"))
    assert moved.val_sources != first.val_sources


def test_sampling_weights_balance_classes_and_optionally_groups():
    # Files 0-3 are class 0: a clip of three stills (group 7) and one still (group 8); file 4 is
    # class 1 and animated (two frames). Frame owners list the file of each training frame.
    owners = np.array([0, 1, 2, 3, 4, 4])
    targets = np.array([0, 0, 0, 0, 1])
    groups = [7, 7, 7, 8, 9]

    by_file = sampling_weights(owners, targets, groups, group_balance=0.0)
    np.testing.assert_allclose(by_file, [0.25, 0.25, 0.25, 0.25, 0.5, 0.5])

    by_group = sampling_weights(owners, targets, groups, group_balance=1.0)
    np.testing.assert_allclose(by_group[:3].sum(), by_group[3])  # the clip weighs as much as the still
    np.testing.assert_allclose([by_group[:4].sum(), by_group[4:].sum()], [1.0, 1.0])  # classes stay balanced

    halfway = sampling_weights(owners, targets, groups, group_balance=0.5)
    assert by_file[3] < halfway[3] < by_group[3]


def test_image_search_queries_and_whole_repositories_are_families_only_where_configured(tmp_path):
    root = make_imagefolder(tmp_path / "data", per_class=3)
    with (root / "MANIFEST.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "source_repo", "source_path"])
        writer.writerow(["other/other00.png", "other", "a/searches", "train/0/baidu540324-3.jpeg"])
        writer.writerow(["other/other01.png", "other", "a/searches", "_tmp/pics/baidu540324-17.jpeg;train/0/x.jpeg"])
        writer.writerow(["nailong/nailong00.png", "nailong", "a/searches", "train/1/baidu733758-1.jpeg"])
        writer.writerow(["nailong/nailong01.png", "nailong", "a/searches", "train/1/baidu733758-2.jpeg"])
        writer.writerow(["nailong/nailong02.png", "nailong", "b/desk-pet", "assets/idle/1.png"])
        writer.writerow(["other/other02.png", "other", "b/desk-pet", "assets/cry/9.png"])
    records = {r.source.rsplit("/", 1)[1]: r for r in scan_imagefolder(root, ["b/desk-pet"], ["other"])}
    assert records["other00.png"].family == records["other01.png"].family == "search:baidu540324"
    # A query for nailong itself is the whole class, not a family: left to the pHash grouping.
    assert records["nailong00.png"].family != records["nailong01.png"].family
    assert records["nailong02.png"].family == records["other02.png"].family == "repo:b/desk-pet"
    assert records["other00.png"].provenance == "a/searches train/0/baidu540324-3.jpeg"
    assert family_from_source_path("train/0/baidu540324-3.jpeg") == "clip:baidu540324-3"


def test_the_decode_cache_concatenates_frames_as_numpy_does_and_lets_each_images_frames_go():
    from trainer.data.cache import DecodedImage, concatenate_releasing

    rng = np.random.default_rng(0)
    images = [DecodedImage(eval_frames=rng.integers(0, 255, (n, 4, 4, 3), dtype=np.uint8),
                           train_frames=rng.integers(0, 255, (1, 5, 5, 3), dtype=np.uint8), hash=n) for n in (1, 3, 2)]
    expected = np.concatenate([image.eval_frames for image in images])
    assert np.array_equal(concatenate_releasing(images, "eval_frames"), expected)
    assert all(image.eval_frames.size == 0 and image.eval_frames.base is None for image in images)
    assert [len(image.train_frames) for image in images] == [1, 1, 1]
