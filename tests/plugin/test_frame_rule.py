"""The frame rule: how an animation's sampled frames make its score, read from the model's metadata and
applied the same way by the plugin and the trainer (the trainer's side: tests/trainer/test_parity.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from nailong_bot.decision import Decider
from nailong_vision import frame_rule
from nailong_vision.classifier import Classifier, ModelError, bundled_model_path
from nailong_vision.frame_rule import FrameRule, parse
from nailong_testkit import TINY_THRESHOLD, WHITE, animated_gif, build_tiny_model

# Three nailong frames in eight: a sticker where nailong appears in only part of the animation (shades
# differ a little, or the GIF encoder merges repeated frames into one).
WHITES = [tuple(v - 6 * k for v in WHITE) for k in range(5)]
YELLOWS = [(255 - 5 * k, 220 - 5 * k, 0) for k in range(3)]
PARTLY_NAILONG = WHITES[:2] + YELLOWS + WHITES[2:]
SCORES = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.5, 0.05, 0.6])


@pytest.mark.parametrize(("rule", "expected"), [
    ("max", 0.9),
    ("mean", SCORES.mean()),
    ("trimmed_mean:0.25", np.mean([0.2, 0.3, 0.5, 0.6])),  # two dropped at each end
    ("k_of_n:1", 0.9),
    ("k_of_n:2", 0.8),
    ("k_of_n:3", 0.6),
])
def test_each_rule_scores_the_frames(rule: str, expected: float) -> None:
    assert parse(rule).score(SCORES) == pytest.approx(expected)
    assert parse(rule).name == rule


@pytest.mark.parametrize("rule", ["max", "mean", "trimmed_mean:0.4", "k_of_n:3"])
def test_a_still_keeps_its_own_score_under_every_rule(rule: str) -> None:
    assert parse(rule).score(np.array([0.42])) == pytest.approx(0.42)


def test_combined_class_probabilities_follow_the_rule() -> None:
    frames = np.array([[0.2, 0.8], [0.7, 0.3], [0.9, 0.1]])
    assert parse("max").combine(frames, 0).tolist() == [0.9, 0.1]
    assert parse("k_of_n:2").combine(frames, 0).tolist() == [0.7, 0.3]
    assert parse("mean").combine(frames, 0) == pytest.approx([0.6, 0.4])


@pytest.mark.parametrize("text", ["median", "k_of_n", "k_of_n:0", "k_of_n:1.5", "trimmed_mean:0.5", "mean:2", ""])
def test_a_bad_rule_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def test_a_model_without_the_key_keeps_todays_rule(tmp_path) -> None:
    assert Classifier(build_tiny_model(tmp_path / "m.onnx")).info.frame_rule == FrameRule("max")
    written = build_tiny_model(tmp_path / "k.onnx", extra_metadata={"frame_rule": "k_of_n:2"})
    assert Classifier(written).info.frame_rule == FrameRule("k_of_n", 2)


def test_an_unreadable_rule_in_the_metadata_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="metadata"):
        Classifier(build_tiny_model(tmp_path / "m.onnx", extra_metadata={"frame_rule": "median"}))


def shipped_rule() -> FrameRule:
    metadata = {p.key: p.value for p in onnx.load(str(bundled_model_path()), load_external_data=False).metadata_props}
    return frame_rule.from_metadata(metadata)


async def test_a_partly_nailong_animation_is_caught_under_the_shipped_rule(tmp_path) -> None:
    """The bundled model's rule keeps recall on a sticker where nailong is in three frames of eight; the
    mean of the frames (which would lose it) shows what the test guards against."""
    rules = {"shipped": shipped_rule().name, "mean": "mean"}
    scores = {}
    for name, rule in rules.items():
        model = build_tiny_model(tmp_path / f"{name}.onnx", frames=8, extra_metadata={"frame_rule": rule})
        decider = Decider(Classifier(model), workers=1, max_frames=None, max_pixels=40_000_000)
        decision = await decider.decide(animated_gif(PARTLY_NAILONG))
        decider.shutdown()
        assert decision.frames == 8
        scores[name] = decision.score
    assert scores["shipped"] >= TINY_THRESHOLD, scores
    assert scores["mean"] < TINY_THRESHOLD, scores


@pytest.mark.parametrize("rule", ["max", "mean", "trimmed_mean:0.25", "k_of_n:2"])
def test_blank_frames_are_left_out(rule: str) -> None:
    """A blank frame carries no evidence: the rule scores the other frames, and 0 when all are blank."""
    scores = np.array([0.65, 0.9, 0.8, 0.65])
    flat = np.array([True, False, False, True])
    assert parse(rule).score(scores, flat) == parse(rule).score(scores[~flat])
    assert parse(rule).score(scores, np.ones(4, dtype=bool)) == 0.0
    combined = parse(rule).combine(np.array([[0.65, 0.35], [0.7, 0.3]]), 0, np.array([True, True]))
    assert combined.tolist() == [0.0, 1.0]


def test_flat_frames_are_those_without_spread() -> None:
    batch = np.zeros((3, 3, 8, 8), dtype=np.float32)
    batch[0] = [[[2.2]], [[2.4]], [[2.6]]]  # solid white, normalised: the channels differ, no pixel does
    batch[1, :, 3, 3] = 1.0  # one bright pixel is content
    batch[2] = np.random.default_rng(0).normal(0.0, 0.001, (3, 8, 8))  # noise far below one grey level
    assert frame_rule.flat_frames(batch).tolist() == [True, False, True]
