"""The contract between the bot and the trainer: the files they hand each other and what those hold.

The bot leaves the admins' corrections (``feedback/``) and its recent images (``recent/``) for ``trainer
refresh``; the trainer leaves a candidate model and its gate report in the folder it was given, and says
by its exit code how the gate went. Both sides import this module (the trainer runs in an interpreter
that need not have NoneBot, the bot in one without torch), so each name, column and rule here is
written once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

from .phash import hamming

# --- The files -------------------------------------------------------------------------------------

MODEL_FILE = "nailong.onnx"
# The training checkpoint beside a model: what the next refresh starts from.
CHECKPOINT_FILE = "nailong.pt"
GATE_FILE = "gate.json"
GATE_MARKDOWN_FILE = "gate.md"
# The trainer's output, beside the candidate (written by the bot, which runs the trainer).
TRAINER_LOG_FILE = "refresh.log"

# Under the bot's feedback folder: <label>/<id>.<ext> per active correction that applies in every group
# (training data), .pending/<id>.<ext> per image of group-scoped ones (not training data), the log, the
# retired files.
CORRECTIONS_FILE = "corrections.csv"
RETIRED_DIR = ".retired"
PENDING_DIR = ".pending"
CORRECTION_LABELS = ("nailong", "other")
# A row adds a correction, or ends one (replaced by a newer word on the image, or undone).
ADD, REPLACE, UNDO = "add", "replace", "undo"
# corrections.csv's columns before corrections had a scope (such a log is converted by the bot once).
CORRECTIONS_V1_COLUMNS: tuple[str, ...] = (
    "time", "action", "id", "label", "group_id", "user_id", "score", "model_version", "file", "phash",
)  # fmt: skip
# corrections.csv's columns, in order. A new column goes at the end: readers look columns up by name.
# scope: SCOPE_EVERYWHERE, or the one group a correction applies in (each row, ending ones included, names
# the scope of the correction it adds or ends); only SCOPE_EVERYWHERE is learned by a refresh.
# confirmed_by: who made it apply everywhere (a superuser, the console, or "groups:<a>,<b>" that agreed).
SCOPE_COLUMN = "scope"
SCOPE_EVERYWHERE = "all"
CORRECTIONS_COLUMNS: tuple[str, ...] = (*CORRECTIONS_V1_COLUMNS, SCOPE_COLUMN, "confirmed_by")

# Under the bot's recent folder: a journal of the images it decided, and each distinct image once.
RECENT_INDEX = "index.jsonl"
RECENT_IMAGES = "images"


class ExitCode(IntEnum):
    """How ``trainer refresh`` ends."""

    GATE_PASSED = 0
    ERROR = 1
    BAD_INPUT = 2
    GATE_FAILED = 3


# --- What a model may be called and what it may recommend --------------------------------------------

# A model's version names its folder in the bot's model store: one path component, never "." or "..".
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
# A recommended threshold outside this range recalls everything or nothing.
THRESHOLD_RANGE = (0.05, 0.995)


def version_problem(version: object) -> str | None:
    """Why ``version`` cannot name a model folder, or None when it can."""
    if not isinstance(version, str) or VERSION_PATTERN.fullmatch(version) is None:
        return f"版本号不合规 / version {str(version)[:80]!r} does not match {VERSION_PATTERN.pattern}"
    return None


def threshold_problem(threshold: float) -> str | None:
    """Why a model recommending ``threshold`` must not run, or None when it may."""
    low, high = THRESHOLD_RANGE
    if not low < threshold < high:
        return f"推荐阈值 {threshold} 不在 ({low}, {high}) 之内 / recommended threshold {threshold} outside ({low}, {high})"
    return None


# --- Image identity ----------------------------------------------------------------------------------

# An image's id: the first hex digits of its bytes' sha256 (the corrected file's stem).
IMAGE_ID_DIGITS = 16
# A correction decides images whose pHash (phash.frame_hash of the first frame) is within this many bits.
CORRECTION_DISTANCE = 6


def image_id(image_bytes: bytes) -> str:
    return hashlib.sha256(image_bytes).hexdigest()[:IMAGE_ID_DIGITS]


def same_image(id_a: str, hash_a: int | None, id_b: str, hash_b: int | None, distance: int = CORRECTION_DISTANCE) -> bool:
    """Whether a correction of one image decides the other: the same bytes, or pHashes close enough."""
    return id_a == id_b or (hash_a is not None and hash_b is not None and hamming(hash_a, hash_b) <= distance)


# --- The gate report (gate.json) ---------------------------------------------------------------------


class GateReportError(ValueError):
    """A gate.json that is not a gate report; the message says what is wrong."""


@dataclass
class CorrectionsCheck:
    """(a) The corrected images, decided the admins' way at the model's threshold."""

    passed: bool
    agreed: int
    total: int
    wrong: list[str] = field(default_factory=list)  # ids of those still decided against the admins


@dataclass
class AgreementCheck:
    """(b) The uncorrected replay images decided as the current model decides them."""

    passed: bool
    rate: float
    images: int
    target: float


@dataclass
class ValidationCheck:
    """(c) Grouped validation: recall and false-positive rate before and after."""

    passed: bool
    recall_before: float
    recall_after: float
    fpr_before: float
    fpr_after: float
    images: int
    nailong: int
    tolerance: float


@dataclass
class GateChecks:
    corrections: CorrectionsCheck
    agreement: AgreementCheck
    validation: ValidationCheck | None  # None: no training folders configured


@dataclass
class ChangedImage:
    """An image the candidate decides differently from the current model."""

    file: str  # relative to the report's folder
    before: float
    after: float
    source: str  # "correction", "recent" or "validation"


@dataclass
class GateReport:
    passed: bool
    version: str
    base_version: str
    corrections: int
    reasons: list[str]
    checks: GateChecks
    changed: list[ChangedImage] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    details: dict = field(default_factory=dict)  # the run's settings and subset numbers, for gate.md

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> GateReport:
        """Parse gate.json; GateReportError for anything that is not a whole, well-typed report."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise GateReportError(f"不是 JSON / not JSON: {error}") from error
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: object) -> GateReport:
        report = _object(raw, "gate")
        checks = _object(report.get("checks"), "checks")
        validation = checks.get("validation")
        return cls(
            passed=_typed(report, "passed", bool),
            version=_typed(report, "version", str),
            base_version=_typed(report, "base_version", str),
            corrections=_count(report, "corrections"),
            reasons=[_text(reason, "reasons") for reason in _typed(report, "reasons", list)],
            checks=GateChecks(
                corrections=_check(CorrectionsCheck, checks.get("corrections"), "corrections"),
                agreement=_check(AgreementCheck, checks.get("agreement"), "agreement"),
                validation=None if validation is None else _check(ValidationCheck, validation, "validation"),
            ),
            changed=[_check(ChangedImage, item, "changed") for item in _typed(report, "changed", list, [])],
            seconds=_number(report, "seconds", 0.0),
            steps=_count(report, "steps", 0),
            details=_typed(report, "details", dict, {}),
        )


_MISSING: Any = object()


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise GateReportError(f"{where}: 应为对象 / expected an object, got {type(value).__name__}")
    return value


def _typed(raw: Mapping[str, Any], key: str, kind: type, default: Any = _MISSING) -> Any:
    value = raw.get(key, default)
    if value is _MISSING:
        raise GateReportError(f"缺少 / missing {key!r}")
    # bool is an int in Python: a count or a number must not be true/false, nor a check's verdict 1.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise GateReportError(f"{key!r}: 应为 / expected {kind.__name__}, got {type(value).__name__}")
    return value


def _count(raw: Mapping[str, Any], key: str, default: Any = _MISSING) -> int:
    value = _typed(raw, key, int, default)
    if value < 0:
        raise GateReportError(f"{key!r}: 不能为负 / negative")
    return value


def _number(raw: Mapping[str, Any], key: str, default: Any = _MISSING) -> float:
    value = raw.get(key, default)
    if value is _MISSING:
        raise GateReportError(f"缺少 / missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateReportError(f"{key!r}: 应为有限的数 / expected a finite number, got {value!r:.40}")
    return float(value)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise GateReportError(f"{where}: 应为文本 / expected text")
    return value


_KINDS = {"bool": bool, "str": str}


def _check(kind: type, value: object, where: str) -> Any:
    """One of the check dataclasses (or ChangedImage) from its JSON object, each field type-checked."""
    raw = _object(value, where)
    values = {}
    for name, spec in kind.__dataclass_fields__.items():
        try:
            if spec.type == "list[str]":
                values[name] = [_text(item, name) for item in _typed(raw, name, list, [])]
            elif spec.type == "int":
                values[name] = _count(raw, name)
            elif spec.type == "float":
                values[name] = _number(raw, name)
            else:
                values[name] = _typed(raw, name, _KINDS[spec.type])
        except GateReportError as error:
            raise GateReportError(f"{where}: {error}") from error
    return kind(**values)
