"""Threshold choice, in one place: every rule that turns scores into the threshold a model ships with.

- the precision target on the validation files (the recommended threshold written at export);
- the lowest threshold with at most a given false-positive rate on a set of negatives (the wild set, the
  held-out sticker families, the validation's hard-tagged negatives);
- the review floor: the highest threshold at which the validation's nailong still reach it
  ``REVIEW_RECALL`` of the time (the bottom of the band the plugin asks the admins about).
"""

from __future__ import annotations

import math

import numpy as np

from .checkpoint import Checkpoint, Validation
from .config import TrainConfig
from .data import load_records
from .metrics import best_f1_threshold, headline_metrics, pr_curve

THRESHOLD_DECIMALS = 4  # the metadata stores the threshold with four decimals
# Validation recall at the review floor: about one nailong in a hundred scores below it.
REVIEW_RECALL = 0.99
REVIEW_RULE = f"review floor: highest threshold with validation nailong recall ≥ {REVIEW_RECALL:.0%}"


def threshold_for_precision(is_positive: np.ndarray, score: np.ndarray, target: float) -> float:
    """The lowest threshold whose nailong precision reaches ``target`` (most recall at that
    precision); if none does, the threshold with the best F1."""
    precision, recall, thresholds, _ = pr_curve(is_positive, score)
    reaching = np.nonzero(precision >= target)[0]
    if len(reaching):
        return float(thresholds[reaching[-1]])
    return best_f1_threshold(is_positive, score)[1]


def recommended_threshold(checkpoint: Checkpoint, precision_target: float,
                          scores: tuple[np.ndarray, np.ndarray]) -> tuple[float, dict]:
    """Threshold for the precision target on the validation files, and the metrics there."""
    probs, targets = scores
    positive = checkpoint.positive_index
    threshold = threshold_for_precision(targets == positive, probs[:, positive], precision_target)
    return threshold, headline_metrics(probs, targets, checkpoint.labels, positive, threshold, precision_target)


def wild_threshold(other_scores: np.ndarray, max_fpr: float, decimals: int = THRESHOLD_DECIMALS) -> float:
    """The lowest threshold (to ``decimals``) at which at most ``max_fpr`` of ``other_scores`` reach it.

    A hit is ``score >= threshold``, as in the plugin. With ``n`` negatives, ``floor(max_fpr · n)`` may
    reach it; the threshold is the next step above the highest score that must stay below."""
    scores = np.sort(np.asarray(other_scores, dtype=np.float64))[::-1]
    if len(scores) == 0:
        raise ValueError("no negatives to set the threshold on / 没有负样本，无法定阈值")
    allowed = math.floor(max_fpr * len(scores) + 1e-9)
    if allowed >= len(scores):
        return 0.0
    must_miss = scores[allowed]  # the highest score that has to stay under the threshold
    step = 10.0 ** -decimals
    threshold = round(math.floor(must_miss / step) * step, decimals)
    while threshold <= must_miss:  # the smallest value of that many decimals strictly above it
        threshold = round(threshold + step, decimals)
    return min(threshold, 1.0)


def validation_hard_threshold(validation: Validation, labels: list[str], cfg: TrainConfig, positive: str) -> float:
    """The lowest threshold with at most ``val_hard_max_fpr`` of the validation's hard-tagged negatives
    reaching it (scores stored in the checkpoint, tags from the data folders' MANIFEST)."""
    tags = {r.source: r.tag for r in load_records(cfg)}
    scores = validation.probs[:, labels.index(positive)]
    hard = np.array([tags.get(source) == "hard" for source in validation.sources])
    hard &= validation.targets != labels.index(positive)
    if not hard.any():
        raise ValueError("no hard-tagged negatives in the validation split / 验证集里没有难负样本")
    return wild_threshold(scores[hard], cfg.val_hard_max_fpr)


def review_floor(nailong_scores: np.ndarray, target_recall: float = REVIEW_RECALL,
                 decimals: int = THRESHOLD_DECIMALS) -> float:
    """The highest threshold (to ``decimals``) at which at least ``target_recall`` of ``nailong_scores``
    reach it (a hit is ``score >= threshold``). With ``n`` nailong, ``floor((1 - target_recall) · n)`` may
    stay below; the floor is the step at or under the lowest score that has to reach it."""
    scores = np.sort(np.asarray(nailong_scores, dtype=np.float64))
    if len(scores) == 0:
        raise ValueError("no nailong scores to set the review floor on / 没有奶龙样本的得分")
    allowed = math.floor((1.0 - target_recall) * len(scores) + 1e-9)
    must_reach = scores[min(allowed, len(scores) - 1)]
    step = 10.0 ** -decimals
    return max(0.0, round(math.floor(must_reach / step) * step, decimals))
