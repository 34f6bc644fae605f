"""A tiny base model and the bot's folders for ``trainer refresh`` tests, in seconds on a CPU.

The tiny base tells yellow blobs on white (the tests' nailong) from dark noise; ``lookalike`` is a
family it flags too — yellow blobs on green — that the admins then correct. Importable from any test
(``from tests.trainer.refresh_kit import build_base``), e.g. the plugin's end-to-end test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nailong_vision.handoff import (
    CORRECTIONS_COLUMNS,
    CORRECTIONS_FILE,
    MODEL_FILE,
    PENDING_DIR,
    RECENT_IMAGES,
    RECENT_INDEX,
    SCOPE_EVERYWHERE,
    image_id,
)
from tests.trainer.conftest import encode, make_imagefolder, nailong_like, other_like, tiny_config

BASE_VERSION = "2026.01.01.1"
THRESHOLD = 0.3


def lookalike(rng: np.random.Generator, side: int = 96) -> Image.Image:
    """The tests' nailong in a thick blue frame: close enough that the tiny base flags it, a family of its own."""
    image = nailong_like(rng, side)
    draw = ImageDraw.Draw(image)
    border = side // 8
    draw.rectangle([0, 0, side - 1, side - 1], outline=(30, 60, int(rng.integers(180, 255))), width=border)
    return image


def build_base(folder: Path, work: Path, *, version: str = BASE_VERSION, threshold: float = THRESHOLD) -> Path:
    """``folder/nailong.onnx`` (+ ``.sha256``) and ``folder/nailong.pt``: timm's tiny test_efficientnet (with
    BatchNorm, like the shipped Lite0) at 32 px, a linear head fitted on its frozen random features of synthetic
    images under ``work`` — no backprop, so seconds (the ONNX export takes longest). Its threshold is set to
    ``threshold``: on separable toy data the precision target would put it at 0.9999; its review floor a quarter
    of that. Returns ``folder``."""
    import onnx

    from trainer.export import export_command, sha256_file
    from trainer.features import run_features

    images = make_imagefolder(work / RECENT_IMAGES, per_class=16, seed=3)
    run_features(tiny_config(work, images, "model=test_efficientnet", "val_fraction=0.4"), l2=1e-3)
    onnx_path = export_command(str(work / "ckpt" / "best.pt"), str(folder / MODEL_FILE), version=version)
    model = onnx.load(str(onnx_path))
    next(p for p in model.metadata_props if p.key == "threshold").value = f"{threshold:.4f}"
    model.metadata_props.add(key="review_floor", value=f"{threshold / 4:.4f}")  # as a calibration writes it
    onnx.save(model, str(onnx_path))
    onnx_path.with_name(onnx_path.name + ".sha256").write_text(sha256_file(onnx_path) + "\n")
    return folder


def write_corrections(feedback: Path, images: list[tuple[bytes, str]], *, undo: list[bytes] = (),
                      group_only: list[bytes] = ()) -> list[str]:
    """The plugin's corrections folder: each image saved under ``<label>/<id>.png`` (those in
    ``group_only``: under ``.pending/``, applying in group 1 only), an ``add`` row per image and an
    ``undo`` row (file moved to ``.retired/``) for each of ``undo``. Returns the ids."""
    from nailong_vision.decode import decode_frames
    from nailong_vision.phash import phash

    rows = []
    for data, label in images:
        folder = PENDING_DIR if data in group_only else label
        file = f"{folder}/{image_id(data)}.png"
        (feedback / folder).mkdir(parents=True, exist_ok=True)
        (feedback / file).write_bytes(data)
        rows.append({"time": "2026-12-01T10:00:00+08:00", "action": "add", "id": image_id(data), "label": label,
                     "group_id": 1, "user_id": 2, "score": "0.5", "model_version": BASE_VERSION, "file": file,
                     "phash": f"{phash(decode_frames(data, max_frames=1)[0]):016x}",
                     "scope": "1" if data in group_only else SCOPE_EVERYWHERE,
                     "confirmed_by": "" if data in group_only else "2"})
    for data in undo:
        added = next(row for row in rows if row["id"] == image_id(data))
        retired = f".retired/{added['file']}"
        (feedback / retired).parent.mkdir(parents=True, exist_ok=True)
        (feedback / added["file"]).rename(feedback / retired)
        rows.append({**added, "action": "undo", "file": retired})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CORRECTIONS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    feedback.mkdir(parents=True, exist_ok=True)
    (feedback / CORRECTIONS_FILE).write_text(buffer.getvalue(), encoding="utf-8")
    return [image_id(data) for data, _ in images]


def write_recent(recent: Path, images: list[bytes], scores: list[float | None] | None = None,
                 model_version: str = "") -> None:
    """The plugin's recent-images store: ``images/<sha256>`` and an ``index.jsonl`` line per image, with the
    score the bot's model (``model_version``) gave it; by default none (as where a correction decided)."""
    (recent / RECENT_IMAGES).mkdir(parents=True, exist_ok=True)
    scores = scores or [None] * len(images)
    lines = []
    for k, (data, score) in enumerate(zip(images, scores)):
        sha256 = hashlib.sha256(data).hexdigest()
        (recent / RECENT_IMAGES / sha256).write_bytes(data)
        lines.append(json.dumps({"image": {"message_id": k, "group_id": 1, "image_key": f"k{k}", "sha256": sha256,
                                           "size": len(data), "score": score, "model_version": model_version,
                                           "hit": False, "stored_at": 1.0e9 + k}}))
    (recent / RECENT_INDEX).write_text("\n".join(lines) + "\n", encoding="utf-8")


def ordinary_images(count: int, seed: int) -> list[bytes]:
    """Half tiny-nailong, half other: what a group posts."""
    rng = np.random.default_rng(seed)
    return [encode(nailong_like(rng) if k % 2 else other_like(rng)) for k in range(count)]


def lookalikes(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(lookalike(rng)) for _ in range(count)]
