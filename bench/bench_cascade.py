"""Cascade latency: each stage's per-image cost on one onnxruntime thread, and the cascade's own.

    .venv/bin/python bench/bench_cascade.py                                   # bundled model + an untrained Lite2
    .venv/bin/python bench/bench_cascade.py --second runs/lite2/model.onnx --band 0.2 0.95 --images DIR

The first stage is the bundled model (or --first); the second, --second, or else EfficientNet-Lite2 at 260 px
with random weights, exported once into .cache/bench/ (a forward costs the same whatever the weights).
Times are per image from decoded frames to score (preprocess + forward + frame rule), medians and p95 over
the test fixtures (stills and an 8-frame GIF): the first stage alone, the second alone, and the cascade
when the image falls outside the band (the first decides) and inside it (both run). With --images, the
share of those images the first stage leaves to the second (the band's cost) is printed too. The issue's
limit: 30 ms per uncertain image on one thread and 40 MB of model files in all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nailong_vision.classifier import Classifier, bundled_model_path  # noqa: E402
from nailong_vision.decode import ImageDecodeError, decode_frames  # noqa: E402
from nailong_vision.preprocess import preprocess  # noqa: E402
from timing import summary, timed  # noqa: E402

FIXTURES = ROOT / "tests" / "plugin" / "fixtures"
LITE2 = ROOT / ".cache" / "bench" / "tf_efficientnet_lite2-260-untrained.onnx"


def untrained_lite2() -> Path:
    """EfficientNet-Lite2 (260 px, mean = std = 0.5, bicubic), random weights, with the plugin's metadata."""
    if LITE2.exists():
        return LITE2
    import timm

    from trainer.export import to_onnx, write_checksum, write_metadata
    from nailong_vision.preprocess import PreprocessSpec

    LITE2.parent.mkdir(parents=True, exist_ok=True)
    model = timm.create_model("tf_efficientnet_lite2", pretrained=False, num_classes=2).eval()
    to_onnx(model, LITE2, 260, 20)
    spec = PreprocessSpec(size=260, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="bicubic")
    write_metadata(LITE2, {"labels": json.dumps(["nailong", "other"]), "positive_label": "nailong",
                           **spec.to_metadata(), "threshold": "0.5", "model_name": "lite2-260-untrained",
                           "version": "bench"})
    write_checksum(LITE2)
    return LITE2


def with_cascade(first: Path, second: Path, band: tuple[float, float], workdir: Path) -> Path:
    """A copy of the first model naming the second (copied beside it) and the band in its metadata."""
    shutil.copy(second, workdir / "second.onnx")
    (workdir / "second.onnx.sha256").write_text(hashlib.sha256((workdir / "second.onnx").read_bytes()).hexdigest())
    model = onnx.load(str(first))
    metadata = {p.key: p.value for p in model.metadata_props}
    metadata["cascade"] = json.dumps({"model": "second.onnx", "band": list(band)})
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    path = workdir / "first.onnx"
    onnx.save(model, str(path))
    return path


def interleaved(functions: list, repeat: int) -> list[list[float]]:
    """Samples of each function taken in turn, so drift on a shared CPU falls on all of them alike."""
    for function in functions:
        function()
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(repeat):
        for k, function in enumerate(functions):
            started = time.perf_counter()
            function()
            samples[k].append(time.perf_counter() - started)
    return samples


def row(name: str, samples: list[float]) -> None:
    median, p95, _ = summary(samples)
    print(f"  {name:<52} median {median:8.2f} ms   p95 {p95:8.2f} ms   (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=Path, default=bundled_model_path())
    parser.add_argument("--second", type=Path, help="second-stage model (default: an untrained Lite2 at 260 px)")
    parser.add_argument("--band", type=float, nargs=2, default=(0.2, 0.95), metavar=("LOW", "HIGH"))
    parser.add_argument("--images", type=Path, help="a folder of images: the share the first stage leaves uncertain")
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()

    second_path = args.second or untrained_lite2()
    workdir = Path(tempfile.mkdtemp(prefix="nailong-cascade-bench-"))
    first = Classifier(args.first, providers=["CPUExecutionProvider"], threads=1)
    second = Classifier(second_path, providers=["CPUExecutionProvider"], threads=1)
    cascade = Classifier(with_cascade(args.first, second_path, tuple(args.band), workdir),
                         providers=["CPUExecutionProvider"], threads=1)
    sizes = {p.name: p.stat().st_size / 1e6 for p in (args.first, second_path)}
    print(f"First: {first.info.name} {first.info.version} ({sizes[args.first.name]:.1f} MB, {first.info.spec.size} px); "
          f"second: {second.info.name} ({sizes[second_path.name]:.1f} MB, {second.info.spec.size} px); "
          f"together {sum(sizes.values()):.1f} MB; band {args.band}; 1 onnxruntime thread")
    inside, outside = [], []
    for kind, files in (("still", sorted(FIXTURES.glob("*.jpg"))), ("8-frame GIF", [FIXTURES / "nailong-animated.gif"])):
        frames = [decode_frames(f.read_bytes(), max_frames=first.info.spec.frames, draft_size=first.info.spec.size)
                  for f in files]
        print(f" {kind} ({len(files)} file(s), frames → score):")
        spec = first.info.spec
        before, after = ([], [])
        for fr in frames:  # the decision's path before the frame rule (highest frame) and with it, in turn
            old, new = interleaved([lambda: float(first.nailong_scores(preprocess(fr, spec)).max()),
                                    lambda: first.image_score(fr)], args.repeat)
            before += old
            after += new
        row("first stage, highest frame (the path before frame rules)", before)
        row(f"first stage, Classifier.image_score ({first.info.frame_rule.name})", after)
        row("first stage alone", [s for fr in frames for s in timed(lambda: first.first_stage_score(fr), args.repeat)])
        row("second stage alone",
            [s for fr in frames for s in timed(lambda: second.first_stage_score(fr), args.repeat)])
        for fr in frames:
            (inside if cascade.cascade.uncertain(first.first_stage_score(fr)) else outside).append(fr)
    if outside:
        row("cascade, first stage sure (fixtures outside the band)",
            [s for fr in outside for s in timed(lambda: cascade.image_score(fr), args.repeat)])
    if inside:
        row("cascade, uncertain (fixtures inside the band)",
            [s for fr in inside for s in timed(lambda: cascade.image_score(fr), args.repeat)])
    if args.images:
        scored = uncertain = 0
        for path in sorted(p for p in args.images.rglob("*") if p.is_file()):
            try:
                frames = decode_frames(path.read_bytes(), max_frames=first.info.spec.frames,
                                       draft_size=first.info.spec.size)
            except (ImageDecodeError, OSError):
                continue
            scored += 1
            uncertain += cascade.cascade.uncertain(first.first_stage_score(frames))
        print(f" {args.images}: {uncertain} of {scored} images ({uncertain / max(scored, 1):.1%}) reach the second stage")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
