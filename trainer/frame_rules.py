"""frame-rule: choose how an animation's frames make its score, on the family yardstick.

Every image's frames are scored once, through the plugin's decoding; each candidate rule
(nailong_vision/frame_rule.py) then makes image scores from them, and the family yardstick is read at the
model's threshold and at the threshold the family rule gives (the lowest with family-set FPR ≤ max_fpr),
with nailong recall — overall and on animated nailong — beside it.

The chosen rule is the one with the most nailong recall at the model's threshold, then the fewest family
false positives, among the rules that still catch a partly-nailong animation there (two clearly nailong
frames among eight, :data:`PARTLY_NAILONG`): mean-like rules lose those at any threshold above a quarter.
Every rule scores an image at most as high as ``max`` does, so moving a model calibrated under ``max`` to
another rule at the same threshold never adds a false positive anywhere. ``--write`` puts the chosen rule
into the model's metadata (and its checkpoint ``<model>.pt``, so a refresh or an export keeps it);
training runs take it from the config key ``frame_rule``.

    python -m trainer frame-rule --model models/nailong.onnx --families HELD_OUT_DIR --nailong-of CONFIG --out DIR
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from nailong_vision.decode import ImageDecodeError
from nailong_vision.frame_rule import METADATA_KEY
from nailong_vision.frame_rule import parse as parse_frame_rule

from .config import load_config
from .data import ImageRecord, scan_imagefolder
from .evaluate import validation_records
from .families import DEFAULT_MAX_FPR, at_threshold, family_report
from .scoring import Scorer, load_scorer

log = logging.getLogger(__name__)

CANDIDATES = ("max", "mean", "trimmed_mean:0.25", "k_of_n:2", "k_of_n:3")
# A sticker where nailong is in two of the eight sampled frames: the rule must still act on it.
PARTLY_NAILONG = np.array([0.95, 0.95, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])


def frame_scores(scorer: Scorer, records: list[ImageRecord]
                 ) -> tuple[list[ImageRecord], list[tuple[np.ndarray, np.ndarray]]]:
    """P(nailong) of each sampled frame of each readable record and which frames are blank (unreadable
    records are left out)."""
    kept, scores = [], []
    for record in records:
        try:
            probs, flat = scorer.frame_probs(scorer.decode(record.read()))
        except (ImageDecodeError, OSError) as error:
            log.warning("skipped unreadable image %s: %s", record.source, error)
            continue
        kept.append(record)
        scores.append((probs[:, scorer.positive_index], flat))
    return kept, scores


def compare_rules(records: list[ImageRecord], frames: list[tuple[np.ndarray, np.ndarray]], rules: list[str], positive: str,
                  threshold: float, max_fpr: float = DEFAULT_MAX_FPR) -> dict[str, dict]:
    """Per rule: the family yardstick at the model's threshold and at the rule's own, with animated slices."""
    animated = np.array([len(scores) > 1 for scores, _ in frames], dtype=bool)
    results = {}
    for name in rules:
        rule = parse_frame_rule(name)
        scores = np.array([rule.score(f, flat) for f, flat in frames])
        report = family_report(records, scores, threshold, positive, max_fpr)
        moving = [r for r, a in zip(records, animated) if a]
        report["animated_at_rule_threshold"] = (at_threshold(moving, scores[animated], report["rule_threshold"], positive)
                                                if moving else None)
        report.pop("per_family")
        report["partly_nailong_score"] = rule.score(PARTLY_NAILONG)
        report["catches_partly_nailong"] = bool(report["partly_nailong_score"] >= threshold)
        results[rule.name] = report
    return results


def choose(results: dict[str, dict]) -> str:
    """Among the rules that catch a partly-nailong animation at the model's threshold: the most nailong
    recall there, then the fewest family false positives, then the lower worst-decile family FPR."""
    def key(item: tuple[str, dict]) -> tuple[float, int, float]:
        row = item[1]["at_threshold"]
        return (-(row["recall"] or 0.0), row["false_positives"], row["worst_decile_family_fpr"])

    eligible = {name: report for name, report in results.items() if report["catches_partly_nailong"]}
    if not eligible:
        raise ValueError("no candidate rule catches a partly-nailong animation / 没有帧规则能抓到部分帧是奶龙的动图")
    return min(eligible.items(), key=key)[0]


def markdown(results: dict[str, dict], chosen: str, model: str) -> str:
    def rate(value: float | None) -> str:
        return "–" if value is None else f"{value:.2%}"

    first = next(iter(results.values()))
    lines = [f"# 帧规则 / Frame rule on the family yardstick: {model}", "",
             f"At the model's threshold {first['at_threshold']['threshold']:.4f}:", "",
             "| rule | FP | FPR | mean family FPR | worst-decile | worst family | recall | 2 of 8 frames nailong |",
             "|---|---|---|---|---|---|---|---|"]
    for name, report in results.items():
        row = report["at_threshold"]
        lines.append(f"| {'**' + name + '**' if name == chosen else name} | {row['false_positives']} | "
                     f"{rate(row['false_positive_rate'])} | {rate(row['mean_family_fpr'])} | "
                     f"{rate(row['worst_decile_family_fpr'])} | {rate(row['max_family_fpr'])} | {rate(row['recall'])} | "
                     f"{report['partly_nailong_score']:.3f} ({'caught' if report['catches_partly_nailong'] else 'lost'}) |")
    lines += ["", f"At each rule's own family threshold (lowest with family-set FPR ≤ {first['max_fpr']:.0%}):", "",
              "| rule | threshold | FPR | mean family FPR | worst-decile | worst family | recall | animated FPR | "
              "animated recall |", "|---|---|---|---|---|---|---|---|---|"]
    for name, report in results.items():
        row, moving = report["at_rule_threshold"], report["animated_at_rule_threshold"] or {}
        lines.append(f"| {name} | {row['threshold']:.4f} | {rate(row['false_positive_rate'])} | "
                     f"{rate(row['mean_family_fpr'])} | {rate(row['worst_decile_family_fpr'])} | "
                     f"{rate(row['max_family_fpr'])} | {rate(row['recall'])} | {rate(moving.get('false_positive_rate'))} | "
                     f"{rate(moving.get('recall'))} |")
    lines += ["", f"Chosen: **{chosen}** — among the rules that still catch two nailong frames in eight at the model's "
              "threshold, the most recall there, then the fewest family false positives.", ""]
    return "\n".join(lines)


def write_rule(model: Path, rule: str) -> None:
    """The rule into an exported model's metadata (checksum rewritten) and into the config of the checkpoint
    beside it (``<model>.pt``, when there is one), so a refresh or an export from it keeps the rule."""
    import onnx

    from .checkpoint import Checkpoint
    from .export import write_checksum, write_metadata

    metadata = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    write_metadata(model, {**metadata, METADATA_KEY: rule})
    write_checksum(model)
    checkpoint_path = model.with_suffix(".pt")
    if checkpoint_path.is_file():
        checkpoint = Checkpoint.load(checkpoint_path)
        checkpoint.config = dataclasses.replace(checkpoint.config, frame_rule=rule)
        checkpoint.save(checkpoint_path, resume=False)


def frame_rule_command(model: str, family_dirs: list[str], out: str, rules: list[str] | None = None,
                       max_fpr: float = DEFAULT_MAX_FPR, nailong_of: str | None = None, write: bool = False) -> dict:
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
    if write:
        write_rule(Path(model), chosen)
        log.info("wrote frame_rule=%s into %s", chosen, model)
    return summary
