"""Metrics on validation scores (numpy only), shared by the training loop, export and evaluate."""

from __future__ import annotations

import numpy as np

from nailong_vision.frame_rule import DEFAULT_RULE, FrameRule


def per_file_probs(frame_probs: np.ndarray, frame_file: np.ndarray, n_files: int, positive: int,
                   rule: FrameRule = DEFAULT_RULE, *, flat: np.ndarray) -> np.ndarray:
    """Each file's class probabilities from its frames', by the plugin's frame rule, blank frames
    (``flat``, from ``frame_rule.flat_frames`` of the model input) left out as the plugin leaves them."""
    out = np.zeros((n_files, frame_probs.shape[1]), dtype=np.float64)
    order = np.argsort(frame_file, kind="stable")
    files, starts = np.unique(frame_file[order], return_index=True)
    for file, rows in zip(files, np.split(order, starts[1:])):
        out[file] = rule.combine(frame_probs[rows], positive, flat[rows])
    return out


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def per_class(matrix: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    report = {}
    for k, label in enumerate(labels):
        tp = matrix[k, k]
        precision = _ratio(tp, matrix[:, k].sum())
        recall = _ratio(tp, matrix[k].sum())
        report[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": int(matrix[k].sum()),
        }
    return report


def binary_at(is_positive: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Nailong precision/recall/F1 and the false-positive rate when hits are score ≥ threshold."""
    hit = score >= threshold
    tp = int(np.sum(hit & is_positive))
    fp = int(np.sum(hit & ~is_positive))
    fn = int(np.sum(~hit & is_positive))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "false_positive_rate": _ratio(fp, int(np.sum(~is_positive))),
    }


def pr_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Precision, recall at each distinct score used as threshold (descending), and average precision."""
    order = np.argsort(-score, kind="stable")
    sorted_score, sorted_pos = score[order], is_positive[order]
    tp = np.cumsum(sorted_pos)
    fp = np.cumsum(~sorted_pos)
    last = np.r_[np.nonzero(np.diff(sorted_score))[0], len(score) - 1]
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / max(1, int(is_positive.sum()))
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return precision, recall, sorted_score[last], average_precision


def best_f1_threshold(is_positive: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """The highest nailong F1 over all thresholds, and that threshold: how good the score is once
    a threshold is tuned, as the plugin's is, whatever the calibration at 0.5."""
    precision, recall, thresholds, _ = pr_curve(is_positive, score)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def summarize(file_probs: np.ndarray, file_targets: np.ndarray, labels: list[str], positive: int,
              threshold: float | None = None) -> dict:
    """Headline metrics per file: accuracy and macro F1 by argmax, nailong P/R/F1 at ``threshold``
    (argmax when None), the best nailong F1 over thresholds and average precision."""
    predictions = file_probs.argmax(1)
    matrix = confusion_matrix(file_targets, predictions, len(labels))
    classes = per_class(matrix, labels)
    is_positive = file_targets == positive
    score = file_probs[:, positive]
    nailong = (binary_at(is_positive, score, threshold) if threshold is not None
               else {**classes[labels[positive]], "false_positive_rate": _ratio(
                   int(np.sum((predictions == positive) & ~is_positive)), int(np.sum(~is_positive)))})
    best_f1, best_threshold = best_f1_threshold(is_positive, score) if is_positive.any() else (0.0, 1.0)
    return {
        "accuracy": float(np.mean(predictions == file_targets)) if len(file_targets) else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in classes.values()])),
        "nailong_precision": nailong["precision"],
        "nailong_recall": nailong["recall"],
        "nailong_f1": nailong["f1"],
        "nailong_fpr": nailong["false_positive_rate"],
        "nailong_best_f1": best_f1,
        "nailong_best_f1_threshold": best_threshold,
        "average_precision": pr_curve(is_positive, score)[3] if is_positive.any() else 0.0,
        "confusion_matrix": matrix.tolist(),
        "per_class": classes,
    }


def headline_metrics(probs: np.ndarray, targets: np.ndarray, labels: list[str], positive: int, threshold: float,
                     precision_target: float) -> dict:
    """The metrics written into an exported model's metadata."""
    metrics = summarize(probs, targets, labels, positive, threshold)
    headline = {k: metrics[k] for k in ("accuracy", "macro_f1", "nailong_precision", "nailong_recall",
                                        "nailong_f1", "nailong_fpr", "nailong_best_f1",
                                        "nailong_best_f1_threshold", "average_precision")}
    headline["precision_target"] = precision_target
    headline["validation_images"] = int(len(targets))
    return headline
