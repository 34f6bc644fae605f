"""evaluate: a model on labelled folders → confusion matrix, per-class P/R/F1, the nailong PR
curve and a threshold table, written as JSON, Markdown and PNG plots; on a held-out family set, the
family yardstick (trainer/families.py) with the wild set as its second line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from nailong_vision.decode import ImageDecodeError

from . import families as family_yardstick
from .calibrate import score_records, wild_report
from .config import TrainConfig, load_config
from .data import ImageRecord, load_records, prepare_data, scan_imagefolder, wild_records
from .metrics import binary_at, confusion_matrix, per_class, pr_curve
from .scoring import load_scorer

log = logging.getLogger(__name__)

TABLE_THRESHOLDS = [0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]


def validation_records(cfg: TrainConfig) -> list[ImageRecord]:
    """The validation side of a training config's grouped split (what the model card reports)."""
    data = prepare_data(cfg)
    by_source = {r.source: r for r in load_records(cfg)}
    return [by_source[source] for source in data.val_sources]


def evaluate_command(model: str, data_dirs: list[str] | None, out: str, threshold: float | None = None,
                     val_of: str | None = None, wild_of: str | None = None, families: list[str] | None = None,
                     wild_line: str | None = None, max_fpr: float = family_yardstick.DEFAULT_MAX_FPR,
                     val_line: str | None = None) -> dict:
    """``families``: held-out family folders (MANIFEST ``family`` column) → the family yardstick, with
    ``wild_line`` (a config whose wild set is scored too) as its second line and ``val_line`` (a config whose
    grouped validation is scored: recall on nailong never trained on) beside it."""
    scorer = load_scorer(model)
    threshold = scorer.threshold if threshold is None else threshold
    subsets: dict[str, list[str]] = {}
    if val_of:
        cfg = load_config(val_of)
        records, data_dirs, subsets = validation_records(cfg), [f"validation split of {val_of}"], cfg.report_subsets
    elif wild_of:
        cfg = load_config(wild_of)
        records, data_dirs = wild_records(cfg), [f"wild set of {wild_of}: {', '.join(cfg.wild_sources)}"]
    elif families:
        records, data_dirs = [r for root in families for r in scan_imagefolder(root)], [f"families: {', '.join(families)}"]
    else:
        records = [r for root in data_dirs for r in scan_imagefolder(root)]
    positive = scorer.labels[scorer.positive_index]
    # Folder labels the model does not know (e.g. "other" for a 5-class model) count as "not nailong".
    classes = scorer.labels if {r.label for r in records} <= set(scorer.labels) else [positive, "other"]
    scores, truths, predictions, kept, failures = [], [], [], [], []
    for record in records:
        try:
            probs = scorer.score_bytes(record.read())
        except (OSError, ImageDecodeError) as error:
            failures.append(f"{record.source}: {error}")
            continue
        verdict = scorer.verdict(probs, threshold)
        scores.append(probs[scorer.positive_index])
        truths.append(classes.index(record.label) if record.label in classes else classes.index("other"))
        predictions.append(classes.index(verdict) if verdict in classes else classes.index("other"))
        kept.append(record)
    sources = [r.source for r in kept]
    score, truth, prediction = np.array(scores), np.array(truths), np.array(predictions)
    is_positive = truth == classes.index(positive)
    matrix = confusion_matrix(truth, prediction, len(classes))
    precision, recall, thresholds, average_precision = pr_curve(is_positive, score)
    report = {
        "model": scorer.name,
        "data": data_dirs,
        "images": int(len(score)),
        "unreadable": failures,
        "threshold": threshold,
        "classes": classes,
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class(matrix, classes),
        "nailong": binary_at(is_positive, score, threshold),
        "average_precision": average_precision,
        "threshold_table": [binary_at(is_positive, score, t) for t in sorted({*TABLE_THRESHOLDS, threshold})],
        "per_source": {origin: slice_metrics([i for i, r in enumerate(kept) if r.origin == origin],
                                             is_positive, score, threshold)
                       for origin in dict.fromkeys(r.origin for r in kept)},
        "subsets": {name: slice_metrics([i for i, r in enumerate(kept) if in_subset(r, patterns)],
                                        is_positive, score, threshold)
                    for name, patterns in subsets.items()},
        "per_source_repo": {repo or "(no manifest)": slice_metrics([i for i, r in enumerate(kept) if r.source_repo == repo],
                                                                  is_positive, score, threshold)
                            for repo in sorted({r.source_repo for r in kept})},
        "per_tag": {tag: slice_metrics([i for i, r in enumerate(kept) if r.tag == tag], is_positive, score, threshold)
                    for tag in sorted({r.tag for r in kept} - {""})},
        "per_family": per_family(kept, is_positive, score >= threshold),
        "false_positives": [sources[i] for i in np.argsort(-score) if not is_positive[i] and score[i] >= threshold],
        "false_negatives": [sources[i] for i in np.argsort(score) if is_positive[i] and score[i] < threshold],
    }
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if families:
        report["families"] = family_yardstick.family_report(kept, score, threshold, positive, max_fpr)
        family_yardstick.worst_families_sheet(out_dir / "worst_families.png", kept, score, report["families"], positive)
        if wild_line:
            wild, wild_scores = score_records(scorer, wild_records(load_config(wild_line)))
            report["wild_line"] = {"config": wild_line,
                                   "at_threshold": wild_report(wild, wild_scores, threshold, positive),
                                   "at_rule_threshold": wild_report(wild, wild_scores,
                                                                    report["families"]["rule_threshold"], positive)}
        if val_line:
            validation, val_scores = score_records(scorer, validation_records(load_config(val_line)))
            report["val_line"] = {"config": val_line,
                                  "at_threshold": wild_report(validation, val_scores, threshold, positive),
                                  "at_rule_threshold": wild_report(validation, val_scores,
                                                                   report["families"]["rule_threshold"], positive)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    plot(out_dir, matrix, classes, precision, recall, thresholds, threshold)
    mistakes_sheet(out_dir, kept, score, is_positive, threshold)
    log.info("nailong at %.3f: P %.4f R %.4f F1 %.4f FPR %.4f; report in %s", threshold, report["nailong"]["precision"],
             report["nailong"]["recall"], report["nailong"]["f1"], report["nailong"]["false_positive_rate"], out_dir)
    return report


MISTAKES_ON_SHEET = 32


def mistakes_sheet(out_dir: Path, records: list[ImageRecord], score: np.ndarray, is_positive: np.ndarray,
                   threshold: float) -> None:
    """The images it still gets wrong, as one small contact sheet (mistakes.png): false positives from the
    highest score down, then missed nailong from the lowest up; numbered as in mistakes.csv, whose ``folder`` says
    which data folder each came from (a MANIFEST names the repositories behind it, the folder where we took it)."""
    from .mine import write_csv, write_sheets

    wrong = [i for i in np.argsort(-score) if not is_positive[i] and score[i] >= threshold]
    wrong += [i for i in np.argsort(score) if is_positive[i] and score[i] < threshold]
    rows = [{"number": k + 1, "score": float(score[i]), "label": records[i].label, "path": records[i].source,
             "folder": records[i].origin, "source": records[i].provenance or records[i].source, "tag": records[i].tag}
            for k, i in enumerate(wrong[:MISTAKES_ON_SHEET])]
    sheet_dir = out_dir / "mistakes"
    shutil.rmtree(sheet_dir, ignore_errors=True)
    if rows:
        write_sheets(rows, sheet_dir, thumb=64)
        write_csv(sheet_dir / "mistakes.csv", ["number", "score", "label", "tag", "folder", "source"], rows)


def in_subset(record: ImageRecord, patterns: list[str]) -> bool:
    """Whether a file path or MANIFEST source (repository and path) contains one of the patterns."""
    return any(pattern in record.source or pattern in record.provenance for pattern in patterns)


def slice_metrics(members: list[int], is_positive: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Recall on the slice's nailong, false-positive rate on its other images (None where it has none)."""
    positive, hit = is_positive[members], score[members] >= threshold
    return {
        "images": len(members),
        "nailong": int(positive.sum()),
        "recall": float(hit[positive].mean()) if positive.any() else None,
        "false_positives": int(hit[~positive].sum()),
        "false_positive_rate": float(hit[~positive].mean()) if (~positive).any() else None,
        "other_above_0.5": int((score[members][~positive] >= 0.5).sum()),
    }


def per_family(records: list[ImageRecord], is_positive: np.ndarray, hit: np.ndarray) -> dict[str, dict]:
    """Hits per image family (clip or sticker collection, from MANIFEST.csv), worst first: shows
    whether errors are spread out or come from one kind of image."""
    families: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        if record.family:
            families.setdefault(record.family, []).append(index)
    table = {
        family: {"images": len(members), "nailong": int(is_positive[members].sum()),
                 "hit_rate": float(hit[members].mean())}
        for family, members in families.items()
        if len(members) >= 5
    }
    return dict(sorted(table.items(), key=lambda item: -abs(item[1]["hit_rate"] - (item[1]["nailong"] > 0))))


def markdown(report: dict) -> str:
    nailong = report["nailong"]
    lines = [
        f"# 评估报告 / Evaluation: {report['model']}",
        "",
        f"数据 / data: {', '.join(report['data'])} — {report['images']} images "
        f"({len(report['unreadable'])} unreadable)",
        "",
        f"阈值 / threshold **{report['threshold']:.4f}**: nailong precision {nailong['precision']:.4f}, "
        f"recall {nailong['recall']:.4f}, F1 **{nailong['f1']:.4f}**, false-positive rate "
        f"{nailong['false_positive_rate']:.4f}; average precision {report['average_precision']:.4f}",
        "",
        "## 混淆矩阵 / Confusion matrix (rows: truth, columns: prediction)",
        "",
        "| | " + " | ".join(report["classes"]) + " |",
        "|---" * (len(report["classes"]) + 1) + "|",
    ]
    for name, row in zip(report["classes"], report["confusion_matrix"]):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "## 各类 / Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, m in report["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
    lines += ["", "## 阈值表 / Threshold table (nailong)", "", "| threshold | precision | recall | F1 | FPR |",
              "|---|---|---|---|---|"]
    for row in report["threshold_table"]:
        lines.append(f"| {row['threshold']:.4f} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
                     f"{row['false_positive_rate']:.4f} |")
    def rate(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    for title, key in (("按来源 / By source", "per_source"), ("子集 / Subsets", "subsets"),
                       ("按来源仓库 / By source repository (MANIFEST)", "per_source_repo"),
                       ("按标签 / By tag (MANIFEST; hard = confusable)", "per_tag")):
        if report.get(key):
            lines += ["", f"## {title}", "", "| | images | nailong | recall | false positives | FPR | other ≥ 0.5 |",
                      "|---|---|---|---|---|---|---|"]
            for name, row in report[key].items():
                lines.append(f"| {name} | {row['images']} | {row['nailong']} | {rate(row['recall'])} | "
                             f"{row['false_positives']} | {rate(row['false_positive_rate'])} | {row['other_above_0.5']} |")
    if report["per_family"]:
        lines += ["", "## 各系列 / Per family (≥ 5 images; hit rate = share flagged as nailong)", "",
                  "| family | images | nailong | hit rate |", "|---|---|---|---|"]
        for family, row in report["per_family"].items():
            lines.append(f"| {family} | {row['images']} | {row['nailong']} | {row['hit_rate']:.3f} |")
    if "families" in report:
        lines += family_yardstick.markdown(report["families"])
        lines += ["", "![worst families](worst_families.png)"]
    for key, title in (("wild_line", "第二条线：野外集 / Second line: the wild set"),
                       ("val_line", "分组验证集 / The grouped validation")):
        if key in report:
            lines += ["", f"## {title} of {report[key]['config']}", "",
                      "| threshold | other | false positives | FPR | hard FPR | nailong | recall |",
                      "|---|---|---|---|---|---|---|"]
            for row in (report[key]["at_threshold"], report[key]["at_rule_threshold"]):
                lines.append(f"| {row['threshold']:.4f} | {row['other']} | {row['false_positives']} | "
                             f"{rate(row['false_positive_rate'])} | {rate(row['hard']['false_positive_rate'])} | "
                             f"{row['nailong']} | {rate(row['recall'])} |")
    for title, key in (("误判 / False positives", "false_positives"), ("漏判 / False negatives", "false_negatives")):
        lines += ["", f"## {title} ({len(report[key])})", ""] + [f"- {s}" for s in report[key][:50]]
    lines += ["", "![confusion](confusion.png) ![pr](pr_curve.png)", ""]
    return "\n".join(lines)


def plot(out_dir: Path, matrix: np.ndarray, classes: list[str], precision: np.ndarray, recall: np.ndarray,
         thresholds: np.ndarray, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    axis.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center")
    axis.set_xticks(range(len(classes)), classes)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("prediction")
    axis.set_ylabel("truth")
    figure.tight_layout()
    figure.savefig(out_dir / "confusion.png", dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot(recall, precision, label="nailong")
    chosen = np.nonzero(thresholds >= threshold)[0]
    if len(chosen):
        axis.scatter([recall[chosen[-1]]], [precision[chosen[-1]]], color="red", label=f"threshold {threshold:.3f}")
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(out_dir / "pr_curve.png", dpi=100)
    plt.close(figure)
