"""Small synthetic data sets and a tiny trained model, made by the tests themselves."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from trainer.config import load_config

SIZE = 32


def nailong_like(rng: np.random.Generator, side: int = 96) -> Image.Image:
    """A yellow blob with two eyes on white: the tests' stand-in for nailong."""
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    x, y = rng.integers(5, side // 3, size=2)
    w, h = rng.integers(side // 2, side - max(x, y) - 2, size=2)
    draw.ellipse([x, y, x + w, y + h], fill=(250, 215, int(rng.integers(30, 90))))
    for eye_x in (x + w // 3, x + 2 * w // 3):
        draw.ellipse([eye_x - 3, y + h // 3 - 3, eye_x + 3, y + h // 3 + 3], fill="black")
    return image


def other_like(rng: np.random.Generator, side: int = 96) -> Image.Image:
    """Random blue/green/red shapes over noise: clearly not the yellow blob."""
    noise = rng.integers(0, 80, size=(side, side, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0, x1, y1 = sorted(rng.integers(0, side, size=2)) + sorted(rng.integers(0, side, size=2))
        colour = tuple(int(c) for c in rng.permutation([int(rng.integers(120, 255)), 40, int(rng.integers(0, 60))]))
        if colour[0] > 100 and colour[1] > 100:
            colour = (colour[0], 40, colour[2])
        draw.rectangle([min(x0, y0), min(x1, y1), max(x0, y0) + 1, max(x1, y1) + 1], fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def make_imagefolder(root, per_class: int = 12, seed: int = 0):
    """<root>/nailong and <root>/other with stills, one animated GIF each and a JPEG near-duplicate."""
    rng = np.random.default_rng(seed)
    for label, make in (("nailong", nailong_like), ("other", other_like)):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"{label}{i:02d}.png").write_bytes(encode(make(rng)))
        (folder / f"{label}-anim.gif").write_bytes(animated_gif([make(rng) for _ in range(5)]))
        first = Image.open(folder / f"{label}00.png")
        (folder / f"{label}00-copy.jpg").write_bytes(encode(first.resize((80, 80)), "JPEG", quality=70))
    return root


@pytest.fixture(scope="session")
def image_root(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("images"))


def tiny_config(tmp_path, image_root, *overrides: str):
    """A run small enough for a test: atto at 32 px, a handful of steps, no worker processes."""
    return load_config(None, [
        f"data=['{image_root}']", f"image_size={SIZE}", "batch_size=8", "max_steps=6", "warmup_iters=2",
        "lr_decay_iters=6", "eval_every=3", "save_every=3", "num_workers=0", "eval_frames=4", "train_frames=2",
        "val_fraction=0.3", "learning_rate=0.002", "drop_path_rate=0.0", "enable_amp=false",
        f"cache_dir={tmp_path / 'cache'}", f"checkpoint_dir={tmp_path / 'ckpt'}", f"tensorboard_dir={tmp_path / 'tb'}",
        *overrides,
    ])


@pytest.fixture(scope="session")
def trained(tmp_path_factory, image_root):
    """A tiny model trained for a few steps, exported to ONNX: (config, best.pt, model.onnx)."""
    from trainer.export import export_command
    from trainer.loop import train

    tmp = tmp_path_factory.mktemp("run")
    cfg = tiny_config(tmp, image_root)
    train(cfg)
    best = tmp / "ckpt" / "best.pt"
    onnx_path = export_command(str(best), str(tmp / "model.onnx"), version="test")
    return cfg, best, onnx_path
