import numpy as np
import pytest

from trainer.metrics import best_f1_threshold, binary_at, per_file_probs, pr_curve, summarize
from trainer.thresholds import threshold_for_precision

TRUTH = np.array([True, True, True, False, False, False, False])
SCORE = np.array([0.95, 0.9, 0.4, 0.8, 0.3, 0.2, 0.1])


def test_binary_at_threshold():
    row = binary_at(TRUTH, SCORE, 0.5)
    assert row["precision"] == pytest.approx(2 / 3) and row["recall"] == pytest.approx(2 / 3)
    assert row["false_positive_rate"] == pytest.approx(1 / 4)


def test_pr_curve_and_average_precision():
    precision, recall, thresholds, ap = pr_curve(TRUTH, SCORE)
    assert thresholds[0] == 0.95 and precision[0] == 1.0 and recall[-1] == 1.0
    assert ap == pytest.approx((1 + 1 + 3 / 4) / 3)


def test_thresholds_for_precision_and_best_f1():
    assert threshold_for_precision(TRUTH, SCORE, 0.99) == 0.9  # two hits, no false positive
    f1, threshold = best_f1_threshold(TRUTH, SCORE)
    assert threshold == 0.4 and f1 == pytest.approx(2 * 0.75 * 1.0 / 1.75)


def test_files_take_their_most_nailong_frame():
    frames = np.array([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    files = per_file_probs(frames, np.array([0, 0, 1]), 2, positive=0, flat=np.zeros(3, dtype=bool))
    assert files.tolist() == [[0.7, 0.3], [0.1, 0.9]]
    report = summarize(files, np.array([0, 1]), ["nailong", "other"], 0)
    assert report["accuracy"] == 1.0 and report["confusion_matrix"] == [[1, 0], [0, 1]]
    assert report["nailong_best_f1"] == 1.0
