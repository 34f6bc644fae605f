"""The model contract: metadata read from the file, defaults without it, 2 and 5 classes, checksums."""

from __future__ import annotations

import io
import threading

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, features

from nailong_bot.config import Config
from nailong_bot.decision import Decider
from nailong_bot.models import load_classifier
from nailong_vision import classifier as classifier_module
from nailong_vision.classifier import Classifier, ModelError, bundled_model_path, default_providers
from nailong_vision.decode import ImageDecodeError
from nailong_vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec, normalize, preprocess
from nailong_testkit import (
    BLUE,
    FIVE_LABELS,
    WHITE,
    YELLOW,
    animated_gif,
    build_tiny_model,
    framed,
    still,
    write_checksum,
)


def scores(model: Classifier, *colors: tuple[int, int, int]) -> list[float]:
    frames = [Image.new("RGB", (64, 64), color) for color in colors]
    return model.nailong_scores(preprocess(frames, model.info.spec)).tolist()


def test_metadata_is_read_from_the_model(tmp_path) -> None:
    model = Classifier(build_tiny_model(tmp_path / "m.onnx", size=96, threshold=0.65))
    info = model.info
    assert (info.name, info.version, info.labels, info.positive_index) == (
        "tiny-test",
        "0.0.1",
        ("nailong", "other"),
        0,
    )
    assert (info.spec.size, info.spec.mean, info.spec.std, info.spec.resize) == (
        96,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "bilinear",
    )
    assert info.threshold == 0.65
    assert info.providers == ("CPUExecutionProvider",)


def test_yellow_scores_as_nailong_in_one_batch(tmp_path) -> None:
    model = Classifier(build_tiny_model(tmp_path / "m.onnx"))
    yellow, white, blue = scores(model, YELLOW, WHITE, BLUE)
    assert yellow > 0.95 and white < 0.05 and blue < 0.05


def test_normalize_is_the_textbook_formula() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 20, 24, 3), dtype=np.uint8)
    spec = PreprocessSpec(size=24, mean=(0.5, 0.25, 0.1), std=(0.2, 0.3, 0.4))
    expected = ((pixels / 255.0 - np.array(spec.mean)) / np.array(spec.std)).transpose(0, 3, 1, 2)
    batch = normalize(pixels, spec)
    assert batch.dtype == np.float32 and batch.shape == (3, 3, 20, 24) and batch.flags.c_contiguous
    np.testing.assert_allclose(batch, expected, rtol=0, atol=2e-6)


def test_no_metadata_falls_back_to_the_documented_defaults(tmp_path) -> None:
    info = Classifier(build_tiny_model(tmp_path / "bare.onnx", metadata=False)).info
    assert (info.spec.size, info.spec.mean, info.spec.std, info.spec.resize) == (
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "bilinear",
    )
    assert (info.labels, info.positive_index, info.threshold) == (("nailong", "other"), 0, 0.5)
    assert info.spec.frames == 8  # what models exported before the frame count was in the metadata used
    assert (info.name, info.version) == ("bare", "unknown")


@pytest.mark.parametrize(("written", "cap", "sampled"), [(3, None, 3), (3, 2, 2), (3, 8, 3), (None, None, 8)])
async def test_frames_come_from_the_model_and_the_setting_caps_them(
    tmp_path, written: int | None, cap: int | None, sampled: int
) -> None:
    classifier = Classifier(build_tiny_model(tmp_path / "m.onnx", frames=written))
    batches: list[int] = []
    score = classifier.nailong_scores

    def counted(batch: np.ndarray) -> np.ndarray:
        batches.append(len(batch))
        return score(batch)

    classifier.nailong_scores = counted  # type: ignore[method-assign]
    decider = Decider(classifier, workers=1, max_frames=cap, max_pixels=40_000_000)
    await decider.decide(animated_gif([WHITE, BLUE] * 10))
    decider.shutdown()
    assert batches == [sampled]


def test_five_class_model(tmp_path) -> None:
    model = Classifier(build_tiny_model(tmp_path / "five.onnx", labels=FIVE_LABELS))
    assert model.info.labels == tuple(FIVE_LABELS)
    yellow, blue = scores(model, YELLOW, BLUE)
    assert yellow > 0.9 and blue < 0.05  # P(nailong) out of a softmax over five classes


def test_five_class_model_without_metadata(tmp_path) -> None:
    info = Classifier(build_tiny_model(tmp_path / "five-bare.onnx", labels=FIVE_LABELS, metadata=False)).info
    assert info.labels == ("nailong", "emoji", "anime", "others", "long") and info.positive_index == 0


def test_positive_label_is_looked_up_not_assumed_first(tmp_path) -> None:
    # The tiny model's yellow detector is output 0, here labelled "other".
    model = Classifier(build_tiny_model(tmp_path / "swapped.onnx", labels=["other", "nailong"]))
    assert model.info.positive_index == 1
    assert scores(model, YELLOW)[0] < 0.05


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"labels": "nailong,other"}, "unreadable model metadata"),
        ({"labels": '["a", "b", "c"]'}, "labels do not match outputs"),
        ({"labels": '["cat", "dog"]'}, "positive label 'nailong' not in labels"),
        ({"threshold": "1.5"}, "outside 0..1"),
        ({"input_size": "big"}, "unreadable model metadata"),
    ],
)
def test_bad_metadata_is_a_clear_error(tmp_path, props: dict, message: str) -> None:
    import onnx

    path = build_tiny_model(tmp_path / "bad.onnx")
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key in props:
            prop.value = props[prop.key]
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=message):
        Classifier(path)


def test_missing_and_unreadable_model_files(tmp_path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        Classifier(tmp_path / "nowhere.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="cannot load model"):
        Classifier(garbage)


def test_bundled_model_checksum_is_verified(tmp_path, monkeypatch) -> None:
    model = build_tiny_model(tmp_path / "nailong.onnx")
    monkeypatch.setattr("nailong_bot.models.bundled_model_path", lambda: model)
    bundled = Config(nailong_onnx_providers=["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="checksum file missing"):
        load_classifier(bundled)
    write_checksum(model)
    assert load_classifier(bundled).info.path == model
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_classifier(bundled)


def test_own_model_checksum_is_optional_but_checked_when_present(tmp_path) -> None:
    model = build_tiny_model(tmp_path / "own.onnx")
    load_classifier(Config(nailong_model_path=model))
    (tmp_path / "own.onnx.sha256").write_text("0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_classifier(Config(nailong_model_path=model))


def test_bundled_model_location() -> None:
    path = bundled_model_path()
    assert path.name == "nailong.onnx" and path.parent.name == "models"


def test_default_providers_fall_back_to_cpu(monkeypatch) -> None:
    assert default_providers()[-1] == "CPUExecutionProvider"
    monkeypatch.setattr(
        classifier_module.ort,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is here")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_provider_that_cannot_start_is_reported(tmp_path, caplog_loguru) -> None:
    model = build_tiny_model(tmp_path / "own.onnx")
    config = Config(nailong_model_path=model, nailong_onnx_providers="CUDAExecutionProvider,CPUExecutionProvider")
    assert load_classifier(config).info.providers == ("CPUExecutionProvider",)
    assert any("could not enable ['CUDAExecutionProvider']" in line for line in caplog_loguru)
    caplog_loguru.clear()
    load_classifier(Config(nailong_model_path=model, nailong_onnx_providers="CPUExecutionProvider"))
    assert not any("could not enable" in line for line in caplog_loguru)


def test_threshold_setting_overrides_the_model(tmp_path) -> None:
    config = Config(nailong_threshold=0.85)
    assert config.nailong_threshold == 0.85
    assert Config(nailong_threshold="").nailong_threshold is None
    for disabling in (1.5, 1.0):
        with pytest.raises(ValueError):
            Config(nailong_threshold=disabling)
    assert Config(
        nailong_onnx_providers="CUDAExecutionProvider, CPUExecutionProvider"
    ).nailong_onnx_providers == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


# --- decode → decide: every format and mode the chat sends ---------------------------------------


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def yellow_cmyk_jpeg() -> bytes:
    return encoded(framed(YELLOW, (64, 64)).convert("CMYK"), "JPEG")


def hidden_yellow_png() -> bytes:
    """Fully transparent pixels whose colour channels are yellow: on white it is a blank sticker."""
    return encoded(Image.new("RGBA", (64, 64), (*YELLOW, 0)), "PNG")


def sticker_png() -> bytes:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((*YELLOW, 255), (4, 4, 60, 60))
    return encoded(image, "PNG")


def palette_png(color) -> bytes:
    return encoded(framed(color, (64, 64)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")


def transparent_palette_gif() -> bytes:
    """A GIF whose transparent palette entry is yellow: it must come out white."""
    image = Image.new("P", (64, 64), 0)
    image.putpalette([*YELLOW, *WHITE] + [0] * 762)
    return encoded(image, "GIF", transparency=0)


def animated_webp(colors) -> bytes:
    frames = [framed(color, (64, 64)) for color in colors]
    return encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50, lossless=True)


FORMATS = {
    "jpeg": (lambda: still(YELLOW, "JPEG"), True),
    "png": (lambda: still(YELLOW, "PNG"), True),
    "bmp": (lambda: still(YELLOW, "BMP"), True),
    "webp": (lambda: still(YELLOW, "WEBP"), True),
    "gif": (lambda: animated_gif([YELLOW, YELLOW]), True),
    "animated-webp-one-yellow-frame": (lambda: animated_webp([WHITE, WHITE, YELLOW, WHITE]), True),
    "cmyk-jpeg": (yellow_cmyk_jpeg, True),
    "palette-png": (lambda: palette_png(YELLOW), True),
    "greyscale-png": (lambda: encoded(Image.new("L", (64, 64), 200), "PNG"), False),
    "16-bit-png": (lambda: encoded(Image.fromarray(np.full((64, 64), 50000, dtype=np.uint16)), "PNG"), False),
    "sticker-png": (sticker_png, True),
    "transparent-composited-on-white": (hidden_yellow_png, False),
    "transparent-palette-gif": (transparent_palette_gif, False),
    "white-jpeg": (lambda: still(WHITE, "JPEG"), False),
}


@pytest.mark.parametrize("kind", list(FORMATS))
async def test_formats_and_modes(tmp_path, kind: str) -> None:
    make, is_nailong = FORMATS[kind]
    decider = Decider(
        Classifier(build_tiny_model(tmp_path / "m.onnx")), workers=1, max_frames=8, max_pixels=40_000_000
    )
    decision = await decider.decide(make())
    assert (decision.score >= 0.7) == is_nailong, decision
    decider.shutdown()


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow build cannot read AVIF")
async def test_avif(tmp_path) -> None:
    decider = Decider(
        Classifier(build_tiny_model(tmp_path / "m.onnx")), workers=1, max_frames=8, max_pixels=40_000_000
    )
    assert (await decider.decide(still(YELLOW, "AVIF"))).score >= 0.7
    decider.shutdown()


async def test_large_jpeg_is_decoded_at_draft_size(tmp_path) -> None:
    from nailong_vision.decode import decode_frames

    photo = still(YELLOW, "JPEG", size=(4000, 3000))
    (frame,) = decode_frames(photo, draft_size=64)
    assert frame.size[0] < 1000  # decoded at 1/8 scale, still ≥ the model's input size
    assert min(frame.size) >= 64


async def test_pixel_cap_rejects_before_decoding(tmp_path) -> None:
    decider = Decider(
        Classifier(build_tiny_model(tmp_path / "m.onnx")), workers=1, max_frames=8, max_pixels=1_000
    )
    with pytest.raises(ImageDecodeError, match="too large"):
        await decider.decide(still(YELLOW, "PNG"))
    decider.shutdown()


async def test_the_model_runs_in_a_worker_thread_off_the_event_loop(tmp_path, monkeypatch) -> None:
    decider = Decider(
        Classifier(build_tiny_model(tmp_path / "m.onnx")), workers=1, max_frames=8, max_pixels=40_000_000
    )
    model_score, threads = decider.classifier.image_score, []

    def recording_thread(frames: list) -> float:
        threads.append(threading.current_thread().name)
        return model_score(frames)

    monkeypatch.setattr(decider.classifier, "image_score", recording_thread)
    decision = await decider.decide(still(YELLOW))
    assert (decision.source, decision.model_score, decision.frames) == ("model", decision.score, 1)
    assert len(threads) == 1 and threads[0].startswith("nailong")
    decider.shutdown()
