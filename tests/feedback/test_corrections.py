from __future__ import annotations

import csv
import io
import itertools
import time

import numpy as np
import pytest
from nonebot.log import logger
from PIL import Image, ImageDraw

from nailong_vision.decode import ImageDecodeError, decode_frames
from nailong_vision.phash import hamming, phash

from nailong_bot.corrections import (
    CSV_COLUMNS,
    CSV_FILE,
    DEFAULT_MAX_DISTANCE,
    RETIRED_DIR,
    Correction,
    Corrections,
    frame_hash,
    image_id,
)


def scene(seed: int, side: int = 256) -> Image.Image:
    """A noisy gradient under random shapes: textured, so unrelated scenes hash far apart."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    angle = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(angle) * x + np.sin(angle) * y
    base = np.stack([gradient * rng.uniform(60, 200) + rng.uniform(0, 50) for _ in range(3)], axis=-1)
    base += rng.normal(0, 12, base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, side - 40, 2))
        w, h = (int(v) for v in rng.integers(30, side // 2, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def repost(data: bytes) -> bytes:
    """What a repost does to an image: half the size, JPEG quality 60."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return encode(image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS), "JPEG", quality=60)


def correct(store: Corrections, data: bytes, label: str = "other", **meta) -> Correction:
    """A correction that applies everywhere (a superuser's), unless ``everywhere=False`` is given."""
    meta = {"group_id": 1001, "user_id": 2002, "score": 0.93, "model_version": "v1", "everywhere": True, **meta}
    return store.add(data, label=label, **meta)


def csv_rows(store: Corrections) -> list[dict[str, str]]:
    with store.csv_path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_solid_colours_get_no_phash_while_test_scenes_stay_apart():
    # A solid colour's pHash bits are floating-point rounding noise (they change with the numpy build),
    # so solids must not be matched by pHash at all.
    solids = [Image.new("RGB", (64, 48), colour) for colour in [(255, 255, 255), (128, 128, 128), (3, 90, 200)]]
    assert all(frame_hash(image) is None for image in solids)
    scenes = [phash(scene(seed)) for seed in range(12)]
    assert min(hamming(a, b) for a, b in itertools.combinations(scenes, 2)) > DEFAULT_MAX_DISTANCE


def test_a_correction_decides_the_image_its_reposts_but_not_unrelated_images(tmp_path):
    store = Corrections(tmp_path)
    original = encode(scene(1))
    correction = correct(store, original, "other")

    assert store.lookup(decode_frames(original)) == correction
    assert store.lookup(decode_frames(original)[0]) == correction
    assert store.lookup(phash(decode_frames(original)[0])) == correction
    assert store.lookup(None, image_id=image_id(original)) == correction
    assert store.lookup(decode_frames(repost(original))) == correction
    assert store.lookup(decode_frames(repost(original), draft_size=64)) == correction  # as the pipeline decodes
    for seed in range(2, 10):
        assert store.lookup(decode_frames(encode(scene(seed)))) is None


def test_a_flat_image_is_decided_only_for_its_exact_bytes(tmp_path):
    store = Corrections(tmp_path)
    white = encode(Image.new("RGB", (80, 80), "white"))
    correction = correct(store, white, "nailong")
    other_white = encode(Image.new("RGB", (120, 90), (250, 250, 250)))

    assert correction.phash is None
    assert store.lookup(decode_frames(white), image_id=image_id(white)) == correction
    assert store.lookup(decode_frames(other_white), image_id=image_id(other_white)) is None
    assert store.lookup(decode_frames(white)) is None


def test_animated_images_are_identified_by_their_first_frame(tmp_path):
    store = Corrections(tmp_path)
    first, middle, last = scene(20), scene(21), scene(22)
    gif = encode(first, "GIF", save_all=True, append_images=[middle, last], duration=100, loop=0)
    correction = correct(store, gif, "nailong")

    assert correction.file.endswith(".gif")
    assert store.lookup(decode_frames(gif)) == correction
    assert store.lookup(decode_frames(encode(first))) == correction
    assert store.lookup(decode_frames(encode(last))) is None


def test_a_newer_correction_of_the_same_image_replaces_the_older(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(3))
    older = correct(store, data, "other")
    newer = correct(store, data, "nailong", user_id=3003)

    assert store.lookup(decode_frames(data)) == newer
    assert store.counts() == {"nailong": 1, "other": 0}
    assert not (tmp_path / older.file).exists()
    assert (tmp_path / newer.file).exists()
    # The same bytes relabelled: one copy moves, none is kept.
    assert not (tmp_path / RETIRED_DIR).exists()

    # A repost corrected the other way round replaces it too: the newest word wins; the other image retires.
    newest = correct(store, repost(data), "other")
    assert store.counts() == {"nailong": 0, "other": 1}
    assert store.lookup(decode_frames(data)) == newest
    assert (tmp_path / RETIRED_DIR / newer.file).exists()
    assert [row["action"] for row in csv_rows(store)] == ["add", "replace", "add", "replace", "add"]


def test_undo_by_image_and_by_id(tmp_path):
    store = Corrections(tmp_path)
    data, other = encode(scene(4)), encode(scene(5))
    correction = correct(store, data, "other")
    kept = correct(store, other, "nailong")

    # Undo from a repost: the correction that decides the repost goes.
    assert store.undo(repost(data), group_id=1001, user_id=10000) == [correction]
    assert store.lookup(decode_frames(data)) is None
    assert not (tmp_path / correction.file).exists()
    assert (tmp_path / RETIRED_DIR / correction.file).exists()
    assert store.undo(data) == []

    assert store.undo(correction_id=kept.id, user_id=10000) == [kept]
    assert len(store) == 0
    undo_rows = [row for row in csv_rows(store) if row["action"] == "undo"]
    assert [(row["id"], row["user_id"]) for row in undo_rows] == [(correction.id, "10000"), (kept.id, "10000")]
    with pytest.raises(ValueError):
        store.undo()


def test_corrections_survive_a_restart(tmp_path):
    store = Corrections(tmp_path)
    kept, undone, flat = encode(scene(6)), encode(scene(7)), encode(Image.new("RGB", (30, 30), "black"))
    correction = correct(store, kept, "nailong", score=0.12, model_version="v2")
    correct(store, undone, "other")
    flat_correction = correct(store, flat, "other")
    store.undo(undone)

    reopened = Corrections(tmp_path)
    assert reopened.counts() == {"nailong": 1, "other": 1}
    assert reopened.lookup(decode_frames(repost(kept))) == correction
    assert reopened.lookup(decode_frames(undone)) is None
    assert reopened.lookup(None, image_id=image_id(flat)) == flat_correction


def test_feedback_folder_is_an_imagefolder_with_a_csv_log(tmp_path):
    store = Corrections(tmp_path)
    added = [
        correct(store, encode(scene(8), "JPEG", quality=90), "nailong"),
        correct(store, encode(scene(9)), "other"),
        correct(store, encode(scene(10), "WEBP"), "other"),
        correct(store, encode(scene(11), "TIFF"), "nailong"),  # not read by the trainer: saved as PNG
    ]

    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "nailong",
        "other",
    ]
    expected_formats = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
    for correction in added:
        path = tmp_path / correction.file
        assert path.parent.name == correction.label
        with Image.open(path) as image:
            assert image.format == expected_formats[path.suffix]
        assert decode_frames(path.read_bytes())
    rows = csv_rows(store)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(row["label"], row["file"], row["group_id"], row["user_id"]) for row in rows] == [
        (c.label, c.file, "1001", "2002") for c in added
    ]
    assert rows[0]["score"] == "0.930000" and rows[0]["model_version"] == "v1"
    assert int(rows[0]["phash"], 16) == added[0].phash
    assert rows[0]["time"].startswith(time.strftime("%Y-"))


def test_bad_input_raises_and_writes_nothing(tmp_path):
    store = Corrections(tmp_path)
    with pytest.raises(ImageDecodeError):
        correct(store, b"definitely not an image")
    with pytest.raises(ValueError):
        correct(store, encode(scene(12)), "maybe")
    assert not store.csv_path.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unreadable_rows_are_skipped_and_a_foreign_log_is_set_aside(tmp_path):
    store = Corrections(tmp_path)
    correction = correct(store, encode(scene(13)), "nailong")
    with store.csv_path.open("a", encoding="utf-8") as handle:
        handle.write("2025-01-01T00:00:00,add,abc,nail")  # a crash mid-append: no newline either

    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        reopened = Corrections(tmp_path)
        second = correct(reopened, encode(scene(14)), "other")
        assert Corrections(tmp_path).counts() == {"nailong": 1, "other": 1}
        assert reopened.lookup(correction.phash) == correction and reopened.lookup(second.phash) == second

        store.csv_path.write_text("something,else\n1,2\n", encoding="utf-8")
        assert len(Corrections(tmp_path)) == 0
    finally:
        logger.remove(sink)
    assert any("skipped 1 unreadable rows" in message for message in messages)
    assert any("corrections log unreadable" in message for message in messages)
    assert len(list(tmp_path.glob(f"{CSV_FILE}.corrupt-*"))) == 1


def test_lookup_is_fast_for_thousands_of_corrections(tmp_path):
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=5000, dtype=np.int64).astype(np.uint64) * 2 + 1
    with (tmp_path / CSV_FILE).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for index, value in enumerate(hashes.tolist()):
            row = ["2025-01-01T00:00:00", "add", f"{index:016x}", "other", 1, 2, "0.5", "v1", "x", f"{value:016x}", "all", "2"]
            writer.writerow(row)
    store = Corrections(tmp_path)
    target = int(hashes[1234])

    started = time.perf_counter()
    for _ in range(200):
        found = store.lookup(target ^ 0b101)  # two bits off
    elapsed = time.perf_counter() - started

    assert found is not None and found.id == f"{1234:016x}"
    assert elapsed < 1.0, f"200 lookups over 5000 corrections took {elapsed:.3f}s"
