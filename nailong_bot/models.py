"""The models: which one the bot runs, the refreshed ones kept in the data folder, and the switch
between them (a refresh swapped in, a rollback) without a restart.

Layout under ``<data_dir>/models/``::

    <version>/          a refreshed model: nailong.onnx, nailong.onnx.sha256, nailong.pt, gate.json, gate.md
    candidates/<time>/  a refresh's output until its gate passed (the last failed ones stay, for their report)
    current.json        which refreshed model runs (null: the base), those before it for rollback,
                        and the sha256 of the base they were built on; replaced atomically
    last_refresh.json   the last refresh: when, who started it, the outcome and the gate's numbers

The base is the operator's NAILONG_MODEL_PATH, else the bundled model. Refreshed models are built on
it and keep running after a restart while the base is the same file. When the operator points
NAILONG_MODEL_PATH at another model, or an upgrade ships a new bundled one, that base runs again (the
refreshed models stay on disk until the next refresh; the corrections are kept, and it learns them again).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from nonebot.log import logger

from nailong_vision.classifier import (
    Classifier,
    ModelError,
    ModelInfo,
    bundled_model_path,
    default_providers,
    verify_checksum,
)
from nailong_vision.handoff import MODEL_FILE, threshold_problem, version_problem

from . import persist
from .cache import TTLCache
from .config import Config
from .decision import Decider, Decision
from .storage import SettingsStore, default_review_floor

POINTER_FILE = "current.json"
CANDIDATES_DIR = "candidates"
# Refreshed models kept on disk besides the one in use: how far rollback reaches before the base.
KEPT_MODELS = 3
KEPT_FAILED_CANDIDATES = 2
_SHA256_HEX = frozenset("0123456789abcdef")


def load_classifier(config: Config, path: Path | None = None) -> Classifier:
    """The model at ``path`` (default: the configured one, else the bundled one), warmed up. Its
    ``.sha256`` is required for the bundled model and refreshed ones, checked where present for the
    operator's own. Raises ModelError."""
    configured = config.nailong_model_path
    path = path or configured or bundled_model_path()
    if path.is_file():
        verify_checksum(path, required=path != configured)
    requested = config.nailong_onnx_providers or default_providers()
    classifier = Classifier(path, providers=requested, threads=config.nailong_onnx_threads)
    if (problem := threshold_problem(classifier.info.threshold)) is not None:
        raise ModelError(f"模型被拒绝 / model refused: {problem}")
    # onnxruntime falls back to the CPU on its own (e.g. onnxruntime-gpu without a matching CUDA/cuDNN):
    # say so plainly, or a GPU server quietly runs on its CPU.
    inactive = [provider for provider in requested if provider not in classifier.info.providers]
    if inactive:
        running = list(classifier.info.providers)
        logger.warning(
            f"onnxruntime 未能启用 {inactive}，实际使用 {running}（用 GPU 需要 onnxruntime-gpu 和版本匹配的 "
            f"CUDA/cuDNN）/ onnxruntime could not enable {inactive}, running on {running} (the GPU needs "
            f"onnxruntime-gpu with matching CUDA/cuDNN)"
        )
    try:
        classifier.warm_up()
    except Exception as error:  # onnxruntime's errors are untyped
        raise ModelError(f"模型无法运行 / model fails on a test input: {path}: {error}") from error
    return classifier


def lineage(info: ModelInfo) -> dict | None:
    """What a refreshed model's export wrote about where it came from (base version, corrections, gate);
    None for a model that was not refreshed."""
    try:
        value = json.loads(info.metadata.get("lineage", "null"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def validated_metrics(info: ModelInfo) -> dict | None:
    """The validation numbers the export wrote into the model, or None where nobody validated it: a
    refreshed model is validated only where its refresh had training folders (gate check c)."""
    try:
        metrics = json.loads(info.metadata.get("metrics", "{}"))
    except ValueError:
        return None
    origin = lineage(info)
    gate = origin.get("gate") if origin is not None else None
    if origin is not None and not (isinstance(gate, dict) and gate.get("validation")):
        return None
    return metrics if isinstance(metrics, dict) and metrics else None


def incompatibility(current: ModelInfo, candidate: ModelInfo) -> str | None:
    """Why ``candidate`` cannot replace ``current`` in the running decider, or None when it can."""
    if candidate.labels != current.labels or candidate.positive_index != current.positive_index:
        return f"类别不同 / other labels: {list(candidate.labels)} ≠ {list(current.labels)}"
    if candidate.spec != current.spec:
        return f"输入规格不同 / other input spec: {candidate.spec} ≠ {current.spec}"
    return None


@dataclass(frozen=True)
class Pointer:
    """current.json: the refreshed model in use (None: the base) and those before it, oldest first."""

    base_sha256: str
    current: str | None = None
    previous: tuple[str | None, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Pointer:
        """The pointer current.json holds; ValueError for anything else (a hand edit, a damaged file),
        including a name that could lead out of the model store."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get("previous"), list):
            raise ValueError("not a pointer")
        base_sha256 = raw.get("base_sha256")
        if not isinstance(base_sha256, str) or len(base_sha256) != 64 or not set(base_sha256) <= _SHA256_HEX:
            raise ValueError(f"base_sha256 {str(base_sha256)[:80]!r}")
        names = [raw.get("current"), *raw["previous"]]
        for name in names:
            if name is not None and (problem := version_problem(name)) is not None:
                raise ValueError(problem)
        return cls(base_sha256, names[0], tuple(names[1:]))


class Models:
    """The model in use and the switch to another one. Swapping replaces the decider's classifier in
    one assignment: images already being decided finish on the old model, the next ones use the new.

    Nothing handed to it is trusted: a model folder is named by a version of a fixed pattern, lies in
    the store and is no symlink, and holds no symlink (see :meth:`stored`)."""

    def __init__(self, directory: Path, config: Config) -> None:
        self.directory = directory
        self.config = config
        self.base = config.nailong_model_path or bundled_model_path()
        self.pointer_path = directory / POINTER_FILE
        self._base_sha256: str | None = None
        self._said: str | None = None
        self._decider: Decider | None = None
        self._settings: SettingsStore | None = None
        self._cache: TTLCache[Decision] | None = None
        # One swap or rollback at a time.
        self._switching = asyncio.Lock()

    @property
    def candidates(self) -> Path:
        return self.directory / CANDIDATES_DIR

    def base_sha256(self) -> str:
        if self._base_sha256 is None:
            self._base_sha256 = _sha256(self.base) if self.base.is_file() else ""
        return self._base_sha256

    def model_path(self, name: str | None) -> Path:
        """The model file of the refreshed model ``name`` (None: the base). Raises ModelError for a name or
        folder that could lead out of the store."""
        return self.base if name is None else self.stored(self.directory / _checked_name(name)) / MODEL_FILE

    def stored(self, folder: Path) -> Path:
        """``folder``, once it is shown to be a real folder inside the store with no symlink in it (a
        model file linked from elsewhere would run a model nobody checked). Raises ModelError."""
        store = self.directory.resolve()
        if folder.is_symlink() or not folder.resolve().is_relative_to(store) or folder.resolve() == store:
            raise ModelError(f"模型目录不在模型库内 / model folder outside the model store: {folder}")
        if folder.is_dir():
            linked = [entry.name for entry in folder.iterdir() if entry.is_symlink()]
            if linked:
                raise ModelError(f"模型目录中有符号链接 / symlinks in the model folder {folder}: {linked}")
        return folder

    def read_pointer(self) -> Pointer:
        """What current.json says, or the base alone when it is missing, unreadable, not a pointer or
        made on another base (each of those said once in the log)."""
        base = Pointer(self.base_sha256())
        if not self.pointer_path.exists():
            return base
        try:
            pointer = Pointer.parse(self.pointer_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            self._say_once(
                f"模型指针无法使用，改用基础模型 / {self.pointer_path} unusable ({str(error)[:200]}): using the base model"
            )
            return base
        if pointer.base_sha256 != base.base_sha256:
            self._say_once(
                f"基础模型已更换（{self.base}），不再使用基于旧模型的更新模型 {pointer.current}；纠错仍保留，"
                f"可再次 /nailong refresh / the base model changed: the refreshed models built on the old one "
                f"are no longer used (they stay in {self.directory}); the corrections are kept"
            )
            return base
        return pointer

    def _say_once(self, warning: str) -> None:
        """Log why current.json is not followed, once (it is read on every page of the console)."""
        if warning != self._said:
            logger.warning(warning)
            self._said = warning

    def load_in_use(self) -> Classifier:
        """The refreshed model current.json names, else the base. A refreshed model that cannot be loaded
        or is refused is logged and the base runs instead: the bot still starts."""
        pointer = self.read_pointer()
        if pointer.current is not None:
            try:
                return load_classifier(self.config, self.model_path(pointer.current))
            except ModelError as error:
                logger.error(f"更新后的模型无法使用，改用基础模型 / the refreshed model cannot be used, using the base: {error}")
        return load_classifier(self.config, self.base)

    def attach(self, decider: Decider, settings: SettingsStore, cache: TTLCache[Decision]) -> None:
        """The decider whose model is swapped, the settings whose default threshold follows the model,
        and the decisions cache."""
        self._decider, self._settings, self._cache = decider, settings, cache

    @property
    def in_use(self) -> ModelInfo:
        assert self._decider is not None
        return self._decider.classifier.info

    async def swap_in(self, candidate_dir: Path) -> ModelInfo:
        """Check a refresh's output (where it lies, checksum, threshold, version, labels, input spec, a
        test input), keep it under its version and run it from now on; the model it replaces stays for
        rollback. Raises ModelError (nothing changed then)."""
        async with self._switching:
            if candidate_dir.parent != self.candidates:
                raise ModelError(f"候选模型不在候选目录中 / the candidate is not in {self.candidates}: {candidate_dir}")
            self.stored(candidate_dir)
            classifier = await asyncio.to_thread(load_classifier, self.config, candidate_dir / MODEL_FILE)
            reason = incompatibility(self.in_use, classifier.info)
            if reason is not None:
                raise ModelError(f"新模型与当前模型不兼容 / the new model does not fit the running one: {reason}")
            name = _checked_name(classifier.info.version)
            pointer = self.read_pointer()
            if name == pointer.current or name in pointer.previous:
                raise ModelError(f"已有同一版本的模型 / a model of version {name} is already kept")
            target = self.directory / name
            if target.exists() or target.is_symlink():
                # Only a model folder left from an earlier base or rollback (rollback no longer reaches it) goes.
                if not (self.stored(target).is_dir() and (target / MODEL_FILE).is_file()):
                    raise ModelError(f"版本名与模型库中的其他文件冲突 / version {name} names something else in the store")
                await asyncio.to_thread(shutil.rmtree, target)
            await asyncio.to_thread(candidate_dir.rename, target)
            # The session holds the model in memory; only the path shown changes.
            classifier.info = replace(classifier.info, path=target / MODEL_FILE)
            # Rollback reaches the last refreshed models and, below them, always the base.
            refreshed = [n for n in (*pointer.previous, pointer.current) if n is not None][-KEPT_MODELS:]
            new = Pointer(pointer.base_sha256, name, (None, *refreshed))
            await asyncio.to_thread(self._write_pointer, new)
            self._use(classifier)
            await asyncio.to_thread(self._prune, new)
            return classifier.info

    async def rollback(self) -> tuple[ModelInfo, ModelInfo]:
        """Run the model before this one again; (the one left, the one now running). Raises ModelError
        when there is none to go back to or it cannot be loaded (nothing changed then)."""
        async with self._switching:
            pointer = self.read_pointer()
            if not pointer.previous:
                raise ModelError("没有更早的模型可以回退 / there is no earlier model to roll back to")
            target = pointer.previous[-1]
            classifier = await asyncio.to_thread(load_classifier, self.config, self.model_path(target))
            left = self.in_use
            await asyncio.to_thread(self._write_pointer, Pointer(pointer.base_sha256, target, pointer.previous[:-1]))
            self._use(classifier)
            return left, classifier.info

    def can_roll_back(self) -> bool:
        return bool(self.read_pointer().previous)

    def _use(self, classifier: Classifier) -> None:
        assert self._decider is not None and self._settings is not None and self._cache is not None
        old = self._decider.classifier.info
        self._decider.classifier = classifier
        # Keyed by version, the old model's decisions would never answer for the new one; but a version
        # can be built again after a rollback (the same base, refreshed again), so they go.
        self._cache.clear()
        if self.config.nailong_threshold is None:
            # The gate checked the new model at its own threshold; groups that set theirs keep it.
            self._settings.defaults = replace(self._settings.defaults, threshold=classifier.info.threshold)
        if self.config.nailong_review_floor is None:
            # The band is the model's too: its floor was calibrated with its threshold.
            review_floor = default_review_floor(None, classifier.info.review_floor)
            self._settings.defaults = replace(self._settings.defaults, review_floor=review_floor)
        logger.info(
            f"模型已切换 / model swapped: {old.version} → {classifier.info.version} ({classifier.info.path}), "
            f"threshold={classifier.info.threshold}"
        )

    def _write_pointer(self, pointer: Pointer) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"base_sha256": pointer.base_sha256, "current": pointer.current, "previous": list(pointer.previous)},
            indent=2,
        )
        persist.write_atomically(self.pointer_path, text.encode("utf-8"), durable=True)

    def _prune(self, pointer: Pointer) -> None:
        """Remove refreshed models rollback can no longer reach, and all but the last failed candidates.
        Only real folders are removed: a symlink (put there by hand) stays, and so does what it points at."""
        kept = {pointer.current, *pointer.previous}
        for folder in self.directory.iterdir():
            if not folder.is_symlink() and (folder / MODEL_FILE).is_file() and folder.name not in kept:
                shutil.rmtree(folder, ignore_errors=True)
        if self.candidates.is_dir():
            failed = sorted(self.candidates.iterdir())
            for folder in failed[:-KEPT_FAILED_CANDIDATES] if len(failed) > KEPT_FAILED_CANDIDATES else []:
                shutil.rmtree(folder, ignore_errors=True)


def _checked_name(version: str) -> str:
    """A version as the name of its folder in the store; ModelError when it could be anything else
    (``..``, ``.``, a path, the candidates' folder)."""
    problem = version_problem(version)
    if problem is None and version == CANDIDATES_DIR:
        problem = f"版本号与保留名称相同 / version {version!r} is a reserved name"
    if problem is not None:
        raise ModelError(f"模型被拒绝 / model refused: {problem}")
    return version


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
