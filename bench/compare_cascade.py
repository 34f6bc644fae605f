"""Which model ships, judged the way the shipped one was: the first model alone, the second alone, and the
cascade of the two for a few uncertain bands.

    .venv/bin/python bench/compare_cascade.py --first models/nailong.onnx --second lite2.onnx \
        --line configs/lite0-families-r2.yaml --val-checkpoint runs/lite0-families-r2/checkpoints/best.pt \
        --families .cache/datasets/family-wild .cache/datasets/family-wild-r2 \
        --nailong .cache/datasets/nailong-disjoint --out runs/cascade-compare

Every image is decoded once, as the plugin decodes it for the first model, and scored by both models, each
with its own frame rule; a cascade's score is the first model's outside the band and the second's inside
(nailong_vision.classifier). Each candidate gets the threshold the shipping rule gives on its own scores —
the lowest with the wild set's false-positive rate ≤ ``wild_max_fpr`` and the validation's hard-tagged
negatives' ≤ ``val_hard_max_fpr`` (both from --line's config) — and the review floor the export would write (validation nailong recall ≥ 99 %
below it), and is judged at the threshold on:
- the held-out families (--families): false-positive rate, worst family, worst-decile family;
- source-disjoint nailong (--nailong): recall;
- the grouped validation (the files of --val-checkpoint's split, which neither model trained on): recall,
  average precision, recall on the AI-rendered nailong sources, hard negatives;
- the wild set; and the share of the families' and the wild set's images that reach the second model
  (what the band costs: bench/bench_cascade.py gives the milliseconds).
Scores are kept in --out/scores.npz, so a second run with other bands scores nothing. Writes cascade.json
and cascade.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nailong_vision.classifier import CascadeSpec  # noqa: E402
from nailong_vision.decode import ImageDecodeError  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.data import ImageRecord, load_records, scan_imagefolder, wild_records  # noqa: E402
from trainer.evaluate import in_subset  # noqa: E402
from trainer.families import at_threshold  # noqa: E402
from trainer.metrics import pr_curve  # noqa: E402
from trainer.scoring import Scorer, load_scorer  # noqa: E402
from trainer.thresholds import review_floor, wild_threshold  # noqa: E402

BANDS = [(0.2355, 0.95), (0.3, 0.9), (0.5, 0.9), (0.1, 0.99)]
AI_RENDERED = "AI"  # the report subset of the line's config whose name holds this: AI-rendered nailong sources


def validation_of(checkpoint_path: Path, records: list[ImageRecord]) -> list[ImageRecord]:
    """The validation files of a training run (stored in its best.pt), as records."""
    sources = torch.load(checkpoint_path, map_location="cpu", weights_only=False)["val_sources"]
    by_source = {r.source: r for r in records}
    return [by_source[source] for source in sources]


def score_sets(first: Scorer, second: Scorer, sets: dict[str, list[ImageRecord]], path: Path) -> dict:
    """{set: (records kept, first scores, second scores)}, read from ``path`` when it holds these sets."""
    names = {name: [r.source for r in records] for name, records in sets.items()}
    models = [first.name, second.name]
    if path.exists():
        saved = np.load(path, allow_pickle=False)
        if json.loads(str(saved["key"])) == {"models": models, "sets": names}:
            by_source = {r.source: r for records in sets.values() for r in records}
            return {name: ([by_source[s] for s in saved[f"{name}_kept"]], saved[f"{name}_first"], saved[f"{name}_second"])
                    for name in sets}
    scored, arrays = {}, {"key": json.dumps({"models": models, "sets": names})}
    for name, records in sets.items():
        kept, first_scores, second_scores = [], [], []
        for record in tqdm(records, desc=name):
            try:
                frames = first.decode(record.read())
            except (ImageDecodeError, OSError):
                continue
            kept.append(record)
            first_scores.append(first.image_probs(frames)[first.positive_index])
            second_scores.append(second.image_probs(frames)[second.positive_index])
        scored[name] = (kept, np.array(first_scores), np.array(second_scores))
        arrays |= {f"{name}_kept": np.array([r.source for r in kept]), f"{name}_first": scored[name][1],
                   f"{name}_second": scored[name][2]}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return scored


def rate(hit: np.ndarray, members: np.ndarray) -> dict:
    return {"of": int(members.sum()), "hits": int(hit[members].sum()),
            "rate": float(hit[members].mean()) if members.any() else None}


def judge(records: dict[str, list[ImageRecord]], scores: dict[str, np.ndarray], positive: str, cfg) -> dict:
    """One candidate's threshold by the shipping rule, and every set's numbers there."""
    def labels(name):
        return np.array([r.label == positive for r in records[name]], dtype=bool)

    def hard(name):
        return np.array([r.tag == "hard" for r in records[name]], dtype=bool)

    wild_other = ~labels("wild")
    val_hard_other = hard("validation") & ~labels("validation")
    threshold = max(wild_threshold(scores["wild"][wild_other], cfg.wild_max_fpr),
                    wild_threshold(scores["validation"][val_hard_other], cfg.val_hard_max_fpr))
    hits = {name: scores[name] >= threshold for name in scores}
    is_nailong = labels("validation")
    ai_patterns = next(patterns for name, patterns in cfg.report_subsets.items() if AI_RENDERED in name)
    ai_rendered = is_nailong & np.array([in_subset(r, ai_patterns) for r in records["validation"]], dtype=bool)
    return {
        "threshold": threshold,
        "review_floor": review_floor(scores["validation"][is_nailong]),
        "families": at_threshold(records["families"], scores["families"], threshold, positive),
        "disjoint_nailong": rate(hits["nailong"], labels("nailong")),
        "validation": {"recall": rate(hits["validation"], is_nailong),
                       "average_precision": float(pr_curve(is_nailong, scores["validation"])[3]),
                       "ai_rendered_recall": rate(hits["validation"], ai_rendered),
                       "hard_fpr": rate(hits["validation"], val_hard_other),
                       "fpr": rate(hits["validation"], ~is_nailong)},
        "wild": {"fpr": rate(hits["wild"], wild_other), "hard_fpr": rate(hits["wild"], hard("wild") & wild_other)},
    }


def markdown(results: dict, sizes: dict[str, int]) -> str:
    lines = [f"# Cascade comparison ({', '.join(f'{name} {n}' for name, n in sizes.items())} images)", "",
             "Each candidate at its own threshold by the shipping rule (wild set FPR and validation hard negatives).",
             "", "| candidate | threshold | review floor | held-out family FPR | worst family | worst decile | source-disjoint nailong "
             "| val recall | val AP | AI-rendered | wild FPR (hard) | reach 2nd |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        fam, val, wild = r["families"], r["validation"], r["wild"]
        lines.append(
            f"| {name} | {r['threshold']:.4f} | {r['review_floor']:.4f} | {fam['false_positive_rate']:.2%} ({fam['false_positives']}) | "
            f"{fam['max_family_fpr']:.1%} | {fam['worst_decile_family_fpr']:.2%} | "
            f"{r['disjoint_nailong']['hits']}/{r['disjoint_nailong']['of']} | "
            f"{val['recall']['hits']}/{val['recall']['of']} | {val['average_precision']:.4f} | "
            f"{val['ai_rendered_recall']['hits']}/{val['ai_rendered_recall']['of']} | "
            f"{wild['fpr']['rate']:.2%} ({wild['hard_fpr']['rate']:.2%}) | {r['reach_second']:.1%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=Path, required=True)
    parser.add_argument("--second", type=Path, required=True)
    parser.add_argument("--line", required=True, help="the training config whose wild set and rules judge")
    parser.add_argument("--val-checkpoint", type=Path, required=True, help="a best.pt whose validation files judge")
    parser.add_argument("--families", nargs="+", required=True, help="held-out family folders")
    parser.add_argument("--nailong", nargs="+", required=True, help="source-disjoint nailong folders")
    parser.add_argument("--band", type=float, nargs=2, action="append", metavar=("LOW", "HIGH"),
                        help=f"bands to try (repeatable; default {BANDS})")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    cfg = load_config(args.line)
    first, second = load_scorer(args.first), load_scorer(args.second)
    positive = first.labels[first.positive_index]
    sets = {"families": [r for root in args.families for r in scan_imagefolder(root)],
            "nailong": [r for root in args.nailong for r in scan_imagefolder(root)],
            "validation": validation_of(args.val_checkpoint, load_records(cfg)),
            "wild": wild_records(cfg)}
    scored = score_sets(first, second, sets, args.out / "scores.npz")
    records = {name: kept for name, (kept, _, _) in scored.items()}
    posted = ("families", "wild")  # what groups post: the band's share is counted on these

    candidates = {f"first alone ({first.name})": ({n: f for n, (_, f, _) in scored.items()}, 0.0),
                  f"second alone ({second.name})": ({n: s for n, (_, _, s) in scored.items()}, 1.0)}
    for low, high in args.band or BANDS:
        band = CascadeSpec("second", low, high)
        mixed, inside = {}, []
        for name, (_, first_scores, second_scores) in scored.items():
            uncertain = np.array([band.uncertain(s) for s in first_scores], dtype=bool)
            mixed[name] = np.where(uncertain, second_scores, first_scores)
            if name in posted:
                inside.append(uncertain)
        candidates[f"cascade [{low}, {high})"] = (mixed, float(np.concatenate(inside).mean()))
    results = {name: {**judge(records, scores, positive, cfg), "reach_second": reach}
               for name, (scores, reach) in candidates.items()}
    (args.out / "cascade.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    text = markdown(results, {name: len(kept) for name, kept in records.items()})
    (args.out / "cascade.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
