"""The bundled model on a handful of real chat images (tests/plugin/fixtures/README.md)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageSequence

from nailong_bot.config import Config
from nailong_bot.decision import Decider
from nailong_bot.models import load_classifier
from nailong_vision.classifier import bundled_model_path

FIXTURES = Path(__file__).parent / "fixtures"
NAILONG = ["nailong-still-1.jpg", "nailong-still-2.jpg", "nailong-still-3.jpg", "nailong-animated.gif"]
OTHER = ["other-panda-meme.jpg", "other-anime-girl.jpg", "other-icon.jpg"]

pytestmark = pytest.mark.skipif(
    not bundled_model_path().is_file(),
    reason=f"no bundled model yet at {bundled_model_path()} (train and export one: see trainer/)",
)


@pytest.fixture(scope="module")
def decider():
    classifier = load_classifier(Config(nailong_onnx_providers=["CPUExecutionProvider"]))  # checksum verified
    decider = Decider(classifier, workers=1, max_frames=8, max_pixels=40_000_000)
    yield decider
    decider.shutdown()


@pytest.mark.parametrize("name", NAILONG)
async def test_nailong_images_are_hits(decider, name: str) -> None:
    decision = await decider.decide((FIXTURES / name).read_bytes())
    assert decision.score >= decider.classifier.info.threshold, decision


@pytest.mark.parametrize("name", OTHER)
async def test_other_images_are_not(decider, name: str) -> None:
    decision = await decider.decide((FIXTURES / name).read_bytes())
    assert decision.score < decider.classifier.info.threshold, decision


async def test_a_nailong_photo_saved_rotated_is_a_hit(decider) -> None:
    # Phones store the sensor's pixels and an EXIF orientation; 8 means "turn 90° to view".
    upright = Image.open(FIXTURES / "nailong-still-2.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif)
    decision = await decider.decide(buffer.getvalue())
    assert decision.score >= decider.classifier.info.threshold, decision


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("blank", [
    Image.new("RGB", (240, 240), (255, 255, 255)),
    Image.new("RGB", (240, 240), (0, 0, 0)),
    Image.new("RGBA", (240, 240), (0, 0, 0, 0)),  # composited on white, as stickers are
], ids=["white", "black", "transparent"])
async def test_a_blank_image_is_not_a_hit(decider, blank: Image.Image) -> None:
    """The bundled model scores a blank frame 0.65, above its threshold: a blank frame counts for nothing."""
    decision = await decider.decide(png(blank))
    assert decision.score < decider.classifier.info.threshold, decision


def framed_by_blanks(frames: list[Image.Image]) -> bytes:
    """A GIF of ``frames`` that starts and ends on a blank white frame."""
    blank = Image.new("RGB", frames[0].size, (255, 255, 255))
    buffer = io.BytesIO()
    blank.save(buffer, "GIF", save_all=True, append_images=[*frames, blank], duration=80, loop=0)
    return buffer.getvalue()


async def test_an_animation_that_starts_and_ends_blank_is_scored_by_its_content(decider) -> None:
    """Two blank frames would be two hits under k_of_n:2; an ordinary picture between them is not nailong."""
    with Image.open(FIXTURES / "other-anime-girl.jpg") as image:
        decision = await decider.decide(framed_by_blanks([image.convert("RGB")]))
    assert decision.frames == 3
    assert decision.score < decider.classifier.info.threshold, decision


async def test_a_nailong_animation_that_starts_and_ends_blank_is_a_hit(decider) -> None:
    with Image.open(FIXTURES / "nailong-animated.gif") as gif:
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(gif)]
    decision = await decider.decide(framed_by_blanks(frames))
    assert decision.frames == 8
    assert decision.score >= decider.classifier.info.threshold, decision
