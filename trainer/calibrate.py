"""Calibration on the wild set: the shipped threshold is the lowest at which images from sources never
trained on (the config's ``wild_sources``) are flagged at most ``wild_max_fpr`` of the time.

Below it, the review floor: the highest threshold at which the validation's nailong still reach it
``REVIEW_RECALL`` of the time. Scores between the two are the model's unsure band: the plugin acts on
none of them and asks a group's admins instead (its review queue).

The validation split says how well the model ranks; it cannot say how often it fires on sticker series it
never saw, because its negatives come from the same collections as the training ones. The wild set can.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import onnx

from nailong_vision.decode import ImageDecodeError

from .checkpoint import Checkpoint
from .config import TrainConfig
from .data import ImageRecord, wild_records
from .metrics import summarize
from .scoring import Scorer, load_scorer
from .thresholds import REVIEW_RULE, THRESHOLD_DECIMALS, review_floor, validation_hard_threshold, wild_threshold

log = logging.getLogger(__name__)


def score_records(scorer: Scorer, records: list[ImageRecord]) -> tuple[list[ImageRecord], np.ndarray]:
    """P(nailong) of each readable record, through the plugin's decoding and preprocessing."""
    kept, scores = [], []
    for record in records:
        try:
            scores.append(scorer.score_bytes(record.read())[scorer.positive_index])
        except (ImageDecodeError, OSError) as error:
            log.warning("skipped unreadable wild image %s: %s", record.source, error)
            continue
        kept.append(record)
    return kept, np.array(scores, dtype=np.float64)


def wild_report(records: list[ImageRecord], scores: np.ndarray, threshold: float, positive: str) -> dict:
    """False positives of the wild set at ``threshold``: overall, on hard-tagged images, by source and by tag."""
    is_positive = np.array([r.label == positive for r in records])
    hit = scores >= threshold

    def rates(members: np.ndarray) -> dict:
        other = members & ~is_positive
        nailong = members & is_positive
        return {"images": int(members.sum()), "other": int(other.sum()), "false_positives": int(hit[other].sum()),
                "false_positive_rate": float(hit[other].mean()) if other.any() else None,
                "nailong": int(nailong.sum()), "recall": float(hit[nailong].mean()) if nailong.any() else None}

    every = np.ones(len(records), dtype=bool)
    by_source = {s: rates(np.array([r.source_repo == s for r in records])) for s in sorted({r.source_repo for r in records})}
    by_tag = {t: rates(np.array([r.tag == t for r in records])) for t in sorted({r.tag for r in records} - {""})}
    order = np.argsort(-scores)
    return {
        "threshold": threshold,
        **rates(every),
        "hard": rates(np.array([r.tag == "hard" for r in records])),
        "by_source": by_source,
        "by_tag": by_tag,
        "false_positive_files": [(records[i].source, float(scores[i])) for i in order
                                 if hit[i] and not is_positive[i]],
        "missed_nailong": [(records[i].source, float(scores[i])) for i in order if is_positive[i] and not hit[i]],
    }


def calibrate_model(model_path: str | Path, cfg: TrainConfig, checkpoint: Checkpoint | None = None) -> dict:
    """Score the wild set with the exported model, write the wild threshold into its metadata (with the
    validation metrics at that threshold, from ``checkpoint``) and return the calibration report."""
    scorer = load_scorer(model_path)
    positive = scorer.labels[scorer.positive_index]
    records, scores = score_records(scorer, wild_records(cfg))
    other = np.array([r.label != positive for r in records])
    threshold = wild_only = wild_threshold(scores[other], cfg.wild_max_fpr)
    rule = f"lowest threshold with wild-set false-positive rate ≤ {cfg.wild_max_fpr:.2%}"
    hard_threshold = None
    validation = checkpoint.validation if checkpoint is not None else None
    if cfg.val_hard_max_fpr is not None and validation is not None:
        hard_threshold = validation_hard_threshold(validation, checkpoint.labels, cfg, positive)
        threshold = max(threshold, hard_threshold)
        rule += f" and validation hard-negative false-positive rate ≤ {cfg.val_hard_max_fpr:.2%}"
    report = {"rule": rule,
              "wild_sources": cfg.wild_sources,
              "wild_only_threshold": wild_only,
              "validation_hard_threshold": hard_threshold,
              "precision_target_threshold": scorer.threshold,
              "wild": wild_report(records, scores, threshold, positive),
              "wild_at_precision_target": wild_report(records, scores, scorer.threshold, positive)}
    path = Path(model_path)
    model = onnx.load(str(path))
    metadata = {p.key: p.value for p in model.metadata_props}
    metadata["threshold"] = f"{threshold:.{THRESHOLD_DECIMALS}f}"
    floor = None
    if validation is not None:
        labels = checkpoint.labels
        nailong = validation.targets == labels.index(positive)
        floor = min(review_floor(validation.probs[nailong, labels.index(positive)]), threshold)
        metadata["review_floor"] = f"{floor:.{THRESHOLD_DECIMALS}f}"
        report["review_floor"] = floor
        metrics = summarize(validation.probs, validation.targets, labels, labels.index(positive), threshold)
        headline = json.loads(metadata.get("metrics", "{}"))
        headline.update({k: metrics[k] for k in ("accuracy", "macro_f1", "nailong_precision", "nailong_recall",
                                                 "nailong_f1", "nailong_fpr")})
        report["validation_at_threshold"] = headline
        metadata["metrics"] = json.dumps(headline)
    metadata["calibration"] = json.dumps({
        "rule": report["rule"], "wild_sources": cfg.wild_sources, "wild_only_threshold": wild_only,
        "validation_hard_threshold": hard_threshold,
        "wild_other": report["wild"]["other"], "wild_false_positive_rate": report["wild"]["false_positive_rate"],
        "wild_hard_false_positive_rate": report["wild"]["hard"]["false_positive_rate"],
        "precision_target_threshold": round(scorer.threshold, THRESHOLD_DECIMALS),
        **({"review_rule": REVIEW_RULE} if floor is not None else {})})
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    log.info("rule: %s → threshold %.4f (wild set alone: %.4f)", rule, threshold, wild_only)
    log.info("wild set (%d other, %d hard): threshold %.4f → false-positive rate %.4f (hard %.4f); the precision "
             "target's threshold %.4f gave %.4f", report["wild"]["other"], report["wild"]["hard"]["other"], threshold,
             report["wild"]["false_positive_rate"], report["wild"]["hard"]["false_positive_rate"] or 0.0,
             scorer.threshold, report["wild_at_precision_target"]["false_positive_rate"])
    return report


def review_floor_from_evaluation(model_path: str | Path, evaluation_dir: str | Path) -> float:
    """Write the review floor into a calibrated model whose validation split cannot be scored again here,
    from its own evaluation (``trainer evaluate --val-of``): every nailong it missed, with its score, is in
    the mistakes CSV, and every other nailong reached the threshold, so above the floor. The weights and
    the threshold stay; the checksum is written again. Raises ValueError when the evaluation is not this
    model's, or lists fewer missed nailong than it counted."""
    from .export import write_checksum, write_metadata

    path, evaluation = Path(model_path), Path(evaluation_dir)
    report = json.loads((evaluation / "report.json").read_text(encoding="utf-8"))
    metadata = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    threshold = float(metadata["threshold"])
    if report["model"] != f"{metadata.get('model_name')} {metadata.get('version')}" or report["threshold"] != threshold:
        raise ValueError(f"{evaluation} is not the evaluation of {path} at its threshold {threshold} / 不是该模型的评估")
    # Where evaluate writes it, or beside the report (models/evaluation); none when it made no mistake.
    sheets = [p for p in (evaluation / "mistakes" / "mistakes.csv", evaluation / "mistakes.csv") if p.exists()]
    positive = metadata.get("positive_label", "nailong")
    missed = []
    for sheet in sheets[:1]:
        with sheet.open(encoding="utf-8", newline="") as file:
            missed = [float(row["score"]) for row in csv.DictReader(file) if row["label"] == positive]
    if len(missed) != len(report["false_negatives"]):
        raise ValueError(f"the mistakes CSV lists {len(missed)} missed nailong, the report "
                         f"{len(report['false_negatives'])} / 评估的错误清单不完整")
    reached = report["per_class"][positive]["support"] - len(missed)
    floor = min(review_floor(np.array(missed + [threshold] * reached)), threshold)
    metadata["review_floor"] = f"{floor:.{THRESHOLD_DECIMALS}f}"
    calibration = json.loads(metadata.get("calibration", "{}"))
    calibration["review_rule"] = REVIEW_RULE
    metadata["calibration"] = json.dumps(calibration)
    write_metadata(path, metadata)
    write_checksum(path)
    nailong = len(missed) + reached
    recall = (int((np.array(missed) >= floor).sum()) + reached) / nailong
    log.info("%s: review floor %.4f (recall %.4f of %d validation nailong), threshold %.4f kept", path, floor, recall,
             nailong, threshold)
    return floor
