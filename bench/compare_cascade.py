"""Which model ships, on the family yardstick: the first model alone, the second alone, and the cascade of
the two for a few uncertain bands.

    .venv/bin/python bench/compare_cascade.py --first models/nailong.onnx --second runs/lite2/model.onnx \
        --families .cache/datasets/family-wild [NAILONG_DIR …] --out runs/cascade-compare

Every image is decoded once (as the plugin decodes it for the first model) and scored by both models, each
with its own frame rule; a cascade's score is the first model's outside the band and the second's inside
(nailong_vision.classifier). For each candidate: the threshold the family rule gives (lowest with
family-set FPR ≤ --max-fpr), the yardstick there (FPR, mean and worst-decile family FPR, nailong recall),
and the share of images that reach the second model (what the band costs: see bench/bench_cascade.py for
the milliseconds). Writes cascade.json and cascade.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nailong_vision.classifier import CascadeSpec  # noqa: E402
from nailong_vision.decode import ImageDecodeError  # noqa: E402
from trainer.data import scan_imagefolder  # noqa: E402
from trainer.families import DEFAULT_MAX_FPR, family_report  # noqa: E402
from trainer.scoring import load_scorer  # noqa: E402

BANDS = [(0.05, 0.95), (0.1, 0.9), (0.2, 0.8), (0.3, 0.97)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=Path, required=True)
    parser.add_argument("--second", type=Path, required=True)
    parser.add_argument("--families", nargs="+", required=True, help="held-out family folders (+ nailong folders)")
    parser.add_argument("--band", type=float, nargs=2, action="append", metavar=("LOW", "HIGH"),
                        help=f"bands to try (repeatable; default {BANDS})")
    parser.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    first, second = load_scorer(args.first), load_scorer(args.second)
    positive = first.labels[first.positive_index]
    records, first_scores, second_scores = [], [], []
    for record in (r for root in args.families for r in scan_imagefolder(root)):
        try:
            frames = first.decode(record.read())
        except (ImageDecodeError, OSError):
            continue
        records.append(record)
        first_scores.append(first.image_probs(frames)[first.positive_index])
        second_scores.append(second.image_probs(frames)[second.positive_index])
    first_scores, second_scores = np.array(first_scores), np.array(second_scores)

    candidates = {f"first alone ({first.name})": (first_scores, 0.0),
                  f"second alone ({second.name})": (second_scores, 1.0)}
    for low, high in args.band or BANDS:
        band = CascadeSpec("second", low, high)
        inside = np.array([band.uncertain(s) for s in first_scores])
        candidates[f"cascade [{low}, {high})"] = (np.where(inside, second_scores, first_scores), float(inside.mean()))
    results = {}
    for name, (scores, reach) in candidates.items():
        report = family_report(records, scores, first.threshold, positive, args.max_fpr)
        report.pop("per_family")
        results[name] = {"reach_second": reach, **report}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cascade.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    lines = [f"# Cascade comparison on {', '.join(args.families)} ({len(records)} images)", "",
             f"At each candidate's own threshold (lowest with family-set FPR ≤ {args.max_fpr:.0%}):", "",
             "| candidate | threshold | FPR | mean family FPR | worst-decile | worst family | recall | reach 2nd |",
             "|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        row = result["at_rule_threshold"]
        recall = "–" if row["recall"] is None else f"{row['recall']:.2%}"
        lines.append(f"| {name} | {row['threshold']:.4f} | {row['false_positive_rate']:.2%} | "
                     f"{row['mean_family_fpr']:.2%} | {row['worst_decile_family_fpr']:.2%} | "
                     f"{row['max_family_fpr']:.2%} | {recall} | {result['reach_second']:.1%} |")
    (args.out / "cascade.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
