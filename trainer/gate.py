"""The gate a refreshed model passes before the bot may use it, and its report (gate.json, gate.md).

(a) At its threshold it decides every active correction the admins' way — old ones too.
(b) It agrees with the current model on ≥ 98 % of the uncorrected replay images.
(c) Where training folders are configured: grouped-validation recall and false-positive rate move at
    most 1 point the wrong way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nailong_vision.handoff import (
    GATE_FILE,
    GATE_MARKDOWN_FILE,
    AgreementCheck,
    CorrectionsCheck,
    GateChecks,
    GateReport,
    ValidationCheck,
)

AGREEMENT_TARGET = 0.98
VALIDATION_TOLERANCE = 0.01


def summary(report: GateReport) -> dict:
    """The gate's numbers for the model's metadata."""
    checks = report.checks
    validation = checks.validation
    return {"passed": report.passed,
            "corrections": f"{checks.corrections.agreed}/{checks.corrections.total}",
            "agreement": round(checks.agreement.rate, 4),
            "agreement_images": checks.agreement.images,
            "validation": None if validation is None else {
                key: round(getattr(validation, key), 4) for key in ("recall_before", "recall_after", "fpr_before", "fpr_after")}}


def write_report(report: GateReport, folder: Path) -> None:
    """gate.json (what the bot reads) and gate.md (what a person reads) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / GATE_FILE).write_text(report.to_json(), encoding="utf-8")
    (folder / GATE_MARKDOWN_FILE).write_text(markdown(report), encoding="utf-8")


def check_corrections(labels: list[str], after: np.ndarray, threshold: float, positive_label: str,
                      ids: list[str]) -> CorrectionsCheck:
    """(a): every corrected image on the admins' side of the threshold."""
    wanted = np.array([label == positive_label for label in labels], dtype=bool)
    agreed = (after >= threshold) == wanted
    return CorrectionsCheck(passed=bool(agreed.all()), agreed=int(agreed.sum()), total=len(labels),
                            wrong=[i for i, ok in zip(ids, agreed) if not ok])


def check_agreement(before: np.ndarray, after: np.ndarray, threshold: float,
                    target: float = AGREEMENT_TARGET) -> AgreementCheck:
    """(b): the share of replay images decided as the current model decides them."""
    same = (before >= threshold) == (after >= threshold)
    rate = float(same.mean()) if len(same) else 1.0
    return AgreementCheck(passed=rate >= target, rate=rate, images=int(len(same)), target=target)


def rates(is_positive: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    """Recall on nailong and false-positive rate on the rest, at the threshold."""
    hit = score >= threshold
    recall = float(hit[is_positive].mean()) if is_positive.any() else 1.0
    fpr = float(hit[~is_positive].mean()) if (~is_positive).any() else 0.0
    return recall, fpr


def check_validation(is_positive: np.ndarray, before: np.ndarray, after: np.ndarray, threshold: float,
                     tolerance: float = VALIDATION_TOLERANCE) -> ValidationCheck:
    """(c): recall may fall, and the false-positive rate rise, by at most ``tolerance``."""
    recall_before, fpr_before = rates(is_positive, before, threshold)
    recall_after, fpr_after = rates(is_positive, after, threshold)
    passed = recall_after >= recall_before - tolerance and fpr_after <= fpr_before + tolerance
    return ValidationCheck(passed=bool(passed), recall_before=recall_before, recall_after=recall_after,
                           fpr_before=fpr_before, fpr_after=fpr_after, images=int(len(is_positive)),
                           nailong=int(is_positive.sum()), tolerance=tolerance)


def reasons_for(checks: GateChecks) -> list[str]:
    """Why a candidate fails, one line per failed check (Chinese / English)."""
    reasons = []
    corrections = checks.corrections
    if not corrections.passed:
        wrong = corrections.total - corrections.agreed
        reasons.append(f"有 {wrong} 张纠错图片仍判断错误 / {wrong} of {corrections.total} corrected images "
                       f"are still decided against the admins: {', '.join(corrections.wrong)}")
    agreement = checks.agreement
    if not agreement.passed:
        reasons.append(f"与当前模型的一致率 {agreement.rate:.1%} 低于 {agreement.target:.0%} / agrees with the "
                       f"current model on {agreement.rate:.1%} of {agreement.images} replay images "
                       f"(needs {agreement.target:.0%})")
    validation = checks.validation
    if validation is not None and not validation.passed:
        reasons.append(f"验证集召回率 {validation.recall_before:.3f} → {validation.recall_after:.3f}，误报率 "
                       f"{validation.fpr_before:.4f} → {validation.fpr_after:.4f}，变差超过 "
                       f"{validation.tolerance * 100:.0f} 个百分点 / validation recall or false-positive rate moved "
                       f"more than {validation.tolerance * 100:.0f} point the wrong way")
    return reasons


def markdown(report: GateReport) -> str:
    verdict = "通过 / passed" if report.passed else "未通过 / failed"
    corrections, agreement, validation = report.checks.corrections, report.checks.agreement, report.checks.validation
    lines = [
        f"# 模型更新检查 / Refresh gate: {report.version}",
        "",
        f"**{verdict}** — 基于 / from {report.base_version}, {report.corrections} 条纠错 / corrections, "
        f"{report.steps} steps, {report.seconds:.0f} s",
        "",
        "| 检查 / check | 结果 / result | 通过 / passed |",
        "|---|---|---|",
        f"| (a) 纠错图片按管理员的判断 / corrections decided the admins' way | "
        f"{corrections.agreed}/{corrections.total} | {'✓' if corrections.passed else '✗'} |",
        f"| (b) 与当前模型一致 / agreement with the current model | {agreement.rate:.2%} of {agreement.images} "
        f"(≥ {agreement.target:.0%}) | {'✓' if agreement.passed else '✗'} |",
    ]
    if validation is None:
        lines.append("| (c) 验证集 / grouped validation | 未配置训练数据 / no training folders configured | – |")
    else:
        lines.append(f"| (c) 验证集召回率 / validation recall | {validation.recall_before:.4f} → "
                     f"{validation.recall_after:.4f} | {'✓' if validation.passed else '✗'} |")
        lines.append(f"| (c) 验证集误报率 / validation false-positive rate | {validation.fpr_before:.4f} → "
                     f"{validation.fpr_after:.4f} | |")
    for name, subset in report.details.get("subsets", {}).items():
        lines.append(f"| 子集 / subset: {name} | recall {subset['recall_before']:.4f} → {subset['recall_after']:.4f} "
                     f"({subset['nailong']} nailong) | |")
    if report.reasons:
        lines += ["", "## 原因 / Why", ""] + [f"- {reason}" for reason in report.reasons]
    lines += ["", f"## 判断改变的图片 / Images decided differently ({len(report.changed)})", ""]
    lines += [f"- {c.source}: {c.before:.3f} → {c.after:.3f} [{c.file}]({c.file})" for c in report.changed]
    lines.append("")
    return "\n".join(lines)
