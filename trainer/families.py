"""The family yardstick: false positives counted per sticker family (one character's series), on
families the model never trained on.

A group posts whole series of a mascot's stickers, so one family the model confuses is what members
see, however small the overall rate. The report gives, at a threshold: the overall false-positive rate,
each family's, their mean and the mean of the worst tenth of families (the worst decile), and the
families worst hit; and the threshold the rule "lowest threshold with family-set FPR ≤ max_fpr" gives,
with recall on the nailong images (from sources never trained on) beside it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nailong_vision.decode import ImageDecodeError

from .data import ImageRecord
from .thresholds import wild_threshold

DEFAULT_MAX_FPR = 0.01
WORST_SHOWN = 10
TOO_HIGH = 0.10  # a family flagged more often than this is one a group would notice
NO_FAMILY = "(no family)"


def worst_decile(rates: list[float]) -> float:
    """The mean of the highest tenth of ``rates`` (at least one)."""
    if not rates:
        return 0.0
    worst = sorted(rates, reverse=True)[:max(1, math.ceil(len(rates) / 10))]
    return float(np.mean(worst))


def per_family(records: list[ImageRecord], scores: np.ndarray, threshold: float, positive: str) -> dict[str, dict]:
    """Each family's negatives at ``threshold``: images, false positives, rate; worst first."""
    members: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        if record.label != positive:
            members.setdefault(record.family or NO_FAMILY, []).append(index)
    table = {}
    for family, indices in members.items():
        hits = int((scores[indices] >= threshold).sum())
        table[family] = {"images": len(indices), "false_positives": hits, "false_positive_rate": hits / len(indices),
                         "highest_score": float(scores[indices].max())}
    return dict(sorted(table.items(), key=lambda item: (-item[1]["false_positive_rate"], -item[1]["highest_score"])))


def at_threshold(records: list[ImageRecord], scores: np.ndarray, threshold: float, positive: str) -> dict:
    """The family yardstick's numbers at one threshold."""
    is_positive = np.array([r.label == positive for r in records], dtype=bool)
    hit = scores >= threshold
    families = per_family(records, scores, threshold, positive)
    rates = [row["false_positive_rate"] for row in families.values()]
    return {
        "threshold": float(threshold),
        "other": int((~is_positive).sum()),
        "false_positives": int(hit[~is_positive].sum()),
        "false_positive_rate": float(hit[~is_positive].mean()) if (~is_positive).any() else None,
        "families": len(families),
        "mean_family_fpr": float(np.mean(rates)) if rates else None,
        "worst_decile_family_fpr": worst_decile(rates),
        "max_family_fpr": max(rates, default=0.0),
        f"families_above_{TOO_HIGH:.0%}": sum(rate > TOO_HIGH for rate in rates),
        "nailong": int(is_positive.sum()),
        "recall": float(hit[is_positive].mean()) if is_positive.any() else None,
    }


def family_report(records: list[ImageRecord], scores: np.ndarray, threshold: float, positive: str,
                  max_fpr: float = DEFAULT_MAX_FPR) -> dict:
    """The yardstick at ``threshold`` (the model's) and at the threshold its rule chooses."""
    other = np.array([r.label != positive for r in records], dtype=bool)
    chosen = wild_threshold(scores[other], max_fpr)
    return {
        "rule": f"lowest threshold with family-set false-positive rate ≤ {max_fpr:.2%}",
        "max_fpr": max_fpr,
        "at_threshold": at_threshold(records, scores, threshold, positive),
        "rule_threshold": chosen,
        "at_rule_threshold": at_threshold(records, scores, chosen, positive),
        "per_family": per_family(records, scores, threshold, positive),
    }


def worst_families_sheet(path: Path, records: list[ImageRecord], scores: np.ndarray, report: dict, positive: str,
                         per_row: int = 8, thumb: int = 96) -> Path | None:
    """One row per family of the ``WORST_SHOWN`` worst (at the report's threshold: the highest false-positive
    rate, then the highest score): its name and rate, then its highest-scored images, each captioned with its
    score (red: acted on). None when the set has no negatives."""
    from .mine import thumbnail

    threshold = report["at_threshold"]["threshold"]
    worst = list(report["per_family"].items())[:WORST_SHOWN]
    if not worst:
        return None
    label_width, caption = 220, 14
    sheet = Image.new("RGB", (label_width + per_row * thumb, len(worst) * (thumb + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for line, (family, row) in enumerate(worst):
        y = line * (thumb + caption)
        draw.text((4, y + 4), family[:34], fill="black")
        draw.text((4, y + 22), f"{row['false_positives']}/{row['images']} = {row['false_positive_rate']:.0%}",
                  fill="black")
        members = [i for i, r in enumerate(records) if (r.family or NO_FAMILY) == family and r.label != positive]
        for column, index in enumerate(sorted(members, key=lambda i: -scores[i])[:per_row]):
            x = label_width + column * thumb
            try:
                sheet.paste(thumbnail(Path(records[index].source), thumb), (x, y))
            except (ImageDecodeError, OSError):
                draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], outline="red")
            colour = "red" if scores[index] >= threshold else "black"
            draw.text((x + 2, y + thumb + 1), f"{scores[index]:.2f}", fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


def markdown(report: dict, title: str = "家族误判 / The family yardstick") -> list[str]:
    """The report as Markdown lines (a section of the evaluation report)."""
    def rate(value: float | None) -> str:
        return "–" if value is None else f"{value:.2%}"

    lines = ["", f"## {title}", "", f"Rule: {report['rule']} → **{report['rule_threshold']:.4f}**", "",
             "| threshold | other | FP | FPR | families | mean family FPR | worst-decile family FPR | worst family | "
             f"families > {TOO_HIGH:.0%} | nailong | recall |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in ("at_threshold", "at_rule_threshold"):
        row = report[key]
        lines.append(f"| {row['threshold']:.4f} | {row['other']} | {row['false_positives']} | "
                     f"{rate(row['false_positive_rate'])} | {row['families']} | {rate(row['mean_family_fpr'])} | "
                     f"{rate(row['worst_decile_family_fpr'])} | {rate(row['max_family_fpr'])} | "
                     f"{row[f'families_above_{TOO_HIGH:.0%}']} | {row['nailong']} | {rate(row['recall'])} |")
    lines += ["", f"Worst families at {report['at_threshold']['threshold']:.4f}:", "",
              "| family | other | FP | FPR | highest score |", "|---|---|---|---|---|"]
    for family, row in list(report["per_family"].items())[:WORST_SHOWN]:
        lines.append(f"| {family} | {row['images']} | {row['false_positives']} | {rate(row['false_positive_rate'])} | "
                     f"{row['highest_score']:.3f} |")
    return lines
