"""The cascade: a first model decides the images it is sure of; a second scores only those whose first
score falls inside the uncertain band, named (with the second model's file) in the first model's metadata."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from nailong_bot.decision import Decider
from nailong_vision.classifier import Classifier, ModelError
from nailong_testkit import BLUE, WHITE, YELLOW, build_tiny_model, framed, still, write_checksum

BAND = (0.3, 0.9)
# P(nailong) by the tiny model: yellow ≈ 0.995, white and blue ≈ 0, these two ≈ 0.66 and 0.61 (uncertain),
# and this one ≈ 0.11 (sure it is not).
OLIVE, AMBER, KHAKI = (220, 200, 40), (255, 200, 60), (200, 180, 60)
COLOURS = [YELLOW, WHITE, BLUE, OLIVE, AMBER, KHAKI]


def cascade_pair(tmp_path, band=BAND, second: str = "second.onnx"):
    """A first model naming a second one that has learnt yellow is not nailong (so it disagrees wherever it runs)."""
    second_path = build_tiny_model(tmp_path / "second.onnx", yellow=False)
    write_checksum(second_path)
    metadata = {"cascade": json.dumps({"model": second, "band": list(band)})}
    return build_tiny_model(tmp_path / "first.onnx", extra_metadata=metadata), second_path


def frames_of(colour) -> list[Image.Image]:
    return [framed(colour, (64, 64))]


def test_outside_the_band_the_cascade_decides_as_the_first_model_alone_and_the_second_never_runs(tmp_path) -> None:
    first_path, _ = cascade_pair(tmp_path)
    single = Classifier(build_tiny_model(tmp_path / "single.onnx"))
    cascade = Classifier(first_path)
    second_runs = []
    second_scores = cascade.second.nailong_scores
    cascade.second.nailong_scores = lambda batch: second_runs.append(len(batch)) or second_scores(batch)
    inside = 0
    for colour in COLOURS:
        alone = single.image_score(frames_of(colour))
        runs_before = len(second_runs)
        score = cascade.image_score(frames_of(colour))
        if BAND[0] <= alone < BAND[1]:
            inside += 1
            assert len(second_runs) == runs_before + 1, colour
            assert score == pytest.approx(cascade.second.image_score(frames_of(colour)))
            assert score < 0.01 < alone, colour  # the second model's word, not the first's
        else:
            assert len(second_runs) == runs_before, colour
            assert score == alone, colour
    assert inside == 2  # OLIVE and AMBER; the other four never reach the second model


async def test_the_plugin_decides_through_the_cascade(tmp_path) -> None:
    first_path, _ = cascade_pair(tmp_path)
    decider = Decider(Classifier(first_path), workers=1, max_frames=8, max_pixels=40_000_000)
    assert (await decider.decide(still(YELLOW, "PNG"))).score >= 0.9
    assert (await decider.decide(still(OLIVE, "PNG"))).score < 0.01  # uncertain: the second model says no
    decider.shutdown()


def test_the_second_model_must_be_there_and_match_its_checksum(tmp_path) -> None:
    first_path, second_path = cascade_pair(tmp_path)
    second_path.with_name(second_path.name + ".sha256").write_text("0" * 64 + "\n")
    with pytest.raises(ModelError, match="checksum"):
        Classifier(first_path)
    first_path, _ = cascade_pair(tmp_path / "missing", second="absent.onnx")
    with pytest.raises(ModelError, match="not found"):
        Classifier(first_path)


@pytest.mark.parametrize("cascade", [{"model": "second.onnx", "band": [0.9, 0.3]},
                                     {"model": "../elsewhere/second.onnx", "band": [0.3, 0.9]},
                                     {"band": [0.3, 0.9]}])
def test_a_bad_cascade_in_the_metadata_is_a_model_error(tmp_path, cascade) -> None:
    build_tiny_model(tmp_path / "second.onnx", yellow=False)
    first = build_tiny_model(tmp_path / "first.onnx", extra_metadata={"cascade": json.dumps(cascade)})
    with pytest.raises(ModelError, match="cascade"):
        Classifier(first)


def test_a_second_model_that_names_a_cascade_itself_is_refused(tmp_path) -> None:
    """No chains, and no loop: a second model naming itself would load forever."""
    looping = build_tiny_model(tmp_path / "second.onnx",
                               extra_metadata={"cascade": json.dumps({"model": "second.onnx", "band": [0.3, 0.9]})})
    write_checksum(looping)
    first = build_tiny_model(tmp_path / "first.onnx",
                             extra_metadata={"cascade": json.dumps({"model": "second.onnx", "band": [0.3, 0.9]})})
    with pytest.raises(ModelError, match="third"):
        Classifier(first)
