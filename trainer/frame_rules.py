"""frame-rule: choose how an animation's frames make its score, on the family yardstick.

Every image's frames are scored once, through the plugin's decoding; each candidate rule
(nailong_vision/frame_rule.py) then makes image scores from them, and the family yardstick is read at the
threshold that rule would ship with (the lowest with family-set FPR ≤ max_fpr), with nailong recall —
overall and on animated nailong — beside it. The rule with the most recall there wins; ties go to the lower
worst-decile family FPR. The chosen rule ships through the config key ``frame_rule`` (export writes it
into the model's metadata) and is calibrated with it.

    python -m trainer frame-rule --model models/nailong.onnx --families HELD_OUT_DIR [NAILONG_DIR] --out DIR
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from nailong_vision.decode import ImageDecodeError
from nailong_vision.frame_rule import parse as parse_frame_rule

from .config import load_config
from .data import ImageRecord, scan_imagefolder
from .evaluate import validation_records
from .families import DEFAULT_MAX_FPR, at_threshold, family_report
from .scoring import Scorer, load_scorer

log = logging.getLogger(__name__)

CANDIDATES = ("max", "mean", "trimmed_mean:0.25", "k_of_n:2", "k_of_n:3")


def frame_scores(scorer: Scorer, records: list[ImageRecord]) -> tuple[list[ImageRecord], list[np.ndarray]]:
    """P(nailong) of each sampled frame of each readable record (unreadable ones are left out)."""
    kept, scores = [], []
    for record in records:
        try:
            probs = scorer.frame_probs(scorer.decode(record.read()))
        except (ImageDecodeError, OSError) as error:
            log.warning("skipped unreadable image %s: %s", record.source, error)
            continue
        kept.append(record)
        scores.append(probs[:, scorer.positive_index])
    return kept, scores


def compare_rules(records: list[ImageRecord], frames: list[np.ndarray], rules: list[str], positive: str,
                  threshold: float, max_fpr: float = DEFAULT_MAX_FPR) -> dict[str, dict]:
    """Per rule: the family yardstick at the model's threshold and at the rule's own, with animated slices."""
    animated = np.array([len(f) > 1 for f in frames], dtype=bool)
    results = {}
    for name in rules:
        rule = parse_frame_rule(name)
        scores = np.array([rule.score(f) for f in frames])
        report = family_report(records, scores, threshold, positive, max_fpr)
        moving = [r for r, a in zip(records, animated) if a]
        report["animated_at_rule_threshold"] = (at_threshold(moving, scores[animated], report["rule_threshold"], positive)
                                                if moving else None)
        report.pop("per_family")
        results[rule.name] = report
    return results


def choose(results: dict[str, dict]) -> str:
    """The rule with the most nailong recall at its own family threshold; ties: lower worst-decile FPR."""
    def key(item: tuple[str, dict]) -> tuple[float, float]:
        row = item[1]["at_rule_threshold"]
        return (-(row["recall"] or 0.0), row["worst_decile_family_fpr"])

    return min(results.items(), key=key)[0]


def markdown(results: dict[str, dict], chosen: str, model: str) -> str:
    def rate(value: float | None) -> str:
        return "–" if value is None else f"{value:.2%}"

    lines = [f"# 帧规则 / Frame rule on the family yardstick: {model}", "",
             "Per rule, at the threshold it would ship with (lowest with family-set FPR ≤ "
             f"{next(iter(results.values()))['max_fpr']:.0%}), and at the model's own threshold.", "",
             "| rule | threshold | FPR | mean family FPR | worst-decile | worst family | recall | animated FPR | "
             "animated recall | at model threshold: FPR / worst-decile / recall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, report in results.items():
        row, model_row = report["at_rule_threshold"], report["at_threshold"]
        moving = report["animated_at_rule_threshold"] or {}
        lines.append(f"| {'**' + name + '**' if name == chosen else name} | {row['threshold']:.4f} | "
                     f"{rate(row['false_positive_rate'])} | {rate(row['mean_family_fpr'])} | "
                     f"{rate(row['worst_decile_family_fpr'])} | {rate(row['max_family_fpr'])} | {rate(row['recall'])} | "
                     f"{rate(moving.get('false_positive_rate'))} | {rate(moving.get('recall'))} | "
                     f"{rate(model_row['false_positive_rate'])} / {rate(model_row['worst_decile_family_fpr'])} / "
                     f"{rate(model_row['recall'])} |")
    lines += ["", f"Chosen: **{chosen}** (most nailong recall at its family threshold; ties: lower worst-decile FPR).",
              ""]
    return "\n".join(lines)


def frame_rule_command(model: str, family_dirs: list[str], out: str, rules: list[str] | None = None,
                       max_fpr: float = DEFAULT_MAX_FPR, nailong_of: str | None = None) -> dict:
    """``nailong_of``: a training config whose grouped validation's nailong images join the recall (its
    other images stay out: the false-positive side is the families')."""
    scorer = load_scorer(model)
    positive = scorer.labels[scorer.positive_index]
    records = [r for root in family_dirs for r in scan_imagefolder(root)]
    if nailong_of:
        records += [r for r in validation_records(load_config(nailong_of)) if r.label == positive]
    kept, frames = frame_scores(scorer, records)
    results = compare_rules(kept, frames, list(rules or CANDIDATES), positive, scorer.threshold, max_fpr)
    chosen = choose(results)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"model": scorer.name, "data": family_dirs, "nailong_of": nailong_of, "images": len(kept),
               "animated": sum(len(f) > 1 for f in frames), "chosen": chosen, "rules": results}
    (out_dir / "frame_rules.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "frame_rules.md").write_text(markdown(results, chosen, scorer.name), encoding="utf-8")
    for name, report in results.items():
        row = report["at_rule_threshold"]
        log.info("%-18s threshold %.4f: FPR %.4f, worst-decile family FPR %.4f, recall %s", name, row["threshold"],
                 row["false_positive_rate"], row["worst_decile_family_fpr"], row["recall"])
    log.info("chosen frame rule: %s (report in %s)", chosen, out_dir)
    return summary
