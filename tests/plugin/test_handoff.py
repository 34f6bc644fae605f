"""The bot–trainer contract (nailong_vision/handoff.py): the gate report refuses what is not one, versions
that could leave the model store and thresholds that act on all or nothing are named as such, and an
image's identity is the same on both sides."""

from __future__ import annotations

import json

import pytest

from nailong_testkit import YELLOW, patterned, reposted
from nailong_vision.decode import decode_frames
from nailong_vision.handoff import (
    AgreementCheck,
    CorrectionsCheck,
    GateChecks,
    GateReport,
    GateReportError,
    ValidationCheck,
    image_id,
    same_image,
    threshold_problem,
    version_problem,
)
from nailong_vision.phash import frame_hash

REPORT = GateReport(
    passed=True, version="1.0+r1", base_version="1.0", corrections=3, reasons=[],
    checks=GateChecks(
        corrections=CorrectionsCheck(passed=True, agreed=3, total=3),
        agreement=AgreementCheck(passed=True, rate=0.99, images=100, target=0.98),
        validation=ValidationCheck(passed=True, recall_before=0.95, recall_after=0.94, fpr_before=0.01,
                                   fpr_after=0.012, images=400, nailong=100, tolerance=0.01),
    ),
    seconds=12.0, steps=40,
)  # fmt: skip


def test_a_report_reads_back_as_written() -> None:
    assert GateReport.from_json(REPORT.to_json()) == REPORT


def broken(change) -> str:
    raw = json.loads(REPORT.to_json())
    change(raw)
    return json.dumps(raw)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        "5",
        broken(lambda r: r.pop("passed")),
        broken(lambda r: r.update(passed=1)),
        broken(lambda r: r.update(steps=True)),
        broken(lambda r: r.update(corrections=-1)),
        broken(lambda r: r.update(checks=5)),
        broken(lambda r: r["checks"].pop("agreement")),
        broken(lambda r: r["checks"]["corrections"].update(agreed="3")),
        broken(lambda r: r["checks"]["agreement"].update(rate=None)),
        broken(lambda r: r["checks"]["agreement"].update(rate=float("nan"))),
        broken(lambda r: r["checks"].update(validation=[])),
        broken(lambda r: r.update(reasons=[1])),
        broken(lambda r: r.update(changed=[{"file": "a.png"}])),
        broken(lambda r: r.update(changed="x")),
        broken(lambda r: r.update(details=[])),
    ],
)
def test_what_is_not_a_gate_report_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(GateReportError):
        GateReport.from_json(text)


@pytest.mark.parametrize("version", ["..", ".", "", "a/b", "../x", "/abs", "a\\b", "x" * 65, ".hidden", 5, None])
def test_versions_that_cannot_name_a_folder_in_the_store(version) -> None:
    assert version_problem(version) is not None


@pytest.mark.parametrize("version", ["2026.11.26.3", "2026.11.26.3+r12", "0.0.1+r1", "v1_beta-2"])
def test_versions_that_can(version: str) -> None:
    assert version_problem(version) is None


@pytest.mark.parametrize(("threshold", "refused"), [(0.0, True), (0.05, True), (0.0501, False), (0.5, False),
                                                   (0.9949, False), (0.995, True), (1.0, True)])
def test_thresholds_inside_the_safe_range(threshold: float, refused: bool) -> None:
    assert (threshold_problem(threshold) is not None) == refused


def test_an_image_and_its_repost_are_the_same_image_by_phash_not_by_id() -> None:
    original = patterned(YELLOW, seed=3)
    copy = reposted(original)
    hashes = [frame_hash(decode_frames(data, max_frames=1)[0]) for data in (original, copy)]
    assert image_id(original) != image_id(copy) and len(image_id(original)) == 16
    assert same_image(image_id(original), hashes[0], image_id(copy), hashes[1])
    other = patterned(YELLOW, seed=99)
    assert not same_image(image_id(original), hashes[0], image_id(other), frame_hash(decode_frames(other)[0]))
    # A flat image has no pHash: only its own bytes match it.
    assert same_image("a", None, "a", None) and not same_image("a", None, "b", None)
